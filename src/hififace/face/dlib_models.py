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

from ..errors import MissingDependencyError, WeightsError

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
    try:
        import dlib
    except ImportError:
        raise MissingDependencyError("dlib-bin", extra, feature or "dlib") from None
    return dlib
