"""PSFRGAN's ParseNet (chaofengc/PSFRGAN, ``parse_multi_iter_90000.pth``): 19 classes in CelebAMask-HQ order.

Configuration of the released file (docs/formats.md#psfrgan-parser-and-the-parsing-palette; ``define_P`` at commit
ab853cdc): 512 in and out, minimum feature size 32, base 64 channels clipped to 32..256, 10 residual body blocks, BatchNorm, LeakyReLU(0.2), reflection
padding. Written independently from those facts.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._frozen import FrozenModule

N_CLASSES = 19
INPUT_SIZE = 512


class _Norm(nn.Module):
    """Holds the BatchNorm at ``norm.norm`` (the upstream key path)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class ConvLayer(nn.Module):
    """[nearest x2 up] -> reflection pad -> conv (stride 2 for down) -> [BN] -> [LeakyReLU 0.2]."""

    def __init__(self, cin: int, cout: int, k: int = 3, scale: str = "none", norm: bool = False, act: bool = False):
        super().__init__()
        self.scale = scale
        self.pad = int(math.ceil((k - 1) / 2))
        self.conv2d = nn.Conv2d(cin, cout, k, 2 if scale == "down" else 1, bias=not norm)
        self.norm = _Norm(cout) if norm else None
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == "up":
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv2d(F.pad(x, (self.pad,) * 4, mode="reflect"))
        if self.norm is not None:
            x = self.norm(x)
        return F.leaky_relu(x, 0.2) if self.act else x


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, scale: str = "none"):
        super().__init__()
        self.shortcut_func = ConvLayer(cin, cout, 3, scale) if (scale != "none" or cin != cout) else None
        first, second = {"down": ("none", "down"), "up": ("up", "none"), "none": ("none", "none")}[scale]
        self.conv1 = ConvLayer(cin, cout, 3, first, norm=True, act=True)
        self.conv2 = ConvLayer(cout, cout, 3, second, norm=True, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut_func is None else self.shortcut_func(x)
        return identity + self.conv2(self.conv1(x))


class ParseNet(FrozenModule):
    """N x 3 x 512 x 512 RGB in [-1, 1] -> (N x 19 x 512 x 512 parsing logits, N x 3 x 512 x 512 restored image)."""

    def __init__(self, in_size: int = INPUT_SIZE, out_size: int = INPUT_SIZE, min_feat_size: int = 32, base_ch: int = 64,
                 parsing_ch: int = N_CLASSES, res_depth: int = 10, ch_range: tuple[int, int] = (32, 256)):
        super().__init__()
        lo, hi = ch_range

        def clip(c: int) -> int:
            return max(lo, min(c, hi))

        min_feat_size = min(in_size, min_feat_size)
        down = int(math.log2(in_size // min_feat_size))
        up = int(math.log2(out_size // min_feat_size))
        enc: list[nn.Module] = [ConvLayer(3, base_ch, 3)]
        head = base_ch
        for _ in range(down):
            enc.append(ResidualBlock(clip(head), clip(head * 2), "down"))
            head *= 2
        self.encoder = nn.Sequential(*enc)
        self.body = nn.Sequential(*[ResidualBlock(clip(head), clip(head)) for _ in range(res_depth)])
        dec: list[nn.Module] = []
        for _ in range(up):
            dec.append(ResidualBlock(clip(head), clip(head // 2), "up"))
            head //= 2
        self.decoder = nn.Sequential(*dec)
        self.out_img_conv = ConvLayer(clip(head), 3)
        self.out_mask_conv = ConvLayer(clip(head), parsing_ch)
        self.freeze()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.encoder(x)
        x = self.decoder(feat + self.body(feat))
        return self.out_mask_conv(x), self.out_img_conv(x)
