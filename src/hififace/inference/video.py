"""Face swapping in videos: decode -> detect + track + smooth -> align -> swap (batched) -> paste back -> encode.

Frames are decoded and encoded by ffmpeg in background threads (:mod:`hififace.media.video`) while the main
thread works on batches of frames. The source identity is computed once. Faces are tracked across frames, so
``face=N`` (numbered in the first frame that shows a face) and ``match=REF`` follow the same person throughout; a
person lost for a moment is picked up again near where they were last seen. Landmarks are smoothed per track so
the crop does not jitter. Frames without the chosen face are passed through untouched (and counted).

The output keeps the frame rate, resolution and display rotation; the audio streams are copied, the container
metadata kept and the synthetic-content label written to its ``comment`` and ``description``. Everything is
written to a temporary file renamed at the end: an error or Ctrl-C leaves no output behind. On a CUDA model the
paste-back runs on the GPU.

A video over the :class:`~hififace.media.video.VideoLimits` (frame size, frame count, length) is refused from
its header before anything is decoded, and stopped when what is decoded passes a cap the header did not show.
Progress is a tqdm bar on a terminal, else a log line every :data:`LOG_EVERY` seconds.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch

from ..errors import HifiFaceError, InputImageError
from ..face.align import transform_points
from ..face.blend import paste_back_torch, paste_into
from ..face.choice import FaceChoice
from ..face.pose import WeightSmoother
from ..face.track import FaceTracker, Track
from ..media.images import check_output_path
from ..media.limits import MAX_FRAME_PIXELS, MAX_FRAMES, MAX_SECONDS
from ..media.video import VIDEO_FORMATS, FrameReader, FrameWriter, VideoInfo, VideoLimits, format_seconds, mux, probe
from ..provenance.label import WATERMARK_TEXT, add_watermark
from ..utils.atomic import atomic_path
from ..models.identity import Identity
from .pipeline import LOW_COVERAGE, FaceSwapper, PoseSources, low_coverage_reason

if TYPE_CHECKING:  # pragma: no cover
    from ..face.detect import Face  # noqa: F401

log = logging.getLogger(__name__)

STAGES = ("decode", "detect", "track", "align", "swap", "paste", "restore", "encode", "mux")
#: Seconds between progress lines in the log when no progress bar is drawn (stderr is not a terminal).
LOG_EVERY = 10.0


@dataclass
class VideoReport:
    """What :func:`swap_video` did. ``seconds`` holds the time of each stage (decode + detect and encode run in
    their own threads, overlapping the rest) and ``total`` the wall time. ``coverage``: the mean share of the face
    region replaced over every swapped face (None when none was swapped); ``faces_low_coverage``: how many swapped
    faces had almost nothing replaced (see :data:`~hififace.inference.pipeline.LOW_COVERAGE`)."""

    output: Path
    frames: int = 0
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    rotation: int = 0
    audio: bool = False
    frames_swapped: int = 0
    frames_without_face: int = 0
    frames_passed: int = 0
    faces_swapped: int = 0
    coverage: float | None = None
    faces_low_coverage: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in STAGES})
    total: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.total if self.total > 0 else 0.0


class _Chooser:
    """Which tracks to swap: decided in the first frame that shows a face, then followed by track id."""

    def __init__(self, swapper: "FaceSwapper", choice: FaceChoice, tracker: "FaceTracker", name: str):
        self.swapper, self.choice, self.tracker, self.name = swapper, choice, tracker, name
        self.ids: set[int] | None = None
        self.last: dict[int, tuple[np.ndarray, float]] = {}

    def pick(self, frame: np.ndarray, pairs: list[tuple["Track", "Face"]], index: int) -> list[tuple["Track", "Face"]]:
        if not pairs:
            return []
        if self.choice.all:
            return pairs
        if self.ids is None:
            faces = [f for _, f in pairs]
            if self.choice.index is not None and self.choice.index >= len(faces):
                raise InputImageError(f"{self.name}: no face #{self.choice.index} in frame {index}, the first frame "
                                      f"with faces ({len(faces)} found, numbered from 0 left to right); pick another "
                                      f"--face")
            chosen = self.swapper.choose(frame, faces, self.choice, name=f"{self.name} (frame {index})")
            self.ids = {pairs[i][0].id for i in chosen}
            log.info("%s: swapping the face chosen in frame %d (face #%s of %d, left to right)", self.name, index,
                     ", #".join(str(i) for i in chosen), len(faces))
        live = {t.id for t, _ in pairs}
        for tid in list(self.ids):  # a chosen person whose track ended: pick them up again where they were last seen
            if tid not in live and tid in self.last and all(t.id != tid for t in self.tracker.tracks):
                center, size = self.last[tid]
                cand = self.tracker.near(center, size, exclude=self.ids)
                if cand is not None and cand.id in live:
                    self.ids.discard(tid)
                    self.ids.add(cand.id)
                    self.last.pop(tid, None)
        out = [(t, f) for t, f in pairs if t.id in self.ids]
        for t, f in out:
            self.last[t.id] = (t.center, max(t.size, 1.0))
        return out


def swap_video(swapper: "FaceSwapper", source: Any, target: str | Path, output: str | Path, face: int | None = None,
               all_faces: bool = False, match: Any = None, batch_frames: int = 8, smooth: float = 1.0,
               crf: int = 18, preset: str = "medium", watermark: bool = False, meta: Mapping[str, str] | None = None,
               progress: bool = True, paste: str = "auto", max_frame_pixels: int | None = MAX_FRAME_PIXELS,
               max_frames: int | None = MAX_FRAMES, max_seconds: float | None = MAX_SECONDS,
               should_stop: Callable[[], str | None] | None = None) -> VideoReport:
    """Swap ``source``'s identity onto faces in video ``target``; write ``output`` (.mp4, .mov, .mkv).

    ``face``/``all_faces``/``match`` choose the faces as for photos (default: the largest), in the first frame that
    shows a face. ``batch_frames`` frames are processed together; ``smooth`` sets the landmark smoothing (0 = off);
    ``crf``/``preset`` are libx264's. ``paste``: ``torch`` (GPU), ``numpy`` or ``auto`` (torch on CUDA).

    ``max_frame_pixels``, ``max_frames`` and ``max_seconds`` cap the video (0 or None: no limit; see
    :class:`~hififace.media.video.VideoLimits`); over a cap is one
    :class:`~hififace.media.video.VideoLimitError`. ``should_stop`` is called between batches: a reason
    (text) it returns stops the swap with a :class:`~hififace.errors.HifiFaceError` (the web app's time limit).
    """
    if batch_frames < 1:
        raise ValueError("batch_frames must be 1 or more")
    t_start = time.perf_counter()
    limits = VideoLimits(max_frame_pixels, max_frames, max_seconds)
    out = check_output_path(output, VIDEO_FORMATS)
    info = probe(target, limits.max_frame_pixels)
    limits.check(info)  # from the header: nothing is decoded yet
    identity = source if isinstance(source, PoseSources) else swapper.identity(source)
    # several sources weighted by head pose: the weights of each tracked face follow the head smoothly
    smoother = WeightSmoother(info.fps) if isinstance(identity, PoseSources) else None
    if match is not None:  # encoded now: the detector is busy in the decoding thread once frames flow
        match = swapper.match_identity(match)
    choice = FaceChoice(face, all_faces, match)
    use_torch = paste == "torch" or (paste == "auto" and getattr(swapper.engine.device, "type", "cpu") == "cuda")
    report = VideoReport(out, fps=info.fps, size=info.size, rotation=info.rotation, audio=info.has_audio)
    tracker = FaceTracker(info.fps, max_lost=max(1, int(round(info.fps / 2))), smooth=smooth)
    chooser = _Chooser(swapper, choice, tracker, info.path.name)
    small_noted: set[int] = set()
    bar = _Progress(info, progress)

    def check_stop() -> None:
        reason = should_stop() if should_stop is not None else None
        if reason:
            raise HifiFaceError(f"{info.path}: stopped after {format_seconds(time.perf_counter() - t_start)}, "
                                f"{bar.done} of about {info.frames_estimate or '?'} frames done: {reason}")

    with atomic_path(out) as tmp_out:
        tmp_video = tmp_out.with_name(tmp_out.name + ".video.mp4")
        # detection runs in the decoding thread, overlapping the swap of the previous batch
        reader = FrameReader(info, prefetch=2 * batch_frames, annotate=swapper.detect,
                             max_frame_pixels=limits.max_frame_pixels)
        writer = None
        try:
            writer = FrameWriter(tmp_video, info, crf=crf, preset=preset, queue_size=2 * batch_frames, name=out.name,
                                 meta=meta)  # meta: also the invisible watermark in every frame
            batch: list[tuple[np.ndarray, list["Face"]]] = []
            for item in reader:
                limits.check_decoded(info, reader.frames)  # a header that understated the length
                batch.append(item)
                if len(batch) == batch_frames:
                    check_stop()
                    _run_batch(swapper, identity, batch, report, tracker, chooser, small_noted, use_torch, watermark,
                               writer, bar, smoother)
                    batch = []
            if reader.oversize:  # the decoder refused frames over the cap that the header did not show
                raise limits.frame_too_large(info.path, *reader.oversize, where=" (after the header's "
                                             f"{info.width}x{info.height}, from frame {reader.frames})")
            if batch:
                check_stop()
                _run_batch(swapper, identity, batch, report, tracker, chooser, small_noted, use_torch, watermark,
                           writer, bar, smoother)
            if reader.frames == 0:
                raise InputImageError(f"{info.path}: no frame could be decoded ({reader.error or 'empty stream'}); "
                                      f"the file is damaged, re-export it")
            if reader.error:
                log.warning("%s: decoding stopped after %d frame(s) (%s); the file may be truncated; the output "
                            "has those frames", info.path.name, reader.frames, reader.error)
            writer.close()
            t0 = time.perf_counter()
            mux(tmp_video, info, tmp_out, meta, name=out.name, ingredient=info.path)  # signed (C2PA) here
            report.seconds["mux"] = time.perf_counter() - t0
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            reader.close()
            bar.close()
            tmp_video.unlink(missing_ok=True)
    report.seconds["decode"] = reader.busy
    report.seconds["detect"] = reader.annotate_busy
    report.seconds["encode"] = writer.busy
    report.frames = reader.frames
    report.total = time.perf_counter() - t_start
    if report.frames_without_face:
        log.info("%s: %d of %d frame(s) without a face, passed through", info.path.name, report.frames_without_face,
                 report.frames)
    if report.frames_swapped == 0:
        log.warning("%s: no face was swapped in any frame; the output shows the input", info.path.name)
    elif report.faces_low_coverage:
        log.warning("%s: almost nothing replaced in %d of %d swapped face(s) (%.0f %% of the face region on average): "
                    "%s", info.path.name, report.faces_low_coverage, report.faces_swapped, 100 * (report.coverage or 0),
                    low_coverage_reason(swapper.model_mask))
    return report


class _Progress:
    """A tqdm bar (drawn when stderr is a terminal; the web app's page follows it too) and, when no bar is drawn, a
    log line every :data:`LOG_EVERY` seconds: frames done of the total, frames per second, time left."""

    def __init__(self, info: VideoInfo, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=info.frames_estimate, desc="video", unit="frame", disable=None if enabled else True,
                        leave=False, dynamic_ncols=True)
        self.lines = enabled and bool(self.bar.disable)
        self.name, self.total, self.done = info.path.name, info.frames_estimate, 0
        self.start = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        now = time.monotonic()
        if self.lines and now - self.last >= LOG_EVERY:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            if self.total and self.done <= self.total:
                log.info("%s: %d/%d frames (%d%%), %.2f frames/s, about %s left", self.name, self.done, self.total,
                         100 * self.done // self.total, rate, format_seconds((self.total - self.done) / rate))
            else:
                log.info("%s: %d frames, %.2f frames/s", self.name, self.done, rate)

    def close(self) -> None:
        self.bar.close()


def _run_batch(swapper: "FaceSwapper", identity: "Identity | PoseSources", batch: list[tuple[np.ndarray, list["Face"]]],
               report: VideoReport, tracker: "FaceTracker", chooser: _Chooser, small_noted: set[int], use_torch: bool,
               watermark: bool, writer: FrameWriter, bar, smoother: WeightSmoother | None = None) -> None:
    sec = report.seconds
    frames = [f for f, _ in batch]
    # track and choose (sequential: tracks carry over from frame to frame); detection ran in the decoding thread
    t0 = time.perf_counter()
    owners: list[int] = []
    faces: list["Face"] = []
    tracks: list[int] = []  # track id of each face
    indices: list[int] = []  # frame number of each batch frame
    for k, (frame, found) in enumerate(batch):
        index = report.frames_passed + report.frames_swapped
        indices.append(index)
        if not found:
            report.frames_without_face += 1
        picked = chooser.pick(frame, tracker.update(index, found), index)
        todo = []
        for track, f in picked:
            if f.size < swapper.min_face:
                if track.id not in small_noted:
                    small_noted.add(track.id)
                    log.info("%s: a chosen face is %.0f px in frame %d, below the minimum face size %.0f px; left "
                             "alone while that small", chooser.name, f.size, index, swapper.min_face)
                continue
            todo.append(f)
            tracks.append(track.id)
        owners += [k] * len(todo)
        faces += todo
        if todo:
            report.frames_swapped += 1
        else:
            report.frames_passed += 1
    sec["track"] += time.perf_counter() - t0
    if faces:
        t0 = time.perf_counter()
        crops, mats = [], []
        for k in sorted(set(owners)):
            c, m = swapper.align(frames[k], [f.landmarks for f, o in zip(faces, owners) if o == k])
            crops.append(c)
            mats.append(m)
        crops_a, mats_a = np.concatenate(crops), np.concatenate(mats)
        sec["align"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        fid = swapper.face_identities(identity, crops_a, tracks, [indices[k] for k in owners], smoother)
        if smoother is not None:
            smoother.forget([t.id for t in tracker.tracks])
        i_r, m_r = swapper.swap_crops(fid.swap, crops_a)
        _sync(swapper)
        sec["swap"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        lms = np.stack([transform_points(f.landmarks, m) for f, m in zip(faces, mats_a)])
        blend = swapper.blend_faces(crops_a, i_r, m_r, lms, swapper.mouth_landmarks(faces, mats_a))
        swapped, alphas = blend.faces, blend.alphas
        if swapper.observer is not None:  # the quality report: one call per frame
            own = np.asarray(owners)
            for k in sorted(set(owners)):
                sel = np.flatnonzero(own == k)
                rows = torch.from_numpy(sel)
                swapper.observer.add(indices[k], [tracks[j] for j in sel], crops_a[sel], swapped[sel], alphas[sel],
                                     landmarks=lms[sel],
                                     target_coeffs=None if fid.target_coeffs is None else fid.target_coeffs[rows.to(fid.target_coeffs.device)],
                                     sources=None if fid.sources is None else fid.sources[rows.to(fid.sources.v_id.device)])
        if use_torch:
            frames = _paste_torch(frames, owners, swapped, mats_a, alphas, swapper.engine.device)
        else:
            for j, k in enumerate(owners):
                paste_into(frames[k], swapped[j], mats_a[j], alphas[j])
        if swapper.enhancer is not None:  # --enhance: its own stage, out of the paste time
            t1 = time.perf_counter()
            swapper.restore_faces(frames, owners, [f.landmarks for f in faces], mats_a, alphas)
            _sync(swapper)
            sec["restore"] += time.perf_counter() - t1
            t0 += time.perf_counter() - t1
        done = report.faces_swapped
        report.coverage = (float(blend.coverage.sum()) + (report.coverage or 0.0) * done) / (done + len(faces))
        report.faces_low_coverage += int((blend.coverage < LOW_COVERAGE).sum())
        report.faces_swapped += len(faces)
        sec["paste"] += time.perf_counter() - t0
    for frame in frames:
        if watermark:
            frame = _watermark(frame)
        writer.write(frame)
    bar.update(len(frames))


def _sync(swapper: "FaceSwapper") -> None:
    device = swapper.engine.device
    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)


def _paste_torch(frames: list[np.ndarray], owners: list[int], crops: np.ndarray, mats: np.ndarray,
                 alphas: np.ndarray, device: Any) -> list[np.ndarray]:
    """Paste-back of a batch on ``device`` (the frames go up once, come back once). Frames hold 0..255 floats, so a
    pixel whose alpha is 0 comes back with its exact value."""

    used = sorted(set(owners))
    pos = {k: n for n, k in enumerate(used)}
    ft = torch.from_numpy(np.stack([frames[k] for k in used])).to(device).permute(0, 3, 1, 2).float()
    ct = torch.from_numpy(crops).to(device).permute(0, 3, 1, 2).float()
    at = torch.from_numpy(alphas).to(device)[:, None]
    seen: dict[int, int] = {}
    slots: list[list[int]] = []
    for j, k in enumerate(owners):  # faces of one frame go in successive passes (one face per frame per pass)
        s = seen.get(k, 0)
        seen[k] = s + 1
        if s == len(slots):
            slots.append([])
        slots[s].append(j)
    for slot in slots:
        rows = [pos[owners[j]] for j in slot]
        ft[rows] = paste_back_torch(ft[rows], ct[slot], mats[slot], masks=at[slot], erode=0.0, blur=0.0)
    back = ft.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = list(frames)
    for k, n in pos.items():
        out[k] = back[n]
    return out


def _watermark(frame: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(add_watermark(Image.fromarray(frame), WATERMARK_TEXT))
