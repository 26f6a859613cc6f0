"""Parsing: palettes the reference can read, BiSeNet/ParseNet in the exact upstream key layout, landmark fallback."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fakes import fake_state, read_manifest
from hififace.errors import ConfigError, WeightsError
from hififace.face.align import template_points
from face_helpers import color_to_labels, face_mask_from_color, labels_to_color, read_parsing
from hififace.face.palette import BISENET_CLASSES, BISENET_TO_PSFRGAN, CLASSES, FACE_CLASSES, PALETTE, face_mask, save_parsing
from hififace.face.parse import get_parser, landmark_labels

pytest.importorskip("cv2")


def test_palette_matches_psfrgan_table():
    assert len(CLASSES) == len(PALETTE) == 19
    assert tuple(PALETTE[CLASSES.index("skin")]) == (204, 0, 0)
    assert tuple(PALETTE[CLASSES.index("nose")]) == (76, 153, 0)
    assert tuple(PALETTE[CLASSES.index("l_lip")]) == (0, 0, 153)
    assert tuple(PALETTE[CLASSES.index("cloth")]) == (0, 204, 0)
    assert len({tuple(c) for c in PALETTE}) == 19  # colours are unique, so labels round-trip
    assert sorted(CLASSES[i] for i in FACE_CLASSES) == sorted(
        ["skin", "nose", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip", "l_lip"])


def test_bisenet_mapping_by_name():
    for b, p in enumerate(BISENET_TO_PSFRGAN):
        assert BISENET_CLASSES[b] == CLASSES[p]
    # docs/formats.md#bisenet-face-parser: the face region in BiSeNet indices is {1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13}
    assert sorted(np.nonzero(np.isin(BISENET_TO_PSFRGAN, FACE_CLASSES))[0].tolist()) == [1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13]


def test_parsing_png_round_trip_and_reference_mask(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 19, (40, 56)).astype(np.uint8)
    path = tmp_path / "x.png"
    save_parsing(path, labels)
    assert not list(tmp_path.glob("*.tmp"))
    np.testing.assert_array_equal(read_parsing(path), labels)
    # what the reference's dataset does: Image.open(p).convert('RGB') then exact colour matches
    rgb = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(rgb, labels_to_color(labels))
    np.testing.assert_array_equal(face_mask_from_color(rgb), face_mask(labels))
    np.testing.assert_array_equal(color_to_labels(rgb), labels)


def _face_points(size=256):
    return template_points("arcface", size)


def test_fallback_mask_from_5_points_covers_features_and_excludes_corners():
    size = 256
    pts = _face_points(size)
    lab = landmark_labels((size, size), pts)
    mask = face_mask(lab)
    for x, y in pts:
        assert mask[int(round(y)), int(round(x))]
    for y, x in ((0, 0), (0, size - 1), (size - 1, 0), (size - 1, size - 1)):
        assert not mask[y, x]
    assert 0.25 < mask.mean() < 0.8


def test_fallback_mask_follows_a_rotated_face():
    size = 256
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = (_face_points(size) - 128) @ rot.T * 0.6 + 128
    mask = face_mask(landmark_labels((size, size), pts))
    for x, y in pts:
        assert mask[int(round(y)), int(round(x))]
    assert not mask[0, 0] and not mask[-1, -1]


def _synthetic_68(size=256):
    """A plausible frontal 68-point layout (iBUG order) built around the ArcFace template."""
    e_l, e_r, nose, m_l, m_r = _face_points(size)
    c = (e_l + e_r) / 2
    e = np.linalg.norm(e_r - e_l)
    t = np.linspace(np.pi * 0.95, np.pi * 0.05, 17)
    jaw = np.stack([c[0] - np.cos(t) * e * 1.05, c[1] + np.sin(t) * e * 1.5 - 0.1 * e], 1)
    brow_l = np.stack([np.linspace(e_l[0] - 0.4 * e, e_l[0] + 0.3 * e, 5), np.full(5, e_l[1] - 0.35 * e)], 1)
    brow_r = brow_l + [e_r[0] - e_l[0], 0]
    bridge = np.stack([np.full(4, c[0]), np.linspace(c[1], nose[1], 4)], 1)
    nostrils = np.stack([np.linspace(nose[0] - 0.3 * e, nose[0] + 0.3 * e, 5), np.full(5, nose[1] + 0.1 * e)], 1)
    ang = np.linspace(0, 2 * np.pi, 6, endpoint=False) + np.pi
    eye = np.stack([np.cos(ang) * 0.25 * e, np.sin(ang) * 0.1 * e], 1)
    ang12 = np.linspace(0, 2 * np.pi, 12, endpoint=False) + np.pi
    mc = (m_l + m_r) / 2
    mw = np.linalg.norm(m_r - m_l) / 2
    outer = mc + np.stack([np.cos(ang12) * mw, np.sin(ang12) * 0.35 * mw], 1)
    ang8 = np.linspace(0, 2 * np.pi, 8, endpoint=False) + np.pi
    inner = mc + np.stack([np.cos(ang8) * mw * 0.8, np.sin(ang8) * 0.1 * mw], 1)
    return np.concatenate([jaw, brow_l, brow_r, bridge, nostrils, e_l + eye, e_r + eye, outer, inner])


def test_fallback_from_68_points_paints_parts():
    size = 256
    lm = _synthetic_68(size)
    assert lm.shape == (68, 2)
    lab = landmark_labels((size, size), lm)
    mask = face_mask(lab)
    for i in (30, 36, 45, 48, 54, 57):  # nose tip, eye corners, mouth corners, lower lip
        x, y = np.round(lm[i]).astype(int)
        assert mask[y, x], i
    assert CLASSES.index("l_eye") in lab and CLASSES.index("u_lip") in lab and CLASSES.index("nose") in lab
    assert not mask[0, 0] and not mask[-1, -1]


def test_landmark_parser_interface_batches():
    p = get_parser("landmarks")
    crops = np.zeros((2, 128, 128, 3), np.uint8)
    lms = np.stack([_face_points(128), _face_points(128) + 3])
    out = p.parse(crops, lms)
    assert out.shape == (2, 128, 128) and out.dtype == np.uint8
    assert p.parse(crops[0], lms[0]).shape == (128, 128)
    with pytest.raises(ConfigError):
        p.parse(crops[0], None)


@pytest.mark.parametrize("module,cls,manifest", [
    ("hififace.models.frozen.bisenet", "BiSeNet", "bisenet_faceparsing_keys.tsv"),
    ("hififace.models.frozen.psfrgan", "ParseNet", "psfrgan_parsenet_keys.tsv"),
])
def test_parser_networks_have_the_upstream_keys(module, cls, manifest):
    import importlib

    net = getattr(importlib.import_module(module), cls)()
    rows = read_manifest(manifest)
    state = net.state_dict()
    assert list(state) == [r[0] for r in rows]
    assert all(tuple(state[k].shape) == shape for k, shape, _ in rows)
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    net.train()
    assert not net.training  # frozen modules stay in eval mode


@pytest.mark.parametrize("name,manifest,fname", [
    ("bisenet", "bisenet_faceparsing_keys.tsv", "79999_iter.pth"),
    ("psfrgan", "psfrgan_parsenet_keys.tsv", "parse_multi_iter_90000.pth"),
])
def test_net_parsers_load_original_files_and_parse(tmp_path, name, manifest, fname):
    path = tmp_path / fname
    torch.save(fake_state(manifest, 0), path)
    parser = get_parser(name, path, input_size=64)
    crops = np.random.default_rng(0).integers(0, 255, (2, 48, 48, 3), dtype=np.uint8)
    labels = parser.parse(crops)
    assert labels.shape == (2, 48, 48) and labels.dtype == np.uint8 and labels.max() < 19
    # labels come in the project's (PSFRGAN) order: BiSeNet's raw argmax is remapped
    if name == "bisenet":
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255
        x = torch.nn.functional.interpolate(x, (64, 64), mode="bilinear", align_corners=False)
        raw = torch.nn.functional.interpolate(parser.net(parser.net.normalize(x)), (48, 48), mode="bilinear",
                                              align_corners=False).argmax(1).numpy()
        np.testing.assert_array_equal(labels, BISENET_TO_PSFRGAN[raw])


def test_parser_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HIFIFACE_HOME", str(tmp_path))
    monkeypatch.setattr("hififace.weights.resolve.search_roots", lambda: [tmp_path])
    with pytest.raises(WeightsError, match="79999_iter.pth"):
        get_parser("bisenet")
    with pytest.raises(WeightsError, match="not found"):
        get_parser("psfrgan", tmp_path / "nope.pth")
    with pytest.raises(ConfigError, match="unknown face parser"):
        get_parser("segformer")
    wrong = tmp_path / "parse_multi_iter_90000.pth"
    torch.save(fake_state("psfrgan_parsenet_keys.tsv", 0), wrong)
    with pytest.raises(WeightsError, match="use --parsing psfrgan"):
        get_parser("bisenet", wrong)


def test_auto_parser_prefers_found_weights_else_landmarks(tmp_path, monkeypatch):
    monkeypatch.setattr("hififace.weights.resolve.search_roots", lambda: [tmp_path])
    assert get_parser("auto").name == "landmarks"
    torch.save(fake_state("bisenet_faceparsing_keys.tsv", 0), tmp_path / "79999_iter.pth")
    assert get_parser("auto").name == "bisenet"


# ------------------------------------------------------------------------------------ the 5-point outline (profiles)
def _ellipse_before(size, pts):
    """The 5-point fallback this project drew before the posed outline: an ellipse (centre (56, 66.9), semi-axes
    40.5 x 47.8 in the 112 ArcFace frame) carried onto the face by a similarity fit of the 5 points."""
    import cv2

    from hififace.face.align import ARCFACE_112, invert_affine, transform_points, umeyama

    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ring = transform_points(np.stack([56.0 + 40.5 * np.cos(t), 66.9 + 47.8 * np.sin(t)], 1),
                            invert_affine(umeyama(pts, ARCFACE_112)))
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [np.round(ring * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return out > 0


def _turned_head(yaw: float, size: int = 256):
    """A head turned by ``yaw`` degrees (positive: the nose points to the image's right), 3D points in ~10 cm units
    (x right, y up, z to the camera) projected orthographically into a size x size crop: its 5 landmarks, a point
    on the cheek in front of the ear (on the side turned to the camera) and a point of the background just in front
    of the nose."""
    a = np.deg2rad(yaw)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    five = np.array([[-0.32, 0.3, 0.12], [0.32, 0.3, 0.12], [0, -0.06, 0.56], [-0.24, -0.37, 0.24], [0.24, -0.37, 0.24]])
    side = -np.sign(yaw)  # the cheek turned to the camera lies on the side the nose points away from
    cheek = np.array([side * 0.6, -0.3, -0.15])

    def project(p):
        q = np.asarray(p, float) @ rot.T
        return np.stack([size / 2 + q[..., 0] * size * 0.4, size / 2 - q[..., 1] * size * 0.4], -1)

    nose = project(five[2])
    front = nose + [np.sign(yaw) * 0.25 * size * 0.4, 0]  # 2.5 cm beyond the nose tip, at its height
    return project(five), project(cheek), front


@pytest.mark.parametrize("yaw", [-60, -45, 45, 60])
def test_fallback_mask_of_a_turned_face_covers_the_cheek_not_the_background_in_front(yaw):
    """Profiles: the 5-point fallback reaches the cheek towards the ear and stops at the profile line. The ellipse
    it replaces does neither (checked here, so this test would fail with it)."""
    size = 256
    pts, cheek, front = _turned_head(yaw, size)
    mask = face_mask(landmark_labels((size, size), pts))

    def at(m, p):
        return bool(m[int(round(p[1])), int(round(p[0]))])

    assert at(mask, cheek) and not at(mask, front), yaw
    assert all(at(mask, p) for p in pts)
    before = _ellipse_before(size, pts)
    assert not at(before, cheek) and at(before, front)


def test_fallback_mask_of_a_frontal_face_stays_near_the_ellipse():
    """Frontal faces keep (nearly) the mask they had: IoU with the former ellipse on the template points."""
    size = 256
    pts = _face_points(size)
    new, old = face_mask(landmark_labels((size, size), pts)), _ellipse_before(size, pts)
    assert (new & old).sum() / (new | old).sum() > 0.9
