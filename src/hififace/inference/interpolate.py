"""Identity interpolation sequences and their writers (GIF always; MP4 with the ``video`` extra).

As the reference's ``hififace_inference.py``: 21 frames at rates ``i / 20`` (rate 1 is the first source,
rate 0 the second), GIF at 300 ms per frame looping forever.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import MissingDependencyError

log = logging.getLogger(__name__)

N_FRAMES = 21
FRAME_MS = 300
VIDEO_FORMATS = {".gif": "GIF", ".mp4": "MP4"}


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


def check_video_path(path: str | Path, no_clobber: bool = False) -> Path:
    """Refuse an unsupported output (or a missing MP4 writer) before any work is done; the replacement policy is
    :func:`hififace.inference.images.check_output_path`'s."""
    from .images import check_output_path

    path = check_output_path(path, VIDEO_FORMATS, no_clobber)
    if path.suffix.lower() == ".mp4":
        ffmpeg_exe()
    return path


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary imageio uses, or a :class:`MissingDependencyError`."""
    from .ffmpeg import ffmpeg_exe as bundled

    try:
        import imageio  # noqa: F401
    except ImportError:
        raise MissingDependencyError("imageio", "video", "MP4 output (or write a .gif)") from None
    return bundled("MP4 output (or write a .gif)")


def save_animation(
    path: str | Path,
    frames: Sequence[Any],
    frame_ms: int = FRAME_MS,
    watermark: bool = False,
    meta: Mapping[str, str] | None = None,
    watermark_text: str | None = None,
) -> Path:
    """Write ``frames`` (uint8 arrays or PIL images) as a looping GIF or an MP4, atomically and labelled."""
    from ..utils.atomic import atomic_path
    from .images import to_pil
    from .watermark import WATERMARK_TEXT, add_watermark, comment_text

    path = check_video_path(path)
    if not frames:
        raise ValueError("no frames to write")
    images = [to_pil(f) for f in frames]
    if watermark:
        images = [add_watermark(im, watermark_text or WATERMARK_TEXT) for im in images]
    comment = comment_text(meta)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            # as the reference: PIL's own RGB -> palette conversion, `duration` ms per frame, loop forever
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                           comment=comment.encode("utf-8"))
        else:
            _write_mp4(tmp, images, 1000.0 / frame_ms, comment)
    return path


def _write_mp4(path: Path, images: Sequence[Any], fps: float, comment: str) -> None:
    ffmpeg_exe()
    import imageio.v2 as iio

    w, h = images[0].size
    writer = iio.get_writer(
        str(path), format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8, pixelformat="yuv420p",
        macro_block_size=2 if w % 2 == 0 and h % 2 == 0 else 16,
        output_params=["-metadata", f"comment={comment}", "-metadata", "description=" + comment.split(" (")[0]],
        ffmpeg_log_level="error",
    )
    try:
        for im in images:
            writer.append_data(np.asarray(im))
    finally:
        writer.close()
