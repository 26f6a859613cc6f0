"""Face alignment: least-squares similarity transforms (Umeyama) from landmarks to named templates, warps, inverses.

A transform is a 2 x 3 float64 matrix ``M`` mapping image pixels to crop pixels (``crop = M @ [x, y, 1]``), in the
pixel-centre convention of ``cv2.warpAffine``. Templates (5 points, order of ``detect.LANDMARK_NAMES_5``; their
values and sources: docs/formats.md#alignment-templates):

- ``arcface``: insightface's 112 x 112 template, scaled by size/112 for multiples of 112 and by size/128 plus a shift
  of 8 * size/128 for multiples of 128 (so 256 is SimSwap's VGGFace2-224 alignment, the data the reference trained
  on, at 256);
- ``ffhq``: the FFHQ (NVlabs) oriented square computed from eye centres and mouth corners (5 or 68 points);
- ``frontal``: xuehy/HiFiFace-pytorch's inference template;
- ``ffhq5``: the FFHQ 512 five-point template face restorers are trained on (GFPGAN, CodeFormer, GPEN-BFR 512+,
  RestoreFormer), scaled by size/512. Not a training-crop alignment (not in ``ALIGN_TEMPLATES``).

:func:`refine_landmarks` re-detects on a canonical crop and on its mirror image and averages, which removes most of
the landmark drift that 5-point detectors show under head roll and scale (see ``benchmarks/preprocess.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..config import ALIGN_TEMPLATES
from ..errors import ConfigError
from .detect import MIRROR_5

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from .detect import Face, FaceDetector

#: insightface ArcFace 5-point template for 112 x 112 (docs/formats.md#alignment-templates).
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                        [70.7299, 92.2041]], dtype=np.float64)
#: xuehy/HiFiFace-pytorch "frontal" template for 112 (docs/formats.md#alignment-templates).
FRONTAL_112 = np.array([[39.730, 51.138], [72.270, 51.138], [56.000, 68.493], [42.463, 87.010], [69.537, 87.010]],
                       dtype=np.float64)
#: FFHQ 512 five-point template of the face restorers: facexlib ``FaceRestoreHelper.face_template`` (the crop GFPGAN,
#: CodeFormer and RestoreFormer are run on; FaceFusion's ``ffhq_512`` is the same points divided by 512),
#: docs/formats.md#alignment-templates. Upstream fits it with cv2.estimateAffinePartial2D(method=LMEDS);
#: :func:`estimate_transform` uses the least-squares similarity, which on five consistent points differs by a fraction
#: of a pixel.
FFHQ5_512 = np.array([[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043],
                      [313.08905, 371.15118]], dtype=np.float64)
TEMPLATES = ALIGN_TEMPLATES
#: Templates for other networks than the swap model (face restorers): accepted by :func:`template_points` and
#: :func:`estimate_transform`, not by ``HifiFaceConfig.align``.
RESTORER_TEMPLATES = ("ffhq5",)


def template_points(name: str = "arcface", size: int = 256) -> np.ndarray:
    """5 x 2 template landmarks for a ``size`` x ``size`` crop (``ffhq`` is given as its typical 5 points)."""
    if name == "arcface":
        if size % 112 == 0:
            return ARCFACE_112 * (size / 112.0)
        if size % 128 == 0:
            return ARCFACE_112 * (size / 128.0) + np.array([8.0 * size / 128.0, 0.0])
        return ARCFACE_112 * (size / 112.0)
    if name == "frontal":
        return FRONTAL_112 * (size / 112.0)
    if name == "ffhq5":
        return FFHQ5_512 * (size / 512.0)
    if name == "ffhq":
        # an upright face whose FFHQ quad is exactly the crop: eye distance e = eye-to-mouth distance = size / 4
        e, c = size / 4.0, size / 2.0 - 0.5
        eye_y = c - 0.1 * e
        return np.array([[c - e / 2, eye_y], [c + e / 2, eye_y], [c, eye_y + 0.5 * e], [c - 0.4 * e, eye_y + e],
                         [c + 0.4 * e, eye_y + e]], dtype=np.float64)
    raise ConfigError(f"unknown alignment template {name!r}; choose one of {', '.join(TEMPLATES + RESTORER_TEMPLATES)}")


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``: 2 x 3 matrix.

    Umeyama (1991), without reflection.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0**2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = (sig * d).sum() / max(var_s, 1e-12)
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def to3x3(m: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    out[:2] = np.asarray(m, dtype=np.float64).reshape(2, 3)
    return out


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2 x 3 affine matrix (crop -> image for an alignment matrix)."""
    return np.linalg.inv(to3x3(m))[:2]


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` after ``b`` (2 x 3 each): points go through ``b`` first."""
    return (to3x3(a) @ to3x3(b))[:2]


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2 x 3 affine matrix to N x 2 points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(m, dtype=np.float64).reshape(2, 3)
    return p @ m[:, :2].T + m[:, 2]


def ffhq_quad(eye_left: np.ndarray, eye_right: np.ndarray, mouth_left: np.ndarray, mouth_right: np.ndarray) -> np.ndarray:
    """FFHQ oriented square (4 x 2 corners: top-left, bottom-left, bottom-right, top-right) from eyes and mouth.

    Rule from NVlabs' ffhq-dataset (docs/formats.md#alignment-templates).
    """
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / max(np.hypot(*x), 1e-9)
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def reduce68to5(lm68: np.ndarray) -> np.ndarray:
    """68 iBUG points (0-based) -> 5 points: eye centres (mean of the corners 36 & 39, 42 & 45), nose tip 30, mouth
    corners 48 and 54 — Deep3DFaceRecon's rule, in the detector's order (image-left first)."""
    lm = np.asarray(lm68, dtype=np.float64).reshape(68, 2)
    return np.stack([(lm[36] + lm[39]) / 2, (lm[42] + lm[45]) / 2, lm[30], lm[48], lm[54]])


def ffhq_points(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Eye centres and mouth corners from 68 (dlib/iBUG order) or 5 points."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape[0] == 68:
        return lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54]
    if lm.shape[0] == 5:
        return lm[0], lm[1], lm[3], lm[4]
    raise ConfigError(f"FFHQ alignment needs 5 or 68 landmarks, got {lm.shape[0]}")


def estimate_transform(landmarks: np.ndarray, template: str = "arcface", size: int = 256) -> np.ndarray:
    """2 x 3 image -> crop matrix aligning ``landmarks`` (5 x 2, or 68 x 2 for ``ffhq``) to ``template`` at ``size``."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if template == "ffhq":
        quad = ffhq_quad(*ffhq_points(lm))
        # the quad's corners go to the crop's corners (pixel-centre convention: edges at -0.5 and size - 0.5)
        lo, hi = -0.5, size - 0.5
        corners = np.array([[lo, lo], [lo, hi], [hi, hi], [hi, lo]])
        return umeyama(quad, corners)
    if lm.shape[0] == 68:
        lm = reduce68to5(lm)
    return umeyama(lm, template_points(template, size))


def warp_face(image: np.ndarray, matrix: np.ndarray, size: int, border: str = "constant",
              interpolation: str = "linear") -> np.ndarray:
    """Crop ``size`` x ``size`` from ``image`` (H x W x C or H x W) through ``matrix`` (image -> crop).

    ``border``: ``constant`` (0, as insightface), ``reflect`` or ``replicate``. Bilinear by default; ``area``-like
    quality when shrinking a lot comes from pre-blurring, which :func:`align_crop` does.
    """
    import cv2

    modes = {"constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101, "replicate": cv2.BORDER_REPLICATE}
    interps = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
    return cv2.warpAffine(image, np.asarray(matrix, dtype=np.float64), (int(size), int(size)), flags=interps[interpolation],
                          borderMode=modes[border], borderValue=0)


def matrix_scale(matrix: np.ndarray) -> float:
    """Uniform scale of a similarity matrix (crop pixels per image pixel)."""
    m = np.asarray(matrix, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(m[:, :2]))))


def align_crop(image: np.ndarray, matrix: np.ndarray, size: int, border: str = "constant") -> np.ndarray:
    """:func:`warp_face` with anti-aliasing: when the crop shrinks the face a lot, blur first (no aliasing).

    Only the part of the image the crop reads is blurred (plus the kernel's reach), so a face in a 50 MP photo
    costs about what it costs in a small one.
    """
    import cv2

    scale = matrix_scale(matrix)
    interp = "cubic" if scale > 1.5 else "linear"
    if scale < 0.5:
        sigma = 0.5 / scale * 0.5
        k = int(2 * round(3 * sigma) + 1)
        box = crop_footprint(matrix, (size, size), image.shape[:2], pad=k + 2)
        if box is None:
            return warp_face(image, matrix, size, border=border, interpolation=interp)
        x0, y0, x1, y1 = box
        # np.zeros maps untouched pages lazily; warping from a canvas of the full size keeps the warp's fixed-point
        # coordinates, so the crop is bit-identical to blurring the whole image
        canvas = np.zeros(image.shape, image.dtype)
        canvas[y0:y1, x0:x1] = cv2.GaussianBlur(image[y0:y1, x0:x1], (k, k), sigma)
        image = canvas
    return warp_face(image, matrix, size, border=border, interpolation=interp)


def crop_footprint(matrix: np.ndarray, crop_hw: tuple[int, int], image_hw: tuple[int, int],
                   pad: int = 2) -> tuple[int, int, int, int] | None:
    """Pixel box ``(x0, y0, x1, y1)`` (exclusive ends) of ``image`` that a crop made with ``matrix`` covers, or None."""
    ch, cw = crop_hw
    corners = np.array([[-0.5, -0.5], [cw - 0.5, -0.5], [-0.5, ch - 0.5], [cw - 0.5, ch - 0.5]])
    pts = transform_points(corners, invert_affine(matrix))
    x0, y0 = np.floor(pts.min(0)).astype(int) - pad
    x1, y1 = np.ceil(pts.max(0)).astype(int) + pad + 1
    h, w = image_hw
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


def refine_landmarks(image: np.ndarray, landmarks: np.ndarray, detector: "FaceDetector", passes: int = 2,
                     mirror: bool = True, work_size: int = 224, work_scale: float = 0.9,
                     jitter: tuple[tuple[float, float], ...] = ((0.0, 0.0),)) -> tuple[np.ndarray, float | None]:
    """Re-detect the face on a canonical upright crop (and its mirror image) and average; returns landmarks, score.

    The canonical crop puts the face at a fixed scale and upright, where the detector's landmarks are most
    consistent; the mirrored pass cancels its left/right bias. Falls back to ``landmarks`` when re-detection fails.
    ``jitter`` lists sub-crop offsets (work pixels) whose estimates are averaged too: e.g.
    :data:`JITTER_4` averages out the detector's anchor-grid quantisation at four times the cost.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    score = None
    # the face fills about 60 % of a 224 work crop (ArcFace template scaled by 0.9): large enough for precise points,
    # small enough for YuNet's preferred face sizes
    base_tpl = (template_points("arcface", work_size) - work_size / 2.0) * work_scale + work_size / 2.0
    for _ in range(max(1, passes)):
        estimates, scores = [], []
        for dx, dy in jitter:
            work_tpl = base_tpl + [dx, dy]
            m = umeyama(lm, work_tpl)
            crop = warp_face(image, m, work_size, border="replicate")
            found = _closest(detector.detect(crop), work_tpl)
            if found is None:
                continue
            minv = invert_affine(m)
            estimates.append(transform_points(found.landmarks, minv))
            scores.append(found.score)
            if mirror:
                mirrored_tpl = work_tpl[list(MIRROR_5)] * [-1, 1] + [work_size - 1, 0]
                flipped = _closest(detector.detect(np.ascontiguousarray(crop[:, ::-1])), mirrored_tpl)
                if flipped is not None:
                    back = flipped.landmarks.astype(np.float64)[list(MIRROR_5)].copy()
                    back[:, 0] = work_size - 1 - back[:, 0]
                    estimates.append(transform_points(back, minv))
                    scores.append(flipped.score)
        if not estimates:
            break
        lm = np.mean(estimates, axis=0)
        score = float(np.mean(scores))
    return lm, score


JITTER_4 = ((0.0, 0.0), (8.0, 8.0), (16.0, 0.0), (0.0, 16.0))


def _closest(faces: list["Face"], expected: np.ndarray) -> "Face | None":
    if not faces:
        return None
    errs = [float(np.abs(f.landmarks - expected).mean()) for f in faces]
    i = int(np.argmin(errs))
    # a face far from where the canonical crop puts it is another face, not this one
    return faces[i] if errs[i] < 0.25 * abs(expected[1, 0] - expected[0, 0]) * 4 else None


# ---------------------------------------------------------------- batched torch version (GPU video)

def _normalizer(h: int, w: int) -> "torch.Tensor":
    """3 x 3 matrix taking pixel coordinates to affine_grid's [-1, 1] (align_corners=False)."""
    import torch

    dtype = torch.float64
    return torch.tensor([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]], dtype=dtype)


def _theta(matrices: torch.Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> torch.Tensor:
    """affine_grid theta (output normalised -> input normalised) from image -> crop pixel matrices N x 2 x 3."""
    import torch

    m = matrices.to(torch.float64)
    n = m.shape[0]
    full = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    full[:, :2] = m.cpu()
    inv = torch.linalg.inv(full)  # crop pixels -> image pixels
    n_in = _normalizer(*in_hw)
    n_out_inv = torch.linalg.inv(_normalizer(*out_hw))
    return (n_in @ inv @ n_out_inv)[:, :2]


def warp_faces_torch(images: torch.Tensor, matrices: torch.Tensor | np.ndarray, size: int | tuple[int, int],
                     mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """Batched :func:`warp_face`: N x C x H x W images, N x 2 x 3 image -> crop matrices -> N x C x size x size."""
    import torch
    import torch.nn.functional as F

    out_hw = (size, size) if isinstance(size, int) else tuple(size)
    mats = torch.as_tensor(np.asarray(matrices) if not isinstance(matrices, torch.Tensor) else matrices)
    if mats.ndim == 2:
        mats = mats.unsqueeze(0).expand(images.shape[0], -1, -1)
    theta = _theta(mats, tuple(images.shape[-2:]), out_hw).to(device=images.device, dtype=images.dtype if images.is_floating_point() else torch.float32)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], *out_hw], align_corners=False)
    return F.grid_sample(images.float() if not images.is_floating_point() else images, grid, mode=mode,
                         padding_mode=padding_mode, align_corners=False)


def unwarp_faces_torch(crops: torch.Tensor, matrices: torch.Tensor | np.ndarray, image_hw: tuple[int, int],
                       mode: str = "bilinear") -> torch.Tensor:
    """Inverse of :func:`warp_faces_torch`: crops back into the image frame (zeros outside the crop)."""
    import torch

    mats = torch.as_tensor(np.asarray(matrices) if not isinstance(matrices, torch.Tensor) else matrices).to(torch.float64)
    if mats.ndim == 2:
        mats = mats.unsqueeze(0).expand(crops.shape[0], -1, -1)
    inv = torch.stack([torch.as_tensor(invert_affine(m.cpu().numpy())) for m in mats])
    return warp_faces_torch(crops, inv, image_hw, mode=mode)
