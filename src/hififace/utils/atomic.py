"""Atomic file writes: write to a temporary file in the same folder, then rename.

A crash or an error never leaves a half-written output behind.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    ``suffix`` defaults to the target's suffix so that writers that pick a format from the extension work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not _PRIVATE.get():  # mkstemp makes 0600 files: give the usual permissions, unless private_files()
            os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


#: Set by :func:`private_files` in the current thread (or task): files written stay 0600.
_PRIVATE: contextvars.ContextVar[bool] = contextvars.ContextVar("hififace_private_files", default=False)
_UMASK_LOCK = threading.Lock()


@contextlib.contextmanager
def private_files() -> Iterator[None]:
    """Within the block (in this thread only), :func:`atomic_path` leaves its files 0600, readable by this user
    alone, as they were created: no window where another user can read them, and the process umask untouched (the
    web app writes its results from worker threads)."""
    token = _PRIVATE.set(True)
    try:
        yield
    finally:
        _PRIVATE.reset(token)


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux: /proc/self/status). Setting it
    to read it back (the only portable way) briefly gives files other threads create at that moment umask 0."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)  # the short window is private rather than world-writable
        os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def unwritable_reason(folder: str | Path) -> str | None:
    """Why files cannot be written into ``folder`` (created when missing), or None when they can.

    Checked on the folder or its nearest existing parent, before any work and without creating anything: a file in
    the way, or no write permission there (a read-only place: a read-only mount refuses even root)."""
    p = Path(folder).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file, not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    return None
