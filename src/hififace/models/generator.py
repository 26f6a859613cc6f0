"""The HifiFace swap network: encoder, AdaIN decoder and Semantic Facial Fusion (SFF) module.

It takes the target image and the shape-aware identity vector ``v_sid`` (769-d) and returns
``I_r`` (the swapped face), ``I_low`` (64x64), ``M_r`` and ``M_low`` (the fusion masks). The identity vector
comes from :class:`~hififace.models.identity.ShapeAwareIdentityExtractor`; keeping the two apart lets a source
identity be computed once and reused for many targets.

Widths and op order of the ``reference`` variant are those of mindslab-ai/hififace; the ``paper`` variant follows
the paper authors' clarifications (design/ARCHITECTURE.md); the ``xuehy`` variant is xuehy/HiFiFace-pytorch's
generator (the same encoder and decoder, its own SFF in :mod:`hififace.models.xuehy`). The 512 model adds one
down-sampling block at the start of the encoder and one up-sampling block in F_up, so the SFF still works at 64x64
and the encoder/decoder keep their widths (the paper's "Ours-512" does not publish how its encoder/decoder change).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HifiFaceConfig
from ..nn.blocks import LRELU_SLOPE, AdaINResBlock, ResBlock
from .xuehy import SFFXuehy


class GeneratorOutput(NamedTuple):
    """Outputs of the generator, all NCHW. Masks of the reference variant are tanh (in (-1, 1)); clamp for display."""

    i_r: torch.Tensor  #: swapped face, image size
    i_low: torch.Tensor  #: low-resolution swapped face, 64x64
    m_r: torch.Tensor  #: blending mask of i_r, 1 channel, image size
    m_low: torch.Tensor  #: blending mask of i_low, 1 channel, 64x64


# Reference widths (mindslab-ai/hififace model/hififace.py).
ENCODER_CHANNELS = (64, 128, 256, 512, 512, 512, 512, 512)
ENCODER_DOWN = (True, True, True, True, True, False, False)
DECODER_CHANNELS = (512, 512, 512, 512, 512, 256)
DECODER_UP = (False, False, True, True, True)


class Encoder(nn.Module):
    """conv3x3 stem and residual down-sampling blocks; returns (z_enc at 64x64, bottleneck at 8x8)."""

    def __init__(self, config: HifiFaceConfig):
        super().__init__()
        w = config.width
        chans = [w(c) for c in ENCODER_CHANNELS]
        down = list(ENCODER_DOWN)
        if config.image_size == 512:  # one more down-sampling block first: 512 -> 256 at the stem width
            chans = [chans[0]] + chans
            down = [True] + down
        self.stem = nn.Conv2d(3, chans[0], 3, padding=1)
        self.blocks = nn.ModuleList(
            ResBlock(cin, cout, "down" if d else "none") for cin, cout, d in zip(chans[:-1], chans[1:], down)
        )
        # z_enc is the output of the block that reaches 64x64 (the 2nd block at 256, the 3rd at 512).
        self.skip_index = 1 if config.image_size == 256 else 2

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        z_enc = x
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == self.skip_index:
                z_enc = x
        return z_enc, x


class Decoder(nn.Module):
    """AdaIN residual blocks driven by v_sid, from the 8x8 bottleneck up to z_dec at 64x64."""

    def __init__(self, config: HifiFaceConfig):
        super().__init__()
        chans = [config.width(c) for c in DECODER_CHANNELS]
        self.blocks = nn.ModuleList(
            AdaINResBlock(cin, cout, config.id_dim, upsample=up) for cin, cout, up in zip(chans[:-1], chans[1:], DECODER_UP)
        )

    def forward(self, x: torch.Tensor, v_sid: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, v_sid)
        return x


def _f_up_widths(config: HifiFaceConfig) -> list[tuple[int, int, str]]:
    """(cin, cout, resample) of the F_up blocks of the reference variant."""
    w = config.width
    c = w(256)
    if config.image_size == 256:  # reference: 256->64 up, 64->16 up, 16->8, 8->4 (4 = mask + RGB)
        return [(c, w(64), "up"), (w(64), w(16), "up"), (w(16), 8, "none"), (8, 4, "none")]
    return [(c, w(64), "up"), (w(64), w(32), "up"), (w(32), w(16), "up"), (w(16), 8, "none"), (8, 4, "none")]


class SFFReference(nn.Module):
    """Semantic Facial Fusion as in the reference: tanh masks from residual blocks, I_low from the AdaIN block."""

    def __init__(self, config: HifiFaceConfig):
        super().__init__()
        c = config.width(256)
        self.sigma = ResBlock(c, c)  # adapts the encoder's z_enc before fusion
        self.mask_low = ResBlock(c, 1)  # m_low logits from z_dec
        self.fuse = AdaINResBlock(c, c + 3, config.id_dim)  # channels 0..2 = I_low, 3.. = features
        self.up = nn.Sequential(*(ResBlock(cin, cout, r) for cin, cout, r in _f_up_widths(config)))
        self.low_scale = config.low_size / config.image_size

    def forward(self, target: torch.Tensor, z_enc: torch.Tensor, z_dec: torch.Tensor, v_sid: torch.Tensor) -> GeneratorOutput:
        z_enc = self.sigma(z_enc)
        m_low = torch.tanh(self.mask_low(z_dec))
        z_fuse = m_low * z_dec + (1 - m_low) * z_enc
        z_fuse = self.fuse(z_fuse, v_sid)
        i_low = z_fuse[:, :3]
        z_fuse = z_fuse[:, 3:]
        # nearest down-sampling of the target, as the reference's F.interpolate(scale_factor=0.25)
        i_low = m_low * i_low + (1 - m_low) * F.interpolate(target, scale_factor=self.low_scale, mode="nearest")
        out = self.up(z_fuse)
        m_r = torch.tanh(out[:, :1])
        i_r = m_r * out[:, 1:] + (1 - m_r) * target
        return GeneratorOutput(i_r, i_low, m_r, m_low)


class SFFPaper(nn.Module):
    """Semantic Facial Fusion after the paper authors' clarifications: sigmoid masks from convolutions,
    a LeakyReLU + conv head for I_low, two AdaIN blocks after the blend, F_up of up-sampling blocks only."""

    def __init__(self, config: HifiFaceConfig):
        super().__init__()
        w = config.width
        c = w(256)
        self.sigma = ResBlock(c, c)
        self.mask_low = nn.Conv2d(c, 1, 3, padding=1)
        self.fuse = nn.ModuleList([AdaINResBlock(c, c, config.id_dim), AdaINResBlock(c, c, config.id_dim)])
        self.to_low = nn.Conv2d(c, 3, 3, padding=1)
        n_up = 2 if config.image_size == 256 else 3
        widths = [c] + [w(ch) for ch in (64, 32, 32)][:n_up]
        self.up = nn.Sequential(*(ResBlock(a, b, "up") for a, b in zip(widths[:-1], widths[1:])))
        self.mask_r = nn.Conv2d(widths[-1], 1, 3, padding=1)
        self.to_rgb = nn.Conv2d(widths[-1], 3, 3, padding=1)
        self.low_scale = config.low_size / config.image_size

    def forward(self, target: torch.Tensor, z_enc: torch.Tensor, z_dec: torch.Tensor, v_sid: torch.Tensor) -> GeneratorOutput:
        z_enc = self.sigma(z_enc)
        m_low = torch.sigmoid(self.mask_low(z_dec))
        z_fuse = m_low * z_dec + (1 - m_low) * z_enc
        for block in self.fuse:
            z_fuse = block(z_fuse, v_sid)
        i_low = self.to_low(F.leaky_relu(z_fuse, LRELU_SLOPE))
        i_low = m_low * i_low + (1 - m_low) * F.interpolate(target, scale_factor=self.low_scale, mode="nearest")
        feat = self.up(z_fuse)
        m_r = torch.sigmoid(self.mask_r(feat))
        i_r = m_r * self.to_rgb(F.leaky_relu(feat, LRELU_SLOPE)) + (1 - m_r) * target
        return GeneratorOutput(i_r, i_low, m_r, m_low)


class Generator(nn.Module):
    """Encoder + decoder + SFF: ``generator(target, v_sid) -> GeneratorOutput`` (images in [0, 1], NCHW)."""

    def __init__(self, config: HifiFaceConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.sff = {"reference": SFFReference, "paper": SFFPaper, "xuehy": SFFXuehy}[config.variant](config)

    def forward(self, target: torch.Tensor, v_sid: torch.Tensor) -> GeneratorOutput:
        return self.decode(target, *self.encoder(target), v_sid)

    def decode(self, target: torch.Tensor, z_enc: torch.Tensor, z: torch.Tensor, v_sid: torch.Tensor) -> GeneratorOutput:
        """The identity-dependent part, from the encoder's outputs (which depend on the target only)."""
        return GeneratorOutput(*self.sff(target, z_enc, self.decoder(z, v_sid), v_sid))


def create_generator(image_size: int = 256, variant: str = "reference", **overrides) -> Generator:
    """Build a randomly initialised generator, e.g. ``create_generator(512, "paper")``."""
    return Generator(HifiFaceConfig(image_size=image_size, variant=variant, **overrides))
