"""Optional dependencies (the extras of ``pyproject.toml``), checked in one place: :func:`require` imports one, or
raises :class:`~hififace.errors.MissingDependencyError`, one line naming the package and the extra to install.
Modules import their optional dependencies through it, where they are used, so that everything else works without
them (``hififace --help`` without OpenCV, training without onnx, ...)."""
from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import MissingDependencyError

#: Top-level module -> (the extra that installs it, the package named in the message).
EXTRAS: dict[str, tuple[str, str]] = {
    "cv2": ("face", "opencv-python-headless"),
    "imageio": ("video", "imageio"),
    "imageio_ffmpeg": ("video", "imageio_ffmpeg"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnx", "onnxruntime"),
    "onnxscript": ("onnx", "onnxscript"),
    "lightning": ("train", "lightning"),
    "tensorboard": ("train", "tensorboard"),
    "yaml": ("train", "pyyaml"),
    "wandb": ("train", "wandb"),
    "gradio": ("app", "gradio"),
    "dlib": ("eval", "dlib-bin"),
    "face_recognition_models": ("eval", "face-recognition-models"),
    "mediapipe": ("mediapipe", "mediapipe==0.10.21"),
    "c2pa": ("provenance", "c2pa-python"),
    "pyvirtualcam": ("live", "pyvirtualcam"),
}


def require(module: str, feature: str = "", extra: str | None = None) -> ModuleType:
    """Import ``module`` (a dotted name is looked up by its top-level package), or raise the one-line
    :class:`MissingDependencyError` for ``feature``; ``extra`` when another extra than the default installs it too
    (e.g. dlib: ``eval`` or ``dlib``)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        default, package = EXTRAS[module.split(".")[0]]
        raise MissingDependencyError(package, extra or default, feature) from None
