"""Reading and writing tensors safely.

Our format is safetensors. Foreign ``.pth``/``.ckpt`` files are read only through :func:`load_legacy`
(``torch.load(weights_only=True)`` with inert stand-ins for Lightning's non-weight classes, see
:mod:`hififace.weights.legacy`), which executes nothing from the file.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Mapping

import torch

from ..errors import WeightsError
from ..utils.atomic import atomic_path
from .legacy import load_legacy  # noqa: F401 (re-exported: the loaders import it from here)

log = logging.getLogger(__name__)


def save_safetensors(tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write tensors atomically as safetensors (contiguous CPU copies)."""
    from safetensors.torch import save_file

    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)


_ST_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}
_MAX_HEADER = 100 * 2**20


def load_safetensors(path: str | Path, what: str = "weights") -> dict[str, torch.Tensor]:
    """Read a safetensors file straight into freshly allocated (64-byte aligned) tensors.

    Not through a memory map: tensors viewed from a mapped file sit at arbitrary 8-byte offsets, so oneDNN
    picks other convolution kernels than for freshly allocated weights (outputs then differ from the reference,
    whose weights come from ``torch.load``, in the last bits), and the mapped pages count as resident memory on
    top of the copies. Reading each tensor into its own allocation keeps the peak at the model's size.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: file not found ({what})")
    try:
        with open(path, "rb") as f:
            size = path.stat().st_size
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("file shorter than a safetensors header")
            n = int.from_bytes(head, "little")
            if n > min(_MAX_HEADER, size - 8):
                raise ValueError("header length out of range")
            header = json.loads(f.read(n))
            base = 8 + n
            out: dict[str, torch.Tensor] = {}
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                dtype = _ST_DTYPES[info["dtype"]]
                start, end = info["data_offsets"]
                if base + end > size or end < start:
                    raise ValueError(f"tensor {key} extends past the end of the file")
                buf = torch.empty(end - start, dtype=torch.uint8)
                f.seek(base + start)
                if f.readinto(memoryview(buf.numpy())) != end - start:
                    raise ValueError(f"tensor {key} is cut short")
                out[key] = buf.view(dtype).reshape(info["shape"])
            return out
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path}: cannot read {what} ({str(err)[:200]}); the file may be truncated, re-create it") from None


def tensors_only(state: Mapping, source: str | Path) -> "dict[str, torch.Tensor]":
    """``state`` as a dict of tensors; a non-string key or a non-tensor value stops the load, naming it."""
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{source}: state_dict entries that are not tensors ({describe_keys(bad, 3)}); "
                           "this is not a weight file hififace can convert")
    return dict(state)


def check_finite(tensors: Mapping[str, torch.Tensor], source: str | Path) -> None:
    """Refuse weights that hold NaN or infinite values, naming the first offending keys."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise WeightsError(f"{source}: non-finite values (NaN/inf) in {', '.join(bad[:3])}{more}; the file is damaged")


def describe_keys(keys: list[str], limit: int = 5) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def check_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path,
                optional: tuple[str, ...] = (), hint: str = "") -> None:
    """Require ``state`` to match ``module`` key for key and shape for shape, with finite values.

    Keys ending in one of ``optional`` may be absent from ``state``. Anything else missing, unexpected or of
    another shape stops the load with one error naming the keys (``hint`` is appended to it).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state and not (optional and k.endswith(optional))]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {describe_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {describe_keys(unexpected)}")
        raise WeightsError(f"{source}: does not match {type(module).__name__} ({'; '.join(parts)}){hint}")
    bad = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if k in state and state[k].shape != v.shape]
    if bad:
        raise WeightsError(f"{source}: shape mismatch for {len(bad)} key(s): {'; '.join(bad[:3])}{hint}")
    check_finite(state, source)


def load_into(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str | Path,
              optional: tuple[str, ...] = ("num_batches_tracked",)) -> None:
    """Copy ``state`` into ``module`` after :func:`check_state` (old files may lack BatchNorm counters)."""
    check_state(module, state, source, optional)
    own = module.state_dict()
    with torch.no_grad():
        for k, v in own.items():
            if k in state:
                v.copy_(state[k])
