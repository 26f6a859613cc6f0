"""On-disk caches of per-image results (face landmarks, identity embeddings, 3DMM coefficients, Inception
features), so re-runs and interrupted runs do not recompute them.

Images are keyed by the SHA-1 of their file bytes (a renamed or copied file hits the cache; an edited one does
not). Each cache is a folder ``CACHE/<namespace>/`` named after the model, its weight file and the face mode;
entries are appended as small ``chunk-*.npz`` files (keys + float32 rows), each written atomically, so a run
killed at any moment loses at most the entries not flushed yet and never corrupts the cache.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path

log = logging.getLogger(__name__)


def file_hash(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()[:20]


def file_fingerprint(path: str | Path) -> str:
    """Short id of a weight file from its name, size and modification time (cheap; no full read)."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha1(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


class FeatureCache:
    """``key -> float vector`` for one namespace; ``root=None`` keeps everything in memory only."""

    def __init__(self, root: str | Path | None, namespace: str, flush_every: int = 256):
        self.folder = None if root is None else Path(root) / namespace
        self.flush_every = flush_every
        self._data: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        if self.folder is not None and self.folder.is_dir():
            for chunk in sorted(self.folder.glob("chunk-*.npz")):
                try:
                    with np.load(chunk, allow_pickle=False) as z:
                        self._data.update(zip(z["keys"].tolist(), z["values"]))
                except (OSError, ValueError, KeyError) as err:
                    log.warning("%s: unreadable cache chunk ignored (%s)", chunk, err)
            if self._data:
                log.debug("%s: %d cached entries", self.folder, len(self._data))

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> np.ndarray | None:
        return self._data.get(key)

    def put(self, key: str, value: np.ndarray) -> np.ndarray:
        """Store ``value`` as float32 and return the stored vector: use that one, so that a first run and a run
        from the cache compute with the same numbers."""
        v = np.asarray(value, dtype=np.float32).reshape(-1)
        self._data[key] = v
        self._pending[key] = v
        if len(self._pending) >= self.flush_every:
            self.flush()
        return v

    def flush(self) -> None:
        if self.folder is None or not self._pending:
            self._pending.clear()
            return
        keys = list(self._pending)
        values = np.stack([self._pending[k] for k in keys])  # one namespace, one vector size
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"chunk-{time.time_ns():020d}-{os.getpid()}.npz"
        with atomic_path(self.folder / name, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, keys=np.array(keys), values=values)
        self._pending.clear()
