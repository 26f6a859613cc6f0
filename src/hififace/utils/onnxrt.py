"""onnxruntime execution providers for a device, in one place (the ONNX model engine, ONNX face restorers)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import HifiFaceError
from .optional import require

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"


def device_index(device: str | None) -> int:
    """The GPU number of ``cuda``/``cuda:N`` (0 for ``auto``/``cpu``); anything else is one error line."""
    name = (device or "auto").strip().lower()
    if name in ("auto", "cpu"):
        return 0
    if name == "cuda" or name.startswith("cuda:"):
        suffix = name.partition(":")[2]
        if suffix and not suffix.isdigit():
            raise HifiFaceError(f"unknown device {device!r}: use cpu, cuda, cuda:N or auto")
        return int(suffix or 0)
    raise HifiFaceError(f"unsupported device {device!r} for the onnx engine: use cpu, cuda, cuda:N or auto")


def onnx_providers(device: str | None = "auto", tensorrt_cache: Path | None = None, trt_fp16: bool = False) -> list[Any]:
    """onnxruntime providers for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``), best first, CPU last; TensorRT
    engines (minutes to build) are kept in ``tensorrt_cache`` when given, in half precision with ``trt_fp16``."""
    ort = require("onnxruntime", "--engine onnx")
    available = ort.get_available_providers()
    name = (device or "auto").strip().lower()
    index = device_index(device)
    if name == "cpu":
        return [CPU]
    if name != "auto" and CUDA not in available:
        raise HifiFaceError(f"--device {name}: this onnxruntime has no CUDA provider (it has {', '.join(available)}); "
                            "pip install onnxruntime-gpu, or use --device cpu")
    providers: list[Any] = []
    if TENSORRT in available:
        options: dict[str, Any] = {"device_id": index, "trt_fp16_enable": bool(trt_fp16)}
        if tensorrt_cache is not None:
            options.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(tensorrt_cache))
        providers.append((TENSORRT, options))
    if CUDA in available:
        providers.append((CUDA, {"device_id": index}))
    return providers + [CPU]
