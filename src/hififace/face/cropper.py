"""The one face cropper: detect -> choose -> refine the landmarks -> align to a template -> crop, and the way back.

Every command that crops faces goes through :class:`FaceCropper` (as facexlib's ``FaceRestoreHelper`` and
insightface's ``FaceAnalysis`` do for their users): ``hififace swap`` / ``video`` / the app and ``eval`` (through
:class:`~hififace.inference.pipeline.FaceSwapper`), ``hififace preprocess`` (:mod:`hififace.data.prepare`), eval's
FaceForensics++ frames and face locator, and ``hififace faces``. The maths (templates, similarity fits, warps,
inverses) is :mod:`hififace.face.align`'s; the way back (paste through the inverse matrix with a soft mask) is
:func:`hififace.face.blend.paste_into`, which takes a crop's :attr:`FaceCrop.matrix`.

Two chains, as the commands have always run them:

- :meth:`FaceCropper.detect` + :meth:`~FaceCropper.choose` + :meth:`~FaceCropper.crops` (swapping): every face's
  landmarks are refined (the choice may compare all faces), stored as float32 in :class:`~hififace.face.detect.Face`;
- :meth:`FaceCropper.best` (data preparation, FF++ frames): one face per image, filtered by score and size with a
  reason when none is usable; only that face is refined, in float64.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import HifiFaceError, InputImageError
from .align import JITTER_4, align_crop, estimate_transform, invert_affine, refine_landmarks
from .choice import FaceChoice
from .detect import Face, FaceDetector, get_detector
from .landmarks import Landmarker

log = logging.getLogger(__name__)


@dataclass
class FaceCrop:
    """One aligned face.

    Attributes:
        crop: S x S x 3 uint8 crop.
        matrix: 2 x 3 image -> crop similarity (float64, pixel-centre convention of ``cv2.warpAffine``);
            :attr:`inverse` goes back.
        landmarks: 5 x 2 image points the matrix was fitted to (after refinement).
        face: the detected face (box, score, the detector's own landmarks).
        landmarks68: 68 x 2 image points, or None.
        faces_found: how many faces were detected in the image.
    """

    crop: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray
    face: Face | None = None
    landmarks68: np.ndarray | None = None
    faces_found: int = 1

    @property
    def inverse(self) -> np.ndarray:
        """2 x 3 crop -> image matrix."""
        return invert_affine(self.matrix)


@dataclass
class Skip:
    """Why :meth:`FaceCropper.best` found no usable face: ``reason`` (``no_face``, ``low_score``, ``face_too_small``,
    ``several_faces``) and one line for humans."""

    reason: str
    detail: str


class FaceCropper:
    """Detector, landmark refinement and alignment for crops of ``size`` x ``size`` made with ``template``.

    Args:
        detector: ``yunet`` (built in), ``scrfd`` or ``retinaface`` (with ``detector_model``), or a detector object.
        size, template: the crop (the weights' ``image_size`` and ``align`` for swapping).
        refine_passes: landmark refinement passes (:func:`~hififace.face.align.refine_landmarks`); 0 = the
            detector's landmarks as they are.
        refine_jitter: also average over four sub-crop offsets (:data:`~hififace.face.align.JITTER_4`; in
            :meth:`best`).
        threshold: detector score threshold (None: the detector's default).
        landmarker: 68-point landmarks (:func:`~hififace.face.landmarks.get_landmarker`), or None.
    """

    def __init__(self, detector: str | FaceDetector = "yunet", *, size: int = 256, template: str = "arcface",
                 refine_passes: int = 2, refine_jitter: bool = False, threshold: float | None = None,
                 detector_model: str | Path | None = None, landmarker: Landmarker | None = None):
        if isinstance(detector, str):
            kw: dict[str, Any] = {} if threshold is None else {"score_threshold": float(threshold)}
            if detector_model:
                kw["model_path"] = detector_model
            detector = get_detector(detector, **kw)  # here: a missing OpenCV or model file stops before any work
        self.detector: FaceDetector = detector
        self.size = int(size)
        self.template = template
        self.refine_passes = int(refine_passes)
        self.jitter = JITTER_4 if refine_jitter else ((0.0, 0.0),)
        self.landmarker = landmarker

    # ------------------------------------------------------------------ every face (swapping, ``faces``)
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an upright RGB image, left to right; landmarks refined ``refine_passes`` times (float32), and
        68 points added when the cropper has a landmarker."""
        faces = self.detector.detect(image)
        if self.refine_passes > 0:
            for f in faces:
                lm, _ = refine_landmarks(image, f.landmarks, self.detector, passes=self.refine_passes,
                                         jitter=self.jitter)
                f.landmarks = lm.astype(np.float32)
        if self.landmarker is not None:
            for f in faces:
                f.landmarks68 = self.landmarker.landmarks68(image, f)
        return faces

    def choose(self, image: np.ndarray, faces: Sequence[Face], choice: FaceChoice | None = None, *,
               name: Any = "image", similarities: Callable[[np.ndarray, Sequence[Face]], np.ndarray] | None = None
               ) -> list[int]:
        """Indices of the faces ``choice`` picks: all, one by index (left to right), the one most like the reference
        (``similarities(image, faces)`` gives each face's cosine similarity with it), or by default the largest."""
        choice = choice or FaceChoice()
        if not faces:
            return []
        if choice.all:
            return list(range(len(faces)))
        if choice.index is not None:
            if choice.index >= len(faces):
                raise InputImageError(f"{name}: no face #{choice.index}: {len(faces)} face(s) found, numbered 0 to "
                                      f"{len(faces) - 1} left to right (see 'hififace faces {name} -o preview.png')")
            return [int(choice.index)]
        if choice.match is not None:
            if similarities is None:
                raise ValueError("choosing the face most like a reference needs similarities(image, faces)")
            sims = similarities(image, faces)
            best = int(np.argmax(sims))
            log.info("%s: face #%d matches the reference best (cosine %.3f; others %s)", name, best, sims[best],
                     ", ".join(f"#{i} {s:.3f}" for i, s in enumerate(sims) if i != best) or "none")
            return [best]
        return [largest(faces)]

    def crops(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Aligned crops (N x S x S x 3 uint8) and their image -> crop matrices (N x 2 x 3) for 5-point landmarks."""
        if not len(landmarks):
            return np.zeros((0, self.size, self.size, 3), np.uint8), np.zeros((0, 2, 3))
        mats = face_matrices(landmarks, self.template, self.size)
        return warp_crops([image] * len(mats), mats, self.size), mats

    def crop(self, image: np.ndarray, landmarks: np.ndarray, landmarks68: np.ndarray | None = None,
             face: Face | None = None) -> FaceCrop:
        """One face cropped from its 5 landmarks (the ``ffhq`` template uses the 68 points when given)."""
        out = crop_face(image, landmarks, self.template, self.size, landmarks68)
        out.face = face
        return out

    # ------------------------------------------------------------------ one face per image (data, FF++ frames)
    def best(self, image: np.ndarray, *, min_score: float = 0.0, min_face: float = 0.0,
             multi_face: str = "largest") -> FaceCrop | Skip:
        """The largest usable face of an image, refined and cropped, or why there is none: no face, best score below
        ``min_score``, every face shorter than ``min_face`` pixels, or (``multi_face="skip"``) several usable faces."""
        faces = self.detector.detect(image)
        if not faces:
            return Skip("no_face", "no face detected")
        scored = [f for f in faces if f.score >= min_score]
        if not scored:
            return Skip("low_score", f"best detector score {max(f.score for f in faces):.3f} < {min_score}")
        usable = [f for f in scored if f.size >= min_face]
        if not usable:
            return Skip("face_too_small", f"largest face {max(f.size for f in scored):.0f} px < {min_face:g} px")
        if len(usable) > 1 and multi_face == "skip":
            return Skip("several_faces", f"{len(usable)} faces")
        face = usable[largest(usable)]
        lm5 = face.landmarks.astype(np.float64)
        if self.refine_passes > 0:
            lm5, _ = refine_landmarks(image, lm5, self.detector, passes=self.refine_passes, jitter=self.jitter)
        lm68 = None
        if self.landmarker is not None:
            try:
                lm68 = self.landmarker.landmarks68(image, dataclasses.replace(face, landmarks=lm5.astype(np.float32)))
            except HifiFaceError as err:
                log.debug("68-point landmarks failed: %s", err)
        out = self.crop(image, lm5, lm68, face)
        out.faces_found = len(faces)
        return out


def crop_face(image: np.ndarray, landmarks: np.ndarray, template: str = "arcface", size: int = 256,
              landmarks68: np.ndarray | None = None) -> FaceCrop:
    """One face cropped from its landmarks without a detector: the similarity from the 5 points (or, for ``ffhq``,
    the 68 when given) to ``template`` at ``size``, and the anti-aliased warp."""
    lm = np.asarray(landmarks, dtype=np.float64)
    matrix = estimate_transform(landmarks68 if (template == "ffhq" and landmarks68 is not None) else lm, template, size)
    return FaceCrop(align_crop(image, matrix, size), matrix, lm, None, landmarks68)


def face_matrices(landmarks: Sequence[np.ndarray], template: str, size: int) -> np.ndarray:
    """Image -> crop matrices (N x 2 x 3) aligning each face's 5 points to ``template`` at ``size`` (the swap
    model's template, or a face restorer's)."""
    return np.stack([estimate_transform(np.asarray(lm, np.float64), template, size) for lm in landmarks])


def warp_crops(images: Sequence[np.ndarray], matrices: Sequence[np.ndarray], size: int,
               border: str = "constant") -> np.ndarray:
    """The aligned crops (N x S x S x 3 uint8) of ``images[j]`` through ``matrices[j]``, anti-aliased; ``border``
    ``reflect`` fills what lies outside an image with its mirror (restorers, which see the whole crop)."""
    return np.stack([align_crop(np.ascontiguousarray(im), m, size, border=border) for im, m in zip(images, matrices)])


def largest(faces: Sequence[Face]) -> int:
    """Index of the largest face (box area; the first of equals)."""
    return max(range(len(faces)), key=lambda i: faces[i].area)
