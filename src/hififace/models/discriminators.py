"""Discriminators: the reference multiscale PatchGAN and a StarGAN-v2-style one for the paper variant.

Both return a list of logit tensors (one per scale; the StarGAN-v2 one has a single N x 1 entry) so that the
adversarial losses treat them alike.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HifiFaceConfig

LRELU_SLOPE = 0.2


class PatchDiscriminator(nn.Module):
    """pix2pixHD N-layer PatchGAN (n_layers=3): 4x4 convs, padding 2, BatchNorm, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64):
        super().__init__()
        c1, c2, c3 = min(ndf * 2, 512), min(ndf * 4, 512), min(ndf * 8, 512)
        self.conv0 = nn.Conv2d(in_channels, ndf, 4, stride=2, padding=2)
        self.conv1 = nn.Conv2d(ndf, c1, 4, stride=2, padding=2)
        self.norm1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 4, stride=2, padding=2)
        self.norm2 = nn.BatchNorm2d(c2)
        self.conv3 = nn.Conv2d(c2, c3, 4, stride=1, padding=2)
        self.norm3 = nn.BatchNorm2d(c3)
        self.out = nn.Conv2d(c3, 1, 4, stride=1, padding=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.conv0(x), LRELU_SLOPE)
        x = F.leaky_relu(self.norm1(self.conv1(x)), LRELU_SLOPE)
        x = F.leaky_relu(self.norm2(self.conv2(x)), LRELU_SLOPE)
        x = F.leaky_relu(self.norm3(self.conv3(x)), LRELU_SLOPE)
        return self.out(x)


class MultiscaleDiscriminator(nn.Module):
    """Three PatchGANs on the image and on two 2x average-pooled copies; ``scales[0]`` sees full resolution."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, num_scales: int = 3):
        super().__init__()
        self.scales = nn.ModuleList(PatchDiscriminator(in_channels, ndf) for _ in range(num_scales))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, disc in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(disc(x))
        return outs


class _DownBlock(nn.Module):
    """StarGAN-v2 residual block: LReLU -> conv3x3 -> avgpool -> LReLU -> conv3x3, learned 1x1 shortcut, /sqrt(2)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv2 = nn.Conv2d(cin, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.skip(x) if self.skip is not None else x
        s = F.avg_pool2d(s, 2)
        h = self.conv1(F.leaky_relu(x, LRELU_SLOPE))
        h = F.avg_pool2d(h, 2)
        h = self.conv2(F.leaky_relu(h, LRELU_SLOPE))
        return (s + h) / math.sqrt(2)


class StarGANv2Discriminator(nn.Module):
    """Residual down-sampling discriminator (StarGAN v2, one domain) used by the paper variant with R1."""

    def __init__(self, image_size: int = 256, max_channels: int = 512, width: float = 1.0):
        super().__init__()
        cin = max(8, int((2**14 // image_size) * width))
        cmax = max(8, int(max_channels * width))
        self.stem = nn.Conv2d(3, cin, 3, padding=1)
        blocks = []
        for _ in range(int(math.log2(image_size)) - 2):  # down to 4x4
            cout = min(cin * 2, cmax)
            blocks.append(_DownBlock(cin, cout))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, cin, 4)  # 4x4 -> 1x1
        self.out = nn.Conv2d(cin, 1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.blocks(self.stem(x))
        h = self.head(F.leaky_relu(h, LRELU_SLOPE))
        h = self.out(F.leaky_relu(h, LRELU_SLOPE))
        return [h.flatten(1)]


def create_discriminator(config: HifiFaceConfig) -> nn.Module:
    """The discriminator that goes with a variant: multiscale PatchGAN (reference) or StarGAN v2 (paper)."""
    if config.variant == "reference":
        return MultiscaleDiscriminator(3, ndf=max(8, config.width(64)))
    return StarGANv2Discriminator(config.image_size, width=config.channel_multiplier)
