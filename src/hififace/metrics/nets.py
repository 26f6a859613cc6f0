"""The shape every metric network shares: a frozen torch module on a device, the name the report gives it, and the
key naming its cache (from its weight file, so other weights never hit old entries)."""
from __future__ import annotations

import importlib
from pathlib import Path

import torch

from .cache import file_fingerprint


class FrozenNet:
    kind = "net"  # first part of the cache key
    loader = ""  # "module:function" (relative to hififace) that loads the weight file into a frozen module
    label = "{file}"  # the report's name for it; {file} and {arch} (an IResNet's depth) are filled in

    def __init__(self, network: torch.nn.Module, name: str, key: str, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        self.net = network.to(self.device).eval()
        self.name = name
        self.key = key

    @classmethod
    def from_file(cls, path: str | Path, device: str | torch.device = "cpu"):
        path = Path(path)
        module, func = cls.loader.split(":")
        net = getattr(importlib.import_module(module, "hififace"), func)(path)
        name = cls.label.format(file=path.name, arch=str(getattr(net, "arch", "")).lstrip("r"))
        return cls(net, name, f"{cls.kind}-{file_fingerprint(path)}", device)
