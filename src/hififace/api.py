"""The public face-swap API on whole photos and videos: one call each (``hififace.swap_image``,
``hififace.swap_video``), and the pipeline object behind them (:class:`FaceSwapper`) for many calls::

    import hififace
    result = hififace.swap_image("me.jpg", "group.jpg", "out.jpg", weights="weights/hififace-256", all_faces=True)
    report = hififace.swap_video("me.jpg", "clip.mp4", "out.mp4", weights="weights/hififace-256")
    hififace.swap_image("me.jpg", "t.jpg", "out.jpg", keep_mouth=True, identity_strength=0.8, report="out.json")
    swapper = hififace.FaceSwapper.from_pretrained("weights/hififace-256")

Photos go through :mod:`hififace.inference.pipeline` (which knows nothing of video), videos through
:mod:`hififace.inference.video` (which takes a :class:`FaceSwapper`).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .inference import video
from .inference.pipeline import FaceSwapper, PhotoResult
from .media.images import check_output_path
from .media.limits import MAX_FRAME_PIXELS, MAX_FRAMES, MAX_SECONDS
from .media.video import probe
from .metrics.quality import finish_report, plot_path, recorder_for
from .provenance.label import output_label
from .provenance.outputs import Provenance, using

__all__ = ["FaceSwapper", "Provenance", "swap_image", "swap_video"]


def _swapper(model: Any, weights: str | Path | None, device: Any, options: dict[str, Any]) -> FaceSwapper:
    if isinstance(model, FaceSwapper):
        if options:
            raise TypeError(f"options {', '.join(sorted(options))} go to FaceSwapper(...), not to an existing one")
        return model
    if model is not None:
        return FaceSwapper(model, **options)
    return FaceSwapper.from_pretrained(weights, device=device, **options)


def _provenance(provenance: Provenance | None):
    """``provenance`` as the writers' default for one call (checked first); None: the defaults (both marks)."""
    if provenance is None:
        return contextlib.nullcontext()
    provenance.check()
    return using(provenance)


def _check_report(report: str | Path | None, *taken: Any) -> Path | None:
    """A report path that cannot be written (or whose plot would replace the output or target): refused first."""
    if report is None:
        return None
    path = check_output_path(report, {".json": "json"})
    for other in taken:
        if isinstance(other, (str, Path)) and plot_path(path).resolve() == Path(other).resolve():
            raise ConfigError(f"{path}: the report's plot {plot_path(path).name} would replace {other}; give the "
                              f"report another name")
    return path


def _sources(source: Any) -> list[Any]:
    return list(source) if isinstance(source, (list, tuple)) else [source]


def swap_image(source: Any, target: Any, output: str | Path | None = None, *, weights: str | Path | None = None,
               model: Any = None, device: Any = None, face: int | None = None, all_faces: bool = False,
               match: Any = None, aligned: bool | None = None, watermark: bool = False,
               report: str | Path | None = None, provenance: Provenance | None = None,
               **options: Any) -> PhotoResult:
    """Swap ``source``'s identity onto face(s) of ``target`` and return a :class:`PhotoResult`; with ``output``
    also write it (keeping the target file's size, orientation, colour mode and metadata, labelled as synthetic).

    ``source``: photo path/array/PIL image, identity file, :class:`~hififace.Identity`, or a list of them (averaged).
    ``model``: a loaded :class:`~hififace.HifiFace`, swap engine or :class:`FaceSwapper` (else ``weights`` is
    loaded). ``options`` go to :class:`FaceSwapper` (``min_face``, ``color_match``, ``parsing``, ``model_mask``,
    ``keep_mouth``, ``identity_strength``, ``shape_strength``, ``source_weighting``, ...; ``restorer=`` a restorer
    folder or an ONNX restorer file restores each swapped face, ``enhance_blend`` 0..1). ``report``: also write
    the quality report of the output there (JSON, and its PNG plot beside it; see :mod:`hififace.metrics.quality`).
    The written file carries the invisible watermark and a signed C2PA manifest; ``provenance``
    (:class:`~hififace.provenance.outputs.Provenance`) changes that: ``Provenance(sign_cert=..., sign_key=...)``,
    ``Provenance(c2pa=False)``, or ``Provenance(invisible=False)`` for research that must measure the unmarked
    output.
    """
    report = _check_report(report, output, target)
    swapper = _swapper(model, weights, device, options)
    sources = _sources(source)
    identity = swapper.source(*sources, aligned=aligned)
    recorder = recorder_for(swapper, sources, identity, "photo", aligned=aligned) if report else None
    observer, swapper.observer = swapper.observer, recorder or swapper.observer
    try:
        if output is None:
            result = swapper.swap(identity, target, face, all_faces, match, aligned)
        else:
            with _provenance(provenance):
                result = swapper.swap_file(identity, target, output, face, all_faces, match, aligned, watermark,
                                           meta=output_label("swap_image", swapper.engine, **swapper.label()))
    finally:
        swapper.observer = observer
    if recorder is not None:
        finish_report(report, recorder, output=None if output is None else str(output),
                      target=str(target) if isinstance(target, (str, Path)) else None,
                      sources=[str(s) if isinstance(s, (str, Path)) else type(s).__name__ for s in sources])
    return result


def swap_video(source: Any, target: str | Path, output: str | Path, *, weights: str | Path | None = None,
               model: Any = None, device: Any = None, face: int | None = None, all_faces: bool = False,
               match: Any = None, batch_frames: int = 8, smooth: float = 1.0, crf: int = 18, preset: str = "medium",
               watermark: bool = False, progress: bool = True, max_frame_pixels: int | None = MAX_FRAME_PIXELS,
               max_frames: int | None = MAX_FRAMES, max_seconds: float | None = MAX_SECONDS,
               report: str | Path | None = None, provenance: Provenance | None = None, **options: Any):
    """Swap ``source``'s identity onto face(s) throughout video ``target`` and write ``output``; returns a
    :class:`~hififace.inference.video.VideoReport`. Arguments as :func:`swap_image` and
    :func:`hififace.inference.video.swap_video`; ``max_frame_pixels`` (default 4096 x 4096), ``max_frames``
    (216,000) and ``max_seconds`` (3600) cap the video, 0 = no limit. ``report``: also write the quality report
    (per face and frame, flicker, flagged frames; JSON and PNG). Every frame carries the invisible watermark and
    the file a signed C2PA manifest (MP4, MOV); ``provenance`` as in :func:`swap_image`."""
    report = _check_report(report, output, target)
    if not isinstance(model, FaceSwapper):  # an existing pipeline keeps its own settings
        options.setdefault("align_passes", 0)
    swapper = _swapper(model, weights, device, options)
    sources = _sources(source)
    identity = swapper.source(*sources)
    recorder = None
    if report is not None:
        fps = probe(target, max_frame_pixels or None).fps
        recorder = recorder_for(swapper, sources, identity, "video", fps=fps)
    observer, swapper.observer = swapper.observer, recorder or swapper.observer
    try:
        with _provenance(provenance):
            done = video.swap_video(swapper, identity, target, output, face=face, all_faces=all_faces, match=match,
                                    batch_frames=batch_frames, smooth=smooth, crf=crf, preset=preset,
                                    watermark=watermark, meta=output_label("swap_video", swapper.engine,
                                                                           **swapper.label()),
                                    progress=progress, max_frame_pixels=max_frame_pixels, max_frames=max_frames,
                                    max_seconds=max_seconds)
    finally:
        swapper.observer = observer
    if recorder is not None:
        finish_report(report, recorder, output=str(done.output), target=str(target),
                      sources=[str(s) if isinstance(s, (str, Path)) else type(s).__name__ for s in sources])
    return done
