"""PyTorch engine: our :class:`~hififace.models.restorers.GFPGAN` behind the :class:`~.base.FaceRestorer` interface."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..errors import ConfigError
from ..models.restorers.gfpgan import GFPGAN, WEIGHTS_FILE
from ..utils.files import fingerprint
from .base import check_crops

log = logging.getLogger(__name__)

_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``"auto"``: the first GPU when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {str(device)[:40]!r}: use cpu, cuda, cuda:N or auto") from None


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in _DTYPES:
        raise ConfigError(f"unknown dtype {str(dtype)[:20]!r}: use fp32, bf16 or fp16")
    return _DTYPES[str(dtype)]


def restorer_name(model: GFPGAN) -> str:
    if model.is_random:
        return "GFPGAN (random weights)"
    source = model.config.notes.get("source")
    return f"GFPGAN ({source})" if source else "GFPGAN"


class GFPGANRestorer:
    """GFPGAN v1.3 / v1.4 on aligned ``ffhq5`` crops: [0, 1] -> (x - 0.5) / 0.5 -> network -> clamp to [-1, 1] ->
    (y + 1) / 2, the upstream normalisation (docs/formats.md#gfpgan-restorer). Deterministic (the stored noise maps).

    ``batch_size`` faces go through the network at once; ``dtype`` (fp32 by default; bf16 on GPUs and CPUs with
    native bf16) is the network's, inputs and outputs stay float32. ``channels_last`` runs the network in that memory
    layout (:meth:`GFPGAN.to_channels_last`): faster on GPUs and, with oneDNN, on CPUs.
    """

    template = "ffhq5"
    #: content fingerprint of the weight file (:func:`~hififace.utils.files.fingerprint`; None: built in memory)
    fingerprint: str | None = None

    def __init__(self, model: GFPGAN, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
                 batch_size: int = 4, channels_last: bool = False):
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.model = model.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            self.model.to_channels_last()
        self.size = model.config.out_size
        self.batch_size = max(1, int(batch_size))
        self.name = restorer_name(model)
        self.is_random = model.is_random

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, batch_size: int = 4,
                        channels_last: bool = False) -> "GFPGANRestorer":
        """Load a restorer folder (``hififace convert --gfpgan GFPGANv1.4.pth -o DIR``)."""
        restorer = cls(GFPGAN.from_pretrained(folder), device=device, dtype=dtype, batch_size=batch_size,
                       channels_last=channels_last)
        restorer.fingerprint = fingerprint(Path(folder).expanduser() / WEIGHTS_FILE)
        return restorer

    @torch.inference_mode()
    def restore(self, crops: torch.Tensor) -> torch.Tensor:
        x = check_crops(crops, self.size, self.name)
        out = []
        for chunk in x.split(self.batch_size):
            x_in = chunk.to(self.device, self.dtype) * 2 - 1
            if self.channels_last:
                x_in = x_in.contiguous(memory_format=torch.channels_last)
            y = self.model(x_in)
            out.append(((y.float().clamp(-1, 1) + 1) / 2).to(crops.device))
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"GFPGANRestorer({self.name}, {self.size} px, {self.device}, {str(self.dtype).removeprefix('torch.')})"
