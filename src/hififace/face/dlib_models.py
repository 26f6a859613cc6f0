"""Where the dlib model files of the ``face-recognition-models`` package are, without importing that package.

``face_recognition_models/__init__.py`` imports ``pkg_resources``, which setuptools >= 81 no longer ships, so
importing it fails on current environments although its files are there. The files are found from the package's
location instead. Licences (davisking/dlib-models): ``dlib_face_recognition_resnet_model_v1.dat`` and
``shape_predictor_5_face_landmarks.dat`` are public domain (CC0) by Davis King; ``shape_predictor_68_face_landmarks.dat``
is trained on iBUG 300-W, whose licence excludes commercial use.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ..errors import MissingDependencyError, WeightsError
from ..utils.optional import require

PACKAGE = "face_recognition_models"
RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"
PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"


def dlib_model_path(name: str, extra: str = "eval", feature: str = "") -> Path:
    """Path of ``models/<name>`` inside the installed ``face-recognition-models`` package."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("face-recognition-models", extra, feature or name)
    for root in spec.submodule_search_locations:
        path = Path(root) / "models" / name
        if path.is_file():
            return path
    raise WeightsError(f"{name}: not found in the installed face-recognition-models package; reinstall it "
                       "(pip install --force-reinstall face-recognition-models==0.3.0)")


def import_dlib(extra: str = "eval", feature: str = ""):
    return require("dlib", feature or "dlib", extra)


#: dlib-like face box from 5 landmarks: centre at the eye midpoint + 0.49 x (mouth midpoint - eye midpoint), side
#: 2.33 x the mean of the eye distance and the eye-to-mouth distance. Fitted to dlib's HOG detector boxes of the 36
#: faces of the project's test photos (CV about 12 %); the shape predictor then finds its own points in that box.
#: Descriptors from such boxes differ from those of dlib's own boxes by 0.03-0.14 (same person about 0.35 apart,
#: different people about 0.8).
BOX_CENTRE = 0.49
BOX_SIDE = 2.33


def dlib_box_from_landmarks(landmarks5: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the box dlib's shape predictors expect, from the detector's 5 points."""
    lm = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    eye, mouth = (lm[0] + lm[1]) / 2, (lm[3] + lm[4]) / 2
    side = BOX_SIDE * (np.linalg.norm(lm[1] - lm[0]) + np.linalg.norm(mouth - eye)) / 2
    c = eye + BOX_CENTRE * (mouth - eye)
    return tuple(int(round(v)) for v in (c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2))
