"""Video files through ffmpeg: the binary imageio-ffmpeg ships (the ``video`` extra), no system ffmpeg needed.

- :func:`probe` reads a file's video stream (size, frame rate, display rotation), audio and container metadata
  from ``ffmpeg -i`` (imageio-ffmpeg has no ffprobe);
- :class:`FrameReader` decodes the first video stream to upright RGB frames (ffmpeg applies the rotation),
  one frame per coded frame, in a background thread;
- :class:`FrameWriter` encodes frames (H.264) in a background thread, turning them back to the file's stored
  orientation;
- :func:`mux` puts the encoded video, the input's audio (copied; re-encoded to AAC only when the container cannot
  hold it), its container metadata, the display rotation and our ``comment``/``description`` label into the output;
- :func:`write_animation` writes a short sequence of frames as a looping GIF (PIL) or an MP4 (ffmpeg), labelled.

:func:`mux` and :func:`write_animation` are where every video output is finished and labelled (see
:mod:`hififace.provenance.label`); :class:`FrameWriter` is where every frame of a swapped video passes.

Every ffmpeg process runs in its own session, so Ctrl-C reaches only Python, which stops them and removes every
temporary file. Every path is given to ffmpeg as a ``file:`` URL of the absolute path (:func:`ffmpeg_path`), so a
name with a colon (``12:30 clip.mp4``) or one that looks like a URL (``file:x.mp4``, ``http:...``) is the file it
names. :class:`VideoLimits` are the caps on a video's size checked before decoding (and on every decoded frame).
"""
from __future__ import annotations

import logging
import queue
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import HifiFaceError, InputImageError, MissingDependencyError
from ..provenance import outputs as _prov
from ..provenance.label import VIDEO_DESCRIPTION, WATERMARK_TEXT, add_watermark, comment_text
from ..utils.atomic import atomic_path
from ..utils.files import require_regular
from ..utils.optional import require
from .images import check_output_path, to_pil
from .limits import MAX_FRAME_PIXELS, MAX_FRAMES, MAX_SECONDS

log = logging.getLogger(__name__)

#: Output extension -> ffmpeg muxer.
VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}



class VideoLimitError(InputImageError):
    """A video is over one of the :class:`VideoLimits` (one line: the file, what was measured, the cap, the
    option that raises it)."""


def _pixels(n: int) -> str:
    return f"{n / 1e6:.3g} megapixels" if n >= 1_000_000 else f"{n:,} pixels"


def format_seconds(seconds: float) -> str:
    """``3 min 05 s``, ``1 h 02 min``, ``4.2 s``."""
    seconds = float(seconds)
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.3g} s"


@dataclass(frozen=True)
class VideoLimits:
    """Caps on a video, checked from its header before anything is decoded (:meth:`check`) and again on what is
    decoded (:meth:`check_decoded`; the decoder itself refuses larger frames), so a file whose header lies is
    stopped too. 0 (or None) means no limit. On the command line: ``--max-frame-pixels``, ``--max-frames``,
    ``--max-seconds``; in Python the keywords of the same names. The defaults and why: :mod:`hififace.media.limits`.
    """

    max_frame_pixels: int = MAX_FRAME_PIXELS
    max_frames: int = MAX_FRAMES
    max_seconds: float = MAX_SECONDS

    def __post_init__(self) -> None:
        for name in ("max_frame_pixels", "max_frames", "max_seconds"):
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, 0)
            elif value < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more, not {value}")

    def frame_too_large(self, path: Path, width: int, height: int, where: str = "") -> VideoLimitError:
        # the wording of the photo cap (hififace.media.images.decode), per frame
        return VideoLimitError(f"{path}: {width}x{height} frames{where} are too large (limit "
                               f"{_pixels(self.max_frame_pixels)} per frame); raise the limit with "
                               f"--max-frame-pixels N (0 = no limit)")

    def check(self, info: "VideoInfo") -> None:
        """Refuse ``info``'s video from its header: frame size, duration, frame count (estimated)."""
        if self.max_frame_pixels and info.width * info.height > self.max_frame_pixels:
            raise self.frame_too_large(info.path, info.width, info.height)
        if self.max_seconds and info.duration and info.duration > self.max_seconds:
            raise self._too_long(info.path, f"{format_seconds(info.duration)} of video is")
        frames = info.frames_estimate
        if self.max_frames and frames and frames > self.max_frames:
            raise self._too_many(info.path, f"about {frames:,} frames ({format_seconds(info.duration or 0)} at "
                                            f"{info.fps:.3g} fps) are")

    def check_decoded(self, info: "VideoInfo", frames: int) -> None:
        """Refuse a video whose decoded length passes a cap its header did not show (``frames`` decoded so far)."""
        said = f"the header said {format_seconds(info.duration) if info.duration else 'nothing'}"
        if self.max_frames and frames > self.max_frames:
            raise self._too_many(info.path, f"more than {self.max_frames:,} frames decoded (the header said about "
                                            f"{info.frames_estimate or '?'}) are")
        if self.max_seconds and info.fps and frames / info.fps > self.max_seconds:
            raise self._too_long(info.path, f"more than {format_seconds(self.max_seconds)} of video decoded "
                                            f"({frames:,} frames at {info.fps:.3g} fps; {said}) is")

    def _too_long(self, path: Path, what: str) -> VideoLimitError:
        return VideoLimitError(f"{path}: {what} too long (limit {format_seconds(self.max_seconds)}); raise the limit "
                               f"with --max-seconds S (0 = no limit)")

    def _too_many(self, path: Path, what: str) -> VideoLimitError:
        return VideoLimitError(f"{path}: {what} too many (limit {self.max_frames:,} frames); raise the limit with "
                               f"--max-frames N (0 = no limit)")


#: What ffmpeg's decoder says when a frame is over ``-max_pixels``.
_OVER_MAX_PIXELS = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")


def oversize_frame(text: str) -> tuple[int, int] | None:
    """(width, height) of a frame ffmpeg refused for ``-max_pixels``, from its error output."""
    m = _OVER_MAX_PIXELS.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def ffmpeg_path(path: str | Path) -> str:
    """``path`` as ffmpeg must be given it: a ``file:`` URL of the absolute path. ffmpeg reads ``NAME:...`` as a
    protocol (``12:30 clip.mp4`` -> "Protocol not found"; a file named ``file:x.mp4`` -> ``x.mp4``)."""
    return "file:" + str(Path(path).absolute())


def ffmpeg_exe(feature: str = "video files") -> str:
    """Path of the ffmpeg binary imageio-ffmpeg ships, or a :class:`MissingDependencyError`."""
    imageio_ffmpeg = require("imageio_ffmpeg", feature)
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        raise MissingDependencyError("an ffmpeg binary", "video", feature) from None


@dataclass
class VideoInfo:
    """What :func:`probe` found. ``width``/``height`` are as stored; ``rotation`` is the display rotation in degrees
    counter-clockwise (0, 90, 180 or 270), so the frames a viewer shows are :attr:`size`."""

    path: Path
    width: int
    height: int
    fps: float
    rate: str
    duration: float | None
    codec: str
    pix_fmt: str
    rotation: int = 0
    audio: list[str] = field(default_factory=list)  # codec of each audio stream
    metadata: dict[str, str] = field(default_factory=dict)  # container metadata

    @property
    def size(self) -> tuple[int, int]:
        """Upright (width, height): what decoded frames and viewers show."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def has_audio(self) -> bool:
        return bool(self.audio)

    @property
    def frames_estimate(self) -> int | None:
        return max(1, int(round(self.duration * self.fps))) if self.duration and self.fps else None


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout,
                          stdin=subprocess.DEVNULL, start_new_session=True)


def probe(path: str | Path, max_frame_pixels: int | None = None) -> VideoInfo:
    """Read a video file's header; every problem is one :class:`InputImageError` naming the file.

    ``max_frame_pixels`` makes the decoder refuse larger frames while ffmpeg looks at the first packets (cheaper on
    a pixel bomb); the size is still reported, and checked by :meth:`VideoLimits.check`."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InputImageError(f"{path}: is a folder, not a video file")
    require_regular(path, "video", InputImageError)  # ffmpeg would read a FIFO or a device forever
    if path.stat().st_size == 0:
        raise InputImageError(f"{path}: empty file (0 bytes); re-export or re-download the video")
    cap = ["-max_pixels", str(int(max_frame_pixels))] if max_frame_pixels else []
    text = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", *cap, "-i", ffmpeg_path(path)]).stderr
    info = parse_probe(text, path)
    if info is None:
        big = oversize_frame(text)
        if big and max_frame_pixels:  # a codec whose size only shows once decoded
            raise VideoLimits(max_frame_pixels=int(max_frame_pixels)).frame_too_large(path, *big)
        why = _probe_failure(text)
        raise InputImageError(f"{path}: {why}; re-export it (e.g. as H.264 MP4)")
    demuxer = re.search(r"Input #0, ([\w,]+), from", text)
    if demuxer and (demuxer.group(1) == "image2" or demuxer.group(1).endswith("_pipe")):
        raise InputImageError(f"{path}: is a still image, not a video; use 'hififace swap' for photos")
    return info


def read_tags(path: str | Path) -> dict[str, str]:
    """A video's container tags (keys lower case), with their values in full: the text :func:`probe` reads is cut
    at 255 characters a value, so the tags come from ffmpeg's FFMETADATA output of the same run, and ``encoder``
    (which that output replaces with the reading ffmpeg's own) from its input dump. A file ffmpeg cannot open is one
    :class:`InputImageError`."""
    path = Path(path)
    require_regular(path, "video", InputImageError)
    done = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", ffmpeg_path(path), "-f", "ffmetadata", "-"])
    if done.returncode != 0:
        raise InputImageError(f"{path}: {_probe_failure(done.stderr)}; re-export it (e.g. as H.264 MP4)")
    tags = parse_ffmetadata(done.stdout)
    tags.pop("encoder", None)
    info = parse_probe(done.stderr, path)
    if info is not None and "encoder" in info.metadata:
        tags["encoder"] = info.metadata["encoder"]
    return tags


def parse_ffmetadata(text: str) -> dict[str, str]:
    """The global tags of ffmpeg's FFMETADATA text (``key=value`` lines; ``=``, ``;``, ``#``, ``\\`` and newlines
    escaped with a backslash; ``;``/``#`` comment lines; sections such as ``[STREAM]`` end the global part)."""
    out: dict[str, str] = {}
    key: str | None = None
    cur: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "\n":
            line = "".join(cur)
            if key is not None:
                out[key.lower()] = line
            elif line.startswith("["):
                break
            key, cur = None, []
        elif ch == "=" and key is None and cur and cur[0] not in ";#":
            key, cur = "".join(cur), []
        else:
            cur.append(ch)
    return out


def _probe_failure(text: str) -> str:
    low = text.lower()
    if "moov atom not found" in low:
        return "cannot read the video (no index found: not a video, or truncated, or still being written)"
    if "invalid data found" in low or "could not find codec parameters" in low:
        return "not a video file ffmpeg can read (invalid data, or truncated)"
    if "stream #" in low:
        return "has no video stream"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "output file" not in ln]
    return f"cannot read the video ({lines[-1][:100] if lines else 'ffmpeg gave no reason'})"


def parse_probe(text: str, path: Path) -> VideoInfo | None:
    """:class:`VideoInfo` from the text of ``ffmpeg -i`` (None when it shows no video stream)."""
    lines = text.splitlines()
    metadata: dict[str, str] = {}
    video, audio, rotation = None, [], 0
    section, stream_kind = None, None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("Stream #"):
            stream_kind = "video" if " Video: " in stripped and "(attached pic)" not in stripped else \
                "audio" if " Audio: " in stripped else "other"
            if stream_kind == "video" and video is None:
                video = stripped
                stream_kind = "first_video"
            elif stream_kind == "audio":
                audio.append(stripped.split(" Audio: ", 1)[1].split()[0].rstrip(","))
            section = None
            continue
        if stripped.startswith(("Input #", "Duration:")):
            section = "container" if stripped.startswith("Input #") else None
            stream_kind = None
            continue
        if stripped == "Metadata:":
            section = "container_meta" if section == "container" and indent == 2 else "stream_meta"
            continue
        if section == "container_meta" and indent >= 4 and ":" in stripped:
            key, value = stripped.split(":", 1)
            metadata[key.strip().lower()] = value.strip()  # MP4 keys are lower case, Matroska tags upper case
        m = re.search(r"rotation of (-?[\d.]+) degrees", stripped)
        if m and stream_kind == "first_video":
            rotation = int(round(float(m.group(1)) / 90.0)) * 90 % 360
    if video is None:
        return None
    body = video.split(" Video: ", 1)[1]
    size = re.search(r"(?:^|[ ,])(\d{1,5})x(\d{1,5})(?=[ ,\[]|$)", body)
    if not size:
        return None
    fps_m = re.search(r"([\d.]+) fps", body) or re.search(r"([\d.]+)k? tbr", body)
    fps = float(fps_m.group(1)) if fps_m else 25.0
    dur_m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", text)
    duration = int(dur_m.group(1)) * 3600 + int(dur_m.group(2)) * 60 + float(dur_m.group(3)) if dur_m else None
    parts = re.split(r",\s*(?![^()]*\))", body)  # commas inside brackets do not separate fields
    pix_fmt = parts[1].split("(")[0].strip() if len(parts) > 1 else ""
    return VideoInfo(path=path, width=int(size.group(1)), height=int(size.group(2)), fps=fps, rate=exact_rate(fps),
                     duration=duration, codec=body.split()[0], pix_fmt=pix_fmt, rotation=rotation, audio=audio,
                     metadata=metadata)


def exact_rate(fps: float) -> str:
    """ffmpeg prints rates rounded (29.97); give the exact rational: NTSC rates k*1000/1001, else the fraction."""
    for k in (24, 30, 48, 60, 120, 240, 15):
        if abs(fps - k * 1000 / 1001) < 0.006:
            return f"{k * 1000}/1001"
    f = Fraction(fps).limit_denominator(1000)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


# ---------------------------------------------------------------- decoding
class FrameReader:
    """Upright RGB frames (H x W x 3 uint8) of ``info``'s first video stream, decoded ahead in a thread.

    Iterate it; :attr:`busy` is the seconds the thread spent waiting for ffmpeg (decoding time), :attr:`error` the
    end of ffmpeg's error output when the stream was damaged. With ``annotate`` (e.g. a face detector) the thread
    also runs ``annotate(frame)`` on each frame and yields ``(frame, result)`` pairs, so that work overlaps the
    consumer's (:attr:`annotate_busy` is its time).
    """

    def __init__(self, info: VideoInfo, prefetch: int = 16, annotate: Callable[[np.ndarray], Any] | None = None,
                 max_frame_pixels: int | None = None):
        self.info = info
        self.width, self.height = info.size
        self._err = tempfile.TemporaryFile()
        # the decoder refuses frames over the cap before allocating them (a header that lies is caught there)
        cap = ["-max_pixels", str(int(max_frame_pixels))] if max_frame_pixels else []
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", *cap, "-i", ffmpeg_path(info.path),
               "-map", "0:v:0",
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
                                     start_new_session=True, bufsize=0)
        self.busy = 0.0
        self.annotate = annotate
        self.annotate_busy = 0.0
        self.frames = 0
        self.error = ""
        self.oversize: tuple[int, int] | None = None  # (width, height) of a frame the decoder refused for the cap
        self._failure: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="hififace-decode", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        nbytes = self.width * self.height * 3
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                buf = bytearray(nbytes)
                view, got = memoryview(buf), 0
                while got < nbytes:
                    n = self.proc.stdout.readinto(view[got:])
                    if not n:
                        break
                    got += n
                self.busy += time.perf_counter() - t0
                if got < nbytes:
                    break
                frame = np.frombuffer(buf, np.uint8).reshape(self.height, self.width, 3)
                if self.annotate is not None:
                    t0 = time.perf_counter()
                    frame = (frame, self.annotate(frame))
                    self.annotate_busy += time.perf_counter() - t0
                self._put(frame)
        except (OSError, ValueError):  # the pipe was closed by close()
            pass
        except Exception as err:  # annotate() failed: hand the error to the consumer
            self._failure = err
        finally:
            self._put(None)

    def _put(self, item) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is None:
                break
            self.frames += 1
            yield item
        if self._failure is not None:
            raise self._failure
        rc = self.proc.wait()
        self._err.seek(0)
        text = self._err.read().decode("utf-8", "replace").strip()
        if rc != 0 or text:
            self.error = text.splitlines()[-1][:200] if text else f"ffmpeg exited with status {rc}"
        self.oversize = oversize_frame(text)

    def close(self) -> None:
        """Stop decoding now (also when the frames were not all read)."""
        self._stop.set()
        _stop_process(self.proc)
        self._thread.join(timeout=5)
        self._err.close()

    def __enter__(self) -> "FrameReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- encoding
class FrameWriter:
    """Encodes upright RGB frames to a video-only file with libx264 in a thread; frames are turned back to the
    input's stored orientation (the display rotation is set again by :func:`mux`). With ``meta`` from
    :func:`~hififace.provenance.label.output_label`, every frame gets the invisible watermark before encoding
    (:mod:`hififace.provenance.outputs`; ``provenance`` overrides the run's default)."""

    def __init__(self, path: Path, info: VideoInfo, crf: int = 18, preset: str = "medium", queue_size: int = 16,
                 name: str | None = None, meta: Mapping[str, str] | None = None,
                 provenance: "_prov.Provenance | None" = None):
        self.path = Path(path)
        # a model output (``meta`` from output_label) gets the invisible watermark in every frame, in this thread
        self.marker = _prov.FrameMarker(meta, provenance)
        self.name = name or self.path.name  # what messages call the file (a temporary file: the output's name)
        self.k = info.rotation // 90
        w, h = info.width, info.height  # stored size
        odd = w % 2 or h % 2
        pix = "yuv444p" if odd or info.pix_fmt.startswith("yuv444") else "yuv420p"
        self._err = tempfile.TemporaryFile()
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", info.rate, "-i", "-", "-an",
               "-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", pix, "-f", "mp4",
               ffmpeg_path(self.path)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err,
                                     start_new_session=True, bufsize=0)
        self.busy = 0.0
        self.frames = 0
        self._failed: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, queue_size))
        self._thread = threading.Thread(target=self._write, name="hififace-encode", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            while True:
                frame = self._queue.get()
                if frame is None:
                    break
                t0 = time.perf_counter()
                frame = self.marker(frame)
                if self.k:
                    frame = np.rot90(frame, -self.k)
                self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                self.busy += time.perf_counter() - t0
        except (OSError, ValueError) as err:  # ffmpeg died (bad parameters, disk full) or abort() closed the pipe
            self._failed = err

    def write(self, frame: np.ndarray) -> None:
        self._put(frame)
        self.frames += 1

    def _put(self, item: np.ndarray | None) -> None:
        """Queue a frame (None: the end) without ever waiting on a thread that has stopped: when ffmpeg dies with
        the queue full (a full disk), the writer thread ends and a plain ``put`` would block for good."""
        while True:
            if self._failed is not None or not self._thread.is_alive():
                raise self._failure()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _failure(self) -> HifiFaceError:
        """The error to raise for ffmpeg's failure: a full disk, or its last line of explanation."""
        self._err.seek(0)
        text = self._err.read().decode("utf-8", "replace").strip()
        if _NO_SPACE in text:
            return no_space_error(self.path, self.name)
        return HifiFaceError(f"{self.name}: the video encoder failed "
                             f"({text.splitlines()[-1][:200] if text else 'no message from ffmpeg'})")

    def close(self) -> None:
        """Finish the file; raises :class:`HifiFaceError` when ffmpeg failed."""
        self._put(None)
        self._thread.join()
        t0 = time.perf_counter()
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        rc = self.proc.wait()
        self.busy += time.perf_counter() - t0
        if rc != 0 or self._failed is not None:
            raise self._failure()
        self._err.close()

    def abort(self) -> None:
        """Stop now (Ctrl-C, an error): kill ffmpeg and drop queued frames."""
        _stop_process(self.proc)
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._err.close()


def _stop_process(proc: subprocess.Popen) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe:
            try:
                pipe.close()
            except OSError:
                pass
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover
        pass


# ---------------------------------------------------------------- muxing
_NO_SPACE = "No space left on device"
#: ffmpeg's words for a stream the output container cannot hold as it is (then the audio is re-encoded to AAC).
_INCOMPATIBLE = re.compile(
    r"could not find tag for codec|codec not currently supported in container|only supported in|not supported in"
    r"|is not supported by|incompatible with output codec|container format requires global headers"
    r"|incorrect codec parameters \?\): invalid argument", re.IGNORECASE)


def no_space_error(path: Path, name: str | None = None) -> HifiFaceError:
    """The one line for a full disk while writing ``path`` (``name``: what to call it, e.g. the final output)."""
    folder = Path(path).absolute().parent
    return HifiFaceError(f"{name or Path(path).name}: no space left on {folder}; free some space there or write the "
                         f"output elsewhere (-o)")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "ffmpeg gave no reason"


def mux_failure(stderr: str) -> str:
    """Why a mux failed, from ffmpeg's error output: ``space`` (the disk is full), ``codec`` (a stream the
    container cannot hold as it is) or ``other``."""
    if _NO_SPACE in stderr:
        return "space"
    return "codec" if _INCOMPATIBLE.search(stderr) else "other"


def mux(video: Path, info: VideoInfo, out: Path, meta: Mapping[str, str] | None = None, name: str | None = None,
        provenance: "_prov.Provenance | None" = None, ingredient: str | Path | None = None) -> None:
    """``out`` = the encoded ``video`` + ``info``'s audio streams (copied) + its container metadata, the display
    rotation and the synthetic-content label (``comment`` and ``description``, with the extra fields ``meta``).
    Audio a container cannot hold as it is (e.g. Opus in MOV) is re-encoded to AAC; any other failure (a full disk,
    a folder gone) is one error with ffmpeg's reason, without a retry. ``name`` is what messages call ``out``
    (default its file name). A model output (``meta`` from :func:`~hififace.provenance.label.output_label`) is then
    signed in place with a C2PA manifest (MP4, MOV; :func:`hififace.provenance.outputs.sign`), ``ingredient``
    (the target video) added only with ``--c2pa-ingredients``."""
    name = name or out.name
    comment, description = comment_text(meta, VIDEO_DESCRIPTION), VIDEO_DESCRIPTION
    fmt = VIDEO_FORMATS[out.suffix.lower()]
    base = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    if info.rotation:
        base += ["-display_rotation", str(info.rotation)]
    base += ["-i", ffmpeg_path(video), "-i", ffmpeg_path(info.path), "-map", "0:v:0", "-map", "1:a?",
             "-map_metadata", "1", "-c", "copy", "-metadata", f"comment={comment}",
             "-metadata", f"description={description}"]
    tail = (["-movflags", "+faststart"] if fmt in ("mp4", "mov") else []) + ["-f", fmt, ffmpeg_path(out)]
    done = _run(base + tail, timeout=3600)
    if done.returncode != 0 and info.has_audio and mux_failure(done.stderr) == "codec":
        why = next((ln.strip() for ln in done.stderr.splitlines() if _INCOMPATIBLE.search(ln)), "")
        log.info("%s: audio (%s) cannot be copied into %s (%s); re-encoding it to AAC", info.path.name,
                 ", ".join(info.audio), out.suffix, re.sub(r"^\[[^\]]*\]\s*", "", why)[:200])
        done = _run(base + ["-c:a", "aac", "-b:a", "192k"] + tail, timeout=3600)
    if done.returncode != 0:
        if mux_failure(done.stderr) == "space":
            raise no_space_error(out, name)
        raise HifiFaceError(f"{name}: writing the video failed ({_last_line(done.stderr)})")
    _prov.sign(out, meta, name=name, ingredient=ingredient, provenance=provenance)


# ---------------------------------------------------------------- short animations (identity interpolation)
#: Output extension -> what :func:`write_animation` writes.
ANIMATION_FORMATS = {".gif": "GIF", ".mp4": "MP4"}
#: Milliseconds per frame of an animation, as the reference's GIF.
FRAME_MS = 300


def check_animation_path(path: str | Path, no_clobber: bool = False) -> Path:
    """Refuse an unsupported animation output (or a missing MP4 writer) before any work is done; the replacement
    policy is :func:`hififace.media.images.check_output_path`'s."""
    path = check_output_path(path, ANIMATION_FORMATS, no_clobber)
    if path.suffix.lower() == ".mp4":
        _imageio_ffmpeg()
    return path


def _imageio_ffmpeg() -> str:
    """Path of the ffmpeg binary imageio-ffmpeg ships, or a :class:`MissingDependencyError`."""
    return ffmpeg_exe("MP4 output (or write a .gif)")


def write_animation(path: str | Path, frames: Sequence[Any], frame_ms: int = FRAME_MS, watermark: bool = False,
                    meta: Mapping[str, str] | None = None, watermark_text: str | None = None,
                    provenance: "_prov.Provenance | None" = None) -> Path:
    """Write ``frames`` (uint8 arrays or PIL images) as a looping GIF or an MP4, atomically and labelled; a model
    output (``meta`` from :func:`~hififace.provenance.label.output_label`) also gets the invisible watermark in
    every frame and, as an MP4, a signed C2PA manifest (a GIF cannot carry one: one info line says so)."""
    path = check_animation_path(path)
    if not frames:
        raise ValueError("no frames to write")
    images = [to_pil(f) for f in frames]
    if watermark:
        images = [add_watermark(im, watermark_text or WATERMARK_TEXT) for im in images]
    marker = _prov.FrameMarker(meta, provenance)
    if marker.enabled:
        images = [to_pil(marker(np.asarray(im))) for im in images]
    comment = comment_text(meta)
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".gif":
            # as the reference: PIL's own RGB -> palette conversion, `duration` ms per frame, loop forever
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0,
                           comment=comment.encode("utf-8"))
        else:
            _write_mp4(tmp, images, 1000.0 / frame_ms, comment, name=str(path))
        _prov.sign(tmp, meta, name=path, provenance=provenance)
    return path


def _write_mp4(path: Path, images: Sequence[Any], fps: float, comment: str, name: str | None = None) -> None:
    """Encode ``images`` (PIL, one size) to ``path`` with libx264, the output given to ffmpeg as a file
    (:func:`ffmpeg_path`); a full disk or an encoder failure is one line naming the file (``name``: the final
    output, when ``path`` is its temporary)."""
    w, h = images[0].size
    name = name or str(path)
    err = tempfile.TemporaryFile()
    # crf 10: imageio's quality=8 for libx264, what this writer used before; odd sizes are padded to even for
    # yuv420p (what players expect) instead of being resized
    cmd = [_imageio_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", exact_rate(fps), "-i", "-", "-an",
           "-c:v", "libx264", "-crf", "10", "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
           "-metadata", f"comment={comment}", "-metadata", "description=" + comment.split(" (")[0],
           "-movflags", "+faststart", "-f", "mp4", ffmpeg_path(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                            start_new_session=True)
    try:
        try:
            for im in images:
                proc.stdin.write(np.ascontiguousarray(np.asarray(im.convert("RGB"))).tobytes())
            proc.stdin.close()
        except OSError:  # ffmpeg stopped reading (a full disk, bad parameters): its own words say why, below
            pass
        rc = proc.wait()
    except BaseException:
        _stop_process(proc)
        err.close()
        raise
    err.seek(0)
    text = err.read().decode("utf-8", "replace")
    err.close()
    if _NO_SPACE in text:
        raise no_space_error(path, name)
    if rc != 0:
        raise HifiFaceError(f"{name}: writing the MP4 failed ({_last_line(text)})")
