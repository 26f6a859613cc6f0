"""Logging set-up for the CLI: our messages at INFO, library chatter only with --verbose.

:func:`cli_logging` is what ``hififace`` uses: it sets logging up for one command and puts everything back
afterwards (root handlers and level, logger levels, warning filters, ``logging.captureWarnings``, environment),
so code that runs later in the same process (a notebook, a test, an application calling ``main()``) sees the
logging it had before. :func:`setup_logging` is the same set-up without the way back, for worker processes.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Iterator

from .text import terminal_line

#: Environment variables that quieten native libraries (read when they load, also by worker processes);
#: OPENCV_FFMPEG_LOGLEVEL -8 (AV_LOG_QUIET): FFmpeg inside OpenCV prints e.g. "moov atom not found" for a bad
#: video, which our own one-line message already reports.
_QUIET_ENV = {"OPENCV_LOG_LEVEL": "ERROR", "OPENCV_FFMPEG_LOGLEVEL": "-8", "TF_CPP_MIN_LOG_LEVEL": "3"}
#: Loggers whose level the set-up changes (and :func:`cli_logging` restores).
_LEVELS = ("hififace", "py.warnings")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the message (not the one at set-up), so that the
    handler keeps working when stderr is replaced later (pytest's capsys, notebooks, redirect_stderr)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the live sys.stderr wins
        pass


class _OneLineFormatter(logging.Formatter):
    """Each message as one safe terminal line (:func:`~hififace.utils.text.terminal_line`): file names listed from
    a folder, names and values read from files reach the terminal escaped (an ANSI escape or a newline in a file
    name cannot clear the screen or forge a line), wherever the message was written. Other libraries' records
    (shown with ``-v``) keep their line breaks (Lightning's model summary is a table), each line escaped; a
    traceback is appended as it is."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        if record.name == "hififace" or record.name.startswith("hififace."):
            return terminal_line(text)
        return "\n".join(terminal_line(line) for line in text.split("\n"))


class _LibraryFilter(logging.Filter):
    """Our records at their level; other libraries' below WARNING only with ``verbose`` (Lightning sets its own
    loggers to INFO, so the root level alone does not hide them); PIL's chunk-by-chunk DEBUG dump never."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == "hififace" or name.startswith("hififace."):
            return True
        if name.startswith("PIL") and record.levelno < logging.INFO:
            return False
        return self.verbose or record.levelno >= logging.WARNING


def _is_ours(handler: logging.Handler) -> bool:
    return bool(getattr(handler, "_hififace", False))


def setup_logging(verbose: bool = False) -> None:
    """Route warnings through logging and keep third-party noise out of the user's way (no way back: see
    :func:`cli_logging`).

    Without ``verbose`` Python warnings (torch, PIL, OpenCV wrappers) are logged at DEBUG and hidden;
    our own ``hififace`` logger prints INFO and above as ``hififace: message``.
    """
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for old in [h for h in root.handlers if _is_ours(h)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.setFormatter(_OneLineFormatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(name)s: %(message)s"))
    handler.addFilter(_LibraryFilter(verbose))
    handler._hififace = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("hififace").setLevel(level)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)
    if not verbose:
        warnings.filterwarnings("ignore")
        for key, value in _QUIET_ENV.items():
            os.environ.setdefault(key, value)


@contextlib.contextmanager
def cli_logging(verbose: bool = False) -> Iterator[None]:
    """:func:`setup_logging` for the duration of the block; afterwards logging, warnings and the environment are
    as they were before."""
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved_levels = {name: logging.getLogger(name).level for name in _LEVELS}
    saved_env = {key: os.environ.get(key) for key in _QUIET_ENV}
    was_capturing = getattr(logging, "_warnings_showwarning", None) is not None
    with warnings.catch_warnings():  # restores the warning filters and warnings.showwarning
        try:
            setup_logging(verbose)
            yield
        finally:
            if not was_capturing:
                logging.captureWarnings(False)
            for name, level in saved_levels.items():
                logging.getLogger(name).setLevel(level)
            root.setLevel(saved_root[0])
            for h in list(root.handlers):
                if h not in saved_root[1]:
                    root.removeHandler(h)
            for h in saved_root[1]:
                if h not in root.handlers:
                    root.addHandler(h)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
