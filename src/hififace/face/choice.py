"""Which faces of a photo or video frame to swap (shared by the photo and the video pipeline)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass
class FaceChoice:
    """Which faces to swap: ``index`` (left to right), ``all`` faces, or the one most like ``match``; by default
    the largest."""

    index: int | None = None
    all: bool = False
    match: Any = None

    def __post_init__(self) -> None:
        if sum([self.index is not None, bool(self.all), self.match is not None]) > 1:
            raise ConfigError("choose faces one way only: a face index, all faces, or a reference to match")
        if self.index is not None and int(self.index) < 0:
            raise ConfigError(f"face index {self.index}: faces are numbered from 0, left to right")
