"""Atomic, durable file writes: write to a temporary file in the same folder, flush it to disk, then rename.

A crash or an error never leaves a half-written output behind, and a file that has its final name holds all its
bytes (its data reach the disk before the rename, the rename reaches the disk before the call returns), so
code that trusts an existing file later (a resumed run, a cache, a checkpoint) never trusts an empty one.

Temporary names are short and hidden (``.hififace-<random><ext>``): they never exceed the file system's name
limit, whatever the length of the final name, and every writer's temporaries share one recognisable prefix.

A full disk, a quota or a read-only file system is one line naming the folder (:func:`storage_error`), with
nothing left behind.
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from ..errors import OutputError

#: Prefix of every temporary file or folder our writers create beside their outputs.
TMP_PREFIX = ".hififace-"
#: Longest extension kept on a temporary name (writers that pick a format from the extension need it; a longer
#: "extension" is no format anyone picks, and would make the temporary name long again).
_MAX_SUFFIX = 16


def temporary_suffix(path: Path, suffix: str | None = None) -> str:
    """The extension a temporary for ``path`` carries: ``suffix``, or ``path``'s own when it is short."""
    ext = path.suffix if suffix is None else suffix
    return ext if len(ext) <= _MAX_SUFFIX else ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None, durable: bool = True,
                prefix: str = TMP_PREFIX, sync_folder: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    ``suffix`` defaults to the target's suffix so that writers that pick a format from the extension work.
    ``durable``: the file's data are flushed to disk before the rename and the rename before returning (fsync of
    the file and of its folder); pass False only where a lost file is noticed and remade later. ``sync_folder=False``
    keeps the data sync but skips the folder's: a crash may then lose the new name (never leave it with missing
    data), for bulk writers that notice a missing file and remake it. ``prefix`` (which starts with
    :data:`TMP_PREFIX`) lets a writer recognise its own temporaries.
    An ``OSError`` that means "no room here" (full disk, quota, read-only file system) becomes an
    :class:`~hififace.errors.OutputError` naming the folder.
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=temporary_suffix(path, suffix), dir=folder)
    except OSError as err:
        _raise_storage(err, folder, path)
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if not _PRIVATE.get():  # mkstemp makes 0600 files: give the usual permissions, unless private_files()
            os.chmod(tmp_path, 0o666 & ~current_umask())
        if durable:
            fsync_path(tmp_path)
        os.replace(tmp_path, path)
        if durable and sync_folder:
            fsync_dir(folder)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(err, OSError):
            _raise_storage(err, folder, path)
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


def fsync_path(path: str | Path) -> None:
    """Flush a written file's data to disk (errors such as a full disk surface here, as they should)."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows commits only writable handles
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened or synced."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows, or a folder we may write but not read
        return
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.EBADF, errno.EACCES, errno.EPERM, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def storage_error(err: OSError, where: str | Path | None = None, name: str | Path | None = None) -> OutputError | None:
    """The one-line error for an ``OSError`` that means the output cannot be stored there (no space, quota,
    read-only file system, a file name too long), or None for any other error.

    ``where`` is the folder the output goes to (by default the folder of the file the error names); ``name`` the
    output's path (by default the file the error names)."""
    code = err.errno
    named = err.filename2 or err.filename  # os.replace(src, dst) names dst second
    if name is None and named:
        name = os.fsdecode(named)
    if where is None and name is not None:
        where = Path(name).parent
    if where is None:
        shown = "the output's file system"
    else:  # "." says nothing in a message: the working folder by name; a very long path shortened
        shown = _short(os.getcwd() if str(where) in ("", ".") else str(where), 300)
    if code == errno.ENOSPC:
        msg = f"no space left on {shown}: free some space there or choose another output location"
    elif code == getattr(errno, "EDQUOT", None):
        msg = f"disk quota exceeded on {shown}: free some space there or choose another output location"
    elif code == errno.EROFS:
        msg = f"{shown} is on a read-only file system: choose another output location"
    elif code == errno.ENAMETOOLONG:
        long = Path(name).name if name is not None else ""
        msg = (f"{_short(str(name or shown))}: file name too long for this file system ({len(os.fsencode(long))} "
               "bytes); choose a shorter output name")
    else:
        return None
    return OutputError(msg, folder=where)


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "..." + text[-limit // 2:]


def _raise_storage(err: OSError, folder: Path, path: Path) -> None:
    mapped = storage_error(err, folder, path)
    if mapped is not None:
        raise mapped from err


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
