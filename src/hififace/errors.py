"""User-facing errors: each carries one line that names the file and the fix.

The CLI prints ``str(err)`` and exits non-zero; library users catch :class:`HifiFaceError`.
"""
from __future__ import annotations


class HifiFaceError(Exception):
    """Base class for errors a user can fix (bad input, missing file, bad config)."""

    exit_code = 2


class InputImageError(HifiFaceError):
    """An input image cannot be read or used."""


class WeightsError(HifiFaceError):
    """A weight file is missing, unreadable, of the wrong kind or inconsistent."""


class ConfigError(HifiFaceError):
    """A configuration value is invalid."""


class MissingDependencyError(HifiFaceError):
    """An optional dependency (an extra) is not installed."""

    def __init__(self, package: str, extra: str, feature: str = ""):
        what = f" for {feature}" if feature else ""
        super().__init__(f"{package} is needed{what}: pip install 'hififace[{extra}]'")


class OutputError(HifiFaceError):
    """An output cannot be stored where it was asked for (no space left, quota, read-only file system, a name too
    long); ``folder`` is where it was going."""

    def __init__(self, message: str, folder: object = None):
        super().__init__(message)
        self.folder = folder
