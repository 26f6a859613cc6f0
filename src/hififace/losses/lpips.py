"""LPIPS-VGG perceptual distance (Zhang et al. 2018, v0.1): VGG-16 features compared through learned linear heads.

Written here (no torchvision, no lpips package); the state_dict keys are the lpips package's own
(``scaling_layer.shift``, ``net.slice1.0.weight`` ... ``net.slice5.28.bias``, ``lin0.model.1.weight`` ...),
which are also the keys under ``g_loss.realism_loss.loss_fn_vgg.`` in the reference checkpoint.
Facts: torchvision ``vgg16`` ``features.N`` indices, the slices end after relu1_2 (3), relu2_2 (8), relu3_3 (15),
relu4_3 (22) and relu5_3 (29); the scaling-layer constants and the unit-normalisation eps 1e-10 are lpips v0.1's.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..errors import WeightsError
from ..models.frozen import FrozenModule
from ..utils.text import printable
from ..weights.io import load_into, load_legacy, load_safetensors

log = logging.getLogger(__name__)

#: VGG-16 ``features`` layout: (index of the conv in torchvision's ``features``, out channels); "M" = max-pool.
VGG16_CONVS = ((0, 64), (2, 64), "M", (5, 128), (7, 128), "M", (10, 256), (12, 256), (14, 256), "M",
               (17, 512), (19, 512), (21, 512), "M", (24, 512), (26, 512), (28, 512))
#: Last ``features`` index (inclusive) of each LPIPS slice: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
SLICE_ENDS = (3, 8, 15, 22, 29)
#: lpips ScalingLayer constants: ImageNet mean/std expressed for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


class ScalingLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.scale


class VGG16Slices(nn.Module):
    """torchvision's ``vgg16().features`` cut into the five LPIPS slices, keeping the global layer indices."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        layers: dict[int, nn.Module] = {}
        cin, idx = 3, 0
        for item in VGG16_CONVS:
            if item == "M":
                layers[idx] = nn.MaxPool2d(2, 2)
                idx += 1
                continue
            conv_idx, cout = item
            assert conv_idx == idx
            cout = max(1, int(round(cout * width)))
            layers[idx] = nn.Conv2d(cin, cout, 3, padding=1)
            layers[idx + 1] = nn.ReLU(inplace=False)
            idx += 2
            cin = cout
        start = 0
        self.channels: list[int] = []
        for s, end in enumerate(SLICE_ENDS, start=1):
            seq = nn.Sequential()
            for i in range(start, end + 1):
                seq.add_module(str(i), layers[i])
            self.add_module(f"slice{s}", seq)
            self.channels.append([m for m in seq if isinstance(m, nn.Conv2d)][-1].out_channels)
            start = end + 1

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for s in range(1, 6):
            x = getattr(self, f"slice{s}")(x)
            feats.append(x)
        return feats


class LinearHead(nn.Module):
    """lpips ``NetLinLayer``: (dropout, 1x1 conv without bias); dropout is off in eval so only ``model.1`` matters."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPS(FrozenModule):
    """LPIPS-VGG v0.1 distance between images in [0, 1] (scaled to [-1, 1] inside); returns one value per sample.

    Args:
        vgg_path: torchvision ``vgg16-397923af.pth`` (keys ``features.N.weight``/``bias``; ``classifier.*`` ignored).
        lin_path: lpips ``weights/v0.1/vgg.pth`` (keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).
        width: scales the VGG widths; only for tiny test models (no real file fits a width below 1).

    Without files the network is random and a warning is logged: the loss then only measures feature noise.
    """

    def __init__(self, vgg_path: str | Path | None = None, lin_path: str | Path | None = None, width: float = 1.0):
        super().__init__()
        self.scaling_layer = ScalingLayer()
        self.net = VGG16Slices(width)
        for i, c in enumerate(self.net.channels):
            self.add_module(f"lin{i}", LinearHead(c))
        self.pretrained = False
        if vgg_path is not None or lin_path is not None:
            if vgg_path is None or lin_path is None:
                raise WeightsError("LPIPS needs both files: the torchvision vgg16-397923af.pth and the lpips v0.1 vgg.pth")
            self.load_vgg(vgg_path)
            self.load_linear_heads(lin_path)
            self.pretrained = True
        else:
            # Positive heads, as the trained ones are (lpips clamps them at >= 0), so the random distance is a distance.
            for i in range(5):
                with torch.no_grad():
                    getattr(self, f"lin{i}").model[1].weight.abs_()
            log.warning("LPIPS: no VGG-16 / linear-head weights given, using random ones (the LPIPS loss means little)")
        self.freeze()

    # ------------------------------------------------------------------ weights
    def load_vgg(self, path: str | Path) -> None:
        """Load torchvision ``vgg16`` weights (``features.N.*``) into the slices."""
        state = load_legacy(path, "torchvision vgg16-397923af.pth")
        state = _unwrap(state, path, "torchvision VGG-16")
        own = self.net.state_dict()
        index_to_key = {k.split(".", 1)[1]: k for k in own}  # "0.weight" -> "slice1.0.weight"
        mapped = {}
        for key, value in state.items():
            if key.startswith("classifier."):
                continue
            if not key.startswith("features."):
                raise WeightsError(f"{path}: unexpected key {printable(key)}; expected torchvision vgg16 keys features.N.*")
            rest = key[len("features."):]
            if rest not in index_to_key:
                raise WeightsError(f"{path}: {printable(key)} is not a VGG-16 conv layer; is this vgg16 (not vgg19 or vgg16_bn)?")
            mapped[index_to_key[rest]] = value
        load_into(self.net, mapped, path)

    def load_linear_heads(self, path: str | Path) -> None:
        """Load lpips v0.1 ``vgg.pth`` (``linI.model.1.weight``)."""
        state = _unwrap(load_legacy(path, "lpips v0.1 vgg.pth"), path, "lpips linear heads")
        heads = nn.ModuleDict({f"lin{i}": getattr(self, f"lin{i}") for i in range(5)})
        load_into(heads, state, path)

    @classmethod
    def from_safetensors(cls, path: str | Path) -> "LPIPS":
        """LPIPS from a full state dict file in this module's key layout (``lpips.safetensors`` of a training model
        folder), built on the meta device first: no random weights are made (nor warned about) before loading."""
        level = log.level  # the random-weights warning of __init__ does not apply here
        log.setLevel(logging.ERROR)
        try:
            with torch.device("meta"):
                net = cls()
        finally:
            log.setLevel(level)
        net = net.to_empty(device="cpu")
        net.load_lpips_state(load_safetensors(path, "LPIPS weights"), path)
        net.freeze()
        return net

    def load_lpips_state(self, state: Mapping[str, torch.Tensor], source: str | Path) -> None:
        """Load a full state dict in this module's (= the lpips package's) key layout, e.g. ``lpips.safetensors``."""
        state = {k: v for k, v in state.items() if not k.startswith("lins.")}  # lpips' alias of lin0-4
        load_into(self, state, source)
        self.pretrained = True

    # ------------------------------------------------------------------ distance
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample LPIPS distance (shape N) between image batches in [0, 1]."""
        fx = self.net(self.scaling_layer(x * 2 - 1))
        fy = self.net(self.scaling_layer(y * 2 - 1))
        total = x.new_zeros(x.shape[0])
        for i, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            d = getattr(self, f"lin{i}")((a - b).pow(2))
            total = total + d.mean(dim=(1, 2, 3))
        return total


def _unwrap(state, path, what: str) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: not a {what} state dict (expected a dict of tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}
