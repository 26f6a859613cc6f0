"""Options and model loading shared by the commands that run the model (swap, grid, interpolate, demo)."""
from __future__ import annotations

import argparse
import logging
from typing import Any

from ..errors import HifiFaceError

log = logging.getLogger("hififace")

CONSENT = "Use only with the consent of the people shown; outputs are labelled as synthetic in their metadata."


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="DIR",
                   help="model folder (from 'hififace convert'); default: $HIFIFACE_HOME, then ~/.cache/hififace")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="compute precision (default fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (CUDA graphs on CUDA): "
                   "faster per image, but compiling takes a while (minutes on a CPU); pays off for many swaps")


def add_watermark_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--watermark", action="store_true",
                   help="also draw a visible 'AI-generated' mark (the metadata label is always written)")


def pick_device(name: str | None) -> Any:
    """``auto`` -> cuda when available, else cpu; an unavailable device is one clear error."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise HifiFaceError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HifiFaceError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HifiFaceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise HifiFaceError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise HifiFaceError(f"unsupported device {name!r}: use cpu, cuda, cuda:N or auto")
    return device


def model_config(args: argparse.Namespace):
    """The config of the model folder ``--weights`` points to (cheap: inputs can be checked before loading)."""
    from ..config import HifiFaceConfig
    from ..models.hififace import CONFIG_FILE
    from ..weights.resolve import resolve_model_dir

    return HifiFaceConfig.load(resolve_model_dir(getattr(args, "weights", None)) / CONFIG_FILE)


def load_model(args: argparse.Namespace):
    """The model folder from ``--weights`` (then $HIFIFACE_HOME, ~/.cache/hififace) on ``--device``/``--dtype``."""
    from ..models.hififace import HifiFace

    device = pick_device(getattr(args, "device", None))
    model = HifiFace.from_pretrained(getattr(args, "weights", None), device=device, dtype=getattr(args, "dtype", None))
    log.debug("model %s on %s (%s)", model.config.variant, device, getattr(args, "dtype", "fp32"))
    return maybe_compile(model, args)


def maybe_compile(model: Any, args: argparse.Namespace) -> Any:
    """``--compile``: ``model.compile()``, recording CUDA graphs (fixed batch shapes) on CUDA."""
    if getattr(args, "compile", False):
        if not hasattr(model, "compile"):
            raise HifiFaceError("--compile works with PyTorch models only")
        model.compile(mode="reduce-overhead" if model.device.type == "cuda" else None)
    return model


def model_meta(model: Any, command: str, **extra: str) -> dict[str, str]:
    """Extra label fields written into outputs: which command and which kind of model made them."""
    cfg = model.config
    meta = {"hififace:command": command, "hififace:model": f"{cfg.variant}-{cfg.image_size}"}
    meta.update({f"hififace:{k}": str(v) for k, v in extra.items()})
    return meta


def progress(total: int, desc: str):
    """A tqdm bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None, leave=False)
