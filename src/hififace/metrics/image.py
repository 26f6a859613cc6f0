"""Pixel metrics for self-reconstruction (source = target): PSNR and SSIM, per image pair, in float64.

Images are uint8 H x W x 3 arrays (or C x H x W float tensors in [0, 1]); both of a pair must have the same shape.

- PSNR: ``10 log10(1 / MSE)`` on [0, 1] values over all pixels and channels. Identical images would give infinity;
  the MSE is floored at :data:`MSE_FLOOR` so the value is capped at :data:`PSNR_MAX` dB (finite, valid JSON).
- SSIM: Wang et al. 2004 with the usual constants (11 x 11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data
  range 1), population (biased) local statistics, computed per RGB channel over the valid region (no padding)
  and averaged: the conventions of scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)``, which filters with padding and then cuts the same
  5-pixel border off before averaging (not checked against it here: scikit-image is not a dependency).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

PSNR_MAX = 100.0
MSE_FLOOR = 10.0 ** (-PSNR_MAX / 10.0)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def as_float64(image: Any) -> np.ndarray:
    """uint8 H x W x C array -> C x H x W float64 in [0, 1]; a float tensor (C x H x W) in [0, 1] is taken as is."""
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    t = np.array(a, dtype=np.float64).transpose(2, 0, 1)
    return t / 255.0 if a.dtype == np.uint8 else t


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_float64(a), as_float64(b)
    if x.shape != y.shape:
        raise ValueError(f"images of different shapes {x.shape} and {y.shape}")
    return x, y


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio in dB of two images (data range 1), capped at :data:`PSNR_MAX`."""
    x, y = _pair(a, b)
    mse = float(np.mean((x - y) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, MSE_FLOOR))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1D Gaussian (float64); the 2D window is its outer product (separable)."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(r**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: Any, b: Any) -> float:
    """Mean structural similarity of two images (per channel, averaged); 1 for identical images."""
    from scipy.ndimage import correlate1d

    x, y = _pair(a, b)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    # the five local means (x, y, x^2, y^2, xy) in one separable Gaussian filtering pass; the borders, where the
    # window would leave the image, are cut off (no padding enters the statistics)
    g = gaussian_window()
    half = SSIM_WINDOW // 2
    stack = np.concatenate([x, y, x * x, y * y, x * y])
    blurred = correlate1d(correlate1d(stack, g, axis=-1), g, axis=-2)[:, half:-half, half:-half]
    mu_x, mu_y, xx, yy, xy = np.split(blurred, 5)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean())
