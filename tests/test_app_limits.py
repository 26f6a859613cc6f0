"""The web app against hostile uploads and the way services are stopped (issue 19): upload size, video caps, a time
limit per job, a bounded queue; results 0600 and deleted after a while; SIGTERM like Ctrl-C; nothing left behind
by a failed start. The service is driven without a browser; `hififace app` runs in a subprocess for SIGTERM.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

import inferkit
from hififace.app.service import SwapService
from hififace.errors import HifiFaceError, InputImageError
from inferkit import FakeEngine, assert_one_error, run_cli, tiny_model_dir

isolated_home, tiny_weights = inferkit.isolated_home, inferkit.tiny_weights  # the fixtures this module uses
pytest.importorskip("cv2")

PHOTOS = Path(__file__).parent / "data" / "photos"


@pytest.fixture
def uploads(tmp_path):
    """Files as Gradio hands them over: each in its own temporary folder."""

    def put(name: str, data: bytes | None = None) -> str:
        folder = tmp_path / "gradio" / f"{abs(hash(name)):x}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes((PHOTOS / name).read_bytes() if data is None else data)
        return str(path)

    return put


def _service(tmp_path, **kw) -> SwapService:
    kw.setdefault("parsing", "landmarks")
    return SwapService(FakeEngine(), workdir=tmp_path / "out", **kw)


def _one_line(call, kind=HifiFaceError) -> str:
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------ limits
def test_an_upload_over_the_limit_is_one_line_naming_it(uploads, tmp_path):
    service = _service(tmp_path, max_upload_mb=0.01)  # 10 kB
    big = uploads("two_people.jpg")
    message = _one_line(lambda: service.run([uploads("astronaut.png")], big), InputImageError)
    assert message.startswith("astronaut.png: ") and "MB is over the upload limit of 0.01 MB" in message
    assert "--max-upload-mb" in message and str(tmp_path) not in message
    assert list((tmp_path / "out").iterdir()) == []


def test_the_video_caps_apply_in_the_app(uploads, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from hififace.media.video import VideoLimits
    from videokit import face_frames, make_clip

    clip = make_clip(tmp_path / "clip.mp4", face_frames(3), audio=False)
    service = _service(tmp_path, video_limits=VideoLimits(max_frame_pixels=10_000))
    message = _one_line(lambda: service.run([uploads("astronaut.png")], str(clip)), InputImageError)
    assert message.startswith("clip.mp4: 192x224 frames are too large") and "--max-frame-pixels" in message
    assert str(tmp_path) not in message and list((tmp_path / "out").iterdir()) == []


def test_a_job_over_the_time_limit_stops_with_one_line(uploads, tmp_path):
    service = _service(tmp_path, job_seconds=1e-6)
    message = _one_line(lambda: service.run([uploads("astronaut.png")], uploads("grace_hopper.jpg")))
    assert message.startswith("grace_hopper.jpg: stopped after ") and "(encoding the sources)" in message
    assert "time limit" in message and "--job-timeout" in message and str(tmp_path) not in message
    assert list((tmp_path / "out").iterdir()) == []
    slow = _service(tmp_path, job_seconds=0.2)._stopper()
    assert slow() is None
    time.sleep(0.3)
    assert "over the time limit of 0.2 s per job" in slow()


def test_a_video_job_stops_between_batches(tmp_path):
    """What the app's time limit (and its shutdown) use: ``should_stop`` is asked before every batch."""
    pytest.importorskip("imageio_ffmpeg")
    from hififace.inference.pipeline import FaceSwapper
    from hififace.inference.video import swap_video
    from videokit import face_frames, make_clip

    clip = make_clip(tmp_path / "clip.mp4", face_frames(10))
    engine = FakeEngine()
    asked = []
    out = tmp_path / "out" / "o.mp4"
    with pytest.raises(HifiFaceError) as info:
        swap_video(
            FaceSwapper(engine, parsing="landmarks", align_passes=0), PHOTOS / "astronaut.png", clip, out, batch_frames=4,
            progress=False, preset="ultrafast",
            should_stop=lambda: asked.append(1) or ("over the time limit" if len(asked) > 1 else None))
    assert str(info.value).startswith(f"{clip}: stopped after ")
    assert str(info.value).endswith(", 4 of about 10 frames done: over the time limit")
    assert engine.calls == 1 and len(asked) == 2  # one batch swapped, stopped before the second
    assert list(out.parent.iterdir()) == []


# ------------------------------------------------------------------------------------------------ outputs
def test_results_are_0600_whatever_the_umask_and_the_umask_is_not_touched(uploads, tmp_path, monkeypatch):
    from hififace.utils import atomic

    service = _service(tmp_path)
    old = os.umask(0o022)
    try:
        out = service.run([uploads("astronaut.png")], uploads("grace_hopper.jpg")).path
        assert out.stat().st_mode & 0o777 == 0o600 and out.parent.stat().st_mode & 0o777 == 0o700
        # the copy Gradio serves (shutil.copy2 into its cache, as gradio.processing_utils does) keeps that mode
        import shutil

        copy = shutil.copy2(out, tmp_path / "copy.jpg")
        assert Path(copy).stat().st_mode & 0o777 == 0o600
        with atomic.atomic_path(tmp_path / "plain.txt") as tmp:  # outside the app: the usual permissions
            tmp.write_text("x")
        assert (tmp_path / "plain.txt").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)
    if Path("/proc/self/status").exists():  # read without setting it: no moment of umask 0 for other threads
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask called"))
        assert atomic.current_umask() == old


def test_results_are_deleted_after_their_lifetime(uploads, tmp_path):
    service = _service(tmp_path, result_seconds=600)
    out = service.run([uploads("astronaut.png")], uploads("grace_hopper.jpg")).path
    assert service.prune() == 0 and out.exists()
    service._busy.add(out.parent)  # a folder still being written (a long video) is left alone
    assert service.prune(now=time.time() + 601) == 0 and out.exists()
    service._busy.clear()
    assert service.prune(now=time.time() + 601) == 1 and not out.parent.exists()
    quick = _service(tmp_path, result_seconds=0.2)  # and without anyone asking: a thread deletes them
    out = quick.run([uploads("astronaut.png")], uploads("grace_hopper.jpg")).path
    deadline = time.monotonic() + 10
    while out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not out.exists()
    quick.close()


def test_close_stops_the_running_job_and_removes_the_folder(uploads, tmp_path):
    service = SwapService(FakeEngine(), parsing="landmarks")
    started, errors = threading.Event(), []

    def progress(fraction, what):
        if what.startswith("encoding"):
            started.set()
            service._closing.wait(10)  # the job goes on only once close() has begun

    def job():
        try:
            service.run([uploads("astronaut.png")], uploads("grace_hopper.jpg"), progress=progress)
        except HifiFaceError as err:
            errors.append(str(err))

    worker = threading.Thread(target=job)
    worker.start()
    assert started.wait(30)
    service.close()
    worker.join(10)
    assert errors and "the app is shutting down" in errors[0]
    assert not service.workdir.exists()
    with pytest.raises(HifiFaceError, match="shutting down"):
        service.run([uploads("astronaut.png")], uploads("grace_hopper.jpg"))


# ------------------------------------------------------------------------------------------------ the command
@pytest.fixture
def fake_gradio(monkeypatch):
    """Gradio's queue, launch and wait replaced: the keyword arguments the app would serve with."""
    gr = pytest.importorskip("gradio")
    seen: dict = {}
    queue_real = gr.Blocks.queue

    def fake_queue(self, **kw):
        seen["queue"] = kw
        return queue_real(self, **kw)

    def launch(self, **kw):
        seen["launch"] = kw
        seen["cache"] = os.environ.get("GRADIO_TEMP_DIR")
        self.share_url = None

    monkeypatch.setattr(gr.Blocks, "queue", fake_queue)
    monkeypatch.setattr(gr.Blocks, "launch", launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    monkeypatch.delenv("GRADIO_TEMP_DIR", raising=False)
    return seen


def test_app_limits_reach_gradio_with_documented_defaults(tiny_weights, isolated_home, fake_gradio, capsys,
                                                          tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rc, _, err = run_cli(["app", "--weights", tiny_weights], capsys)
    assert rc == 0, err
    assert fake_gradio["queue"] == {"default_concurrency_limit": 1, "max_size": 4}
    assert fake_gradio["launch"]["max_file_size"] == 2048 * 1_000_000
    cache = Path(fake_gradio["cache"])  # Gradio's uploads and copies: in the app's private folder
    assert cache.parent == tmp_path and cache.name.startswith("hififace-app-")
    assert not cache.exists() and os.environ.get("GRADIO_TEMP_DIR") is None  # removed, and the environment restored
    rc, _, err = run_cli(["app", "--weights", tiny_weights, "--queue-size", "0", "--max-upload-mb", "0"], capsys)
    assert rc == 0, err
    assert fake_gradio["queue"]["max_size"] is None and fake_gradio["launch"]["max_file_size"] is None


@pytest.mark.parametrize("option", ["--max-upload-mb", "--queue-size", "--job-timeout", "--max-frames"])
def test_negative_limits_are_refused(option, isolated_home, capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rc, _, err = run_cli(["app", option, "-1"], capsys)
    assert_one_error(rc, err, f"{option} -1", "0 (no limit) or more")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_start_leaves_no_temporary_folder(tiny_weights, isolated_home, monkeypatch, capsys, tmp_path):
    gr = pytest.importorskip("gradio")

    def taken(self, **kw):
        raise OSError(f"Cannot find empty port in range: {kw['server_port']}-{kw['server_port']}.")

    monkeypatch.setattr(gr.Blocks, "launch", taken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    rc, _, err = run_cli(["app", "--weights", tiny_weights, "--port", "7999"], capsys)
    assert_one_error(rc, err, "127.0.0.1:7999", "pick another --port")
    assert list(tmp_path.iterdir()) == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_stops_the_app_cleanly_and_removes_everything_it_wrote(tmp_path):
    """`hififace app` in a subprocess: uploads land in its private folder, readable by this user only; an upload
    over --max-upload-mb is refused; SIGTERM (how services are stopped) exits 0 and removes the folder."""
    pytest.importorskip("gradio")
    httpx = pytest.importorskip("httpx")
    weights = tiny_model_dir(tmp_path / "tiny")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(TMPDIR=str(tmp), HOME=str(tmp_path / "home"), PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "hififace.cli.main", "app", "--weights", str(weights), "--port",
                             str(port), "--max-upload-mb", "0.01"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, stdin=subprocess.DEVNULL)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    log: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any("hififace app: http" in line for line in log):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(log)
            try:
                log.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        (root,) = tmp.iterdir()
        assert root.name.startswith("hififace-app-") and root.stat().st_mode & 0o777 == 0o700
        url = f"http://127.0.0.1:{port}/gradio_api/upload"
        data = (PHOTOS / "astronaut.png").read_bytes()
        small = httpx.post(url, files={"files": ("a.png", data[:5000], "image/png")}, timeout=30)
        assert small.status_code == 200, small.text
        stored = Path(small.json()[0])
        assert stored.is_relative_to(root) and stored.stat().st_mode & 0o777 == 0o600
        big = httpx.post(url, files={"files": ("b.png", data, "image/png")}, timeout=30)
        assert big.status_code == 413 and "maximum allowed size" in big.text
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(log)
    assert list(tmp.iterdir()) == []  # the private folder, uploads and all, is gone

