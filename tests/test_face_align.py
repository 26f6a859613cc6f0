"""Alignment: exact similarity fits, templates, inverse round trips, torch warps, and crop stability on real photos."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_helpers import crop_disagreement, photo, photo_transform
from hififace.face.align import (ARCFACE_112, align_crop, compose, estimate_transform, ffhq_quad, invert_affine,
                                 refine_landmarks, template_points, transform_points, umeyama, unwarp_faces_torch,
                                 warp_face, warp_faces_torch)
from hififace.face.cropper import crop_face

pytest.importorskip("cv2")


def _similarity(scale, angle_deg, tx, ty):
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_umeyama_recovers_a_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, (5, 2))
    m = _similarity(1.7, 23.0, 12.5, -40.0)
    np.testing.assert_allclose(umeyama(src, transform_points(src, m)), m, atol=1e-9)


def test_umeyama_least_squares_is_translation_and_scale_consistent():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    dst = src * 2 + 5 + rng.normal(0, 0.5, src.shape)
    m = umeyama(src, dst)
    # shifting and scaling the inputs moves the fit accordingly (what makes crops stable under photo transforms)
    m2 = umeyama(src * 3 + 7, dst)
    np.testing.assert_allclose(transform_points(src * 3 + 7, m2), transform_points(src, m), atol=1e-8)


def test_templates():
    np.testing.assert_allclose(template_points("arcface", 112), ARCFACE_112)
    np.testing.assert_allclose(template_points("arcface", 224), ARCFACE_112 * 2)
    np.testing.assert_allclose(template_points("arcface", 256), ARCFACE_112 * 2 + [16, 0])
    np.testing.assert_allclose(template_points("arcface", 512), ARCFACE_112 * 4 + [32, 0])
    for size in (256, 512):
        for name in ("arcface", "ffhq", "frontal"):
            pts = template_points(name, size)
            assert pts.shape == (5, 2) and (pts > 0).all() and (pts < size).all()
            # a face already at the template stays put
            np.testing.assert_allclose(transform_points(pts, estimate_transform(pts, name, size)), pts, atol=1e-6)


def test_ffhq_quad_is_a_square_with_the_documented_size():
    el, er, ml, mr = np.array([100.0, 100]), np.array([160.0, 100]), np.array([110.0, 170]), np.array([150.0, 170])
    quad = ffhq_quad(el, er, ml, mr)
    sides = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    np.testing.assert_allclose(sides, sides[0])
    # |x| = max(2 |eye_to_eye|, 1.8 |eye_to_mouth|) = max(120, 126) and the side is 2 |x|
    assert sides[0] == pytest.approx(2 * 126.0)


def test_ffhq_from_68_points_uses_eye_centres_and_mouth_corners():
    from hififace.face.landmarks import reduce68to5

    rng = np.random.default_rng(3)
    lm68 = rng.uniform(50, 150, (68, 2))
    lm68[36:42] = [100, 100] + rng.normal(0, 2, (6, 2))
    lm68[42:48] = [160, 100] + rng.normal(0, 2, (6, 2))
    lm68[48], lm68[54] = [110, 170], [150, 170]
    m = estimate_transform(lm68, "ffhq", 256)
    assert m.shape == (2, 3)
    five = reduce68to5(lm68)
    assert five.shape == (5, 2) and np.allclose(five[3], [110, 170])


def test_align_then_inverse_round_trip_within_one_pixel():
    img = photo("grace_hopper.jpg")
    lm = np.array([[227.1, 193.3], [307.8, 195.4], [266.5, 240.0], [228.5, 267.9], [302.2, 269.6]])
    for template in ("arcface", "ffhq"):
        for size in (256, 512):
            a = crop_face(img, lm, template, size)
            inv = a.inverse
            # points: crop -> photo -> crop
            pts = np.array([[10.0, 20.0], [size / 2, size / 2], [size - 5.0, size - 9.0]])
            np.testing.assert_allclose(transform_points(transform_points(pts, inv), a.matrix), pts, atol=1e-9)
            # the photo pixel a crop pixel samples is the one the inverse names (to within 1 px)
            probe = np.zeros(img.shape[:2], np.float32)
            x0, y0 = np.round(lm.mean(0)).astype(int)
            probe[y0, x0] = 1.0
            hit = warp_face(probe, a.matrix, size)
            cy, cx = np.unravel_index(np.argmax(hit), hit.shape)
            assert np.abs(transform_points([[cx, cy]], inv)[0] - [x0, y0]).max() <= 1.0
            # landmarks land on the template
            if template == "arcface":
                assert np.abs(transform_points(lm, a.matrix) - template_points("arcface", size)).max() < 0.05 * size


def test_paste_back_round_trip_pixels():
    from hififace.face.blend import paste_back

    img = photo("grace_hopper.jpg")
    lm = np.array([[227.1, 193.3], [307.8, 195.4], [266.5, 240.0], [228.5, 267.9], [302.2, 269.6]])
    a = crop_face(img, lm, "arcface", 512)  # upsampling crop: the way back loses almost nothing
    out = paste_back(img, a.crop, a.matrix, erode=0.0, blur=0.0)
    face = (slice(200, 260), slice(235, 300))
    assert np.median(np.abs(out[face].astype(int) - img[face].astype(int))) <= 1


def test_torch_warp_matches_opencv_and_inverts():
    rng = np.random.default_rng(0)
    img = (rng.uniform(0, 1, (2, 3, 90, 120))).astype(np.float32)
    ms = np.stack([_similarity(1.3, 10, -20, 5), _similarity(0.8, -30, 40, 60)])
    crops = warp_faces_torch(torch.from_numpy(img), ms, 64)
    for i in range(2):
        ref = warp_face(np.ascontiguousarray(img[i].transpose(1, 2, 0)), ms[i], 64)
        inner = (slice(4, -4), slice(4, -4))
        got = crops[i].permute(1, 2, 0).numpy()
        assert np.abs(got[inner] - ref[inner]).mean() < 0.02
    back = unwarp_faces_torch(crops, ms, (90, 120))
    assert back.shape == (2, 3, 90, 120)
    # pixel at a crop centre goes back to the photo pixel it came from
    c = transform_points([[32.0, 32.0]], invert_affine(ms[0]))[0]
    x, y = int(round(c[0])), int(round(c[1]))
    assert np.abs(back[0, :, y, x].numpy() - img[0, :, y, x]).max() < 0.25


def test_align_crop_antialiases_strong_downscaling():
    img = np.zeros((400, 400, 3), np.uint8)
    img[:, ::2] = 255  # finest stripes alias without a pre-blur
    m = _similarity(0.2, 0, 0, 0)
    crop = align_crop(img, m, 64)
    assert abs(float(crop[10:50, 10:50].mean()) - 127.5) < 20


def test_crops_stable_under_rotation_scale_and_shift():
    """Crops of one photo under rotation ±12°, scale 0.7-1.35 and shifts agree (<= 3 px median, <= 8 px worst)."""
    from hififace.face.detect import get_detector

    det = get_detector("yunet")

    def matrix(img):
        lm = refine_landmarks(img, det.detect(img)[0].landmarks, det)[0]
        return estimate_transform(lm, "arcface", 256)

    errors = []
    for name in ("grace_hopper.jpg", "astronaut.png"):
        img = photo(name)
        m_a = matrix(img)
        for case in (dict(angle=12.0), dict(angle=-12.0), dict(scale=0.7), dict(scale=1.35), dict(shift=(37, -23))):
            out, t = photo_transform(img, **case)
            errors.append(crop_disagreement(m_a, matrix(out), t))
    assert np.median(errors) <= 3.0
    assert max(errors) <= 8.0


def test_crop_disagreement_is_zero_for_the_exact_transform():
    m = _similarity(2.0, 5, 10, 20)
    t = _similarity(1.2, -12, 30, -4)
    assert crop_disagreement(m, compose(m, invert_affine(t)), t) < 1e-9
    assert crop_disagreement(m, m, t) > 1.0
