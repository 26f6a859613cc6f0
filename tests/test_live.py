"""`hififace live` and hififace.live: the loop on a video file played as a camera (every frame in order when the
processor keeps up, the newest frame and never a queue when it does not), the MJPEG endpoint read by a real HTTP
client, the visible mark (on by default, off with a warning), faults (no camera, a camera that vanishes, a stream
that stalls), Ctrl-C leaving a playable MP4, the frame processor's detection schedule, the outputs that cannot work
here (window, virtual camera) in one line each.

Clips are a few frames made with imageio-ffmpeg's ffmpeg; the loop tests use stand-in processors (no model), the
CLI runs the tiny random model.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from face_helpers import PHOTOS
from inferkit import FakeEngine, leftovers, run_cli, tiny_model_dir
from inferkit import isolated_home  # noqa: F401 (a fixture)

pytest.importorskip("cv2")
pytest.importorskip("imageio_ffmpeg")
pytestmark = pytest.mark.usefixtures("isolated_home")

from videokit import decode, face_frames, make_clip  # noqa: E402

from hififace.live import capture as capture_mod  # noqa: E402
from hififace.live.capture import Capture  # noqa: E402
from hififace.live.loop import run_live  # noqa: E402
from hififace.live.overlay import VisibleMark  # noqa: E402
from hififace.live.swapper import open_video_file, render_mark  # noqa: E402

STEP = 10  # grey level between numbered frames


def numbered_frames(n: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    """Flat frames whose grey level tells their number (5, 15, 25, ...): survives H.264 within a level or two."""
    w, h = size
    return [np.full((h, w, 3), 5 + STEP * i, np.uint8) for i in range(n)]


def number_of(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - 5) / STEP))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny random model folder (trained weights' stand-in)."""
    return tiny_model_dir(tmp_path_factory.mktemp("w") / "tiny")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("live_clips")
    return {
        "n12": make_clip(d / "n12.mp4", numbered_frames(12), rate="10", audio=False),
        "n20": make_clip(d / "n20.mp4", numbered_frames(20), rate="20", audio=False),
        "n6": make_clip(d / "n6.mp4", numbered_frames(6), rate="25", audio=False),
        "faces": make_clip(d / "faces.mp4", face_frames(5, size=(192, 224)), rate="10", audio=False),
    }


class Collect:
    """An output that keeps copies of what it is given."""

    name = "collect"

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.closed = False

    def write(self, frame: np.ndarray, timestamp: float) -> None:
        self.frames.append(frame.copy())

    def poll(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


class Recorder:
    """A stand-in processor: notes each frame's number, optionally takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay, self.seen = delay, []

    def __call__(self, frame: np.ndarray, timestamp: float) -> np.ndarray:
        self.seen.append(number_of(frame))
        if self.delay:
            time.sleep(self.delay)
        return frame


def file_capture(path: Path, loop: bool = False) -> Capture:
    source, reopen = open_video_file(path)
    return Capture(source, reopen, loop=loop)


# ---------------------------------------------------------------------------------------------- the loop
def test_a_file_played_as_a_camera_gives_every_frame_in_order_when_the_processor_keeps_up(clips):
    proc, out = Recorder(), Collect()
    t0 = time.monotonic()
    report = run_live(file_capture(clips["n12"]), proc, [out])
    wall = time.monotonic() - t0
    assert report.stopped == "end" and out.closed
    assert report.frames_in == 12
    assert report.frames_out == len(out.frames) == report.frames_in - report.dropped
    assert proc.seen == sorted(set(proc.seen)) and proc.seen[-1] == 11  # order kept, the last frame delivered
    assert report.dropped <= 3  # a trivial processor keeps up with 10 fps (slack for a busy machine)
    assert wall >= 1.0  # played in real time: 12 frames at 10 fps take 1.1 s, not a burst
    for name in ("wait", "process", "draw", "output", "total"):
        assert report.percentile(name, 50) is not None


def test_a_slow_processor_always_gets_the_newest_frame_and_no_queue_builds(clips):
    proc, out = Recorder(delay=0.25), Collect()
    report = run_live(file_capture(clips["n20"]), proc, [out])  # 20 frames at 20 fps: 1 s of video
    assert report.frames_in == 20
    assert report.frames_out == report.frames_in - report.dropped
    assert 2 <= report.frames_out <= 7 and report.dropped >= 13
    assert proc.seen == sorted(set(proc.seen)) and proc.seen[-1] == 19
    # each frame was taken at most one processing time (+ one frame interval, + slack) after it was captured:
    # frames never wait in a queue, so the latency does not grow
    assert max(report.stages["wait"]) < 0.25 + 0.05 + 0.3
    assert report.seconds < 2.5  # real time, not 20 x 0.25 s


def test_loop_plays_a_file_again(clips):
    proc = Recorder()
    report = run_live(file_capture(clips["n6"], loop=True), proc, [Collect()],
                      should_stop=lambda: len(proc.seen) >= 14)
    assert report.stopped == "quit"
    assert report.frames_in >= 14 and report.frames_out == report.frames_in - report.dropped
    wraps = sum(1 for a, b in zip(proc.seen, proc.seen[1:]) if b < a)
    assert wraps >= 1  # the numbers start again from 0


class Keys(Collect):
    """An output that presses keys, as the window does: ``o`` after the first frame, ``q`` after the third."""

    def poll(self):
        return {1: "o", 3: "q"}.get(len(self.frames))


def test_hot_keys_toggle_the_overlay_and_quit(clips):
    out = Keys()
    report = run_live(file_capture(clips["n12"]), Recorder(), [out])
    assert report.stopped == "quit" and len(out.frames) == 3
    h = out.frames[0].shape[0]
    top = (slice(0, h // 4), slice(0, 30))
    assert out.frames[0][top].max() < 60  # a flat dark frame: no overlay yet
    assert out.frames[1][top].max() > 200 and out.frames[2][top].max() > 200  # after 'o': white text in the corner


# ---------------------------------------------------------------------------------------------- the visible mark
def test_the_visible_mark_changes_the_corner_only(clips):
    out = Collect()
    mark = VisibleMark(render_mark)
    run_live(file_capture(clips["n6"]), Recorder(), [out], mark=mark)
    plain = Collect()
    run_live(file_capture(clips["n6"]), Recorder(), [plain])
    x0, y0, x1, y1 = mark.box(96, 64)
    assert 0 < x0 < x1 and 64 // 2 < y0 < y1 and x1 > 96 - 5 and y1 > 64 - 5  # a small box in the bottom-right
    a, b = out.frames[-1].astype(int), plain.frames[-1].astype(int)
    assert np.abs(a[y0:y1, x0:x1] - b[y0:y1, x0:x1]).max() > 60  # white text on a dark box
    outside = np.ones(a.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(a[outside], b[outside])


# ---------------------------------------------------------------------------------------------- MJPEG over HTTP
def _read_part(resp) -> bytes:
    """One part of a multipart/x-mixed-replace stream (its JPEG bytes)."""
    length = None
    while length is None:  # the boundary line, then headers until an empty line
        line = resp.readline()
        assert line, "the stream ended"
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while resp.readline().strip():
        pass
    data = resp.read(length)
    resp.readline()
    return data


def _jpeg(data: bytes) -> np.ndarray:
    import cv2

    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img[:, :, ::-1]


@pytest.fixture
def served(clips):
    """The looping numbered clip streamed by an MjpegServer on a free port, in a background thread."""
    from hififace.live.outputs import MjpegServer

    server = MjpegServer("127.0.0.1", 0)
    stop = threading.Event()
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault(
        "report", run_live(file_capture(clips["n12"], loop=True), Recorder(), [server], should_stop=stop.is_set)))
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert result["report"].stopped == "quit"


def test_the_mjpeg_stream_and_its_page_over_http(served):
    url = served.url
    assert url.startswith("http://127.0.0.1:")
    page = urllib.request.urlopen(url, timeout=20)
    assert page.headers["Content-Type"].startswith("text/html")
    assert b'src="stream.mjpg"' in page.read()
    resp = urllib.request.urlopen(url + "stream.mjpg", timeout=20)
    ctype = resp.headers["Content-Type"]
    assert ctype == "multipart/x-mixed-replace; boundary=hififaceframe"
    frames = [_jpeg(_read_part(resp)) for _ in range(4)]
    resp.close()
    assert all(f.shape == (64, 96, 3) for f in frames)
    numbers = [number_of(f) for f in frames]
    assert len(set(numbers)) >= 3  # the frames move on (a new frame per part)
    single = urllib.request.urlopen(url + "frame.jpg", timeout=20)
    assert single.headers["Content-Type"] == "image/jpeg" and _jpeg(single.read()).shape == (64, 96, 3)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url + "other", timeout=20)
    assert err.value.code == 404
    # a page on another name that resolves to 127.0.0.1 (DNS rebinding) cannot read the stream
    rebound = urllib.request.Request(url + "frame.jpg", headers={"Host": f"evil.example:{served.port}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(rebound, timeout=20)
    assert err.value.code == 403
    local = urllib.request.Request(url + "frame.jpg", headers={"Host": f"localhost:{served.port}"})
    assert urllib.request.urlopen(local, timeout=20).status == 200


def test_the_http_output_refuses_a_port_in_use():
    from hififace.errors import HifiFaceError
    from hififace.live.outputs import MjpegServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(HifiFaceError, match=f"--port {port} on 127.0.0.1: cannot listen there"):
            MjpegServer("127.0.0.1", port)


# ---------------------------------------------------------------------------------------------- faults
class StubSource:
    """A camera or stream that delivers ``frames`` frames, then nothing (gone, or stalled)."""

    def __init__(self, frames: int, kind: str = "camera", name: str = "camera 9"):
        self.left, self.kind, self.name, self.fps = frames, kind, name, 30.0
        self.closed = False

    def read(self):
        if self.left <= 0:
            return None
        self.left -= 1
        time.sleep(0.01)
        return np.full((48, 64, 3), 128, np.uint8)

    def close(self) -> None:
        self.closed = True


def test_a_camera_that_vanishes_stops_the_loop_with_one_line(monkeypatch):
    monkeypatch.setattr(capture_mod, "CAMERA_GONE_SECONDS", 0.2)
    source, out = StubSource(5), Collect()
    report = run_live(Capture(source), Recorder(), [out])
    assert report.stopped == "fault" and out.closed and source.closed
    assert report.fault == "camera 9: stopped delivering frames (unplugged, or taken by another program)"
    assert report.frames_in == 5 and report.frames_out == 5 - report.dropped >= 1


def test_a_stalled_stream_is_reconnected_a_bounded_number_of_times(caplog):
    from hififace.errors import InputImageError

    tries = []

    def reopen():
        tries.append(1)
        if len(tries) == 1:
            return StubSource(3, "stream", "rtsp://cam/live")  # the first attempt brings frames back
        raise InputImageError("rtsp://cam/live: cannot open this stream")

    capture = Capture(StubSource(3, "stream", "rtsp://cam/live"), reopen, retries=3, retry_wait=0.01)
    report = run_live(capture, Recorder(), [Collect()])
    assert capture.reconnects == 1 and len(tries) == 1 + 3  # after a frame came, the 3 attempts count again
    assert report.stopped == "fault" and report.frames_in == 6
    assert "rtsp://cam/live: the stream stalled or ended and 3 reconnection attempt(s) failed" in report.fault
    assert sum("reconnecting" in r.getMessage() for r in caplog.records) == 4


def test_stream_names_lose_their_credentials():
    from hififace.live.capture import is_stream_url, safe_url

    assert safe_url("rtsp://user:secret@10.0.0.2:554/live?token=abc") == "rtsp://10.0.0.2:554/live"
    assert is_stream_url("RTSP://x/y") and is_stream_url("https://x/y.m3u8") and not is_stream_url("clip.mp4")
    assert not is_stream_url("C:/videos/clip.mp4")


def test_no_camera_is_one_line_before_the_model_loads(tiny, tmp_path, capsys):
    rc, _, err = run_cli(["live", "--source", PHOTOS / "astronaut.png", "--camera", "57", "--output", "http",
                          "--weights", tmp_path / "no-model-here"], capsys)
    assert rc != 0 and len(err) == 1, err
    assert err[0].startswith("error: camera 57: cannot be opened (no such camera") and "--camera N" in err[0]


def test_a_camera_that_vanishes_mid_run_leaves_a_playable_file_and_one_error_line(tiny, tmp_path, capsys,
                                                                                   monkeypatch):
    from hififace.media.video import probe

    monkeypatch.setattr(capture_mod, "CAMERA_GONE_SECONDS", 0.2)
    frames = face_frames(4, size=(192, 224))

    class Camera(StubSource):
        def read(self):
            if self.left <= 0:
                return None
            self.left -= 1
            time.sleep(0.05)
            return frames[3 - self.left].copy()

    monkeypatch.setattr(capture_mod, "open_camera", lambda *a, **k: Camera(4, name="camera 0"))
    out = tmp_path / "rec.mp4"
    rc, _, err = run_cli(["live", "--source", PHOTOS / "astronaut.png", "--output", out, "--weights", tiny],
                         capsys)
    errors = [line for line in err if line.startswith("error:")]
    assert rc != 0 and errors == ["error: camera 0: stopped delivering frames (unplugged, or taken by another "
                                  "program)"], err
    assert not any("Traceback" in line for line in err)
    info = probe(out)
    assert (info.width, info.height) == (192, 224) and "Synthetic" in info.metadata["comment"]
    assert leftovers(tmp_path) == []


def test_a_source_without_a_face_is_one_line_before_the_loop(tiny, clips, tmp_path, capsys):
    flat = tmp_path / "flat.png"
    from PIL import Image

    Image.fromarray(np.full((200, 240, 3), 128, np.uint8)).save(flat)
    rc, _, err = run_cli(["live", "--source", flat, "--input", clips["n6"], "--output", tmp_path / "o.mp4",
                          "--weights", tiny], capsys)
    assert rc != 0 and [e for e in err if e.startswith("error:")] == [err[-1]]
    assert err[-1].startswith("error: ") and "flat.png: no face found" in err[-1]
    assert not any("live:" in line for line in err)  # the loop never started
    assert not (tmp_path / "o.mp4").exists() and leftovers(tmp_path) == []


def test_outputs_that_cannot_work_here_say_what_is_missing(monkeypatch):
    import types

    from hififace.errors import HifiFaceError, MissingDependencyError
    from hififace.live import outputs

    import cv2

    headless = r"no window support \(opencv-python-headless\).*pip install opencv-python"
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           NONE\n")
    with pytest.raises(HifiFaceError, match=headless):  # said from the build information
        outputs.WindowOutput()

    def no_gui(*args, **kwargs):
        raise cv2.error("The function is not implemented. Rebuild the library with Windows, GTK+ 2.x or Cocoa support")

    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           GTK3\n")
    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    monkeypatch.setenv("DISPLAY", ":0")
    with pytest.raises(HifiFaceError, match=headless):  # or from OpenCV's refusal
        outputs.WindowOutput()
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):  # a GUI build without a display: said before OpenCV (Qt would abort)
        with pytest.raises(HifiFaceError, match="no display here"):
            outputs.WindowOutput()
    monkeypatch.setitem(sys.modules, "pyvirtualcam", None)
    with pytest.raises(MissingDependencyError, match=r"pyvirtualcam is needed for --output virtual: pip install "
                                                     r"'hififace\[live\]'"):
        outputs.VirtualCamera(30)

    def no_device(*args, **kwargs):
        raise RuntimeError("'v4l2loopback' module not loaded or no device found\nmore")

    fake = types.SimpleNamespace(Camera=no_device, PixelFormat=types.SimpleNamespace(RGB="RGB"))
    monkeypatch.setitem(sys.modules, "pyvirtualcam", fake)
    cam = outputs.VirtualCamera(30)
    with pytest.raises(HifiFaceError) as err:
        cam.write(np.zeros((48, 64, 3), np.uint8), 0.0)
    line = str(err.value)
    assert line.startswith("--output virtual: no virtual camera device ('v4l2loopback' module not loaded")
    assert "\n" not in line and ("v4l2loopback" in line or "OBS" in line)


def test_the_window_output_is_one_line_on_this_headless_opencv(tiny, clips, tmp_path, capsys):
    import cv2

    if "GUI:                           NONE" not in cv2.getBuildInformation():
        pytest.skip("this OpenCV has a GUI")
    rc, _, err = run_cli(["live", "--source", PHOTOS / "astronaut.png", "--input", clips["n6"], "--weights",
                          tmp_path / "not-loaded"], capsys)  # --output window is the default
    assert rc != 0 and len(err) == 1, err
    assert err[0].startswith("error: --output window: ") and "opencv-python" in err[0] and "--output http" in err[0]


# ---------------------------------------------------------------------------------------------- the CLI end to end
def _corner(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    return frame[h - h // 8:, w - w // 3:].astype(int)


def test_live_to_a_file_is_labelled_and_marked_and_the_mark_can_be_turned_off(tiny, clips, tmp_path, capsys):
    from hififace.media.video import probe

    src = decode(clips["faces"])
    marked, plain = tmp_path / "marked.mp4", tmp_path / "plain.mp4"
    rc, _, err = run_cli(["live", "--source", PHOTOS / "astronaut.png", "--input", clips["faces"], "--output", marked,
                          "--weights", tiny, "--detect-every", "2"], capsys)
    assert rc == 0, err
    assert not any("visible mark" in line for line in err)
    assert any(line.startswith("hififace: live: the input ended: 5 frame(s) in") for line in err), err
    info = probe(marked)
    assert (info.width, info.height, info.fps) == (192, 224, 10.0)
    assert "Synthetic" in info.metadata["comment"] and "hififace:command=live" in info.metadata["comment"]
    got = decode(marked)
    assert len(got) == 5  # real time: the file lasts as long as the input, whatever was dropped
    assert np.abs(_corner(got[-1]) - _corner(src[-1])).max() > 60  # the mark is there

    rc, _, err = run_cli(["live", "--source", PHOTOS / "astronaut.png", "--input", clips["faces"], "--output", plain,
                          "--weights", tiny, "--no-visible-mark"], capsys)
    assert rc == 0, err
    warned = [line for line in err if "--no-visible-mark" in line]
    assert len(warned) == 1 and "unlabelled" in warned[0]
    assert np.abs(_corner(decode(plain)[-1]) - _corner(src[-1])).max() < 30  # codec noise only
    assert leftovers(tmp_path) == []


def test_ctrl_c_leaves_a_playable_labelled_file(tiny, clips, tmp_path):
    from hififace.media.video import probe

    out = tmp_path / "rec.mp4"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONFAULTHANDLER": "1"}
    argv = ["live", "--source", str(PHOTOS / "astronaut.png"), "--input", str(clips["faces"]), "--loop", "--output",
            str(out), "--weights", str(tiny)]
    proc = subprocess.Popen([sys.executable, "-m", "hififace.cli.main", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    log, deadline = [], time.monotonic() + 120
    try:
        while not any("first frame out" in line for line in log):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("live did not start:\n" + "".join(log))
            try:
                log.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        time.sleep(4.0)  # a few more frames (about 1 s each on a busy 2-core machine)
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:  # say where it hangs: faulthandler prints every thread's stack on SIGABRT
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=30)
            time.sleep(0.5)
            while not lines.empty():
                log.append(lines.get())
            pytest.fail("live did not finish within 60 s of Ctrl-C:\n" + "".join(log))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.2)
    while not lines.empty():
        log.append(lines.get())
    assert rc == 0, "".join(log)
    assert any("stopped (Ctrl-C)" in line for line in log), "".join(log)
    info = probe(out)
    assert (info.width, info.height) == (192, 224) and info.duration and info.duration >= 0.2
    assert "Synthetic" in info.metadata["comment"]
    assert len(decode(out)) >= 2
    assert leftovers(tmp_path) == []


def test_live_options_are_checked_before_any_work(clips, tmp_path, capsys):
    base = ["live", "--source", PHOTOS / "astronaut.png"]
    for extra, needle in ((["--input", clips["n6"], "--output", "screen"], "--output screen: use window, virtual"),
                          (["--input", clips["n6"], "--output", "http", "--output", "http"], "given twice"),
                          (["--camera", "0", "--loop"], "--loop applies to a video file"),
                          (["--input", clips["n6"], "--output", "http", "--detect-every", "0"], "--detect-every 0"),
                          (["--input", clips["n6"], "--output", "http", "--port", "0"], "--port 0"),
                          (["--camera", "0", "--size", "big"], "--size big"),
                          (["--input", tmp_path / "missing.mp4", "--output", "http"], "missing.mp4: file not found"),
                          (["--input", clips["n6"], "--output", clips["n6"]], "is the input video")):
        rc, _, err = run_cli(base + extra, capsys)
        assert rc != 0 and len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (extra, err)


# ---------------------------------------------------------------------------------------------- the frame processor
def test_the_processor_detects_every_n_frames_and_at_once_when_a_face_is_lost():
    from hififace.inference.pipeline import FaceSwapper
    from hififace.live.swapper import build_processor

    swapper = FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0)
    proc = build_processor(swapper, [PHOTOS / "astronaut.png"], detect_every=3, fps=25.0, name="test")
    near, real_near = [], proc._detect_near
    proc._detect_near = lambda frame, box: near.append(len(outs)) or real_near(frame, box)
    frames = face_frames(9, size=(192, 224), blank=(4,))
    outs, full = [], []
    for i, f in enumerate(frames):
        before = proc.full_detections
        outs.append(proc(f.copy(), i / 25))
        full.append(proc.full_detections - before)
    # frame 0 full; 1, 2 near the track; 3 full; 4 (no face) near -> lost -> full at once, on the same frame;
    # 5 nothing seen in the last frame to follow -> full; 6, 7 near; 8 full
    assert full == [1, 0, 0, 1, 1, 1, 0, 0, 1]
    assert near == [1, 2, 4, 6, 7]
    assert proc.frames_swapped == 8 and set(proc.last) == {"detect", "track", "align", "swap", "paste"}
    assert np.array_equal(outs[4], frames[4])  # the blank frame passes through
    for i in (0, 2, 8):  # FakeEngine inverts the face: the centre changed
        h, w = frames[i].shape[:2]
        centre = (slice(h // 3, 2 * h // 3), slice(w // 3, 2 * w // 3))
        assert np.abs(outs[i][centre].astype(int) - frames[i][centre].astype(int)).mean() > 20


def test_the_processor_with_detection_on_every_frame():
    from hififace.inference.pipeline import FaceSwapper
    from hififace.live.swapper import build_processor

    swapper = FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0)
    proc = build_processor(swapper, [PHOTOS / "astronaut.png"], detect_every=1, fps=25.0)
    for i, f in enumerate(face_frames(4, size=(192, 224))):
        proc(f, i / 25)
    assert proc.full_detections == 4 and proc.frames_swapped == 4


def test_the_processor_swaps_with_the_strength_and_keeps_the_mouth_as_swap_does(monkeypatch):
    """--identity-strength and --keep-mouth reach live frames: the engine gets the identity moved toward each target
    face (not the source's), and the paste alpha loses the mouth."""
    import torch

    from hififace.inference.pipeline import FaceSwapper
    from hififace.live.swapper import build_processor

    engine = FakeEngine()
    seen, real_swap = [], engine.swap
    monkeypatch.setattr(engine, "swap", lambda identity, crops: seen.append(identity) or real_swap(identity, crops))
    frames = face_frames(2, size=(192, 224))
    outs = {}
    for strength, mouth in ((1.0, False), (0.0, True)):
        swapper = FaceSwapper(engine, parsing="landmarks", align_passes=0, identity_strength=strength,
                              keep_mouth=mouth)
        proc = build_processor(swapper, [PHOTOS / "astronaut.png"], detect_every=1, fps=25.0)
        seen.clear()
        outs[strength] = [proc(f.copy(), i / 25) for i, f in enumerate(frames)]
        assert proc.frames_swapped == 2
        if strength == 1.0:
            assert all(torch.equal(s.v_id, proc.identity.v_id) for s in seen)
        else:  # strength 0: each face's own identity, not the source's
            assert not any(torch.equal(s.v_id, proc.identity.v_id) for s in seen)
    assert not np.array_equal(outs[1.0][1], outs[0.0][1])
