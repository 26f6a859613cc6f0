"""The one face cropper (hififace.face.cropper): detect -> choose -> refine -> align -> crop, and the way back."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from hififace.errors import InputImageError
from hififace.face.align import template_points, transform_points
from hififace.face.choice import FaceChoice
from hififace.face.cropper import FaceCrop, FaceCropper, Skip
from hififace.media.images import read_photo

pytest.importorskip("cv2")

PHOTOS = Path(__file__).parent / "data" / "photos"
SRC = Path(__file__).resolve().parents[1] / "src" / "hififace"


@pytest.fixture(scope="module")
def two():
    return read_photo(PHOTOS / "two_people.jpg").rgb


def test_best_crops_the_largest_face_onto_the_template(two):
    cropper = FaceCropper(size=128, template="arcface")
    got = cropper.best(two)
    assert isinstance(got, FaceCrop) and got.crop.shape == (128, 128, 3) and got.faces_found == 2
    faces = cropper.detector.detect(two)
    np.testing.assert_allclose(got.face.box, max(faces, key=lambda f: f.area).box)
    # the matrix takes the (refined) landmarks near the template, and its inverse takes them back
    assert np.abs(transform_points(got.landmarks, got.matrix) - template_points("arcface", 128)).max() < 4.0
    np.testing.assert_allclose(transform_points(transform_points(got.landmarks, got.matrix), got.inverse),
                               got.landmarks, atol=1e-9)
    assert not np.array_equal(got.landmarks, got.face.landmarks.astype(np.float64))  # refined, detector's kept


def test_best_says_why_no_face_is_usable(two):
    cropper = FaceCropper(size=64)
    assert cropper.best(two, multi_face="skip") == Skip("several_faces", "2 faces")
    assert cropper.best(two, min_score=0.999).reason == "low_score"
    assert cropper.best(two, min_face=10_000).reason == "face_too_small"
    assert cropper.best(np.full((120, 160, 3), 90, np.uint8)) == Skip("no_face", "no face detected")


def test_detect_refines_every_face_and_crops_match_crop(two):
    raw = FaceCropper(refine_passes=0, size=96)
    refined = FaceCropper(refine_passes=2, size=96)
    plain = raw.detector.detect(two)
    assert [f.landmarks.tolist() for f in raw.detect(two)] == [f.landmarks.tolist() for f in plain]
    faces = refined.detect(two)
    assert len(faces) == 2 and all(f.landmarks.dtype == np.float32 for f in faces)
    crops, mats = refined.crops(two, [f.landmarks for f in faces])
    assert crops.shape == (2, 96, 96, 3) and mats.shape == (2, 2, 3)
    one = refined.crop(two, faces[1].landmarks)
    np.testing.assert_array_equal(one.crop, crops[1])
    np.testing.assert_array_equal(one.matrix, mats[1])
    empty, none = refined.crops(two, [])
    assert empty.shape == (0, 96, 96, 3) and none.shape == (0, 2, 3)


def test_choose_by_index_all_match_and_largest(two):
    cropper = FaceCropper(refine_passes=0)
    faces = cropper.detect(two)
    assert cropper.choose(two, faces) == [int(np.argmax([f.area for f in faces]))]
    assert cropper.choose(two, faces, FaceChoice(all=True)) == [0, 1]
    assert cropper.choose(two, faces, FaceChoice(index=1)) == [1]
    assert cropper.choose(two, [], FaceChoice(index=1)) == []
    with pytest.raises(InputImageError, match=r"two\.jpg: no face #2: 2 face\(s\) found, numbered 0 to 1"):
        cropper.choose(two, faces, FaceChoice(index=2), name="two.jpg")
    sims = lambda image, fs: np.array([0.1, 0.9])[: len(fs)]  # noqa: E731
    assert cropper.choose(two, faces, FaceChoice(match="ref"), similarities=sims) == [1]
    with pytest.raises(ValueError, match="similarities"):
        cropper.choose(two, faces, FaceChoice(match="ref"))


def test_faces_are_cropped_only_by_the_cropper():
    """Where is a face cropped? In face/cropper.py: no other module fits landmarks to a template and warps, or builds
    its own detector (face/align.py holds the maths; metrics/identity.py resamples located faces to its network's
    112 input)."""
    allowed = {"face/align.py", "face/cropper.py", "face/detect.py", "metrics/identity.py"}
    calls: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ("refine_landmarks", "align_crop", "estimate_transform", "get_detector"):
                    calls.setdefault(rel, set()).add(name)
    assert set(calls) <= allowed, {k: v for k, v in calls.items() if k not in allowed}
    assert "face/cropper.py" in calls
