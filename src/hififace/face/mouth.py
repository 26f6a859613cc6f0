"""The target's mouth for ``--keep-mouth``: a soft mask of the mouth interior (teeth, tongue) that the paste-back
leaves to the target, so that speech shows as the target spoke it.

Where the region comes from, best first (:data:`METHODS`):

- ``parsing``: a face-parsing network's labels (BiSeNet or PSFRGAN, PSFRGAN order): the ``mouth`` class, which is
  the inner mouth only (both parsers label the lips apart, ``u_lip`` / ``l_lip``). A closed mouth has no interior:
  nothing is kept. Give only labels that a network read from the pixels (``parser.reads_pixels``): the landmark
  fallback's labels are drawn from the landmarks themselves and add nothing.
- ``landmarks68``: 68 landmarks (iBUG order): the inner-lip polygon, points 60-67 (0-based).
- ``outline5``: only the detector's 5 points: the mouth region of the 3D outline model posed on them
  (:func:`hififace.face.outline.mouth_points`). The corners are known but not how far the mouth is open, so the
  region covers both lips and the interior of a mouth open about a centimetre, open or closed: the target's lips
  are kept with it, and of a mouth open wider the lowest part of the interior stays swapped.

The lips are not kept by default (``lips=False``): their shape and colour belong to the likeness of the source,
and the swapped lips already follow the target's expression (the model takes the target's 3DMM expression), so
they line up with the target's interior; the dilation covers the inner rim where they meet. ``lips=True`` keeps
the target's whole mouth (the parser's lip classes, or the outer-lip polygon 48-59 of 68 points) for lip-sync
footage or lipstick that must stay; the 5-point region always holds the lips.

Sizes are relative to the face: dilation and feathering are fractions of the face unit
(:func:`hififace.face.outline.face_unit`, pixels per about 10 cm of face, fitted on the 5 points, so turning the
head does not shrink it), in whatever frame the landmarks are given (crop or photo). With a parser or 68 points the
mask fades in as the mouth opens (mean opening = interior area / mouth width, from :data:`OPEN_LO` to
:data:`OPEN_HI` face units), so a closed mouth keeps nothing and a video does not pop as the mouth opens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .align import reduce68to5
from .outline import face_unit, mouth_points
from .palette import CLASSES

#: How the region was found, best first.
METHODS = ("parsing", "landmarks68", "outline5")
#: Dilation of the region, in face units (0.03: 3 mm, 3-4 pixels on a 256 crop): the soft edge lies on the lips'
#: inner rim, and the interior's own edge is kept in full (alpha >= 0.97 there).
MOUTH_DILATE = 0.03
#: Gaussian feathering (sigma) of the region's edge, in face units (alpha falls to 0 about 7 mm out).
MOUTH_FEATHER = 0.015
#: Mean mouth opening (face units) below which nothing is kept, and above which the interior is kept in full.
OPEN_LO, OPEN_HI = 0.015, 0.05
_MOUTH = CLASSES.index("mouth")
_LIPS = (CLASSES.index("u_lip"), CLASSES.index("l_lip"))
_SHIFT = 4  # sub-pixel precision of the polygons


@dataclass
class MouthMask:
    """A soft mouth region: ``alpha`` H x W float32 in [0, 1] (1 = keep the target), how it was found (one of
    :data:`METHODS`) and the mean opening in face units (None where unknown: the 5-point region)."""

    alpha: np.ndarray
    method: str
    opening: float | None


def _five(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] not in (5, 68):
        raise ConfigError(f"the mouth region needs 5 or 68 landmarks (K x 2), got shape {tuple(lm.shape)}")
    if not np.isfinite(lm).all():
        raise ConfigError("the mouth region got landmarks that are not finite numbers")
    return reduce68to5(lm) if lm.shape[0] == 68 else lm


def _fill(hw: tuple[int, int], points: np.ndarray) -> np.ndarray:
    import cv2

    out = np.zeros(hw, np.uint8)
    one = float(1 << _SHIFT)
    pts = np.round((np.asarray(points, np.float64) + 0.5) * one - 0.5 * one).astype(np.int32)
    cv2.fillPoly(out, [pts], 1, cv2.LINE_8, _SHIFT)
    return out


def _area(points: np.ndarray) -> float:
    x, y = np.asarray(points, np.float64).T
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _smoothstep(x: float) -> float:
    t = min(max(x, 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def soften(region: np.ndarray, unit: float, dilate: float = MOUTH_DILATE, feather: float = MOUTH_FEATHER) -> np.ndarray:
    """A 0/1 region dilated by ``dilate`` and feathered by a Gaussian of sigma ``feather`` (both x ``unit`` pixels);
    float32 in [0, 1]."""
    import cv2

    m = np.asarray(region, np.float32)
    r = int(round(dilate * unit))
    if r > 0 and m.any():
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    sigma = feather * unit
    if sigma > 0.3 and m.any():
        ks = 2 * int(np.ceil(3 * sigma)) + 1
        m = cv2.GaussianBlur(m, (ks, ks), sigma, borderType=cv2.BORDER_CONSTANT)
    return np.clip(m, 0.0, 1.0)


def mouth_method(landmarks: np.ndarray, labels: np.ndarray | None = None) -> str:
    """Which of :data:`METHODS` :func:`mouth_mask` uses for these inputs."""
    if labels is not None:
        return "parsing"
    return "landmarks68" if np.asarray(landmarks).shape[0] == 68 else "outline5"


def mouth_mask(hw: tuple[int, int], landmarks: np.ndarray, labels: np.ndarray | None = None, *, lips: bool = False,
               dilate: float = MOUTH_DILATE, feather: float = MOUTH_FEATHER) -> MouthMask:
    """The target's mouth region in the frame of ``landmarks`` (H x W = ``hw``, crop or photo).

    Args:
        hw: height and width of the frame.
        landmarks: 5 x 2 (detector order) or 68 x 2 (iBUG) points in that frame; always needed (they give the face
            size, and the region when there are no labels).
        labels: H x W labels of a face-parsing network (PSFRGAN order), or None.
        lips: keep the lips too (see the module's notes).
        dilate, feather: in face units (:func:`hififace.face.outline.face_unit`).
    """
    h, w = int(hw[0]), int(hw[1])
    lm = np.asarray(landmarks, dtype=np.float64)
    five = _five(lm)
    unit = face_unit(five)
    width = float(np.linalg.norm(five[4] - five[3]))
    method = mouth_method(lm, labels)
    opening: float | None = None
    if method == "parsing":
        lab = np.asarray(labels)
        if lab.shape != (h, w):
            raise ConfigError(f"the parsing labels are {lab.shape}, the frame is {(h, w)}")
        interior = lab == _MOUTH
        opening = float(interior.sum()) / max(width, 1.0) / max(unit, 1e-6)
        region = interior | np.isin(lab, _LIPS) if lips else interior
    elif method == "landmarks68":
        inner = lm[60:68]
        opening = _area(inner) / max(float(np.linalg.norm(lm[64] - lm[60])), 1.0) / max(unit, 1e-6)
        region = _fill((h, w), lm[48:60] if lips else inner)
    else:
        region = _fill((h, w), mouth_points(five))
    alpha = soften(region, unit, dilate, feather)
    if opening is not None and not lips:
        alpha *= np.float32(_smoothstep((opening - OPEN_LO) / (OPEN_HI - OPEN_LO)))
    return MouthMask(alpha, method, opening)


def mouth_masks(hw: tuple[int, int], landmarks: np.ndarray, labels: np.ndarray | None = None, **kwargs) -> np.ndarray:
    """:func:`mouth_mask` of N faces in one frame size (N x K x 2 landmarks, N x H x W labels or None):
    N x H x W float32 alphas."""
    lms = np.asarray(landmarks)
    out = np.zeros((len(lms), int(hw[0]), int(hw[1])), np.float32)
    for k, lm in enumerate(lms):
        out[k] = mouth_mask(hw, lm, None if labels is None else labels[k], **kwargs).alpha
    return out


def keep_target(alpha: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """A paste alpha that leaves the ``keep`` region (soft, same frame) to the target: ``alpha * (1 - keep)``.
    Apply it to the final, already feathered alpha (not before the paste mask's erosion, which would grow it)."""
    return (np.asarray(alpha, np.float32) * (1.0 - np.clip(np.asarray(keep, np.float32), 0.0, 1.0))).astype(np.float32)
