"""Training losses of HifiFace: pure loss terms, the composite G/D objectives, and LPIPS-VGG.

Names are imported lazily so that :class:`LossConfig` (plain data) can be used without importing torch.
"""
from __future__ import annotations

from importlib import import_module

_FROM = {
    "LossConfig": ".config", "LossNets": ".composite", "generator_loss": ".composite", "discriminator_loss": ".composite",
    **{name: ".functional" for name in (
        "cycle_loss", "hinge_d_loss", "hinge_g_loss", "identity_loss", "lpips_loss", "nonsaturating_d_loss",
        "nonsaturating_g_loss", "r1_penalty", "reconstruction_loss", "segmentation_loss", "shape_loss")},
}
__all__ = list(_FROM)


def __getattr__(name: str):
    if name in _FROM:
        return getattr(import_module(_FROM[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
