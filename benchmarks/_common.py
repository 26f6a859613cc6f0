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
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
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
