"""The ``xuehy`` variant: xuehy/HiFiFace-pytorch's generator (its released ``standard_model`` and
``with_gaze_and_mouth`` weights convert to it, see :mod:`hififace.converters.xuehy`).

Facts read from its ``models/`` code at commit 0e50b259 (docs/formats.md#xuehy-generator):

- Encoder and decoder are the reference's layer for layer (same widths, resampling, z_enc after the 2nd encoder
  block) with the same residual and AdaIN blocks (IN without affine, LeakyReLU(0.2), bilinear x2 with
  align_corners=False, 2x2 average pooling, ``std * IN(x) + mean``), so :class:`~hififace.models.generator.Encoder`,
  :class:`~hififace.models.generator.Decoder` and :mod:`hififace.nn.blocks` serve it unchanged.
- Its SFF (:class:`SFFXuehy`) differs from ours: m_low = sigmoid(conv3x3(z_dec)); two AdaIN blocks after the blend;
  I_low = conv3x3(LeakyReLU(z_fuse)); F_up = two up-sampling residual blocks at full width (256 -> 256) followed by
  an image head (LeakyReLU + conv3x3) and a mask head (conv3x3 + sigmoid).
- Two in-place LeakyReLUs (``nn.LeakyReLU(0.2, inplace=True)`` as the first layer of a head) change tensors that
  are used again afterwards, and the released weights were trained with that behaviour:

  * the I_low head runs on z_fuse in place, so F_up receives LeakyReLU(z_fuse), not z_fuse;
  * in F_up the image head runs first, so the mask head sees LeakyReLU(features).

  Both are reproduced here out of place (the same values). Computing the heads on the un-activated tensors instead
  changes I_r by tenths and M_r by up to ~0.2 on random weights (docs/formats.md#xuehy-generator;
  ``scripts/parity_xuehy.py`` measures it on its pairs).
- Masks are sigmoids (in [0, 1]); image heads are unbounded; blending happens in [0, 1] image space; the 64x64
  blend uses the target down-sampled by nearest neighbour (``F.interpolate(target, scale_factor=0.25)``).

This module depends only on :mod:`hififace.nn.blocks` and the config; :class:`SFFXuehy` returns a plain 4-tuple
(I_r, I_low, M_r, M_low) that :class:`~hififace.models.generator.Generator` wraps.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HifiFaceConfig
from ..nn.blocks import LRELU_SLOPE, AdaINResBlock, ResBlock


class SFFXuehy(nn.Module):
    """Semantic Facial Fusion of xuehy/HiFiFace-pytorch (``SemanticFaceFusionModule`` + ``UpSamplingBlock``)."""

    def __init__(self, config: HifiFaceConfig):
        super().__init__()
        c = config.width(256)
        self.sigma = ResBlock(c, c)
        self.mask_low = nn.Conv2d(c, 1, 3, padding=1)
        self.fuse = nn.ModuleList([AdaINResBlock(c, c, config.id_dim), AdaINResBlock(c, c, config.id_dim)])
        self.to_low = nn.Conv2d(c, 3, 3, padding=1)
        self.up = nn.Sequential(ResBlock(c, c, "up"), ResBlock(c, c, "up"))
        self.to_rgb = nn.Conv2d(c, 3, 3, padding=1)
        self.mask_r = nn.Conv2d(c, 1, 3, padding=1)
        self.low_scale = config.low_size / config.image_size

    def forward(self, target: torch.Tensor, z_enc: torch.Tensor, z_dec: torch.Tensor,
                v_sid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        z_enc = self.sigma(z_enc)
        m_low = torch.sigmoid(self.mask_low(z_dec))
        z_fuse = m_low * z_dec + (1 - m_low) * z_enc
        for block in self.fuse:
            z_fuse = block(z_fuse, v_sid)
        # upstream's I_low head activates z_fuse in place: F_up below sees the activated tensor too
        z_fuse = F.leaky_relu(z_fuse, LRELU_SLOPE)
        i_low = self.to_low(z_fuse)
        i_low = m_low * i_low + (1 - m_low) * F.interpolate(target, scale_factor=self.low_scale, mode="nearest")
        # upstream's image head activates the features in place before the mask head reads them
        feat = F.leaky_relu(self.up(z_fuse), LRELU_SLOPE)
        i_r = self.to_rgb(feat)
        m_r = torch.sigmoid(self.mask_r(feat))
        i_r = m_r * i_r + (1 - m_r) * target
        return i_r, i_low, m_r, m_low
