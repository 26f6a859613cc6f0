"""In-memory image kinds accepted by the Python API, and the way back.

Accepted: float tensors in [0, 1] (CHW or NCHW), PIL images, numpy uint8 H x W x 3 RGB arrays, or lists of
those. Outputs come back in the kind that went in (uint8 array in, uint8 array out). Conversions to 8 bits
clamp to [0, 1] and truncate ``x * 255`` as the reference's ``ToPILImage`` does.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputImageError
from .images import to_rgb

log = logging.getLogger(__name__)


@dataclass
class Kind:
    """How a batch came in, so results can be given back the same way."""

    name: str  # "tensor3", "tensor4", "pil", "numpy", "list"
    device: torch.device | None = None
    dtype: torch.dtype | None = None
    items: list["Kind"] | None = None


def _from_numpy(a: np.ndarray) -> torch.Tensor:
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise InputImageError(f"numpy image of shape {a.shape}: expected H x W x 3 RGB")
    a = a[:, :, :3]
    if not a.flags.writeable:  # e.g. np.asarray(PIL image): torch warns on read-only memory, so copy
        a = a.copy()
    if a.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float().div_(255.0)
    if a.dtype == np.uint16:
        return torch.from_numpy(a.astype(np.float32) / 65535.0).permute(2, 0, 1)
    if np.issubdtype(a.dtype, np.floating):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)
    raise InputImageError(f"numpy image of dtype {a.dtype}: expected uint8 (or float in [0, 1])")


def _one(x: Any) -> tuple[torch.Tensor, Kind]:
    if isinstance(x, torch.Tensor):
        if x.ndim == 3:
            return x.unsqueeze(0), Kind("tensor3", x.device, x.dtype)
        if x.ndim == 4:
            return x, Kind("tensor4", x.device, x.dtype)
        raise InputImageError(f"tensor of shape {tuple(x.shape)}: expected C x H x W or N x C x H x W")
    if isinstance(x, np.ndarray):
        return _from_numpy(x).unsqueeze(0), Kind("numpy")
    if isinstance(x, Image.Image):
        return _from_numpy(to_rgb(x)).unsqueeze(0), Kind("pil")
    raise InputImageError(f"unsupported image type {type(x).__name__}: use a tensor, a PIL image or a uint8 array")


def as_batch(images: Any, size: int) -> tuple[torch.Tensor, Kind]:
    """Stack ``images`` into an N x 3 x size x size float tensor in [0, 1]; return it with its :class:`Kind`.

    Images of another size are resized (bilinear, antialiased) with a warning.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputImageError("empty list of images")
        parts = [_one(x) for x in images]
        batch = torch.cat([_fit(t, size) for t, _ in parts], dim=0)
        return batch, Kind("list", items=[k for _, k in parts])
    t, kind = _one(images)
    return _fit(t, size), kind


def _fit(t: torch.Tensor, size: int) -> torch.Tensor:
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    if t.shape[1] != 3:
        raise InputImageError(f"image with {t.shape[1]} channels: expected 3 (RGB)")
    t = t.float()
    if tuple(t.shape[-2:]) != (size, size):
        log.warning("input of %dx%d resized to the model size %dx%d", t.shape[-1], t.shape[-2], size, size)
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """C x H x W float in [0, 1] -> H x W x 3 uint8, clamped and truncated like the reference's ToPILImage."""
    return (t.detach().float().clamp(0, 1).mul(255).to(torch.uint8)).permute(1, 2, 0).cpu().numpy()


def restore(batch: torch.Tensor, kind: Kind) -> Any:
    """Give results back in the kind the inputs came in."""
    if kind.name == "list":
        assert kind.items is not None
        return [restore(batch[i : i + 1], k) for i, k in enumerate(kind.items)]
    if kind.name in ("tensor3", "tensor4"):
        out = batch.to(kind.device if kind.device is not None else batch.device)
        if kind.dtype is not None and kind.dtype.is_floating_point:
            out = out.to(kind.dtype)
        return out[0] if kind.name == "tensor3" else out
    arrays = [to_uint8(b) for b in batch]
    if kind.name == "numpy":
        return arrays[0] if len(arrays) == 1 else np.stack(arrays)
    return Image.fromarray(arrays[0]) if len(arrays) == 1 else [Image.fromarray(a) for a in arrays]
