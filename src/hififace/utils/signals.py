"""SIGTERM handled like Ctrl-C: how services and job schedulers stop a process (``kill``, ``systemctl stop``,
``docker stop``) must clean up as an interrupted run does.

Python's default for SIGTERM ends the process at once: no ``finally`` block runs, so temporary files stay behind.
:func:`sigterm_as_interrupt` makes SIGTERM raise :class:`Terminated`, a :class:`KeyboardInterrupt`, in the main
thread, so every clean-up written for Ctrl-C runs for it as well (the ``hififace`` command installs it around
every command).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM; a :class:`KeyboardInterrupt`, so Ctrl-C's clean-up runs for it."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once: a second SIGTERM during the
    clean-up is ignored, so the clean-up finishes). Outside the main thread, or where signals cannot be set, the
    block runs unchanged. The previous handler is put back afterwards."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        yield
        return

    def handler(signum, frame) -> None:
        signal.signal(signal.SIGTERM, lambda *_: None)  # already stopping: let the clean-up finish
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):  # pragma: no cover - an embedding interpreter without signal support
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
