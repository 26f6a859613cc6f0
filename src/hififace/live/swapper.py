"""The one adapter between live swapping and today's photo/video pipeline.

Everything ``hififace live`` needs of the code below it goes through this module, so a change there changes this
file only:

- :class:`FrameProcessor`: an RGB frame and its time stamp in, the frame with the chosen face(s) swapped out. It
  runs the pieces of the video path one frame at a time: :class:`~hififace.inference.pipeline.FaceSwapper`'s
  detection, alignment, batched swap with the cached identity and blending, the face tracker
  (:class:`~hififace.face.track.FaceTracker`, smoothing included), the video path's face choice
  (:class:`hififace.inference.video._Chooser`: ``--face``/``--match`` decided in the first frame with faces, then
  followed by track) and its paste-back (on the GPU for a CUDA model). Unlike the video path the frame index the
  tracker sees comes from the time stamp (frames are dropped live, and the smoothing must know how much time
  passed), and the full-frame detection runs every ``detect_every`` frames only: in between, each followed face is
  looked for near where its track predicts it (a small crop around it), and a face not found there makes the full
  detection run at once, on the same frame.
- :func:`open_video_file`: a video file as a live source (ffmpeg, with the frame-size limit every video input has).
- :class:`LabelledVideoWriter`: the MP4 output, encoded by ffmpeg and labelled like every video hififace writes.
- :func:`render_mark`: the visible "AI-generated" mark, drawn as ``--watermark`` draws it on files;
- ``VIDEO_FORMATS`` and ``check_output_path``: the video file names an output may have, checked as every command
  checks its outputs.
"""
from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
from PIL import Image

from ..errors import HifiFaceError, InputImageError
from ..face.align import transform_points
from ..face.blend import paste_into
from ..face.detect import box_iou
from ..face.track import FaceTracker
from ..face.choice import FaceChoice
from ..face.pose import WeightSmoother
from ..inference.pipeline import LOW_COVERAGE, PoseSources, low_coverage_reason
from ..inference.video import _Chooser, _paste_torch, _sync
from ..media.images import check_output_path
from ..media.limits import MAX_FRAME_PIXELS
from ..media.video import VIDEO_FORMATS, FrameReader, FrameWriter, VideoInfo, VideoLimits, exact_rate, mux, probe
from ..provenance.label import WATERMARK_TEXT, add_watermark
from ..utils.atomic import atomic_path
from ..utils.text import printable

if TYPE_CHECKING:  # pragma: no cover
    from ..face.detect import Face
    from ..inference.pipeline import FaceSwapper
    from ..models.identity import Identity

log = logging.getLogger(__name__)

__all__ = ["VIDEO_FORMATS", "FileSource", "FrameProcessor", "LabelledVideoWriter", "build_processor",
           "check_output_path", "open_video_file", "render_mark"]

#: Stages :class:`FrameProcessor` measures per frame (its ``last``).
STAGES = ("detect", "track", "align", "swap", "paste")
#: A face is looked for in a crop this many times its size around its predicted box, scaled to at most
#: :data:`NEAR_SIDE` pixels (YuNet's faces of about 160 px: see ``MultiScaleDetector.target_face``).
NEAR_FACTOR = 2.0
NEAR_SIDE = 320
#: Swapped faces after which a coverage that stays low is warned about (once).
COVERAGE_FACES = 10


class FrameProcessor:
    """``processor(rgb, timestamp) -> rgb``: the chosen face(s) of a live frame swapped (see the module docstring).

    Args:
        swapper: the pipeline (detector, parser, engine, paste-back options).
        identity: the source identity, computed once (or the sources and their head poses: --source-weighting).
        choice: which faces (the largest by default; ``--face``, ``--all-faces``, ``--match``).
        detect_every: full-frame detection every N frames (1: every frame); in between, faces are followed.
        smooth: landmark smoothing (as ``hififace video --smooth``; 0 = off).
        fps: the input's frame rate (the tracker's time base).
        paste: ``torch`` (GPU), ``numpy`` or ``auto`` (torch on CUDA).
        name: the input's name in messages.

    Attributes:
        last: seconds of each stage (:data:`STAGES`) for the last frame.
        frames, frames_swapped, faces_swapped, full_detections: counters.
    """

    def __init__(self, swapper: "FaceSwapper", identity: "Identity | PoseSources", choice: FaceChoice | None = None, *,
                 detect_every: int = 5, smooth: float = 1.0, fps: float = 30.0, paste: str = "auto",
                 name: str = "live"):
        if detect_every < 1:
            raise ValueError("detect_every must be 1 or more")
        self.swapper, self.identity = swapper, identity
        self.choice = choice or FaceChoice()
        self.detect_every = int(detect_every)
        self.tracker = FaceTracker(fps, max_lost=max(1, int(round(fps / 2))), smooth=smooth)
        # --source-weighting pose|nearest: per-track weights that follow the head smoothly, as in the video path
        self.smoother = WeightSmoother(fps) if isinstance(identity, PoseSources) else None
        self.chooser = _Chooser(swapper, self.choice, self.tracker, name)
        device = getattr(swapper.engine, "device", None)
        self.use_torch = paste == "torch" or (paste == "auto" and getattr(device, "type", "cpu") == "cuda")
        self.name = name
        self.last: dict[str, float] = {}
        self.frames = self.frames_swapped = self.faces_swapped = self.full_detections = 0
        self._t0: float | None = None
        self._index = -1
        self._since_full = self.detect_every  # the first frame gets a full detection
        self._small_noted: set[int] = set()
        self._coverage: list[float] = []
        self._coverage_warned = False

    def warmup(self) -> None:
        """One swap of a blank crop: the first live frame does not pay for the first call (CUDA kernels, a
        compiled graph, onnxruntime's allocations)."""
        blank = np.zeros((1, self.swapper.size, self.swapper.size, 3), np.uint8)
        self.swapper.swap_crops(self.swapper.face_identities(self.identity, blank).swap, blank)
        _sync(self.swapper)

    # ------------------------------------------------------------------ one frame
    def __call__(self, frame: np.ndarray, timestamp: float) -> np.ndarray:
        if not frame.flags.writeable:
            frame = frame.copy()
        if self._t0 is None:
            self._t0 = timestamp
        index = max(self._index + 1, int(round((timestamp - self._t0) * self.tracker.fps)))
        last = dict.fromkeys(STAGES, 0.0)
        t0 = time.perf_counter()
        faces = self._detect(frame, index)
        t1 = time.perf_counter()
        last["detect"] = t1 - t0
        picked = self.chooser.pick(frame, self.tracker.update(index, faces), index)
        todo = [(track, f) for track, f in picked if self._big_enough(track.id, f, index)]
        last["track"] = time.perf_counter() - t1
        self._index = index
        self.frames += 1
        if todo:
            frame = self._swap(frame, [t for t, _ in todo], [f for _, f in todo], index, last)
        self.last = last
        return frame

    def _big_enough(self, track_id: int, face: "Face", index: int) -> bool:
        if face.size >= self.swapper.min_face:
            return True
        if track_id not in self._small_noted:
            self._small_noted.add(track_id)
            log.info("%s: a chosen face is %.0f px at frame %d, below the minimum face size %.0f px; left alone while "
                     "that small", self.name, face.size, index, self.swapper.min_face)
        return False

    def _swap(self, frame: np.ndarray, tracks: list[Any], faces: list["Face"], index: int,
              last: dict[str, float]) -> np.ndarray:
        sw = self.swapper
        t0 = time.perf_counter()
        crops, mats = sw.align(frame, [f.landmarks for f in faces])
        t1 = time.perf_counter()
        fid = sw.face_identities(self.identity, crops, tracks, [index] * len(faces), self.smoother)
        if self.smoother is not None:
            self.smoother.forget([t.id for t in self.tracker.tracks])
        i_r, m_r = sw.swap_crops(fid.swap, crops)
        _sync(sw)
        t2 = time.perf_counter()
        lms = np.stack([transform_points(f.landmarks, m) for f, m in zip(faces, mats)])
        blend = sw.blend_faces(crops, i_r, m_r, lms, sw.mouth_landmarks(faces, mats))
        if self.use_torch:
            frame = _paste_torch([frame], [0] * len(faces), blend.faces, mats, blend.alphas, sw.engine.device)[0]
        else:
            for j in range(len(faces)):
                paste_into(frame, blend.faces[j], mats[j], blend.alphas[j])
        sw.restore_faces([frame], [0] * len(faces), [f.landmarks for f in faces], mats, blend.alphas)
        last["align"], last["swap"], last["paste"] = t1 - t0, t2 - t1, time.perf_counter() - t2
        self.frames_swapped += 1
        self.faces_swapped += len(faces)
        self._note_coverage(blend.coverage)
        return frame

    def _note_coverage(self, coverage: np.ndarray) -> None:
        """Warn once when the first swapped faces replaced almost nothing (an empty model mask m_r)."""
        if self._coverage_warned:
            return
        self._coverage += [float(c) for c in coverage]
        if len(self._coverage) >= COVERAGE_FACES:
            self._coverage_warned = True
            mean = float(np.mean(self._coverage))
            if mean < LOW_COVERAGE:
                log.warning("%s: almost nothing of the face is replaced (%.0f %% of the face region over the first "
                            "%d faces): %s", self.name, 100 * mean, len(self._coverage),
                            low_coverage_reason(self.swapper.model_mask))

    # ------------------------------------------------------------------ detection: full, or near the tracks
    def _followed(self) -> list[Any]:
        """The tracks to follow between full detections: those seen in the last frame (the chosen ones only,
        once chosen, unless every face is swapped)."""
        tracks = [t for t in self.tracker.tracks if t.last_frame == self._index]
        if self.chooser.ids is not None and not self.choice.all:
            tracks = [t for t in tracks if t.id in self.chooser.ids]
        return tracks

    def _detect(self, frame: np.ndarray, index: int) -> list["Face"]:
        tracks = self._followed() if self._since_full < self.detect_every and self.chooser.ids is not None else []
        if tracks:
            found = [self._detect_near(frame, t.predicted(index)) for t in tracks]
            if all(f is not None for f in found):
                self._since_full += 1
                return sorted(found, key=lambda f: (float(f.center[0]), float(f.center[1])))
            log.debug("%s: a followed face was lost at frame %d; detecting in the whole frame", self.name, index)
        self._since_full = 1
        self.full_detections += 1
        return self.swapper.detect(frame)

    def _detect_near(self, frame: np.ndarray, box: np.ndarray) -> "Face | None":
        """The face best overlapping ``box``, detected in a crop around it (None: not found there)."""
        import cv2

        h, w = frame.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = NEAR_FACTOR * max(box[2] - box[0], box[3] - box[1], 8.0) / 2
        x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
        x1, y1 = int(min(w, np.ceil(cx + half))), int(min(h, np.ceil(cy + half)))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        roi = frame[y0:y1, x0:x1]
        scale = min(1.0, NEAR_SIDE / max(x1 - x0, y1 - y0))
        if scale < 1.0:
            roi = cv2.resize(roi, (max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                             interpolation=cv2.INTER_AREA)
        faces = self.swapper.detect(roi)
        if not faces:
            return None
        sx, sy = roi.shape[1] / (x1 - x0), roi.shape[0] / (y1 - y0)
        for f in faces:  # crop pixels -> frame pixels (pixel-centre convention, as the detector's own resizing)
            f.box = np.array([(f.box[0] + 0.5) / sx - 0.5 + x0, (f.box[1] + 0.5) / sy - 0.5 + y0,
                              (f.box[2] + 0.5) / sx - 0.5 + x0, (f.box[3] + 0.5) / sy - 0.5 + y0], np.float32)
            lm = f.landmarks.astype(np.float64)
            f.landmarks = np.stack([(lm[:, 0] + 0.5) / sx - 0.5 + x0, (lm[:, 1] + 0.5) / sy - 0.5 + y0],
                                   axis=1).astype(np.float32)
        iou = box_iou(np.asarray(box, np.float64), np.stack([f.box for f in faces]))[0]
        best = int(np.argmax(iou))
        return faces[best] if iou[best] >= 0.2 else None


def build_processor(swapper: "FaceSwapper", sources: list[Any], match: Any = None, face: int | None = None,
                    all_faces: bool = False, **options: Any) -> FrameProcessor:
    """A :class:`FrameProcessor` for ``sources`` (photos or identity files, averaged; a photo without a face is one
    error, before any frame is read) and the face choice of ``swap``/``video``."""
    identity = swapper.source(*sources)
    if match is not None:
        match = swapper.match_identity(match)
    return FrameProcessor(swapper, identity, FaceChoice(face, all_faces, match), **options)


# ---------------------------------------------------------------------------------------------- video files in
class FileSource:
    """A video file's frames, upright RGB, decoded by ffmpeg ahead of the reader (a :mod:`.capture` source)."""

    kind = "file"

    def __init__(self, info: VideoInfo, max_frame_pixels: int | None):
        self.info = info
        self.name = printable(info.path.name)
        self.fps = info.fps if info.fps and info.fps > 0 else 25.0
        self.size = info.size
        self._reader = FrameReader(info, prefetch=4, max_frame_pixels=max_frame_pixels)
        self._frames = iter(self._reader)

    def read(self) -> np.ndarray | None:
        try:
            return next(self._frames)
        except StopIteration:
            if self._reader.error and self._reader.frames == 0:
                raise InputImageError(f"{self.info.path}: no frame could be decoded ({self._reader.error}); the file "
                                      "is damaged, re-export it") from None
            return None

    def close(self) -> None:
        self._reader.close()


def open_video_file(path: str | Path, max_frame_pixels: int | None = MAX_FRAME_PIXELS
                    ) -> tuple[FileSource, Callable[[], FileSource]]:
    """A video file as a live source, and a function that opens it again (``--loop``). Its header is read first:
    an unreadable file or frames over ``max_frame_pixels`` (0/None: no limit) are one :class:`InputImageError`."""
    limits = VideoLimits(max_frame_pixels, 0, 0)
    info = probe(path, limits.max_frame_pixels)
    limits.check(info)
    return FileSource(info, limits.max_frame_pixels), lambda: FileSource(info, limits.max_frame_pixels)


# ---------------------------------------------------------------------------------------------- MP4 out
class LabelledVideoWriter:
    """An H.264 file of live frames (``width`` x ``height`` at ``fps``), labelled as synthetic in its ``comment``
    and ``description`` like every video hififace writes, written to a temporary file beside ``path`` and renamed
    by :meth:`close` (so it is playable however the run ended); :meth:`abort` leaves nothing."""

    def __init__(self, path: str | Path, width: int, height: int, fps: float, meta: Mapping[str, str] | None = None,
                 crf: int = 20, preset: str = "veryfast"):
        self.path = Path(path)
        self.frames = 0
        self._meta = dict(meta or {})
        self._stack = contextlib.ExitStack()
        self._tmp_out = self._stack.enter_context(atomic_path(self.path))
        self._tmp_video = self._tmp_out.with_name(self._tmp_out.name + ".video.mp4")
        self._info = VideoInfo(path=self._tmp_video, width=int(width), height=int(height), fps=float(fps),
                               rate=exact_rate(float(fps)), duration=None, codec="rawvideo", pix_fmt="rgb24")
        try:
            # no ``meta`` here: the live loop has put the invisible watermark into the frames (every output's)
            self._writer = FrameWriter(self._tmp_video, self._info, crf=crf, preset=preset, queue_size=8,
                                       name=self.path.name)
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the encoding, put the label in (and the C2PA manifest: :func:`~hififace.media.video.mux`) and
        rename the file into place."""
        try:
            self._writer.close()
            mux(self._tmp_video, self._info, self._tmp_out, self._meta, name=self.path.name)
        except BaseException as err:
            self._tmp_video.unlink(missing_ok=True)
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._tmp_video.unlink(missing_ok=True)
        self._stack.close()

    def abort(self) -> None:
        """Stop and leave nothing behind."""
        self._writer.abort()
        self._tmp_video.unlink(missing_ok=True)
        err = HifiFaceError("aborted")
        with contextlib.suppress(HifiFaceError):
            self._stack.__exit__(HifiFaceError, err, None)


# ---------------------------------------------------------------------------------------------- the visible mark
def render_mark(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` with the visible "AI-generated" mark, drawn as ``--watermark`` draws it on files."""
    return np.asarray(add_watermark(Image.fromarray(rgb), WATERMARK_TEXT))
