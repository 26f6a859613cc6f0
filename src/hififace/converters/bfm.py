"""Basel Face Model for the shape loss: read ``BFM_model_front.mat`` once, store only its 68 landmark rows."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch

from ..errors import WeightsError
from ..models.frozen.bfm import N_EXP, N_ID, BFMLandmarks, load_bfm_mat
from ..utils.text import printable_list
from ..weights.io import load_safetensors

log = logging.getLogger(__name__)

BFM_KEYS = ("mean_shape", "id_base", "exp_base")


def load_bfm(path: str | Path):
    """:class:`~hififace.models.frozen.bfm.BFMLandmarks` from ``BFM_model_front.mat`` or our
    ``bfm_landmarks.safetensors``; clear :class:`WeightsError` for a missing, unreadable or incomplete file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return bfm_from_tensors(load_safetensors(path, "BFM landmarks"), path)
    return load_bfm_mat(path)


def bfm_to_tensors(bfm) -> dict[str, torch.Tensor]:
    """The reduced face model as tensors for safetensors (keys ``mean_shape``, ``id_base``, ``exp_base``)."""
    return {k: getattr(bfm, k).detach().to("cpu", torch.float32).contiguous() for k in BFM_KEYS}


def bfm_from_tensors(tensors: Mapping[str, torch.Tensor], source: str | Path = "BFM tensors"):
    """Inverse of :func:`bfm_to_tensors`, checking keys, shapes and values."""
    missing = [k for k in BFM_KEYS if k not in tensors]
    extra = [k for k in tensors if k not in BFM_KEYS]
    if missing or extra:
        raise WeightsError(f"{source}: not a reduced BFM (missing {printable_list(missing) or 'none'}, unexpected {printable_list(extra) or 'none'}); "
                           "re-create it from BFM_model_front.mat")
    mean, id_base, exp_base = (tensors[k] for k in BFM_KEYS)
    n = mean.shape[0] if mean.ndim == 2 else -1
    if mean.ndim != 2 or mean.shape[1] != 3 or tuple(id_base.shape) != (3 * n, N_ID) or tuple(exp_base.shape) != (3 * n, N_EXP):
        raise WeightsError(f"{source}: reduced BFM has shapes mean_shape {tuple(mean.shape)}, id_base "
                           f"{tuple(id_base.shape)}, exp_base {tuple(exp_base.shape)}; expected (68, 3), (204, 80), (204, 64)")
    if not all(t.is_floating_point() for t in (mean, id_base, exp_base)):
        raise WeightsError(f"{source}: the reduced BFM holds {', '.join(str(t.dtype) for t in (mean, id_base, exp_base))} "
                           "tensors, expected floating point; re-create it from BFM_model_front.mat")
    if not all(bool(torch.isfinite(t.float()).all()) for t in (mean, id_base, exp_base)):
        raise WeightsError(f"{source}: non-finite values (NaN/inf) in the reduced BFM; the file is damaged")
    return BFMLandmarks(mean.float().numpy(), id_base.float().numpy(), exp_base.float().numpy())
