"""Shape-aware identity: 3DMM coefficients (Deep3DFaceRecon ReconNet) + ArcFace embedding -> v_sid (769-d).

``v_sid = cat(c_source[:, :80], c_target[:, 80:], v_id)``: the source's 3D face shape and the target's
expression, texture, pose, lighting and translation, then the source's L2-normalised ArcFace embedding
(3DMM part first, as in the reference). The frozen networks run without gradients here; losses that need
gradients through them call :meth:`ShapeAwareIdentityExtractor.embed` / :meth:`coefficients` directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import N_ID_COEFFS, HifiFaceConfig

INTERP_MODES = ("identity", "3d", "all")


@dataclass
class Identity:
    """A source face encoded once: reusable for any number of targets (``model.swap(identity, target)``).

    Attributes:
        c_id: N x 80 3DMM identity (shape) coefficients of the source.
        v_id: N x 512 L2-normalised ArcFace embedding of the source.
    """

    c_id: torch.Tensor
    v_id: torch.Tensor

    def __len__(self) -> int:
        return self.v_id.shape[0]

    def __getitem__(self, index) -> "Identity":
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Identity(self.c_id[index], self.v_id[index])

    def to(self, *args, **kwargs) -> "Identity":
        return Identity(self.c_id.to(*args, **kwargs), self.v_id.to(*args, **kwargs))

    def expand(self, n: int) -> "Identity":
        """Repeat a single identity for a batch of ``n`` targets."""
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"an identity batch of {len(self)} does not fit {n} targets")
        return Identity(self.c_id.expand(n, -1), self.v_id.expand(n, -1))

    def mean(self, weights: torch.Tensor | list[float] | None = None) -> "Identity":
        """One identity from a batch of several photos of the same person: the mean of the 3DMM shape coefficients
        and the re-normalised mean of the ArcFace embeddings (optionally weighted, e.g. by photo counts or by pose
        closeness, :func:`hififace.face.pose.pose_weights`; weights may be 0, not all of them)."""
        w = torch.ones(len(self)) if weights is None else torch.as_tensor(weights, dtype=torch.float32).reshape(-1)
        if w.numel() != len(self) or not bool(torch.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
            raise ValueError(f"need {len(self)} weights >= 0 with a positive sum, got {w.tolist()}")
        w = (w / w.sum()).to(self.v_id.device)[:, None]
        c_id = (w.to(self.c_id.dtype) * self.c_id).sum(0, keepdim=True)
        v_id = F.normalize((w.to(self.v_id.dtype) * self.v_id).sum(0, keepdim=True), dim=-1, p=2)
        return Identity(c_id, v_id)

    @staticmethod
    def cat(identities: "list[Identity]") -> "Identity":
        return Identity(torch.cat([i.c_id for i in identities]), torch.cat([i.v_id for i in identities]))

    def mix(self, other: "Identity", rate: float, mode: str = "all") -> "Identity":
        """Interpolate towards ``self`` by ``rate`` (1 = self, 0 = other), as the reference's ``interp_all``.

        ``identity`` mixes the ArcFace embeddings (renormalised), ``3d`` the 3DMM shape, ``all`` both.
        """
        if mode not in INTERP_MODES:
            raise ValueError(f"interpolation mode must be one of {', '.join(INTERP_MODES)}, got {mode!r}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"interpolation rate must be in [0, 1], got {rate}")
        c_id, v_id = self.c_id, self.v_id
        if mode in ("3d", "all"):
            c_id = rate * self.c_id + (1 - rate) * other.c_id
        if mode in ("identity", "all"):
            v_id = F.normalize(rate * self.v_id + (1 - rate) * other.v_id, dim=-1, p=2)
        return Identity(c_id, v_id)

    def toward(self, target: "Identity", identity: float = 1.0, shape: float = 1.0) -> "Identity":
        """This (source) identity moved from the target face's own identity toward the source's, each part apart:
        HifiFace's identity strength (``identity``, the ArcFace part) and 3D-shape strength (``shape``, the 80 3DMM
        shape coefficients), both in [0, 1].

        Mixed as :meth:`mix` mixes (``identity * source + (1 - identity) * target``): the 3DMM shape linearly; the
        ArcFace part linearly and then **re-normalised** to unit length (the model was trained on unit vectors; its
        angle to the source then shrinks monotonically, not linearly, as ``identity`` grows). A strength of 1 returns
        the source's part and 0 the target's part as they are, unmixed and bit for bit: ``toward(t, 1, 1)`` swaps
        exactly as the source identity does (today's output), ``toward(t, 0, 0)`` is ``t``, the target's
        self-reconstruction (``model.swap(t, target)``).

        ``target`` has one row per target face (``model.identity(target_crops)``); the result has as many rows as
        the larger of the two (a single source serves a batch of targets).
        """
        for name, value in (("identity", identity), ("shape", shape)):
            if not 0.0 <= float(value) <= 1.0:  # also refuses NaN
                raise ValueError(f"{name} strength must be in [0, 1], got {value}")
        n = max(len(self), len(target))
        src, tgt = self.expand(n), target.expand(n)
        a, b = float(identity), float(shape)
        c_id = src.c_id if b == 1.0 else tgt.c_id if b == 0.0 else b * src.c_id + (1 - b) * tgt.c_id.to(src.c_id)
        if a == 1.0:
            v_id = src.v_id
        elif a == 0.0:
            v_id = tgt.v_id
        else:
            v_id = F.normalize(a * src.v_id + (1 - a) * tgt.v_id.to(src.v_id), dim=-1, p=2)
        return Identity(c_id, v_id)


class ShapeAwareIdentityExtractor(nn.Module):
    """Holds the frozen ArcFace and ReconNet (built once, shared with the losses) and builds v_sid."""

    def __init__(self, config: HifiFaceConfig, arcface: nn.Module, recon: nn.Module):
        super().__init__()
        self.config = config
        self.arcface = arcface
        self.recon = recon

    def _recon_input(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.recon_input_size
        if size is not None and x.shape[-1] != size:
            # antialiased resizing has no bfloat16 kernel on CPU: resize in float32
            x = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True).to(x.dtype)
        return x

    def _arcface_input(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.arcface_input_size
        # bilinear (reference) or bicubic (xuehy), align_corners=False, no antialias: as each implementation does
        return F.interpolate((x - 0.5) / 0.5, size=(size, size), mode=self.config.arcface_resize, align_corners=False)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """257 Deep3DFaceRecon coefficients of images in [0, 1] (differentiable w.r.t. ``x``)."""
        return self.recon(self._recon_input(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """L2-normalised ArcFace embedding of images in [0, 1] (differentiable w.r.t. ``x``).

        As the reference: ``(x - 0.5) / 0.5`` then a bilinear resize to 112 (align_corners=False, no antialias);
        the xuehy variant resizes bicubic instead, as its own extractor does.
        """
        return F.normalize(self.arcface(self._arcface_input(x)), dim=-1, p=2)

    def coefficients_many(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """:meth:`coefficients` of several image batches (any sizes) in one ReconNet call: fewer, bigger calls are
        faster (the nets are frozen and in eval mode, so batching changes nothing but float rounding)."""
        c = self.recon(torch.cat([self._recon_input(x) for x in xs]))
        return tuple(c.split([x.shape[0] for x in xs]))

    def embed_many(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """:meth:`embed` of several image batches (any sizes) in one ArcFace call."""
        v = F.normalize(self.arcface(torch.cat([self._arcface_input(x) for x in xs])), dim=-1, p=2)
        return tuple(v.split([x.shape[0] for x in xs]))

    @torch.no_grad()
    def encode_source(self, source: torch.Tensor) -> Identity:
        return Identity(self.coefficients(source)[:, :N_ID_COEFFS].float(), self.embed(source).float())

    @staticmethod
    def fuse(identity: Identity, c_target: torch.Tensor) -> torch.Tensor:
        """v_sid from a source identity and the target's coefficients (3DMM part first, then ArcFace)."""
        identity = identity.expand(c_target.shape[0])
        return torch.cat([identity.c_id.to(c_target.dtype), c_target[:, N_ID_COEFFS:], identity.v_id.to(c_target.dtype)], dim=1)

    @torch.no_grad()
    def forward(self, source: torch.Tensor | Identity, target: torch.Tensor) -> torch.Tensor:
        identity = source if isinstance(source, Identity) else self.encode_source(source)
        return self.fuse(identity, self.coefficients(target).float())
