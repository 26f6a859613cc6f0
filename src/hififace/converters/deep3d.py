"""Strict loader for Deep3DFaceRecon's ReconNet (``checkpoints/face_recon/epoch_20.pth``)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import WeightsError
from ..models.frozen.recon import ReconNet
from ..weights.io import load_into, load_legacy, load_safetensors
from .keys import build_uninitialised, is_tensor_dict, looks_like, strip_module_prefix

log = logging.getLogger(__name__)

RECON_WHAT = "Deep3DFaceRecon epoch_20.pth"
RECON_EXPECTED = ("expected Deep3DFaceRecon_pytorch's checkpoints/face_recon/epoch_20.pth "
                  "(a dict with 'net_recon'), or a raw ReconNet state_dict")


def load_recon_state(path: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """The ReconNet state_dict of ``epoch_20.pth`` (``ckpt['net_recon']``), a raw ReconNet state_dict, or our
    ``recon3d.safetensors``. Anything else raises :class:`WeightsError`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        obj: Any = load_safetensors(path, RECON_WHAT)
    else:
        obj = load_legacy(path, RECON_WHAT)
    if isinstance(obj, Mapping) and "net_recon" in obj:
        obj = obj["net_recon"]
    if not is_tensor_dict(obj):
        raise WeightsError(f"{path}: not a ReconNet checkpoint ({looks_like(obj)}); {RECON_EXPECTED}")
    state = strip_module_prefix(obj, path)
    if not (any(k.startswith("backbone.") for k in state) and "final_layers.0.weight" in state):
        raise WeightsError(f"{path}: not a ReconNet checkpoint ({looks_like(obj)}); {RECON_EXPECTED}")
    return state


def load_recon(path: str | Path):
    """A frozen :class:`~hififace.models.frozen.recon.ReconNet` with the weights of ``path``."""
    state = load_recon_state(path)
    model = build_uninitialised(ReconNet)
    load_into(model, state, path)
    log.info("Deep3DFaceRecon ReconNet loaded from %s", path)
    return model
