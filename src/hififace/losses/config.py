"""Loss weights and options (:class:`LossConfig`): plain data, importable without torch."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..errors import ConfigError

ADV_MODES = ("hinge", "nonsaturating")


@dataclass
class LossConfig:
    """Weights of every term (paper/reference values by default) and loss options.

    Attributes:
        recon_size: side the images are resized to before ReconNet in the shape loss (the reference's loss uses 224
            while its generator feeds 256). ``None`` uses the model's own ReconNet input and reuses c_fuse from v_sid.
        adversarial: ``hinge`` (reference, multiscale) or ``nonsaturating`` (paper, with R1 weight ``r1``).
    """

    id: float = 5.0
    shape: float = 0.5
    adv: float = 1.0
    seg: float = 100.0
    rec: float = 20.0
    cyc: float = 1.0
    lpips: float = 5.0
    r1: float = 0.0
    recon_size: int | None = None
    adversarial: str = "hinge"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in ("recon_size", "adversarial"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
                raise ConfigError(f"losses.{f.name} must be a number >= 0, got {v!r}")
        if self.adversarial not in ADV_MODES:
            raise ConfigError(f"losses.adversarial must be one of {', '.join(ADV_MODES)}, got {self.adversarial!r}")
        if self.recon_size is not None and (isinstance(self.recon_size, bool) or not isinstance(self.recon_size, int)
                                            or not 64 <= self.recon_size <= 1024):
            raise ConfigError(f"losses.recon_size must be null or an integer in [64, 1024], got {self.recon_size!r}")

    @classmethod
    def for_variant(cls, variant: str, **overrides: Any) -> "LossConfig":
        """Reference: hinge, loss ReconNet at 224. Paper: non-saturating + R1 (weight 1, as StarGAN v2)."""
        base = dict(adversarial="hinge", recon_size=224) if variant == "reference" else dict(adversarial="nonsaturating", r1=1.0)
        return cls(**{**base, **overrides})
