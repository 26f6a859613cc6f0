"""What the photo and video pipelines need from a face-swap model, behind one small interface.

The pipelines (:mod:`hififace.inference.pipeline`, :mod:`hififace.inference.video`) never call the model directly:
they hold an engine with

- ``image_size`` and ``align``: the crop the model expects and the template it was trained with;
- ``device``: where crop batches should live;
- ``identity(crops) -> Identity``: one identity per aligned crop (N x 3 x S x S, float in [0, 1]);
- ``swap(identity, crops) -> (i_r, m_r)``: the swapped crops (N x 3 x S x S) and the model's blending masks
  (N x 1 x S x S), both float in [0, 1] on ``device``;
- ``fingerprint()``: a short string naming the identity networks' weights, stored in identity files;
- optionally ``analyse(crops) -> (v_id N x 512, coeffs N x 257)``: what the identity networks see (head pose,
  the target's own identity, the quality report); the options that need it are refused without it.

:class:`ModelEngine` wraps anything with :class:`~hififace.HifiFace`'s interface: the PyTorch model and the
onnxruntime one (:class:`~hififace.export.engine.OnnxHifiFace`). Another runtime provides the same members.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..models.identity import Identity


class SwapEngine(Protocol):
    image_size: int
    align: str
    device: Any

    def identity(self, crops: "torch.Tensor") -> "Identity": ...

    def swap(self, identity: "Identity", crops: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor]": ...

    def fingerprint(self) -> str: ...


class ModelEngine:
    """:class:`SwapEngine` over a model with :class:`~hififace.HifiFace`'s interface: the PyTorch model (any device and
    dtype it was loaded with) or the onnxruntime one (:class:`~hififace.export.engine.OnnxHifiFace`)."""

    def __init__(self, model: Any):
        self.model = model.eval() if hasattr(model, "eval") else model
        self.image_size = int(model.config.image_size)
        self.align = str(model.config.align)

    @property
    def device(self):
        return self.model.device

    @property
    def config(self):
        return self.model.config

    def identity(self, crops: "torch.Tensor") -> "Identity":
        return self.model.identity(crops)

    def swap(self, identity: "Identity", crops: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor]":
        out = self.model.swap(identity, crops, return_all=True)
        return out.i_r.clamp(0.0, 1.0), out.m_r.clamp(0.0, 1.0)

    def analyse(self, crops: "torch.Tensor") -> "tuple[torch.Tensor, torch.Tensor]":
        """(ArcFace embedding N x 512, 3DMM coefficients N x 257) of aligned crops (optional member of an engine:
        pose-matched sources, identity/shape strength and the quality report need it)."""
        return self.model.analyse(crops)

    @property
    def is_random(self) -> bool:
        return bool(getattr(self.model, "is_random", False))

    def fingerprint(self) -> str:
        return self.model.identity_fingerprint()


def as_engine(model_or_engine: Any) -> SwapEngine:
    """A :class:`SwapEngine` from a model with HifiFace's interface (wrapped) or an engine (returned as it is)."""
    if all(hasattr(model_or_engine, m) for m in ("config", "prepare_target", "identity_fingerprint")):
        return ModelEngine(model_or_engine)  # HifiFace or OnnxHifiFace
    missing = [m for m in ("image_size", "align", "identity", "swap", "fingerprint") if not hasattr(model_or_engine, m)]
    if missing:
        raise TypeError(f"{type(model_or_engine).__name__} is neither a HifiFace model nor a swap engine "
                        f"(missing {', '.join(missing)})")
    return model_or_engine
