"""Identity interpolation sequences, as the reference's ``hififace_inference.py``: 21 frames at rates ``i / 20``
(rate 1 is the first source, rate 0 the second); :func:`hififace.media.video.write_animation` writes them (GIF at
300 ms per frame looping forever, or MP4).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

N_FRAMES = 21


def rates(n_frames: int = N_FRAMES) -> list[float]:
    """``i / (n - 1)`` for i = 0 .. n-1: 21 frames give the reference's ``i / 20.0``."""
    if n_frames < 2:
        raise ValueError("an interpolation needs at least 2 frames")
    return [i / float(n_frames - 1) for i in range(n_frames)]


def interpolation_frames(
    model: Any,
    source: Any,
    source2: Any,
    target: Any,
    mode: str = "all",
    n_frames: int = N_FRAMES,
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """The frames of :meth:`HifiFace.interpolate` over :func:`rates`; both identities and the target are
    encoded once."""
    a = model.identity(source)
    b = model.identity(source2)
    prepared = model.prepare_target(target)
    frames = []
    for rate in rates(n_frames):
        frames.append(model.interpolate(a, b, prepared, rate, mode))
        if progress is not None:
            progress(1)
    return frames
