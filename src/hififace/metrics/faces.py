"""Where the face is in each image to score: 5 landmarks from the detector, or the alignment template.

Modes:

- ``detect`` (default): the face pipeline's detector (YuNet, built in) finds the faces; the largest is scored.
  An image without a face is counted and left out of the identity and 3D metrics.
- ``template``: every image is taken as an aligned square crop made with the ArcFace template at its size (how
  ``hififace preprocess`` and the model's outputs are aligned); no detection, so it also works on crops a
  detector misses and costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..face.align import template_points
from ..face.cropper import FaceCropper

FACE_MODES = ("detect", "template")
#: Cache row of a detection: found flag, box (4), score, 5 landmarks (10).
ROW = 16


@dataclass
class FaceSpot:
    landmarks: np.ndarray  # 5 x 2, image pixels
    box: np.ndarray | None = None
    score: float | None = None


class FaceLocator:
    def __init__(self, mode: str = "detect", detector: str = "yunet"):
        if mode not in FACE_MODES:
            raise ConfigError(f"--faces {mode}: choose one of {', '.join(FACE_MODES)}")
        self.mode = mode
        self.detector_name = detector
        self._cropper = FaceCropper(detector, refine_passes=0) if mode == "detect" else None

    @property
    def key(self) -> str:
        return "template" if self.mode == "template" else f"detect-{self.detector_name}"

    def locate(self, image: np.ndarray) -> FaceSpot | None:
        if self.mode == "template":
            h, w = image.shape[:2]
            pts = template_points("arcface", w) * np.array([1.0, h / w])
            return FaceSpot(pts)
        faces = self._cropper.detect(image)
        if not faces:
            return None
        face = faces[self._cropper.choose(image, faces)[0]]  # the largest
        return FaceSpot(face.landmarks.astype(np.float64), np.asarray(face.box, np.float64), float(face.score))

    @staticmethod
    def to_row(spot: FaceSpot | None) -> np.ndarray:
        row = np.zeros(ROW, np.float32)
        if spot is not None:
            row[0] = 1.0
            row[1:5] = spot.box if spot.box is not None else np.nan
            row[5] = spot.score if spot.score is not None else np.nan
            row[6:] = np.asarray(spot.landmarks, np.float32).reshape(-1)
        return row

    @staticmethod
    def from_row(row: np.ndarray) -> FaceSpot | None:
        if row[0] < 0.5:
            return None
        return FaceSpot(row[6:].astype(np.float64).reshape(5, 2), row[1:5].astype(np.float64), float(row[5]))
