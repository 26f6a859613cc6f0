"""FID and KID from feature vectors (N x D arrays, e.g. the 2048-d pool features of the FID InceptionV3).

- FID (Heusel et al. 2017): ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with the unbiased sample
  covariances (``np.cov``, N - 1). The trace of the matrix square root is computed as the sum of the square roots
  of the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` (symmetric positive semi-definite, so real and >= 0 up to
  rounding; tiny negative rounding is clipped), in float64: no complex parts to discard.
- KID (Binkowski et al. 2018): the unbiased estimate of the squared MMD with the polynomial kernel
  ``k(x, y) = (x . y / D + 1)^3``, averaged over random subsets (default 100 subsets of up to 1000 samples,
  fixed seed, so the value is reproducible).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000


@dataclass(frozen=True)
class Gaussian:
    """Mean and covariance of a set of features."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int


def feature_stats(features: np.ndarray) -> Gaussian:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors (N x D), got shape {f.shape}")
    return Gaussian(f.mean(axis=0), np.cov(f, rowvar=False), f.shape[0])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
    """Fréchet distance between two Gaussians (the FID when they are Inception feature statistics)."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature sizes differ: {a.mu.shape} vs {b.mu.shape}")
    root_a = _sqrt_psd(a.sigma)
    inner = root_a @ b.sigma @ root_a
    eig = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = a.mu - b.mu
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_sqrt)
    return max(value, 0.0)  # >= 0 mathematically; identical sets give rounding noise of either sign


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(feature_stats(features_a), feature_stats(features_b))


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD of two equally sized samples with the KID polynomial kernel."""
    m = x.shape[0]
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    sum_xx = kxx.sum() - np.trace(kxx)
    sum_yy = kyy.sum() - np.trace(kyy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over ``subsets`` random subsets of ``min(subset_size, N_a, N_b)``."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(a[rng.choice(a.shape[0], m, replace=False)], b[rng.choice(b.shape[0], m, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))
