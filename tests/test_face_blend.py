"""Blending a crop back: soft masks scale with the face, pasting an unchanged crop leaves the photo unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_helpers import photo
from hififace.face.cropper import crop_face
from hififace.face.blend import match_color, paste_back, paste_back_torch, soft_mask

pytest.importorskip("cv2")

LM = np.array([[227.1, 193.3], [307.8, 195.4], [266.5, 240.0], [228.5, 267.9], [302.2, 269.6]])


def test_soft_mask_shape_range_and_relative_size():
    m = soft_mask(256)
    assert m.shape == (256, 256) and m.dtype == np.float32
    assert m[128, 128] == pytest.approx(1.0) and m[0, 0] < 1e-3
    assert 0.0 < m[128, 12] < 1.0  # soft edge
    # relative sizes: the ramp covers the same fraction of a 512 crop
    m2 = soft_mask(512)
    ramp = lambda x: int(((x > 0.01) & (x < 0.99)).sum())  # noqa: E731
    assert ramp(m2[256]) == pytest.approx(2 * ramp(m[128]), rel=0.15)


def test_paste_unchanged_crop_keeps_photo_and_zero_mask_changes_nothing():
    img = photo("grace_hopper.jpg")
    a = crop_face(img, LM, "arcface", 512)
    out = paste_back(img, a.crop, a.matrix)
    diff = np.abs(out.astype(int) - img.astype(int))
    assert np.median(diff[150:300, 200:330]) <= 1
    same = paste_back(img, np.zeros_like(a.crop), a.matrix, mask=np.zeros((512, 512)))
    np.testing.assert_array_equal(same, img)
    # a black crop darkens the face but not the far corners
    dark = paste_back(img, np.zeros_like(a.crop), a.matrix)
    assert dark[240, 266].sum() < img[240, 266].sum() / 4
    np.testing.assert_array_equal(dark[:20, :20], img[:20, :20])


def test_color_matching_moves_statistics():
    rng = np.random.default_rng(0)
    src = rng.integers(0, 120, (64, 64, 3), dtype=np.uint8)
    tgt = rng.integers(120, 255, (64, 64, 3), dtype=np.uint8)
    out = match_color(src, tgt)
    assert abs(out.mean() - tgt.mean()) < abs(src.mean() - tgt.mean()) / 4


def test_torch_paste_matches_numpy_version():
    img = photo("grace_hopper.jpg")
    a = crop_face(img, LM, "arcface", 256)
    crop = np.zeros_like(a.crop)
    ref = paste_back(img, crop, a.matrix).astype(np.float32) / 255
    frames = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    crops = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
    got = paste_back_torch(frames, crops, a.matrix[None])[0].permute(1, 2, 0).numpy()
    assert got.shape == ref.shape
    assert np.abs(got - ref).mean() < 0.01
