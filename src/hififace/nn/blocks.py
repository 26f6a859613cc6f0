"""Residual blocks of HifiFace: plain (encoder, SFF) and AdaIN-modulated (decoder, SFF).

Op order follows the reference implementation (mindslab-ai/hififace ``model/hififace.py``) exactly, so that its
checkpoint reproduces its outputs: norm -> LeakyReLU(0.2) -> conv, resampling after the first conv on the main
path and after the 1x1 conv on the side path, output = main + side without scaling.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LRELU_SLOPE = 0.2
IN_EPS = 1e-5  # torch's InstanceNorm2d / F.instance_norm default, as in the reference


def resample(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``"down"``: 2x2 average pooling; ``"up"``: x2 bilinear (align_corners=False); ``"none"``: identity."""
    if mode == "down":
        return F.avg_pool2d(x, 2)
    if mode == "up":
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
    return x


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Instance normalisation without affine parameters (statistics in fp32 for low-precision inputs)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return F.instance_norm(x.float(), eps=IN_EPS).to(x.dtype)
    return F.instance_norm(x, eps=IN_EPS)


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
        h = self.conv1(F.leaky_relu(instance_norm(x), LRELU_SLOPE))
        h = resample(h, self.resample)
        h = self.conv2(F.leaky_relu(instance_norm(h), LRELU_SLOPE))
        return h + resample(self.skip(x), self.resample)


class AdaIN(nn.Module):
    """Adaptive instance norm: ``std(v) * IN(x) + mean(v)`` with two linear heads on the identity vector.

    As in the reference, the predicted std is used as it is (no ``1 +``).
    """

    def __init__(self, channels: int, style_dim: int):
        super().__init__()
        self.std = nn.Linear(style_dim, channels)
        self.mean = nn.Linear(style_dim, channels)

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        std = self.std(v)[:, :, None, None]
        mean = self.mean(v)[:, :, None, None]
        return std * instance_norm(x) + mean


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
        h = self.conv1(F.leaky_relu(self.adain1(x, v), LRELU_SLOPE))
        h = resample(h, self.resample)
        h = self.conv2(F.leaky_relu(self.adain2(h, v), LRELU_SLOPE))
        return h + resample(self.skip(x), self.resample)
