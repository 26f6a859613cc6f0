"""FID and KID from feature vectors (N x D arrays, e.g. the 2048-d pool features of the FID InceptionV3).

- FID (Heusel et al. 2017): ``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` with the unbiased sample
  covariances (``np.cov``, N - 1), in float64. From statistics (:func:`frechet_distance`) the trace of the matrix
  square root is the sum of the square roots of the eigenvalues of ``S_a^(1/2) S_b S_a^(1/2)`` (symmetric positive
  semi-definite: real, tiny negative rounding clipped; no complex parts to discard, unlike ``scipy.linalg.sqrtm``);
  from features (:func:`fid`) it is a nuclear norm of cross-products of the centred features (see there).
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


def _trace_sqrt_product(a: np.ndarray, b: np.ndarray) -> float:
    """``Tr (A^T A B^T B)^(1/2)`` of centred feature matrices A (N x D) and B (M x D), without a D x D square root.

    Its terms are the singular values of ``A B^T``. With a side no larger than D that N x M SVD is cheap; otherwise
    ``A^T A = F^T F`` (Cholesky, or QR when singular) and the terms are the square roots of the eigenvalues of the
    symmetric ``F B^T B F^T``: about 7 s for 2048-d features on a 2-core CPU where the SVD route takes 30 s.
    """
    n, d = a.shape
    if min(n, b.shape[0]) <= d:
        return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    try:
        f = np.linalg.cholesky(a.T @ a).T
    except np.linalg.LinAlgError:  # a singular covariance (e.g. a feature that never varies)
        f = np.linalg.qr(a, mode="r")
    inner = f @ (b.T @ b) @ f.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2.0), 0.0, None)).sum())


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID of two feature sets: the value :func:`frechet_distance` gives for their statistics, computed from the
    centred features A, B directly (``Tr (S_a S_b)^(1/2) = Tr (A^T A B^T B)^(1/2) / sqrt((N_a - 1)(N_b - 1))``),
    which avoids the 2048 x 2048 eigendecomposition for small sets and halves the work for large ones."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    for f in (a, b):
        if f.ndim != 2 or f.shape[0] < 2:
            raise ValueError(f"need at least 2 feature vectors (N x D), got shape {f.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sizes differ: {a.shape[1]} vs {b.shape[1]}")
    na, nb = a.shape[0], b.shape[0]
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    tr_sqrt = _trace_sqrt_product(ac, bc) / np.sqrt((na - 1) * (nb - 1))
    diff = a.mean(axis=0) - b.mean(axis=0)
    value = float(diff @ diff) + float((ac**2).sum()) / (na - 1) + float((bc**2).sum()) / (nb - 1) - 2.0 * tr_sqrt
    return max(value, 0.0)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def _mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m = kxx.shape[0]
    sum_xx = kxx.sum() - np.trace(kxx)
    sum_yy = kyy.sum() - np.trace(kyy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * kxy.sum() / (m * m))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD of two equally sized samples with the KID polynomial kernel."""
    return _mmd2_from_kernels(_poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y))


#: Up to this many images per set, KID's kernels are computed once for the whole sets and the subsets index them
#: (3 x 2500^2 doubles = 150 MB at most): hundreds of small matrix products cost more than one large one.
KID_FULL_KERNELS = 2500


def kid(features_a: np.ndarray, features_b: np.ndarray, subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over ``subsets`` random subsets of ``min(subset_size, N_a, N_b)``."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    full = max(a.shape[0], b.shape[0]) <= KID_FULL_KERNELS
    if full:
        kaa, kbb, kab = _poly_kernel(a, a), _poly_kernel(b, b), _poly_kernel(a, b)
    values = []
    for _ in range(subsets):
        i, j = rng.choice(a.shape[0], m, replace=False), rng.choice(b.shape[0], m, replace=False)
        if full:
            values.append(_mmd2_from_kernels(kaa[np.ix_(i, i)], kbb[np.ix_(j, j)], kab[np.ix_(i, j)]))
        else:
            values.append(mmd2_unbiased(a[i], b[j]))
    return float(np.mean(values)), float(np.std(values))
