"""Residual blocks of HifiFace: plain (encoder, SFF) and AdaIN-modulated (decoder, SFF).

Op order follows the reference implementation (mindslab-ai/hififace ``model/hififace.py``) exactly, so that its
checkpoint reproduces its outputs: norm -> LeakyReLU(0.2) -> conv, resampling after the first conv on the main
path and after the 1x1 conv on the side path, output = main + side without scaling.

The ops come from :mod:`hififace.nn.fast`, which gives the numbers of the plain PyTorch ops (``F.instance_norm``,
``F.leaky_relu``, ``F.avg_pool2d``) with less memory under autograd, and a fused norm where its switch says so.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fast import IN_EPS, LRELU_SLOPE, adain, avg_pool_2x2, norm_act_conv

__all__ = ["IN_EPS", "LRELU_SLOPE", "AdaIN", "AdaINResBlock", "ResBlock", "resample"]


def resample(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``"down"``: 2x2 average pooling; ``"up"``: x2 bilinear (align_corners=False); ``"none"``: identity."""
    if mode == "down":
        return avg_pool_2x2(x)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return x


class ResBlock(nn.Module):
    """IN -> LReLU -> conv3x3 -> [resample] -> IN -> LReLU -> conv3x3, plus a 1x1 conv -> [resample] skip."""

    def __init__(self, cin: int, cout: int, resample: str = "none"):
        super().__init__()
        if resample not in ("down", "up", "none"):
            raise ValueError(f"resample must be down, up or none, got {resample!r}")
        self.resample = resample
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = norm_act_conv(self.conv1, x)  # conv1(LReLU(IN(x)))
        h = resample(h, self.resample)
        h = norm_act_conv(self.conv2, h)
        return h + resample(self.skip(x), self.resample)


class AdaIN(nn.Module):
    """Adaptive instance norm: ``std(v) * IN(x) + mean(v)`` with two linear heads on the identity vector.

    As in the reference, the predicted std is used as it is (no ``1 +``).
    """

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.std = nn.Linear(style_dim, channels)
        self.mean = nn.Linear(style_dim, channels)

    def affine(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(std(v), mean(v))``, each N x C."""
        return self.std(v), self.mean(v)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return adain(x, *self.affine(v))


class AdaINResBlock(nn.Module):
    """AdaIN -> LReLU -> conv3x3 -> [up] -> AdaIN -> LReLU -> conv3x3, plus a 1x1 conv -> [up] skip."""

    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.resample = "up" if upsample else "none"
        self.adain1 = AdaIN(cin, style_dim)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.adain2 = AdaIN(cout, style_dim)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h = norm_act_conv(self.conv1, x, *self.adain1.affine(v))  # conv1(LReLU(AdaIN(x, v)))
        h = resample(h, self.resample)
        h = norm_act_conv(self.conv2, h, *self.adain2.affine(v))
        return h + resample(self.skip(x), self.resample)
