"""Pixel metrics for self-reconstruction (source = target): PSNR and SSIM, per image pair, in float64.

Images are uint8 H x W x 3 arrays (or float tensors in [0, 1]); both of a pair must have the same shape.

- PSNR: ``10 log10(1 / MSE)`` on [0, 1] values over all pixels and channels. Identical images would give infinity;
  the MSE is floored at :data:`MSE_FLOOR` so the value is capped at :data:`PSNR_MAX` dB (finite, valid JSON).
- SSIM: Wang et al. 2004 with the usual constants (11 x 11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, data
  range 1), population (biased) local statistics, computed per RGB channel over the valid region (no padding)
  and averaged. Same conventions as scikit-image's ``structural_similarity(gaussian_weights=True,
  use_sample_covariance=False, data_range=1)`` except that skimage crops a border after filtering with padding.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PSNR_MAX = 100.0
MSE_FLOOR = 10.0 ** (-PSNR_MAX / 10.0)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def as_float64(image: Any) -> torch.Tensor:
    """uint8 H x W x C array -> C x H x W float64 in [0, 1]; a float tensor (C x H x W) is passed through."""
    if isinstance(image, torch.Tensor):
        return image.detach().to(torch.float64)
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    t = torch.from_numpy(np.array(a, dtype=np.float64)).permute(2, 0, 1)  # a copy: input arrays may be read-only
    return t / 255.0 if a.dtype == np.uint8 else t


def _pair(a: Any, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_float64(a), as_float64(b)
    if x.shape != y.shape:
        raise ValueError(f"images of different shapes {tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def psnr(a: Any, b: Any) -> float:
    """Peak signal-to-noise ratio in dB of two images (data range 1), capped at :data:`PSNR_MAX`."""
    x, y = _pair(a, b)
    mse = float((x - y).pow(2).mean())
    return 10.0 * math.log10(1.0 / max(mse, MSE_FLOOR))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2D Gaussian (size x size, float64)."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: Any, b: Any) -> float:
    """Mean structural similarity of two images (per channel, averaged); 1 for identical images."""
    x, y = _pair(a, b)
    c = x.shape[0]
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    w = gaussian_window().expand(c, 1, SSIM_WINDOW, SSIM_WINDOW)
    x, y = x[None], y[None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(s.mean())
