"""Strict loader for insightface ArcFace weights (``backbone.pth`` / ``model.pt`` of arcface_torch)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import WeightsError
from ..models.frozen.arcface import IResNet, arcface_arch_from_state_dict
from ..weights.io import load_into, load_legacy, load_safetensors
from .keys import build_uninitialised, is_tensor_dict, looks_like, strip_module_prefix

log = logging.getLogger(__name__)

ARCFACE_WHAT = "ArcFace backbone.pth"
ARCFACE_EXPECTED = ("expected an insightface arcface_torch backbone.pth (raw IResNet state_dict, "
                    "e.g. ms1mv3_arcface_r100_fp16/backbone.pth)")


def load_arcface_state(path: str | Path) -> tuple[str, "OrderedDict[str, torch.Tensor]"]:
    """(arch, state_dict) of an ArcFace file: raw ``backbone.pth``/``model.pt``, a training checkpoint's
    ``state_dict_backbone``, or our ``arcface.safetensors``. Anything else raises :class:`WeightsError`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        obj: Any = load_safetensors(path, ARCFACE_WHAT)
    else:
        obj = load_legacy(path, ARCFACE_WHAT)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict_backbone"), Mapping):
        log.info("%s: insightface training checkpoint, using its 'state_dict_backbone'", path)
        obj = obj["state_dict_backbone"]
    if not is_tensor_dict(obj):
        raise WeightsError(f"{path}: not an ArcFace backbone ({looks_like(obj)}); {ARCFACE_EXPECTED} "
                           "or a training checkpoint with 'state_dict_backbone'")
    state = strip_module_prefix(obj, path)
    if not ("fc.weight" in state and "features.running_var" in state and "conv1.weight" in state):
        raise WeightsError(f"{path}: not an ArcFace backbone ({looks_like(obj)}); {ARCFACE_EXPECTED}")
    return arcface_arch_from_state_dict(state, str(path)), state


def load_arcface(path: str | Path):
    """A frozen :class:`~hififace.models.frozen.arcface.IResNet` with the weights of ``path`` (depth detected)."""
    arch, state = load_arcface_state(path)
    model = build_uninitialised(lambda: IResNet(arch))
    load_into(model, state, path)
    log.info("ArcFace IResNet-%s loaded from %s", arch[1:], path)
    return model
