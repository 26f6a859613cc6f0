"""What the web app does, without the web: one swap request from uploaded files to a labelled output file.

:class:`SwapService` holds the model (any :class:`~hififace.inference.engine.SwapEngine`, so another runtime can
be passed in later) and a private output folder. :meth:`SwapService.run` takes the uploaded files and the face
choice, swaps a photo (:meth:`FaceSwapper.swap_file`) or a video (:meth:`FaceSwapper.swap_video`) and returns an
:class:`Outcome`; every problem is a :class:`~hififace.errors.HifiFaceError` whose one-line message names the file
the user uploaded (never the server's temporary path). Outputs are written by the library's own writers, so they
carry the synthetic-content label like everything else hififace writes; with random weights their name says so,
their metadata says so and the visible mark is always drawn (and the paste-back leaves the model's mask out, as
the README's pipeline figure does, so the noise a random network makes is plain to see).

What a job may cost is bounded: uploads over ``max_upload_mb`` are refused, videos over the
:class:`~hififace.media.video.VideoLimits` are refused from their header, and a job running longer than
``job_seconds`` stops (a video between two batches of frames). Results are written 0600 (readable by this user
only, however the process umask is set) and deleted ``result_seconds`` after they were made; :meth:`SwapService.close`
stops the running job and removes the folder. With ``report=True`` a swap also writes its quality report (JSON and
PNG plot, :mod:`hififace.metrics.quality`) beside the output, in the same folder and under the same rules.

Gradio is not imported here (see :mod:`hififace.app.ui`), so all of this is tested without a browser.
"""
from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, HifiFaceError, InputImageError
from ..face.draw import draw_faces
from ..inference.engine import as_engine
from ..inference.enhance import DEFAULT_BLEND, as_restorer, check_blend
from ..inference.pipeline import IDENTITY_SUFFIX, FaceSwapper
from ..inference.video import swap_video
from ..media.images import IMAGE_EXTENSIONS, OUTPUT_FORMATS, read_photo
from ..media.limits import APP_JOB_SECONDS, APP_MAX_UPLOAD_MB, APP_RESULT_SECONDS
from ..media.video import VIDEO_FORMATS, VideoLimits, format_seconds, probe
from ..media.labels import read_label
from ..metrics.quality import QualityReport, finish_report, recorder_for
from ..provenance.label import output_label
from ..provenance.report import FileReport, inspect as inspect_file
from ..utils.atomic import private_files

log = logging.getLogger(__name__)

#: Target extensions taken as videos (written back in their container when ffmpeg writes it, else as MP4).
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
#: Face choices offered on the page: value -> label.
FACE_MODES = {
    "largest": "the largest face",
    "index": "face number N (0 = leftmost)",
    "all": "all faces",
    "match": "the face most like a reference photo",
}
RANDOM_TAG = "random_weights"
#: Seconds :meth:`SwapService.close` waits for the running job to stop before removing the folder.
CLOSE_WAIT = 30.0
_REQUEST = re.compile(r"[0-9a-f]{12}")  # the name of a request's own output folder

Progress = Callable[[float, str], None]


@dataclass
class Outcome:
    """A finished swap: ``kind`` is ``image`` or ``video``; ``path`` the labelled output; ``message`` one line;
    ``warning`` one line when the swap replaced (almost) nothing of a face, else empty. With a quality report:
    ``report`` (the JSON), ``plot`` (its PNG) beside ``path``, and ``summary``, the report in one line."""

    kind: str
    path: Path
    message: str
    warning: str = ""
    report: Path | None = None
    plot: Path | None = None
    summary: str = ""


class SwapService:
    """The swaps behind the web app, around one model or engine.

    Args:
        model: a :class:`~hififace.HifiFace` or a swap engine (see :mod:`hififace.inference.engine`).
        workdir: where outputs are written (default: a new temporary folder, removed by :meth:`close`).
        max_upload_mb: largest uploaded file, in megabytes (0 or None: no limit).
        job_seconds: longest job; a video stops between batches of frames (0 or None: no limit).
        result_seconds: results are deleted this long after they were written (0 or None: kept until :meth:`close`).
        video_limits: caps on target videos (default :class:`~hififace.media.video.VideoLimits`'s).
        restorer: a face restorer the page may run on the swapped faces (an "enhance" tick box): a restorer folder or
            ONNX file given by whoever starts the app (``hififace app --enhance DIR``), loaded once on the model's
            device; uploaded weights are never loaded. ``enhance_blend``: its share over the unrestored face.
        options: :class:`~hififace.inference.pipeline.FaceSwapper` options (detector, parsing, min_face, ...).
    """

    def __init__(self, model: Any, workdir: str | Path | None = None, *,
                 max_upload_mb: float | None = APP_MAX_UPLOAD_MB, job_seconds: float | None = APP_JOB_SECONDS,
                 result_seconds: float | None = APP_RESULT_SECONDS, video_limits: VideoLimits | None = None,
                 restorer: Any = None, enhance_blend: float = DEFAULT_BLEND, **options: Any):
        self.engine = as_engine(model)
        self.enhance_blend = check_blend(enhance_blend)
        self.restorer = as_restorer(restorer, self.engine.device)
        self.random = bool(getattr(self.engine, "is_random", False))
        self.max_upload_mb = max_upload_mb or 0
        self.job_seconds = job_seconds or 0
        self.result_seconds = result_seconds or 0
        self.video_limits = video_limits or VideoLimits()
        self.options = dict(options)
        if self.random:  # a random network's mask m_r means nothing (and hides its output): paste the face region
            self.options.setdefault("model_mask", False)
        # a bad option or a missing OpenCV is found at start, not at the first click (and before a folder is made)
        FaceSwapper(self.engine, **self.options)
        self._meta = output_label("app", self.engine)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="hififace-app-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._jobs = threading.Condition()
        self._active = 0
        self._closing = threading.Event()
        self._pruner: threading.Thread | None = None
        self._busy: set[Path] = set()  # request folders being written

    # ------------------------------------------------------------------ what the page shows
    def describe(self) -> str:
        """One line about the model in use."""
        cfg = getattr(self.engine, "config", None)
        what = f"{cfg.variant} model, {cfg.image_size}x{cfg.image_size}" if cfg is not None else "model"
        return f"{what} on {self.engine.device}" + (" — RANDOM WEIGHTS" if self.random else "")

    def meta(self) -> dict[str, str]:
        """Extra label fields of every output (the synthetic-content label itself is always written)."""
        return dict(self._meta)

    def _label(self, swapper: FaceSwapper) -> dict[str, str]:
        """:meth:`meta` plus the request's own settings (the restorer, when the swapped faces were restored)."""
        return {**self.meta(), **output_label("app", self.engine, **swapper.label())}

    def faces_preview(self, target: str | Path | None) -> np.ndarray | None:
        """The target photo with its faces boxed and numbered left to right (what "face number N" counts), or
        None for no file or a video."""
        if not target or Path(target).suffix.lower() not in IMAGE_EXTENSIONS:
            return None

        names = _Names([target])
        with names:
            rgb = read_photo(target).rgb
            return draw_faces(rgb, self._swapper(False).detect(rgb))

    # ------------------------------------------------------------------ the swap
    def run(self, sources: Sequence[str | Path] | None, target: str | Path | None, face_mode: str = "largest",
            face_index: float | int | None = 0, reference: str | Path | None = None, color_match: bool = False,
            watermark: bool = False, progress: Progress | None = None, keep_mouth: bool = False,
            identity_strength: float = 1.0, shape_strength: float = 1.0, source_weighting: str = "mean",
            enhance: bool = False, report: bool = False) -> Outcome:
        """Swap the identity of ``sources`` (photos or identity files, averaged) onto the chosen face(s) of
        ``target`` (photo or video); returns the written output. ``keep_mouth``, ``identity_strength``,
        ``shape_strength`` and ``source_weighting`` as the :class:`FaceSwapper` options of those names; ``enhance``:
        restore the swapped faces with the service's restorer; ``report``: also write the quality report (JSON and
        PNG plot, named after the output with ``_quality``) into the output's folder."""
        if enhance and self.restorer is None:
            raise ConfigError("face restoration is not set up on this app; start it with --enhance DIR|FILE.onnx")
        look = dict(keep_mouth=bool(keep_mouth), identity_strength=identity_strength, shape_strength=shape_strength,
                    source_weighting=source_weighting or "mean")
        say = progress or (lambda fraction, what: None)
        sources = [s for s in (sources or []) if s]
        if not sources:
            raise ConfigError("add at least one source photo: the face whose identity is used")
        if not target:
            raise ConfigError("add a target photo or video: the picture whose face is replaced")
        face, all_faces, match = self._choice(face_mode, face_index, reference)
        kind = _kind(target)
        names = _Names([*sources, target, *([reference] if reference else [])])
        with names, self._job():
            self._start_pruning()
            for s in sources:
                if Path(s).suffix.lower() not in IMAGE_EXTENSIONS + (IDENTITY_SUFFIX,):
                    raise InputImageError(f"{s}: not a photo ({', '.join(IMAGE_EXTENSIONS)}) or an identity file "
                                          f"({IDENTITY_SUFFIX}); upload a photo of the source face")
            self._check_sizes([*sources, target, *([reference] if reference else [])])
            watermark = bool(watermark) or self.random  # random weights: always the visible mark too
            swapper = self._swapper(color_match, video=kind == "video", enhance=enhance, **look)
            out = self._output_path(target, kind)
            self._busy.add(out.parent)  # not pruned while it is written (the lifetime counts from the rename)
            try:
                with private_files():  # 0600, without touching the process umask (this is a worker thread)
                    message, warning, quality = self._swap(swapper, kind, sources, target, out, face, all_faces,
                                                           match, watermark, say, self._stopper(), bool(report))
            except BaseException:
                shutil.rmtree(out.parent, ignore_errors=True)  # this request's own folder: nothing half-written
                raise
            finally:
                self._busy.discard(out.parent)
        log.info("app: wrote %s (%s)", out, message)
        return Outcome(kind, out, message, warning, *(quality or (None, None, "")))

    def _swap(self, swapper: FaceSwapper, kind: str, sources: list, target: Any, out: Path, face: int | None,
              all_faces: bool, match: Any, watermark: bool, say: Progress,
              should_stop: Callable[[], str | None],
              report: bool = False) -> tuple[str, str, tuple[Path, Path, str] | None]:
        """The swap itself; returns the one-line summary, a warning (empty when none) and, with ``report``, the
        quality report's JSON and PNG (written beside ``out``) and its one-line summary."""
        warning = ""
        t0 = time.perf_counter()
        recorder = None

        def check(where: str) -> None:  # between the steps of a photo swap (each is short)
            reason = should_stop()
            if reason:
                raise HifiFaceError(f"{target}: stopped after {format_seconds(time.perf_counter() - t0)} "
                                    f"({where}): {reason}")

        if kind == "video":
            say(0.0, "reading the video")
            limits = self.video_limits
            info = probe(target, limits.max_frame_pixels)  # a bad or too large video: before any model work
            limits.check(info)
            identity = self._identity(swapper, sources, say)
            check("encoding the sources")
            if report:
                swapper.observer = recorder = recorder_for(swapper, sources, identity, "video", fps=info.fps)
            done = swap_video(swapper, identity, info.path, out, face=face, all_faces=all_faces, match=match,
                              watermark=watermark, meta=self._label(swapper), progress=True,
                              max_frame_pixels=limits.max_frame_pixels, max_frames=limits.max_frames,
                              max_seconds=limits.max_seconds, should_stop=should_stop)
            message = (f"{done.frames} frames, the face swapped in {done.frames_swapped}, "
                       f"{done.frames_passed} passed through" + (", audio kept" if done.audio else ""))
            if done.faces_low_coverage:
                warning = (f"almost nothing of the face was replaced in {done.faces_low_coverage} of "
                           f"{done.faces_swapped} swapped face(s): {_why_low(swapper)}")
        else:
            say(0.0, "reading the photo")
            photo = read_photo(target)  # a bad photo is reported before any model work
            identity = self._identity(swapper, sources, say)
            check("encoding the sources")
            if report:
                swapper.observer = recorder = recorder_for(swapper, sources, identity, "photo")
            say(0.6, "swapping")
            result = swapper.swap_file(identity, photo, out, face=face, all_faces=all_faces, match=match,
                                       watermark=watermark, meta=self._label(swapper))
            message = ("taken as an aligned face crop" if result.aligned else
                       f"{len(result.swapped)} of {len(result.faces)} face(s) swapped")
            if result.skipped:
                message += f" ({len(result.skipped)} too small, left alone)"
            low = result.low_coverage()
            if low:
                warning = (f"almost nothing of face #{', #'.join(map(str, low))} was replaced ({result.replaced()}): "
                           f"{_why_low(swapper)}")
        quality = None
        if recorder is not None:
            say(0.95, "writing the quality report")
            swapper.observer = None
            rep = recorder.report()
            path = out.with_name(f"{out.stem}_quality.json")
            # names only: the server's temporary paths mean nothing to whoever downloads the report
            written = finish_report(path, recorder, output=out.name, target=Path(target).name,
                                    sources=[Path(s).name for s in sources])
            quality = (written[0], written[1], quality_line(rep))
        say(1.0, "done")
        return message, warning, quality

    # ------------------------------------------------------------------ checking a file
    def verify(self, upload: str | Path | None) -> "FileReport":
        """What ``hififace verify`` reports for an uploaded file (:func:`hififace.provenance.report.inspect`):
        the metadata label, the C2PA manifest, the invisible watermark and a verdict. Uploads are hostile: the
        upload size limit and, for a video, the video limits apply (from its header) before anything is decoded;
        every problem is one :class:`~hififace.errors.HifiFaceError` naming the file the user uploaded."""
        if not upload:
            raise ConfigError("upload an image or a video to check")
        with _Names([upload]), self._job():
            self._check_sizes([upload])
            path = Path(upload)
            if path.suffix.lower() in VIDEO_EXTENSIONS:
                limits = self.video_limits
                limits.check(probe(path, limits.max_frame_pixels))
            rep = inspect_file(path, label_reader=read_label)
        rep.file = Path(rep.file).name  # never the server's temporary path
        return rep

    def close(self) -> None:
        """Stop: the running job stops (a video at its next batch; waited for up to :data:`CLOSE_WAIT` seconds),
        then the output folder this service made is removed."""
        self._closing.set()
        with self._jobs:
            self._jobs.wait_for(lambda: self._active == 0, timeout=CLOSE_WAIT)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def prune(self, now: float | None = None) -> int:
        """Delete the results written more than ``result_seconds`` ago (each request's folder, by the time of its
        last change: the output's rename); returns how many. A folder still being written is left alone."""
        if not self.result_seconds:
            return 0
        cutoff = (time.time() if now is None else now) - self.result_seconds
        gone = 0
        for folder in self.workdir.iterdir() if self.workdir.is_dir() else ():
            try:
                if (_REQUEST.fullmatch(folder.name) and folder not in self._busy and folder.is_dir()
                        and folder.stat().st_mtime < cutoff):
                    shutil.rmtree(folder, ignore_errors=True)
                    gone += 1
            except OSError:  # removed meanwhile
                continue
        return gone

    # ------------------------------------------------------------------ limits
    @contextlib.contextmanager
    def _job(self) -> Iterator[None]:
        """Count the job (so :meth:`close` can wait for it); refused once the service is closing."""
        if self._closing.is_set():
            raise HifiFaceError("the app is shutting down; try again later")
        with self._jobs:
            self._active += 1
        try:
            yield
        finally:
            with self._jobs:
                self._active -= 1
                self._jobs.notify_all()

    def _stopper(self) -> Callable[[], str | None]:
        """Why the job must stop now (None: go on): the app is closing, or the job is over its time."""
        deadline = time.monotonic() + self.job_seconds if self.job_seconds else None

        def should_stop() -> str | None:
            if self._closing.is_set():
                return "the app is shutting down"
            if deadline is not None and time.monotonic() > deadline:
                return (f"over the time limit of {format_seconds(self.job_seconds)} per job (hififace app "
                        f"--job-timeout); try a shorter or smaller video")
            return None

        return should_stop

    def _check_sizes(self, paths: Sequence[Any]) -> None:
        if not self.max_upload_mb:
            return
        limit = self.max_upload_mb * 1_000_000
        for p in paths:
            try:
                size = Path(p).stat().st_size
            except OSError:
                continue  # a missing file is reported by the reader, in its words
            if size > limit:
                raise InputImageError(f"{p}: {size / 1e6:,.1f} MB is over the upload limit of {self.max_upload_mb:g} "
                                      f"MB (hififace app --max-upload-mb)")

    def _start_pruning(self) -> None:
        """Delete old results every minute (or sooner for short lifetimes) while the service is open."""
        if not self.result_seconds or self._pruner is not None:
            return
        every = min(60.0, max(self.result_seconds / 4, 0.05))

        def loop() -> None:
            while not self._closing.wait(every):
                try:
                    self.prune()
                except Exception:  # pragma: no cover - never let the pruner die silently mid-way
                    log.debug("app: pruning results failed", exc_info=True)

        self._pruner = threading.Thread(target=loop, name="hififace-app-prune", daemon=True)
        self._pruner.start()

    # ------------------------------------------------------------------ parts
    def _swapper(self, color_match: bool, video: bool = False, enhance: bool = False, **look: Any) -> FaceSwapper:
        # a fresh pipeline per request: its identity cache (keyed by file path) never outlives the request
        options = {"align_passes": 0, **self.options} if video else dict(self.options)  # as 'hififace video' does
        options.update(look)  # this request's mouth / strength / source weighting
        restorer = self.restorer if enhance else None
        return FaceSwapper(self.engine, color_match=bool(color_match), restorer=restorer,
                           enhance_blend=self.enhance_blend, **options)

    @staticmethod
    def _choice(mode: str, index: float | int | None, reference: Any) -> tuple[int | None, bool, Any]:
        mode = (mode or "largest").lower()
        if mode not in FACE_MODES:
            raise ConfigError(f"face choice {mode!r}: choose one of {', '.join(FACE_MODES)}")
        if mode == "index":
            if index is None or float(index) != int(float(index)) or int(float(index)) < 0:
                raise ConfigError(f"face number {index}: faces are numbered 0, 1, 2, ... from the left")
            return int(float(index)), False, None
        if mode == "match":
            if not reference:
                raise ConfigError("'most like a reference' needs a reference photo: add one, or choose another face")
            return None, False, reference
        return None, mode == "all", None

    @staticmethod
    def _identity(swapper: FaceSwapper, sources: list, say: Progress):
        say(0.2, f"encoding {len(sources)} source(s)")
        return swapper.source(*sources)  # the mean, or the sources kept apart for pose weighting

    def _output_path(self, target: str | Path, kind: str) -> Path:
        target = Path(target)
        suffix = target.suffix.lower()
        if kind == "video":
            suffix = suffix if suffix in VIDEO_FORMATS else ".mp4"
        elif suffix not in OUTPUT_FORMATS:
            suffix = ".png"  # .bmp/.tif are written as PNG, as 'hififace swap' does for folders
        stem = f"{target.stem}_swapped" + (f"_{RANDOM_TAG}" if self.random else "")
        folder = self.workdir / uuid.uuid4().hex[:12]  # one folder per request: downloads keep a readable name
        folder.mkdir(mode=0o700, parents=True)
        return folder / f"{stem}{suffix}"


def quality_line(rep: QualityReport) -> str:
    """A quality report in one line: the mean identity similarity (the swap model's own and, when measured, the
    independent one) and how many faces (photo) or frames (video) were flagged."""
    summary = rep.summary()
    parts = [f"{len(rep.faces)} face(s) measured"]
    for key, name in (("id_similarity", "identity similarity"),
                      ("id_similarity_independent", "independent identity similarity")):
        if key in summary:
            parts.append(f"mean {name} {summary[key]['mean']:.3f}")
    flagged = rep.flagged()
    if rep.kind == "video":
        parts.append(f"{len({f['frame'] for f in flagged})} frame(s) flagged")
    else:
        parts.append(f"{len(flagged)} face(s) flagged")
    return ", ".join(parts)


def _why_low(swapper: FaceSwapper) -> str:
    if swapper.model_mask:
        return ("the model's own mask is empty (random weights, or a collapsed mask, a known training failure); "
                "start the app with --no-model-mask to paste the whole face region")
    return "the face-region mask is empty"


def _kind(target: str | Path) -> str:
    suffix = Path(target).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    raise InputImageError(f"{Path(target).name}: unsupported file type {suffix or '(none)'}; upload a photo "
                          f"({', '.join(IMAGE_EXTENSIONS)}) or a video ({', '.join(VIDEO_EXTENSIONS)})")


class _Names:
    """Rewrites the :class:`HifiFaceError` raised inside the block so that it names uploads by their file name,
    not by the server's temporary path (which means nothing to the user and says where uploads are kept)."""

    def __init__(self, paths: Sequence[Any]):
        self.paths = sorted({str(p) for p in paths if p}, key=len, reverse=True)

    def __enter__(self) -> "_Names":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if isinstance(err, HifiFaceError) and len(err.args) == 1 and isinstance(err.args[0], str):
            text = err.args[0]
            for p in self.paths:
                text = text.replace(p, Path(p).name)
            err.args = (text,)  # the same error (class, exit code) re-raised with the shorter names
        return False
