"""Helpers every converter shares: what a foreign file looks like (for messages), DataParallel prefixes, building a
module without random init (a strict load overwrites every tensor)."""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ..utils.text import printable
from ..weights.io import describe_keys

log = logging.getLogger(__name__)


def looks_like(obj: Any) -> str:
    """A few words on what a loaded weight file appears to be, for error messages."""
    if not isinstance(obj, Mapping):
        return f"it holds a {printable(type(obj).__name__)}, not a dict of tensors"
    keys = [str(k) for k in obj]
    if not keys:
        return "it is an empty dict"
    if "net_recon" in obj:
        return "it looks like a Deep3DFaceRecon epoch_20.pth (ReconNet)"
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        inner = [str(k) for k in obj["state_dict"]]
        if any(k.startswith("generator.") for k in inner):
            return "it looks like a HifiFace Lightning checkpoint (convert it with 'hififace convert')"
        return f"it looks like a Lightning/training checkpoint whose state_dict starts with {describe_keys(inner, 3)}"
    if "state_dict_backbone" in obj:
        return "it looks like an insightface training checkpoint (checkpoint_gpu_N.pt)"
    plain = [k[len("module."):] if k.startswith("module.") else k for k in keys]
    if any(k.startswith("backbone.layer") for k in plain) and any(k.startswith("final_layers.") for k in plain):
        return "it looks like a Deep3DFaceRecon ReconNet state_dict"
    if "fc.weight" in plain and "features.running_var" in plain and any(k.startswith("layer1.") for k in plain):
        return "it looks like an insightface ArcFace IResNet state_dict"
    if any(k.startswith(("encoder.", "decoder.", "sff_module.")) for k in plain):
        return "it looks like a face-swap generator state_dict"
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        return f"a dict with top-level keys {describe_keys(keys, 4)}"
    return f"a state_dict with keys {describe_keys(keys, 4)}"


def strip_module_prefix(state: Mapping[str, torch.Tensor], source: str | Path) -> "OrderedDict[str, torch.Tensor]":
    """Remove a DataParallel ``module.`` prefix when every key has it (logged)."""
    keys = list(state)
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        log.info("%s: stripping the 'module.' prefix (DataParallel) from %d keys", source, len(keys))
        return OrderedDict((k[len("module."):], v) for k, v in state.items())
    return OrderedDict(state)


def build_uninitialised(factory):
    """Build a module without spending time on random init (every tensor is overwritten by a strict load).

    BatchNorm ``num_batches_tracked`` counters, which old files may lack, are set to 0.
    """
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device="cpu")
    for name, buf in module.named_buffers():
        if name.endswith("num_batches_tracked"):
            buf.zero_()
    return module


def is_tensor_dict(obj: Any) -> bool:
    """A non-empty dict whose values are all tensors (a raw state_dict)."""
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())
