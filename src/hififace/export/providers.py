"""onnxruntime execution providers by short name, in the order a user prefers them, with their options.

``--provider tensorrt,cuda,cpu`` names providers in order of preference (:func:`parse_providers`);
:func:`provider_list` turns the names into what ``onnxruntime.InferenceSession(providers=...)`` takes, with the
options each needs (TensorRT: fp16 and an engine cache folder; CUDA, TensorRT and DirectML: the device id), and
says which of them this onnxruntime does not offer. No onnxruntime import here (the command line's parsers read
the names), and nothing from torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import HifiFaceError
from ..utils.onnxrt import CPU, CUDA, TENSORRT
from ..utils.text import printable

#: Short name (``--provider``) -> onnxruntime's provider name.
PROVIDERS: dict[str, str] = {
    "tensorrt": TENSORRT,
    "cuda": CUDA,
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "directml": "DmlExecutionProvider",
    "cpu": CPU,
}
#: Which onnxruntime package brings a provider (what a warning about a missing one suggests).
PACKAGES: dict[str, str] = {
    "tensorrt": "onnxruntime-gpu and NVIDIA's TensorRT libraries",
    "cuda": "onnxruntime-gpu (and a CUDA driver)",
    "rocm": "onnxruntime-rocm",
    "migraphx": "onnxruntime-migraphx",
    "coreml": "onnxruntime on macOS",
    "openvino": "onnxruntime-openvino",
    "directml": "onnxruntime-directml (Windows)",
    "cpu": "onnxruntime",
}
#: Providers that run on a numbered device (``--device cuda:N`` gives the number).
_DEVICE_ID = ("tensorrt", "cuda", "rocm", "migraphx", "directml")


@dataclass(frozen=True)
class ProviderOptions:
    """Options of the providers that have some: TensorRT's fp16 and engine cache folder (engines take minutes to
    build: they are kept there), the device id of the GPU providers."""

    device_id: int = 0
    trt_fp16: bool = False
    trt_cache: Path | None = None


def short_name(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda`` (another provider: its name without ``ExecutionProvider``, lower case)."""
    return next((k for k, v in PROVIDERS.items() if v == provider), provider.removesuffix("ExecutionProvider").lower())


def parse_providers(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"cuda,tensorrt,cpu"`` (or a list of names) -> the short names in order, duplicates dropped; an unknown name
    is one :class:`HifiFaceError` listing the known ones."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        name = str(item).strip().lower()
        if not name:
            continue
        if name not in PROVIDERS:
            raise HifiFaceError(f"--provider {printable(name, 40)}: unknown execution provider; choose from "
                                f"{', '.join(PROVIDERS)} (a comma-separated list, in order of preference)")
        if name not in names:
            names.append(name)
    if not names:
        raise HifiFaceError(f"--provider: give one or more of {', '.join(PROVIDERS)}, comma-separated")
    return tuple(names)


def provider_list(names: Sequence[str], available: Sequence[str],
                  options: ProviderOptions = ProviderOptions()) -> tuple[list[Any], list[str]]:
    """The providers of ``names`` that ``available`` holds, in order and with their options, the CPU always last
    (onnxruntime's own fallback); and the names that are missing."""
    out: list[Any] = []
    missing: list[str] = []
    for name in names:
        full = PROVIDERS[name]
        if full not in available:
            missing.append(name)
            continue
        if name == "cpu":
            continue  # last, below
        opts: dict[str, Any] = {}
        if name in _DEVICE_ID:
            opts["device_id"] = int(options.device_id)
        if name == "tensorrt":
            opts["trt_fp16_enable"] = bool(options.trt_fp16)
            if options.trt_cache is not None:
                opts["trt_engine_cache_enable"] = True
                opts["trt_engine_cache_path"] = str(options.trt_cache)
        out.append((full, opts) if opts else full)
    return out + [CPU], missing


def missing_line(missing: Sequence[str], available: Sequence[str], used: Sequence[Any]) -> str:
    """The one warning line for requested providers this onnxruntime lacks: what was missing, what it has, where the
    graphs run instead and what to install."""
    has = ", ".join(short_name(p) for p in available)
    first = used[0][0] if isinstance(used[0], tuple) else used[0]
    install = "; ".join(f"{n}: {PACKAGES[n]}" for n in missing)
    return (f"onnxruntime has no {', '.join(missing)} provider here (it offers {has}); running on "
            f"{short_name(first)} instead ({install})")
