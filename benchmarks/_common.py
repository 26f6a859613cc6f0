"""Shared bits of the benchmark scripts: timing, peak RSS, one JSON line per measurement."""
from __future__ import annotations

import json
import platform
import resource
import statistics
import sys
import time
from typing import Callable


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far.

    On Linux from ``VmHWM`` in /proc/self/status: ``ru_maxrss`` is inherited across fork and kept across exec, so
    a fresh child process would report its parent's peak when that is higher.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1, sync: Callable[[], None] | None = None) -> float:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def emit(bench: str, **fields) -> None:
    import torch

    record = {"bench": bench, **fields}
    record.setdefault("unit", "s")
    record.setdefault("peak_rss_mib", peak_rss_mib())
    record.setdefault("threads", torch.get_num_threads())
    print(json.dumps(record), flush=True)


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def native_bf16(device: str) -> bool:
    """Whether bf16 runs natively: always on CUDA; on CPU only with AVX512-BF16/AMX (oneDNN says so).

    Without it (AVX2-only CPUs) PyTorch emulates bf16 convolutions tens of times slower than fp32, so the
    bf16 cases are skipped there unless asked for explicitly.
    """
    import torch

    if device.startswith("cuda"):
        return True
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False
