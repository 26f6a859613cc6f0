"""Frames out: an MJPEG stream over HTTP, an MP4 file, a preview window, a virtual camera.

Each output has ``write(frame, timestamp)`` (an RGB frame and its capture time stamp), ``poll()`` (a key pressed in a
window, else None) and ``close()``; each fails in one line when what it needs is missing:

- :class:`MjpegServer`: ``http://HOST:PORT/`` serves a small page showing the stream, ``/stream.mjpg`` the stream
  itself (``multipart/x-mixed-replace``, what browsers, OBS's media source, VLC and ffmpeg read) and
  ``/frame.jpg`` the newest frame. Frames are encoded once, when a client wants them; each client is sent the newest
  frame (a slow client skips frames, it never makes the loop wait).
- :class:`VideoFileOutput`: an MP4 (or MOV/MKV) file in real time: each frame is held until the next one comes, so
  the file plays at the input's pace however many frames were dropped. Labelled as synthetic like every video
  hififace writes; finalised on Ctrl-C.
- :class:`WindowOutput`: an OpenCV window (``opencv-python``, not the headless build) with hot keys.
- :class:`VirtualCamera`: a system camera other programs (video calls, OBS) can pick, through ``pyvirtualcam`` (the
  ``live`` extra; v4l2loopback on Linux, OBS's virtual camera on Windows and macOS).
"""
from __future__ import annotations

import html
import logging
import os
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import HifiFaceError, MissingDependencyError
from ..utils.net import is_loopback
from ..utils.text import printable
from .swapper import LabelledVideoWriter

log = logging.getLogger(__name__)

BOUNDARY = "hififaceframe"
#: Streams served at once (each holds a thread and a socket; the rest get 503).
MAX_CLIENTS = 8
#: Longest stretch of time one held frame fills in an MP4 file (a pause); the file's clock skips the rest.
MAX_HOLD_SECONDS = 5.0

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{margin:0;background:#111;color:#ddd;font:14px sans-serif;text-align:center}}
img{{max-width:100vw;max-height:92vh;display:block;margin:0 auto}}p{{margin:.4em}}</style></head>
<body><img id="live" src="stream.mjpg" alt="live stream">
<p>{title}: AI-generated (face swapped live with hififace). Use only with the consent of the people shown.</p>
</body></html>
"""


# ---------------------------------------------------------------------------------------------- MJPEG over HTTP
class MjpegServer:
    """The MJPEG stream and its page on ``http://host:port/`` (see the module docstring). The socket is bound at
    construction: a port in use or an address that is not this machine's is one :class:`HifiFaceError` then."""

    name = "http"

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, quality: int = 80, title: str = "hififace live",
                 max_clients: int = MAX_CLIENTS):
        self.host, self.quality, self.max_clients = host, int(quality), int(max_clients)
        self.loopback = is_loopback(host)
        self.page = PAGE.format(title=html.escape(title)).encode("utf-8")
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] | None = None
        self._encode_lock = threading.Lock()
        self._closed = False
        self.clients = 0
        self.frames_sent = 0
        server_class = _server_class(host)
        try:
            self._server = server_class((host, int(port)), _handler(self))
        except OSError as err:
            why = "the port is in use" if err.errno in (98, 48, 10048) else (err.strerror or str(err))
            raise HifiFaceError(f"--port {port} on {host}: cannot listen there ({why}); choose another --port"
                                ) from None
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="hififace-mjpeg", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def write(self, frame: np.ndarray, timestamp: float) -> None:
        with self._cond:
            self._frame, self._seq = frame, self._seq + 1
            self._cond.notify_all()

    def poll(self) -> str | None:
        return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------ for the request handlers
    def next_jpeg(self, after: int, timeout: float = 0.5) -> tuple[int, bytes] | None:
        """The newest frame newer than ``after``, as JPEG (encoded once, whatever the number of clients); None
        when there is none within ``timeout`` or the server is closing."""
        with self._cond:
            if self._seq <= after and not self._closed:
                self._cond.wait(timeout)
            if self._closed or self._seq <= after or self._frame is None:
                return None
            seq, frame = self._seq, self._frame
        with self._encode_lock:
            if self._jpeg is None or self._jpeg[0] != seq:
                self._jpeg = (seq, encode_jpeg(frame, self.quality))
            return self._jpeg

    @property
    def closed(self) -> bool:
        return self._closed


#: Host names a loopback server answers to; any other Host header (a DNS rebinding page) is refused.
_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


def encode_jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB frame
        raise HifiFaceError("the JPEG encoder failed on a live frame")
    return buf.tobytes()


def _server_class(host: str) -> type:
    class Server(ThreadingHTTPServer):
        daemon_threads = True
        block_on_close = False
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        allow_reuse_address = True

    return Server


def _handler(stream: MjpegServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "hififace-live"
        sys_version = ""
        timeout = 30  # seconds a viewer may stall a write (or the request) before it is dropped

        def log_message(self, fmt: str, *args: Any) -> None:  # requests at -v only, never on the user's terminal
            log.debug("http %s: %s", self.client_address[0], printable(fmt % args, 200))

        def _headers(self, status: int, ctype: str, length: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
            if stream.loopback:  # a web page that rebinds its own name to 127.0.0.1 must not read the stream
                host = (self.headers.get("Host") or "").strip().lower()
                name = host.split("]")[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
                if name not in _LOCAL_NAMES:
                    self.send_error(HTTPStatus.FORBIDDEN, "this stream answers to 127.0.0.1 and localhost only")
                    return
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._headers(HTTPStatus.OK, "text/html; charset=utf-8", len(stream.page))
                self.wfile.write(stream.page)
            elif path == "/frame.jpg":
                got = stream.next_jpeg(-1, timeout=5.0)
                if got is None:
                    self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
                    return
                self._headers(HTTPStatus.OK, "image/jpeg", len(got[1]))
                self.wfile.write(got[1])
            elif path in ("/stream.mjpg", "/stream"):
                self._stream()
            else:
                self.send_error(HTTPStatus.NOT_FOUND, "not here: / (the page), /stream.mjpg, /frame.jpg")

        def _stream(self) -> None:
            with stream._cond:
                if stream.clients >= stream.max_clients:
                    busy = True
                else:
                    busy, stream.clients = False, stream.clients + 1
            if busy:
                self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, f"{stream.max_clients} viewers already")
                return
            try:
                self.close_connection = True
                self._headers(HTTPStatus.OK, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                seq = -1
                while not stream.closed:
                    got = stream.next_jpeg(seq)
                    if got is None:
                        continue
                    seq, jpeg = got
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                     .encode("ascii") + jpeg + b"\r\n")
                    self.wfile.flush()
                    stream.frames_sent += 1
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
                pass  # the viewer went away
            finally:
                with stream._cond:
                    stream.clients -= 1

    return Handler


# ---------------------------------------------------------------------------------------------- an MP4 file
class VideoFileOutput:
    """Live frames into a labelled video file, in real time (see the module docstring); ``meta`` goes into its
    label. The writer opens with the first frame (its size). ``open_writer(path, width, height, fps, meta)``
    defaults to :class:`~hififace.live.swapper.LabelledVideoWriter`."""

    def __init__(self, path: str | Path, fps: float, meta: Mapping[str, str] | None = None,
                 open_writer: Callable[..., Any] | None = None):
        self.path = Path(path)
        self.name = printable(self.path.name)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.meta = dict(meta or {})
        self.open_writer = open_writer or LabelledVideoWriter
        self.writer: Any = None
        self.size: tuple[int, int] | None = None
        self._t0 = 0.0
        self._slot = 0
        self._held: np.ndarray | None = None

    def write(self, frame: np.ndarray, timestamp: float) -> None:
        h, w = frame.shape[:2]
        if self.writer is None:
            self.writer = self.open_writer(self.path, w, h, self.fps, self.meta)
            self.size = (w, h)
            self._t0, self._slot, self._held = timestamp, 0, frame
            self.writer.write(frame)
            return
        if (w, h) != self.size:
            raise HifiFaceError(f"{self.name}: the input changed size ({self.size[0]}x{self.size[1]} -> {w}x{h}); a "
                                "video file keeps one size: restart the recording")
        slot = int(round((timestamp - self._t0) * self.fps))
        if slot <= self._slot:  # two frames in one frame time: the first one stands
            return
        gap = slot - self._slot - 1
        hold = int(MAX_HOLD_SECONDS * self.fps)
        if gap > hold:  # a long pause: the file skips it
            self._t0 += (gap - hold) / self.fps
            slot -= gap - hold
            gap = hold
        for _ in range(gap):
            self.writer.write(self._held)
        self.writer.write(frame)
        self._slot, self._held = slot, frame

    def poll(self) -> str | None:
        return None

    def close(self) -> None:
        if self.writer is None:  # no frame came (the run stopped before): nothing to write
            log.debug("%s: not written: no frame came", self.name)
            return
        self.writer.close()
        w, h = self.size or (0, 0)
        log.info("wrote %s: %d frames (%dx%d, %.3g fps, %.1f s)", self.path, self.writer.frames, w, h, self.fps,
                 self.writer.frames / self.fps)


# ---------------------------------------------------------------------------------------------- a window
class WindowOutput:
    """An OpenCV window showing the frames; :meth:`poll` returns the key pressed (``q`` also when the window is
    closed). Needs OpenCV with a GUI (``opencv-python``); the headless build is one line saying so."""

    name = "window"

    def __init__(self, title: str = "hififace live"):
        try:
            import cv2
        except ImportError:
            raise MissingDependencyError("opencv-python", "face", "--output window") from None
        self.cv2, self.title = cv2, title
        headless = HifiFaceError("--output window: this OpenCV has no window support (opencv-python-headless); for a "
                                 "window: pip uninstall opencv-python-headless && pip install opencv-python; or use "
                                 "--output http (any browser shows it)")
        if re.search(r"^\s*GUI:\s*NONE\s*$", cv2.getBuildInformation(), re.M):
            raise headless
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise HifiFaceError("--output window: no display here (DISPLAY is not set); use --output http and open "
                                "the page in a browser, or run on a desktop session")
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise headless from None
        self._shown = False

    def write(self, frame: np.ndarray, timestamp: float) -> None:
        self.cv2.imshow(self.title, np.ascontiguousarray(frame[:, :, ::-1]))
        self._shown = True

    def poll(self) -> str | None:
        key = self.cv2.waitKey(1) & 0xFF
        if self._shown and self.cv2.getWindowProperty(self.title, self.cv2.WND_PROP_VISIBLE) < 1:
            return "q"  # the window was closed
        return None if key == 0xFF else chr(key)

    def close(self) -> None:
        try:
            self.cv2.destroyWindow(self.title)
            self.cv2.waitKey(1)
        except self.cv2.error:  # already closed by the user
            pass


# ---------------------------------------------------------------------------------------------- a virtual camera
class VirtualCamera:
    """A virtual camera through ``pyvirtualcam`` (opened with the first frame: its size; ``fps`` as the input)."""

    name = "virtual camera"

    def __init__(self, fps: float, device: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise MissingDependencyError("pyvirtualcam", "live", "--output virtual") from None
        self.pyvirtualcam, self.fps, self.device = pyvirtualcam, float(fps) if fps and fps > 0 else 30.0, device
        self.cam: Any = None

    def write(self, frame: np.ndarray, timestamp: float) -> None:
        if self.cam is None:
            h, w = frame.shape[:2]
            try:
                self.cam = self.pyvirtualcam.Camera(w, h, self.fps, fmt=self.pyvirtualcam.PixelFormat.RGB,
                                                    device=self.device)
            except (RuntimeError, ValueError, OSError) as err:
                raise HifiFaceError(no_virtual_camera(err)) from None
            log.info("virtual camera: %s (%dx%d, %.3g fps)", printable(self.cam.device), w, h, self.fps)
        self.cam.send(np.ascontiguousarray(frame))

    def poll(self) -> str | None:
        return None

    def close(self) -> None:
        if self.cam is not None:
            self.cam.close()


def no_virtual_camera(err: BaseException) -> str:
    """The one line for a virtual camera that cannot start: what is missing on this system, and pyvirtualcam's
    reason."""
    first = printable(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__, 160)
    if sys.platform.startswith("linux"):
        how = ("load the v4l2loopback kernel module (sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
               "card_label=hififace)")
    else:
        how = "install OBS Studio and start its virtual camera once"
    return f"--output virtual: no virtual camera device ({first}); {how}, or use --output http"
