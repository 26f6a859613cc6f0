"""Process memory helpers."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # glibc only (musl has none)
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Give the pages of freed heap blocks back to the OS (glibc ``malloc_trim(0)``); False where unavailable.

    PyTorch's CPU tensors come from malloc. Blocks freed in the middle of the heap stay resident until they are
    reused, so a training step's peak resident memory is its live peak plus the holes that earlier allocations left.
    Trimming at the point just before the step's peak keeps those holes out of it, at the price of re-faulting the
    pages that are reused afterwards.
    """
    fn = _malloc_trim()
    if fn is None:
        return False
    fn(0)
    return True
