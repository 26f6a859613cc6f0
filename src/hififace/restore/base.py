"""The interface every face-restoration engine offers, and the checks they share."""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from ..config import unit_interval
from ..errors import InputImageError


@runtime_checkable
class FaceRestorer(Protocol):
    """A face restorer: aligned crops in, restored crops out.

    Attributes:
        name: a short label for outputs and logs (e.g. ``GFPGAN (GFPGANv1.4.pth)``, ``codeformer.onnx``).
        size: side of the square crops it takes and returns.
        template: the :mod:`hififace.face.align` template the crops must be aligned to at ``size``
            (``ffhq5`` for GFPGAN, CodeFormer, RestoreFormer and GPEN-BFR 512+; ``arcface`` for GPEN-BFR 256).
        is_random: True when the weights are random (tests, demos): outputs must then be labelled so.
    """

    name: str
    size: int
    template: str
    is_random: bool

    def restore(self, crops: torch.Tensor) -> torch.Tensor:
        """``crops``: N x 3 x size x size RGB in [0, 1] (any float dtype, any device) -> the same shape, float32 in
        [0, 1], on the device of ``crops``."""
        ...


def check_crops(crops: object, size: int, name: str) -> torch.Tensor:
    """``crops`` as a float tensor N x 3 x size x size, or one :class:`InputImageError` line saying what is wrong."""
    if not isinstance(crops, torch.Tensor):
        raise InputImageError(f"{name}: restore() takes a tensor N x 3 x {size} x {size} in [0, 1], got a "
                              f"{type(crops).__name__}")
    if crops.ndim != 4 or crops.shape[1] != 3 or crops.shape[2] != size or crops.shape[3] != size:
        raise InputImageError(f"{name}: expects aligned crops N x 3 x {size} x {size} in [0, 1], got "
                              f"{' x '.join(map(str, crops.shape))}; align the faces at {size} px first")
    if not crops.is_floating_point():
        raise InputImageError(f"{name}: expects float crops in [0, 1], got {crops.dtype} (divide uint8 images by 255)")
    return crops


def check_fidelity(value: float) -> float:
    """CodeFormer's fidelity weight: a number in [0, 1] (0: strongest restoration, 1: closest to the input)."""
    return unit_interval(value, "fidelity", "use a number between 0 and 1")
