"""Pasting a face crop back into its photo through the inverse alignment, with a soft mask and colour matching.

The mask is eroded and blurred by amounts relative to the crop size, so the seam scales with the face whatever the
photo's resolution.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .align import crop_footprint, unwarp_faces_torch, warp_face

if TYPE_CHECKING:  # pragma: no cover
    import torch


def soft_mask(size: int | tuple[int, int], mask: np.ndarray | None = None, erode: float = 0.03, blur: float = 0.05,
              border: float = 0.02) -> np.ndarray:
    """Float32 H x W mask in [0, 1] in the crop frame: ``mask`` (or the whole crop) eroded by ``erode`` x size, then
    blurred with a Gaussian of sigma ``blur`` x size / 3. ``border`` keeps a margin at the crop edge at zero, so the
    crop's own edge never shows."""
    import cv2

    h, w = (size, size) if isinstance(size, int) else size
    m = np.ones((h, w), np.float32) if mask is None else np.asarray(mask, dtype=np.float32).reshape(h, w)
    if m.max() > 1.0:
        m = m / 255.0
    side = float(min(h, w))
    pad = int(round(border * side))
    if pad > 0:
        m[:pad] = 0
        m[-pad:] = 0
        m[:, :pad] = 0
        m[:, -pad:] = 0
    k = int(round(erode * side))
    if k > 0:
        m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = blur * side / 3.0
    if sigma > 0.3:
        ks = int(2 * round(3 * sigma) + 1)
        m = cv2.GaussianBlur(m, (ks, ks), sigma)
    return np.clip(m, 0.0, 1.0)


def match_color(source: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Shift ``source``'s colours (uint8 RGB) to the mean and spread of ``target``'s inside ``mask`` (in Lab)."""
    import cv2

    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    sel = np.ones(src.shape[:2], bool) if mask is None else np.asarray(mask) > 0.5
    if sel.sum() < 16:
        return source
    s_mu, s_sd = src[sel].mean(0), src[sel].std(0) + 1e-3
    t_mu, t_sd = tgt[sel].mean(0), tgt[sel].std(0) + 1e-3
    out = (src - s_mu) * (t_sd / s_sd) + t_mu
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def paste_back(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None,
               color_match: bool = False, erode: float = 0.03, blur: float = 0.05) -> np.ndarray:
    """Blend ``crop`` (H x W x 3 uint8, made with ``matrix`` image -> crop) back into ``image``; returns a new image.

    ``mask`` (crop frame, bool/float/uint8) limits the pasted region, e.g. the face region of a parsing map.
    Pixels outside the crop's footprint are never touched.
    """
    ch, cw = crop.shape[:2]
    m = soft_mask((ch, cw), mask, erode, blur)
    if color_match:
        original = warp_face(image, matrix, ch)
        crop = match_color(crop, original, m)
    out = image.copy()
    paste_into(out, crop, matrix, m)
    return out


def paste_into(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray,
               alpha: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Blend ``crop`` into ``image`` in place with the crop-frame ``alpha`` (H x W float in [0, 1], already soft).

    Only the crop's footprint is warped and blended (a face costs the same in a 1 MP and a 50 MP photo); pixels
    where the warped alpha is 0 keep their exact values. Returns the footprint box and the warped alpha there
    (``alpha > 0`` is the set of pixels that may have changed), or None when the crop lies outside the image.
    """
    box = crop_footprint(matrix, crop.shape[:2], image.shape[:2])
    if box is None:
        return None
    back, a = _warp_to_box(matrix, box, alpha, crop)
    _blend_box(image, box, back, a)
    return box, a


def paste_back_torch(frames: torch.Tensor, crops: torch.Tensor, matrices: torch.Tensor | np.ndarray,
                     masks: torch.Tensor | None = None, erode: float = 0.03, blur: float = 0.05) -> torch.Tensor:
    """Batched :func:`paste_back` for video on GPU: N x 3 x H x W frames and N x 3 x S x S crops in [0, 1].

    ``masks`` (N x 1 x S x S in [0, 1]) default to the whole crop; erosion is a min-pool, blur a separable Gaussian.
    """
    import torch
    import torch.nn.functional as F

    n, _, s, _ = crops.shape
    m = torch.ones(n, 1, s, s, device=crops.device, dtype=crops.dtype) if masks is None else masks.to(crops.dtype)
    pad = max(1, int(round(0.02 * s)))
    m = m.clone()
    m[..., :pad, :] = 0
    m[..., -pad:, :] = 0
    m[..., :, :pad] = 0
    m[..., :, -pad:] = 0
    k = int(round(erode * s))
    if k > 0:
        m = -F.max_pool2d(-m, 2 * k + 1, 1, k)
    sigma = blur * s / 3.0
    if sigma > 0.3:
        r = int(round(3 * sigma))
        x = torch.arange(-r, r + 1, device=m.device, dtype=m.dtype)
        g = torch.exp(-(x**2) / (2 * sigma**2))
        g = g / g.sum()
        m = F.conv2d(F.pad(m, (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
        m = F.conv2d(F.pad(m, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))
    hw = tuple(frames.shape[-2:])
    back = unwarp_faces_torch(crops, matrices, hw)
    alpha = unwarp_faces_torch(m, matrices, hw).clamp(0, 1)
    return frames * (1 - alpha) + back * alpha


def footprint_alpha(matrix: np.ndarray, alpha: np.ndarray,
                    image_hw: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The crop-frame ``alpha`` warped into the image as :func:`paste_into` warps it: the crop's footprint box and
    the alpha there (``> 0`` exactly where :func:`paste_into` may change pixels), or None outside the image."""
    box = crop_footprint(matrix, alpha.shape[:2], image_hw)
    if box is None:
        return None
    return box, _warp_to_box(matrix, box, alpha)[1]


def paste_within(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, alpha: np.ndarray,
                 limit: tuple[tuple[int, int, int, int], np.ndarray], strength: float = 1.0) -> None:
    """Blend ``crop`` (made with ``matrix`` image -> crop) into ``image`` in place, inside ``limit`` only.

    ``limit`` is an image-frame box and alpha (:func:`footprint_alpha` of an earlier paste): the alpha applied is
    ``strength`` x the crop-frame ``alpha`` warped into the image x the limit's alpha, so every pixel outside the
    limit box, or where the limit's alpha is 0, keeps its exact value (face restoration stays inside the swap).
    """
    box, a_lim = limit
    back, a = _warp_to_box(matrix, box, alpha, crop)
    _blend_box(image, box, back, a * a_lim * np.float32(strength))


def _warp_to_box(matrix: np.ndarray, box: tuple[int, int, int, int], alpha: np.ndarray,
                 crop: np.ndarray | None = None) -> tuple[np.ndarray | None, np.ndarray]:
    """The crop (when given) and its alpha warped from the crop frame into the image box ``box`` (x0, y0, x1, y1):
    bilinear, the crop's edge replicated, the alpha 0 outside the crop and clipped to [0, 1]."""
    import cv2

    x0, y0, x1, y1 = box
    m = np.asarray(matrix, np.float64).copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)  # image pixels of the box -> crop pixels
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    back = None if crop is None else cv2.warpAffine(crop, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(np.ascontiguousarray(alpha, np.float32), m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)
    return back, np.clip(a, 0.0, 1.0)


def _blend_box(image: np.ndarray, box: tuple[int, int, int, int], back: np.ndarray, a: np.ndarray) -> None:
    """``image[box] = (1 - a) * image[box] + a * back``, rounded, in place."""
    x0, y0, x1, y1 = box
    roi = image[y0:y1, x0:x1]
    a3 = a[:, :, None] if roi.ndim == 3 else a
    blended = roi.astype(np.float32) * (1.0 - a3) + back.reshape(roi.shape).astype(np.float32) * a3
    image[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
