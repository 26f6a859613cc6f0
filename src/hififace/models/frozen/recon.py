"""Deep3DFaceRecon's ReconNet: a ResNet-50 regressing the 257 3DMM coefficients of a face crop.

Keys are those of ``epoch_20.pth['net_recon']`` (``backbone.*`` torchvision-style ResNet-50 v1.5 without ``fc``,
``final_layers.0..6``). Facts from sicxu/Deep3DFaceRecon_pytorch ``models/networks.py`` (ReconNetWrapper with
use_last_fc=False); written independently, no torchvision.
"""
from __future__ import annotations

import torch
from torch import nn

from ._frozen import FrozenModule

RESNET50_LAYERS = (3, 4, 6, 3)
STAGE_PLANES = (64, 128, 256, 512)
EXPANSION = 4
#: Outputs of final_layers in order: id, exp, tex, angle, gamma, (tx, ty), tz -> 257 coefficients.
FINAL_DIMS = (80, 64, 80, 3, 27, 2, 1)
N_COEFFS = sum(FINAL_DIMS)


def _scaled(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    def __init__(self, in_ch: int, planes: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50Trunk(nn.Module):
    """ResNet-50 up to global average pooling: N x 3 x H x W -> N x C x 1 x 1 (C = 2048 at width 1)."""

    def __init__(self, width: float = 1.0):
        super().__init__()
        stem = _scaled(64, width)
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = stem
        for i, (n_blocks, planes) in enumerate(zip(RESNET50_LAYERS, STAGE_PLANES), start=1):
            p = _scaled(planes, width)
            out_ch = p * EXPANSION
            stride = 1 if i == 1 else 2
            blocks = [Bottleneck(in_ch, p, out_ch, stride)]
            blocks += [Bottleneck(out_ch, p, out_ch) for _ in range(1, n_blocks)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_ch = out_ch
        self.out_channels = in_ch
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x)


class ReconNet(FrozenModule):
    """Images N x 3 x H x W in [0, 1] (224x224 aligned crops upstream; any size runs) -> N x 257 coefficients.

    Layout of the output: id [0:80], exp [80:144], tex [144:224], angles [224:227], gamma [227:254],
    translation [254:257]. ``width`` scales the trunk for tiny test models; real files need 1.0.
    """

    def __init__(self, width: float = 1.0):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        self.width = float(width)
        self.backbone = ResNet50Trunk(width)
        c = self.backbone.out_channels
        self.final_layers = nn.ModuleList(nn.Conv2d(c, k, 1, bias=True) for k in FINAL_DIMS)
        self.freeze()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x)
        return torch.flatten(torch.cat([layer(feat) for layer in self.final_layers], dim=1), 1)
