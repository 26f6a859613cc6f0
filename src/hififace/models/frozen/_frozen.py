"""Frozen networks: always in eval mode, never requiring grad, built once and shared."""
from __future__ import annotations

from torch import nn


class FrozenModule(nn.Module):
    """Base class of the frozen networks (ArcFace, ReconNet, LPIPS VGG, parsers).

    ``train()`` is a no-op that keeps the module in eval mode, so calling ``.train()`` on a parent
    (a generator, a LightningModule) never switches BatchNorm to batch statistics. Call
    :meth:`freeze` at the end of ``__init__`` of every subclass.
    """

    def freeze(self) -> "FrozenModule":
        self.requires_grad_(False)
        super().train(False)
        return self

    def train(self, mode: bool = True) -> "FrozenModule":  # noqa: D102 - see class docstring
        return super().train(False)
