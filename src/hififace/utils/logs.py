"""Logging set-up for the CLI: our messages at INFO, library chatter only with --verbose."""
from __future__ import annotations

import logging
import os
import sys
import warnings


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


def setup_logging(verbose: bool = False) -> None:
    """Route warnings through logging and keep third-party noise out of the user's way.

    Without ``verbose`` Python warnings (torch, PIL, OpenCV wrappers) are logged at DEBUG and hidden;
    our own ``hififace`` logger prints INFO and above as ``hififace: message``.
    """
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    if not any(getattr(h, "_hififace", False) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s"))
        handler._hififace = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("hififace").setLevel(level)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").setLevel(logging.DEBUG if verbose else logging.ERROR)
    if not verbose:
        warnings.filterwarnings("ignore")
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
