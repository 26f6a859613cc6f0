"""Frames in: a camera, a network stream or a video file, read in a thread that keeps only the newest frame.

A :class:`Source` is anything with ``read() -> RGB frame | None``, ``close()``, a ``name`` for messages, a ``kind``
(``camera``, ``stream`` or ``file``) and a nominal ``fps``. :func:`open_camera` and :func:`open_stream` make one
with OpenCV (``cv2.VideoCapture``); video files are opened by :func:`hififace.live.swapper.open_video_file`
(ffmpeg, with the limits every video input has).

:class:`Capture` reads a source in a background thread and hands the newest frame to the consumer through a
:class:`LatestFrame`: a slot of one, so a slow consumer never builds a queue (and the latency never grows); every
frame replaced before it was taken counts as dropped. Each frame carries its time stamp (``time.monotonic()`` when
it was taken, or when it was due for a file). By kind:

- ``file``: played in real time at its frame rate (what a camera pointed at the screen would see); when the
  decoder falls behind, late frames are skipped (and counted as dropped); at the end it stops, or starts again with
  ``loop=True``;
- ``stream``: treated as a camera; it is paced only when it comes faster than its frame rate (a file served over
  HTTP); when it stalls or ends it is reopened, ``retries`` times at most (waiting 1, 2, 4, ... s), then the capture
  stops with one line saying so;
- ``camera``: a camera that stops delivering frames (unplugged, taken by another program) stops the capture with
  one line.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..errors import HifiFaceError, InputImageError, MissingDependencyError
from ..face.detect import quiet_opencv
from ..utils.text import printable

log = logging.getLogger(__name__)

#: URL schemes ``--input`` takes as a network stream (anything else is a file path).
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
#: Seconds OpenCV's FFmpeg backend waits to open a stream and for each frame before it gives up.
STREAM_OPEN_TIMEOUT = 10.0
STREAM_READ_TIMEOUT = 5.0
#: A camera that delivers no frame for this long (seconds), with at least :data:`CAMERA_FAILURES` failed reads in a
#: row, has gone.
CAMERA_GONE_SECONDS = 2.0
CAMERA_FAILURES = 5
#: Frame rate assumed when a source does not say (a webcam whose driver reports 0).
DEFAULT_FPS = 30.0


@dataclass
class Captured:
    """One frame from a source: ``seq`` counts the frames read (0, 1, ...; on over loops), ``timestamp`` is
    ``time.monotonic()`` when it was taken (or due, for a file), ``frame`` is H x W x 3 uint8 RGB."""

    seq: int
    timestamp: float
    frame: np.ndarray


class LatestFrame:
    """A slot holding the newest frame only: :meth:`put` replaces what was not taken yet (counted in
    :attr:`dropped`), :meth:`get` waits for a frame newer than the last one taken."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Captured | None = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Captured) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Captured | None:
        """The newest frame not taken yet, or None after ``timeout`` seconds (or once closed and empty)."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def discard(self) -> int:
        """Drop what is waiting (at the end of a run: it will never be taken); returns 1 if a frame was there."""
        with self._cond:
            if self._item is None:
                return 0
            self._item = None
            self.dropped += 1
            return 1


class Source(Protocol):
    """Where frames come from (see the module docstring)."""

    name: str
    kind: str
    fps: float

    def read(self) -> np.ndarray | None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------- OpenCV sources
def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise MissingDependencyError("opencv-python-headless", "face", "cameras and streams") from None
    return cv2


def is_stream_url(text: str) -> bool:
    """True when ``--input`` names a network stream (``rtsp://...``, ``http://...``) rather than a file."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


def safe_url(url: str) -> str:
    """``url`` for messages: any user name and password removed, hidden characters escaped, length bounded."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        url = url.split("://", 1)[0] + "://..."
    return printable(url, 120)


class CvSource:
    """A camera or a network stream read with ``cv2.VideoCapture`` (frames converted to RGB)."""

    def __init__(self, capture: Any, name: str, kind: str, fps: float, max_pixels: int | None = None):
        self.cap, self.name, self.kind = capture, name, kind
        self.fps = fps if fps and 1.0 <= fps <= 240.0 else DEFAULT_FPS
        self.max_pixels = max_pixels
        self._cv2 = _cv2()

    def read(self) -> np.ndarray | None:
        try:
            ok, frame = self.cap.read()
        except self._cv2.error:
            return None
        if not ok or frame is None or frame.ndim < 2:
            return None
        h, w = frame.shape[:2]
        if self.max_pixels and h * w > self.max_pixels:
            raise InputImageError(f"{self.name}: {w}x{h} frames are too large (limit {self.max_pixels:,} pixels per "
                                  f"frame); raise the limit with --max-frame-pixels N (0 = no limit)")
        if frame.ndim == 2:
            return self._cv2.cvtColor(frame, self._cv2.COLOR_GRAY2RGB)
        code = self._cv2.COLOR_BGRA2RGB if frame.shape[2] == 4 else self._cv2.COLOR_BGR2RGB
        return self._cv2.cvtColor(frame, code)

    def close(self) -> None:
        try:
            self.cap.release()
        except Exception:  # pragma: no cover - a driver failing on release: nothing more to do
            pass


def open_camera(index: int, size: tuple[int, int] | None = None, fps: float | None = None,
                max_pixels: int | None = None, first_frame_seconds: float = 5.0) -> CvSource:
    """OpenCV camera ``index`` (``size`` = (width, height) and ``fps`` asked of the driver when given), checked by
    reading a first frame; a camera that is not there or delivers nothing is one :class:`HifiFaceError`."""
    cv2 = _cv2()
    name = f"camera {index}"
    with quiet_opencv(cv2):  # "can't open camera by index" and the like go straight to stderr otherwise
        cap = cv2.VideoCapture(int(index))
        if not cap.isOpened():
            cap.release()
            raise HifiFaceError(f"{name}: cannot be opened (no such camera, or another program holds it); try another "
                                "--camera N (on Linux 'v4l2-ctl --list-devices' lists them) or --input FILE|URL")
        if size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(size[0]))
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(size[1]))
        if fps:
            cap.set(cv2.CAP_PROP_FPS, float(fps))
        source = CvSource(cap, name, "camera", float(cap.get(cv2.CAP_PROP_FPS) or 0.0), max_pixels)
        deadline = time.monotonic() + first_frame_seconds
        while source.read() is None:  # cameras take a moment to deliver their first frame
            if time.monotonic() > deadline:
                source.close()
                raise HifiFaceError(f"{name}: opened, but delivered no frame in {first_frame_seconds:g} s; check that "
                                    "no other program uses it, or try another --camera N")
            time.sleep(0.05)
    return source


def open_stream(url: str, max_pixels: int | None = None) -> CvSource:
    """A network stream (RTSP, RTMP, HTTP, ...) through OpenCV's FFmpeg backend, with open and read timeouts."""
    cv2 = _cv2()
    name = safe_url(url)
    params = []
    for prop, seconds in (("CAP_PROP_OPEN_TIMEOUT_MSEC", STREAM_OPEN_TIMEOUT),
                          ("CAP_PROP_READ_TIMEOUT_MSEC", STREAM_READ_TIMEOUT)):
        if hasattr(cv2, prop):
            params += [getattr(cv2, prop), int(seconds * 1000)]
    with quiet_opencv(cv2):
        try:
            cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        except cv2.error:
            cap = None
        if cap is None or not cap.isOpened():
            if cap is not None:
                cap.release()
            raise InputImageError(f"{name}: cannot open this stream (unreachable, refused, or not a video stream); "
                                  "check the address, e.g. with ffplay or VLC")
    return CvSource(cap, name, "stream", float(cap.get(cv2.CAP_PROP_FPS) or 0.0), max_pixels)


# ---------------------------------------------------------------------------------------------- the capture thread
class Capture:
    """Reads ``source`` in a thread into a :class:`LatestFrame` (see the module docstring).

    Args:
        source: an open source.
        reopen: makes the source again (``loop`` for files, reconnecting streams); None: neither is possible.
        loop: start a file again at its end.
        retries: reconnection attempts for a stream that stalls or ends.
        retry_wait: seconds before the first attempt (doubled each time, 8 s at most).

    Attributes:
        frames: frames read from the source; :attr:`dropped` of them were never taken (replaced by a newer one,
        late, or left at the end); :attr:`fault` is the one line that says why the capture stopped early (None when
        it ended normally or was stopped); :attr:`finished` is set once the thread is done.
    """

    def __init__(self, source: Source, reopen: Callable[[], Source] | None = None, loop: bool = False,
                 retries: int = 5, retry_wait: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.source, self.reopen, self.loop = source, reopen, bool(loop)
        self.retries, self.retry_wait, self.clock = int(retries), float(retry_wait), clock
        self.slot = LatestFrame()
        self.frames = 0
        self.late = 0
        self.reconnects = 0
        self._tries = 0
        self.fault: str | None = None
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hififace-capture", daemon=True)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def dropped(self) -> int:
        return self.slot.dropped + self.late

    def start(self) -> "Capture":
        self._thread.start()
        return self

    def get(self, timeout: float | None = 0.1) -> Captured | None:
        """The newest frame not taken yet (None: nothing new within ``timeout``; see :attr:`finished`)."""
        return self.slot.get(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading and close the source; what is left in the slot counts as dropped."""
        self._stop.set()
        self.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self.slot.discard()

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        try:
            self._read_all()
        except HifiFaceError as err:  # a frame over the size limit, a reopen that failed for good
            self.fault = str(err)
        except Exception as err:  # a decoder failing in a way not foreseen: one line, and the details at -v
            log.debug("capture failed", exc_info=True)
            self.fault = f"{self.source.name}: reading frames failed ({type(err).__name__}: {printable(err, 120)})"
        finally:
            try:
                self.source.close()
            finally:
                self.finished.set()
                self.slot.close()

    def _read_all(self) -> None:
        paced = self.source.kind in ("file", "stream")
        start, index, failures, failing_since = None, 0, 0, None
        while not self._stop.is_set():
            frame = self.source.read()
            now = self.clock()
            if frame is None:
                if self.source.kind == "file":
                    if not (self.loop and self.reopen is not None):
                        return
                    self._swap_source(self.reopen())
                    start, index = None, 0
                    continue
                if self.source.kind == "stream":
                    if not self._reconnect():
                        return
                    start, index = None, 0
                    continue
                failures += 1  # a camera: a hiccup, or gone
                failing_since = failing_since if failing_since is not None else now
                if failures >= CAMERA_FAILURES and now - failing_since >= CAMERA_GONE_SECONDS:
                    self.fault = (f"{self.source.name}: stopped delivering frames (unplugged, or taken by another "
                                  "program)")
                    return
                self._stop.wait(0.05)
                continue
            failures, failing_since, self._tries = 0, None, 0
            self.frames += 1
            stamp = now
            if paced:
                interval = 1.0 / self.source.fps
                if start is None:
                    start = now
                due = start + index * interval
                index += 1
                if now < due:  # ahead of real time: wait for the frame's moment
                    if self._stop.wait(due - now):
                        return
                    stamp = self.clock()
                elif now > due + interval:
                    if self.source.kind == "file":  # the decoder fell behind: this frame's moment has passed
                        self.late += 1
                        continue
                    start = now - (index - 1) * interval  # a live stream that came late: its clock is ours
            self.slot.put(Captured(self.frames - 1, stamp, frame))

    def _swap_source(self, source: Source) -> None:
        old, self.source = self.source, source
        old.close()

    def _reconnect(self) -> bool:
        """Reopen a stream that stalled or ended; False (with :attr:`fault` set) once :attr:`retries` attempts in a
        row brought no frame."""
        name = self.source.name
        if self.reopen is None or self.retries <= 0:
            self.fault = f"{name}: the stream stalled or ended"
            return False
        self.source.close()
        while self._tries < self.retries:
            self._tries += 1
            wait = min(self.retry_wait * 2 ** (self._tries - 1), 8.0)
            log.warning("%s: the stream stalled or ended; reconnecting in %.0f s (attempt %d of %d)", name, wait,
                        self._tries, self.retries)
            if self._stop.wait(wait):
                return False
            try:
                self.source = self.reopen()
            except HifiFaceError:
                continue
            self.reconnects += 1
            return True
        self.fault = (f"{name}: the stream stalled or ended and {self.retries} reconnection attempt(s) failed; check "
                      "the stream, or raise --reconnect N")
        return False
