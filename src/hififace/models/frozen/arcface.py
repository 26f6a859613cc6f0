"""ArcFace identity network: insightface's IResNet (arcface_torch), keys exactly as in its ``backbone.pth``.

Facts (layer order, key names, BatchNorm eps 1e-5 everywhere, 7x7 fc input) from deepinsight/insightface
``recognition/arcface_torch/backbones/iresnet.py``; this is an independent implementation.
"""
from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from ...errors import WeightsError
from ._frozen import FrozenModule

#: Blocks per stage of each depth (insightface iresnet18/34/50/100).
IRESNET_LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r18": (2, 2, 2, 2),
    "r34": (3, 4, 6, 3),
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}
STAGE_WIDTHS = (64, 128, 256, 512)
EMBEDDING_DIM = 512
BN_EPS = 1e-5  # every BatchNorm of iresnet.py (stem, blocks, downsample, bn2, features)
FC_SPATIAL = 7 * 7  # 112x112 input after four stride-2 stages


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class IBasicBlock(nn.Module):
    """Pre-activation-style block: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN, plus the shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_ch, eps=BN_EPS)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.prelu = nn.PReLU(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch, eps=BN_EPS)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(FrozenModule):
    """insightface IResNet: N x 3 x 112 x 112 images in [-1, 1] -> N x 512 raw (not normalised) embeddings.

    ``arch`` is one of r18/r34/r50/r100. ``width`` scales the stage widths for tiny test models only; every
    real ``backbone.pth`` needs 1.0. Dropout (p=0 in every released model) and fp16 autocast are omitted.
    """

    def __init__(self, arch: str = "r100", width: float = 1.0):
        super().__init__()
        if arch not in IRESNET_LAYERS:
            raise ValueError(f"unknown IResNet arch {arch!r}: use one of {', '.join(IRESNET_LAYERS)}")
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.arch = arch
        self.width = float(width)
        widths = [_scaled(c, width) for c in STAGE_WIDTHS]
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        in_ch = widths[0]
        for i, (n_blocks, out_ch) in enumerate(zip(IRESNET_LAYERS[arch], widths), start=1):
            blocks = [IBasicBlock(in_ch, out_ch, stride=2)]
            blocks += [IBasicBlock(out_ch, out_ch) for _ in range(1, n_blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.bn2 = nn.BatchNorm2d(in_ch, eps=BN_EPS)
        self.fc = nn.Linear(in_ch * FC_SPATIAL, EMBEDDING_DIM)
        self.features = nn.BatchNorm1d(EMBEDDING_DIM, eps=BN_EPS)
        nn.init.ones_(self.features.weight)  # fixed at 1.0 in insightface (never trained)
        self.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(x))


_BLOCK_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def arcface_arch_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "state_dict") -> str:
    """Depth name (r18/r34/r50/r100) of an insightface IResNet state_dict, from its blocks per stage."""
    blocks: dict[int, set[int]] = {1: set(), 2: set(), 3: set(), 4: set()}
    for key in state:
        m = _BLOCK_KEY.match(key)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    counts = tuple(len(blocks[i]) for i in range(1, 5))
    for arch, layers in IRESNET_LAYERS.items():
        if counts == layers:
            return arch
    known = ", ".join(f"{a} {list(v)}" for a, v in IRESNET_LAYERS.items())
    raise WeightsError(
        f"{source}: not a known insightface IResNet (blocks per stage {list(counts)}; known: {known}); "
        "expected an arcface_torch backbone.pth such as ms1mv3_arcface_r100_fp16"
    )
