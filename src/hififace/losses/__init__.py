"""Training losses of HifiFace: pure loss terms, the composite G/D objectives, and LPIPS-VGG."""
from .composite import LossConfig, LossNets, discriminator_loss, generator_loss
from .functional import (
    cycle_loss,
    hinge_d_loss,
    hinge_g_loss,
    identity_loss,
    lpips_loss,
    nonsaturating_d_loss,
    nonsaturating_g_loss,
    r1_penalty,
    reconstruction_loss,
    segmentation_loss,
    shape_loss,
)

__all__ = [
    "LossConfig", "LossNets", "generator_loss", "discriminator_loss",
    "identity_loss", "shape_loss", "segmentation_loss", "reconstruction_loss", "cycle_loss", "lpips_loss",
    "hinge_g_loss", "hinge_d_loss", "nonsaturating_g_loss", "nonsaturating_d_loss", "r1_penalty",
]
