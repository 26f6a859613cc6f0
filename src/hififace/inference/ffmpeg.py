"""Video files through ffmpeg: the binary imageio-ffmpeg ships (the ``video`` extra), no system ffmpeg needed.

- :func:`probe` reads a file's video stream (size, frame rate, display rotation), audio and container metadata
  from ``ffmpeg -i`` (imageio-ffmpeg has no ffprobe);
- :class:`FrameReader` decodes the first video stream to upright RGB frames (ffmpeg applies the rotation),
  one frame per coded frame, in a background thread;
- :class:`FrameWriter` encodes frames (H.264) in a background thread, turning them back to the file's stored
  orientation;
- :func:`mux` puts the encoded video, the input's audio (copied; re-encoded to AAC only when the container cannot
  hold it), its container metadata, the display rotation and our ``comment``/``description`` label into the output.

Every ffmpeg process runs in its own session, so Ctrl-C reaches only Python, which stops them and removes every
temporary file.
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
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import HifiFaceError, InputImageError, MissingDependencyError
from ..utils.files import require_regular

log = logging.getLogger(__name__)

#: Output extension -> ffmpeg muxer.
VIDEO_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


def ffmpeg_exe(feature: str = "video files") -> str:
    """Path of the ffmpeg binary imageio-ffmpeg ships, or a :class:`MissingDependencyError`."""
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise MissingDependencyError(err.name or "imageio-ffmpeg", "video", feature) from None
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


def probe(path: str | Path) -> VideoInfo:
    """Read a video file's header; every problem is one :class:`InputImageError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InputImageError(f"{path}: is a folder, not a video file")
    require_regular(path, "video", InputImageError)  # ffmpeg would read a FIFO or a device forever
    if path.stat().st_size == 0:
        raise InputImageError(f"{path}: empty file (0 bytes); re-export or re-download the video")
    text = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]).stderr
    info = parse_probe(text, path)
    if info is None:
        why = _probe_failure(text)
        raise InputImageError(f"{path}: {why}; re-export it (e.g. as H.264 MP4)")
    demuxer = re.search(r"Input #0, ([\w,]+), from", text)
    if demuxer and (demuxer.group(1) == "image2" or demuxer.group(1).endswith("_pipe")):
        raise InputImageError(f"{path}: is a still image, not a video; use 'hififace swap' for photos")
    return info


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

    def __init__(self, info: VideoInfo, prefetch: int = 16, annotate: Callable[[np.ndarray], Any] | None = None):
        self.info = info
        self.width, self.height = info.size
        self._err = tempfile.TemporaryFile()
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(info.path), "-map", "0:v:0",
               "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._err, stdin=subprocess.DEVNULL,
                                     start_new_session=True, bufsize=0)
        self.busy = 0.0
        self.annotate = annotate
        self.annotate_busy = 0.0
        self.frames = 0
        self.error = ""
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
    input's stored orientation (the display rotation is set again by :func:`mux`)."""

    def __init__(self, path: Path, info: VideoInfo, crf: int = 18, preset: str = "medium", queue_size: int = 16):
        self.path = Path(path)
        self.k = info.rotation // 90
        w, h = info.width, info.height  # stored size
        odd = w % 2 or h % 2
        pix = "yuv444p" if odd or info.pix_fmt.startswith("yuv444") else "yuv420p"
        self._err = tempfile.TemporaryFile()
        cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", info.rate, "-i", "-", "-an",
               "-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", pix, "-f", "mp4",
               str(self.path)]
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
                if self.k:
                    frame = np.rot90(frame, -self.k)
                self.proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                self.busy += time.perf_counter() - t0
        except (OSError, ValueError) as err:  # ffmpeg died (bad parameters, disk full) or abort() closed the pipe
            self._failed = err

    def write(self, frame: np.ndarray) -> None:
        if self._failed is not None or not self._thread.is_alive():
            raise HifiFaceError(f"{self.path.name}: the video encoder stopped ({self._reason()})")
        self._queue.put(frame)
        self.frames += 1

    def _reason(self) -> str:
        self._err.seek(0)
        text = self._err.read().decode("utf-8", "replace").strip()
        return text.splitlines()[-1][:200] if text else "no message from ffmpeg"

    def close(self) -> None:
        """Finish the file; raises :class:`HifiFaceError` when ffmpeg failed."""
        self._queue.put(None)
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
            raise HifiFaceError(f"encoding the video failed ({self._reason()})")
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
def mux(video: Path, info: VideoInfo, out: Path, comment: str, description: str) -> None:
    """``out`` = the encoded ``video`` + ``info``'s audio streams (copied) + its container metadata, the display
    rotation and the label. Audio a container cannot hold as it is (e.g. PCM in MP4) is re-encoded to AAC."""
    fmt = VIDEO_FORMATS[out.suffix.lower()]
    base = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
    if info.rotation:
        base += ["-display_rotation", str(info.rotation)]
    base += ["-i", str(video), "-i", str(info.path), "-map", "0:v:0", "-map", "1:a?", "-map_metadata", "1",
             "-c", "copy", "-metadata", f"comment={comment}", "-metadata", f"description={description}"]
    tail = (["-movflags", "+faststart"] if fmt in ("mp4", "mov") else []) + ["-f", fmt, str(out)]
    done = _run(base + tail, timeout=3600)
    if done.returncode != 0 and info.has_audio:
        log.info("%s: audio (%s) cannot be copied into %s; re-encoding it to AAC", info.path.name,
                 ", ".join(info.audio), out.suffix)
        done = _run(base + ["-c:a", "aac", "-b:a", "192k"] + tail, timeout=3600)
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise HifiFaceError(f"{out.name}: writing the video failed ({lines[-1][:200] if lines else 'ffmpeg failed'})")
