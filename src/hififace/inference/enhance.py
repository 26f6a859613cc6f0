"""Face restoration around a :class:`~hififace.restore.FaceRestorer`: align -> restore (batched) -> paste back.

After a swap (``FaceSwapper(..., restorer=...)``, ``--enhance``), each swapped face is aligned to the restorer's
template (the FFHQ 512 five-point template for GFPGAN, CodeFormer, RestoreFormer, GPEN-BFR 512+) from the detector's
five points, all faces of a photo or of a batch of video frames are restored in one call, and each restored face is
pasted back with a soft, feathered mask: the restorer crop's own (its edge never shows) times the swap's paste-back
alpha warped into the image. So the restoration never reaches beyond what the swap changed: every pixel the swap left
alone keeps its exact value. ``blend`` (``--enhance-blend``) mixes the restored face with the unrestored one.

On its own (:func:`enhance_photo`, ``hififace enhance``), every detected face is restored and pasted back with the
restorer crop's mask only (as GFPGAN's own helper does); an image of exactly 512 x 512 is taken as an aligned
``ffhq5`` crop and restored whole.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..config import unit_interval
from ..errors import ConfigError
from ..face.align import template_points
from ..face.blend import footprint_alpha, paste_into, paste_within, soft_mask
from ..face.cropper import face_matrices, warp_crops
from ..provenance.label import RANDOM_WEIGHTS
from ..restore import FaceRestorer, load_restorer

if TYPE_CHECKING:  # pragma: no cover
    from ..face.detect import Face, FaceDetector

log = logging.getLogger(__name__)

#: ``--enhance-blend``'s default: the restored face as the restorer gives it (GFPGAN's own default, weight 1).
DEFAULT_BLEND = 1.0
#: Side of the aligned ffhq5 crops ``hififace enhance`` takes as they are (the template's own size).
ALIGNED_SIZE = 512


def check_blend(value: Any) -> float:
    """``--enhance-blend``: a number from 0 (the unrestored face) to 1 (the restored face), or one error line."""
    return unit_interval(value, "--enhance-blend",
                         f"use a number from 0 (unrestored) to 1 (fully restored; default {DEFAULT_BLEND:g})")


def as_restorer(restorer: Any, device: Any = None) -> FaceRestorer | None:
    """``restorer`` as an engine: None, a :class:`FaceRestorer`, or a restorer folder / ``.onnx`` file loaded on
    ``device`` (the swap model's, so both run on the same GPU)."""
    if restorer is None or isinstance(restorer, FaceRestorer):
        return restorer
    if isinstance(restorer, (str, Path)):
        loaded = load_restorer(restorer, device=None if device is None else str(device))
        if loaded.is_random:
            log.warning("%s: the face restorer holds RANDOM weights: the restored faces mean nothing and are "
                        "labelled 'random weights'", restorer)
        return loaded
    raise ConfigError(f"restorer: give a restorer folder, an ONNX restorer file or a FaceRestorer, not a "
                      f"{type(restorer).__name__}")


class FaceEnhancer:
    """A restorer with its paste-back: ``blend`` mixes restored and unrestored faces; ``erode``/``blur`` shape the
    restorer crop's own mask (fractions of its size, as the swap's)."""

    def __init__(self, restorer: FaceRestorer, blend: float = DEFAULT_BLEND, erode: float = 0.03, blur: float = 0.05):
        self.restorer = restorer
        self.blend = check_blend(blend)
        self.mask = soft_mask(restorer.size, None, erode, blur)

    def label(self) -> dict[str, str]:
        """The output label's restorer fields (``output_label(..., **enhancer.label())``)."""
        r = self.restorer
        fields = {"restorer": r.name, "enhance_blend": f"{self.blend:g}"}
        if getattr(r, "fingerprint", None):
            fields["restorer_fingerprint"] = str(r.fingerprint)
        if getattr(r, "is_random", False):
            fields["restorer_weights"] = RANDOM_WEIGHTS
        return fields

    def matrices(self, landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """Image -> restorer-crop matrices (N x 2 x 3) from five-point landmarks in the image."""
        return face_matrices(landmarks, self.restorer.template, self.restorer.size)

    def restore_crops(self, crops: np.ndarray) -> np.ndarray:
        """N x S x S x 3 uint8 aligned crops -> restored, the same (one restorer call; it batches inside)."""
        device = getattr(self.restorer, "device", "cpu")
        x = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float().div_(255)
        y = self.restorer.restore(x)
        return y.float().clamp(0, 1).mul(255).add_(0.5).permute(0, 2, 3, 1).to("cpu", torch.uint8).numpy()

    def enhance(self, images: Sequence[np.ndarray], owners: Sequence[int], landmarks: Sequence[np.ndarray],
                limits: Sequence[Any] | None = None) -> int:
        """Restore faces in place: face ``j`` (five points ``landmarks[j]``) of ``images[owners[j]]``, pasted back
        inside ``limits[j]`` (an image-frame box and alpha, :func:`~hififace.face.blend.footprint_alpha`; None:
        the restorer crop's mask alone). Returns how many faces were restored."""
        todo = [j for j in range(len(owners)) if limits is None or limits[j] is not None]
        if not todo or self.blend == 0.0:  # blend 0: the unrestored faces, bit for bit, at no cost
            return 0
        mats = self.matrices([landmarks[j] for j in todo])
        size = self.restorer.size
        crops = warp_crops([images[owners[j]] for j in todo], mats, size, border="reflect")
        restored = self.restore_crops(crops)
        for n, j in enumerate(todo):
            image = images[owners[j]]
            if limits is None:
                paste_into(image, restored[n], mats[n], self.mask * np.float32(self.blend))
            else:
                paste_within(image, restored[n], mats[n], self.mask, limits[j], self.blend)
        return len(todo)

    def enhance_swapped(self, images: Sequence[np.ndarray], owners: Sequence[int], landmarks: Sequence[np.ndarray],
                        swap_matrices: np.ndarray, swap_alphas: np.ndarray) -> int:
        """:meth:`enhance` after a swap: each face limited to its swap paste-back alpha (crop frame, with the swap
        crops' image -> crop matrices)."""
        limits = [footprint_alpha(swap_matrices[j], swap_alphas[j], images[owners[j]].shape[:2])
                  for j in range(len(owners))]
        return self.enhance(images, owners, landmarks, limits)

    def enhance_aligned(self, crops: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Whole aligned crops (H x W x 3 uint8, or N of them), their five points known from their template
        (``landmarks``, the same for all), restored in one call, warped back to their own frame and mixed with
        ``blend``: new uint8 images of the same shape."""
        import cv2

        batch = crops[None] if crops.ndim == 3 else crops
        if self.blend == 0.0 or not len(batch):
            return crops.copy()
        m = self.matrices([landmarks])[0]
        size = self.restorer.size
        restored = self.restore_crops(warp_crops(batch, [m] * len(batch), size, border="reflect"))
        h, w = batch.shape[1:3]
        out = np.empty_like(batch)
        for n, (crop, face) in enumerate(zip(batch, restored)):
            back = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REPLICATE)
            if self.blend < 1.0:
                mixed = crop.astype(np.float32) * (1.0 - self.blend) + back.astype(np.float32) * self.blend
                back = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
            out[n] = back
        return out[0] if crops.ndim == 3 else out


@dataclass
class EnhanceResult:
    """Outcome of :func:`enhance_photo`: the image, the faces found, the indices restored, whether it was taken as an
    aligned crop, and which pixels may differ from the input."""

    image: np.ndarray
    faces: list["Face"] = field(default_factory=list)
    restored: list[int] = field(default_factory=list)
    aligned: bool = False
    changed: np.ndarray | None = None


def enhance_photo(enhancer: FaceEnhancer, rgb: np.ndarray, detector: "FaceDetector | None" = None,
                  aligned: bool | None = None, min_face: float = 0.0, name: Any = "image") -> EnhanceResult:
    """Restore the faces of an upright RGB photo: a 512 x 512 image (or ``aligned=True``) as one aligned ``ffhq5``
    crop, anything else detected (every face at least ``min_face`` px) and restored in place on a copy."""
    h, w = rgb.shape[:2]
    if aligned if aligned is not None else (h, w) == (ALIGNED_SIZE, ALIGNED_SIZE):
        # an aligned crop of any size: its five points are the template's, scaled to it
        lm = template_points("ffhq5", ALIGNED_SIZE) * np.array([w / ALIGNED_SIZE, h / ALIGNED_SIZE])
        return EnhanceResult(enhancer.enhance_aligned(rgb, lm), aligned=True, changed=np.ones((h, w), bool))
    if detector is None:
        raise ConfigError(f"{name}: a face detector is needed for photos that are not aligned 512x512 crops")
    faces = detector.detect(rgb)
    keep = [i for i, f in enumerate(faces) if f.size >= min_face]
    out = rgb.copy()
    enhancer.enhance([out], [0] * len(keep), [faces[i].landmarks for i in keep])
    return EnhanceResult(out, faces, keep, False, (out != rgb).any(axis=2))


__all__ = ["DEFAULT_BLEND", "EnhanceResult", "FaceEnhancer", "as_restorer", "check_blend", "enhance_photo"]
