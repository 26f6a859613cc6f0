"""68-point landmark plumbing: 68 -> 5 reduction, Deep3DFaceRecon's 224 alignment, the ReconNet backend's frames."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from hififace.errors import ConfigError, MissingDependencyError, WeightsError
from hififace.face.align import invert_affine, transform_points
from hififace.face.detect import Face
from hififace.face.landmarks import (DEEP3D_LM3D_5, deep3d_align_matrix, get_landmarker, reduce68to5)

pytest.importorskip("cv2")


def test_reduce68to5_rule():
    lm = np.arange(136, dtype=np.float64).reshape(68, 2)
    five = reduce68to5(lm)
    np.testing.assert_allclose(five[0], (lm[36] + lm[39]) / 2)
    np.testing.assert_allclose(five[1], (lm[42] + lm[45]) / 2)
    np.testing.assert_allclose(five[2:], lm[[30, 48, 54]])


def test_deep3d_alignment_centres_a_frontal_face():
    # a photo whose 5 points are the 3D template's x, y (scaled, y down): the fit must undo exactly that
    h = 400
    pts = np.stack([200 + 150 * DEEP3D_LM3D_5[:, 0], 180 - 150 * DEEP3D_LM3D_5[:, 1]], 1)
    m = deep3d_align_matrix(pts, h)
    crop = transform_points(pts, m)
    # scale 102 / 150 per unit template, upright, centred on the template origin at (112, 112) (+1 px row offset)
    np.testing.assert_allclose(m[0, 0], m[1, 1])
    assert abs(m[0, 1]) < 1e-12 and abs(m[1, 0]) < 1e-12
    eye_dist = np.linalg.norm(crop[1] - crop[0])
    assert eye_dist == pytest.approx(102 * np.linalg.norm(DEEP3D_LM3D_5[1, :2] - DEEP3D_LM3D_5[0, :2]), rel=0.02)
    assert np.abs(crop.mean(0) - (112 + 102 * DEEP3D_LM3D_5[:, :2].mean(0) * [1, -1])).max() < 2.0
    # translation follows the photo
    m2 = deep3d_align_matrix(pts + [30, -20], h)
    np.testing.assert_allclose(transform_points(pts + [30, -20], m2), crop, atol=1e-6)


def test_recon_backend_maps_crop_points_back_to_the_photo(monkeypatch, tmp_path):
    """With stand-ins for ReconNet and BFM, the 68 points come back in the photo frame through the inverse warp."""
    seen = {}

    class FakeRecon(torch.nn.Module):
        def forward(self, x):
            seen["input"] = x
            return torch.zeros(x.shape[0], 257)

    from hififace.models.frozen.bfm import BFMLandmarks

    class FakeBFM(torch.nn.Module):
        to_pixel_frame = staticmethod(BFMLandmarks.to_pixel_frame)  # the real y-up -> y-down convention

        def forward(self, coeffs):  # Deep3DFaceRecon's frame, y up: (112, 100) is 12 px above the centre
            return torch.tensor([112.0, 100.0]).expand(coeffs.shape[0], 68, 2)

    import hififace.converters.bfm as bfm
    import hififace.converters.deep3d as deep3d

    monkeypatch.setattr(deep3d, "load_recon", lambda path: FakeRecon())
    monkeypatch.setattr(bfm, "load_bfm", lambda path: FakeBFM())

    lmk = get_landmarker("recon", recon_path=tmp_path / "epoch_20.pth", bfm_path=tmp_path / "BFM_model_front.mat")
    img = np.zeros((300, 260, 3), np.uint8)
    pts = np.array([[100.0, 120], [150, 121], [125, 150], [105, 175], [146, 176]])
    face = Face(box=np.array([80, 90, 170, 200], np.float32), score=0.9, landmarks=pts.astype(np.float32))
    out = lmk.landmarks68(img, face)
    assert out.shape == (68, 2)
    assert seen["input"].shape == (1, 3, 224, 224) and float(seen["input"].max()) <= 1.0
    expected = transform_points([[112.0, 123.0]], invert_affine(deep3d_align_matrix(pts, 300)))[0]  # 223 - 100
    np.testing.assert_allclose(out[0], expected, atol=1e-6)


def test_backend_selection_errors(monkeypatch, tmp_path):
    monkeypatch.setattr("hififace.weights.resolve.search_roots", lambda: [tmp_path])
    assert get_landmarker("none") is None
    with pytest.raises(ConfigError):
        get_landmarker("openpose")
    with pytest.raises(WeightsError, match="epoch_20.pth"):
        get_landmarker("recon")
    try:
        import dlib  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="dlib"):
            get_landmarker("dlib")
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="mediapipe"):
            get_landmarker("mediapipe")


def test_dlib_and_yunet_agree_where_dlib_is_installed():
    """Two backends agree on the 5 points within a few pixels (runs only where dlib + its models are installed)."""
    pytest.importorskip("dlib")
    import importlib.util

    if importlib.util.find_spec("face_recognition_models") is None:  # not imported: its __init__ needs pkg_resources
        pytest.skip("face-recognition-models is not installed")
    from face_helpers import photo
    from hififace.face.detect import get_detector

    img = photo("grace_hopper.jpg")
    face = get_detector("yunet").detect(img)[0]
    lm68 = get_landmarker("dlib").landmarks68(img, face)
    five = reduce68to5(lm68)
    # measured on this 170 px face: eyes 4.9 px, mouth corners 13.1 px apart (dlib's mouth corners 48/54 sit lower
    # than YuNet's; the same 13 px with dlib's own HOG box): within 5 % and 10 % of the face width
    assert np.abs(five[:2] - face.landmarks[:2]).max() < 0.05 * face.width  # eye centres
    assert np.abs(five[3:] - face.landmarks[3:]).max() < 0.10 * face.width  # mouth corners
