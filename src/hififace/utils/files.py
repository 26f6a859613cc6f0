"""Opening user files: regular files only.

A named pipe (FIFO) put where a weight file, config, identity file, image or video is expected makes a plain
``open()`` wait forever for a writer; a device such as ``/dev/zero`` never ends. Every reader of a user file
first goes through :func:`require_regular` (when a library opens the path itself) or :func:`open_regular` (when we
read it), which refuse anything but a regular file in one line.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

from ..errors import HifiFaceError

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _refusal(path: Path, mode: int, what: str, error: type[HifiFaceError]) -> HifiFaceError:
    return error(f"{path}: is {_kind(mode)}, not a regular file; give the {what} file itself")


def require_regular(path: str | Path, what: str = "input", error: type[HifiFaceError] = HifiFaceError) -> None:
    """Refuse ``path`` when it exists and is neither a regular file nor a folder (callers word those cases).

    For paths a library opens itself (PIL, torch, ffmpeg). Symbolic links are followed, as ``open`` would.
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing or unreadable: the caller's own open says so in its words
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise _refusal(Path(path), mode, what, error)


def open_regular(path: str | Path, what: str = "input", error: type[HifiFaceError] = HifiFaceError) -> BinaryIO:
    """``open(path, "rb")`` that never blocks on a FIFO: opened non-blocking, refused unless fstat says it is a
    regular file (no window between the check and the open). ``OSError`` (missing, permission) propagates."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(21, "Is a directory", str(path))
            raise _refusal(Path(path), mode, what, error)
        if flags & getattr(os, "O_NONBLOCK", 0):  # no effect on regular files, but leave the usual flags
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def fingerprint(path: Path, samples: int = 64, chunk: int = 1 << 16) -> str:
    """A cheap content fingerprint of a weight file: its size and 64 evenly spaced 64 KiB chunks (all of a small
    file). Retraining or re-converting changes essentially every value, so this tells a stale export apart
    without reading hundreds of megabytes; copying the folder (new mtimes) does not change it."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= samples * chunk:
            digest.update(f.read())
        else:
            for i in range(samples):
                f.seek(i * (size - chunk) // (samples - 1))
                digest.update(f.read(chunk))
    return digest.hexdigest()[:16]
