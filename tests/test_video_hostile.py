"""Videos as an attacker or an unlucky user makes them (issue 19): pixel bombs and headers that lie, SIGTERM mid-run,
file names ffmpeg would take for URLs, a full disk while muxing, progress without a terminal, labels of MKV outputs.

Clips are made in the test with imageio-ffmpeg's own ffmpeg and kept tiny: the caps are set tiny instead.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from face_helpers import PHOTOS
import inferkit
from inferkit import FakeEngine, assert_one_error, leftovers, run_cli

isolated_home, tiny_weights = inferkit.isolated_home, inferkit.tiny_weights  # the fixtures this module uses

pytest.importorskip("cv2")
pytest.importorskip("imageio_ffmpeg")
pytestmark = pytest.mark.usefixtures("isolated_home")

from videokit import decode, face_frames, make_clip, make_lying_clip  # noqa: E402

from hififace.inference.video import swap_video  # noqa: E402

SRC = PHOTOS / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def swapper():
    from hififace.inference.pipeline import FaceSwapper

    return FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "main": make_clip(d / "main.mp4", face_frames(6)),
        "other": make_clip(d / "other.mp4", face_frames(2, size=(160, 128)), audio=False),
        "lying": make_lying_clip(d / "lying.ts"),
    }


def _run(swapper, clip: Path, out: Path, **kw):
    kw.setdefault("progress", False)
    return swap_video(swapper, PHOTOS / "astronaut.png", clip, out, preset="ultrafast", **kw)


def _error_of(call) -> str:
    from hififace.errors import HifiFaceError

    with pytest.raises(HifiFaceError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------ 1. caps
def test_default_caps_take_4k_60fps_clips_and_refuse_8k_and_pixel_bombs(tmp_path):
    from hififace.media.video import VideoInfo, VideoLimitError, VideoLimits

    def info(w, h, fps=60.0, seconds=300.0):
        return VideoInfo(tmp_path / "v.mp4", w, h, fps, str(int(fps)), seconds, "h264", "yuv420p")

    limits = VideoLimits()
    for w, h in [(3840, 2160), (2160, 3840), (4096, 2160), (4096, 3072)]:  # UHD both ways, DCI, 4:3 open gate
        limits.check(info(w, h))  # five minutes at 60 fps: passes
    limits.check(info(1920, 1080, 30, 3599))
    for case in [info(7680, 4320), info(8192, 8192, 25, 0.4)]:
        with pytest.raises(VideoLimitError, match="--max-frame-pixels"):
            limits.check(case)
    with pytest.raises(VideoLimitError, match="--max-seconds"):
        limits.check(info(1280, 720, 30, 3 * 3600))
    with pytest.raises(VideoLimitError, match="--max-frames"):
        limits.check(info(320, 240, 240, 3000))  # 720,000 frames in 50 minutes
    VideoLimits(0, 0, 0).check(info(8192, 8192, 240, 10 * 3600))  # 0 = no limit
    with pytest.raises(ValueError):
        VideoLimits(max_frames=-1)


@pytest.mark.parametrize("option, value, needles", [
    ("--max-frame-pixels", "10000", ["192x224", "too large", "10,000 pixels per frame", "--max-frame-pixels"]),
    ("--max-frames", "3", ["about 6 frames (0.24 s at 25 fps) are too many", "limit 3 frames", "--max-frames"]),
    ("--max-seconds", "0.1", ["0.24 s of video is too long", "limit 0.1 s", "--max-seconds"]),
])
def test_video_over_a_cap_is_refused_from_its_header_in_one_line(clips, tmp_path, tiny_weights, capsys, monkeypatch,
                                                                 option, value, needles):
    from hififace.media import video as ffmpeg

    readers = []
    monkeypatch.setattr(ffmpeg.FrameReader, "__init__", lambda *a, **k: readers.append(a))  # never decoded
    rc, stdout, err = run_cli(["video", "-s", SRC, "-t", clips["main"], "-o", tmp_path / "out.mp4", "--weights",
                               tiny_weights, option, value], capsys)
    assert_one_error(rc, err, "main.mp4", *needles)
    assert readers == [] and not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_caps_in_the_python_api_and_0_means_no_limit(swapper, clips, tmp_path):
    from hififace.media.video import VideoLimitError

    with pytest.raises(VideoLimitError, match="192x224 frames are too large"):
        _run(swapper, clips["main"], tmp_path / "out.mp4", max_frame_pixels=192 * 224 - 1)
    report = _run(swapper, clips["main"], tmp_path / "out.mp4", max_frame_pixels=192 * 224, max_frames=6,
                  max_seconds=0)
    assert report.frames == 6 and leftovers(tmp_path) == []
    import hififace

    with pytest.raises(VideoLimitError, match="--max-frames"):
        hififace.swap_video(SRC, clips["main"], tmp_path / "api.mp4", model=swapper, max_frames=2, progress=False)


def test_a_header_that_lies_about_the_frame_size_is_stopped_by_the_decoder(swapper, clips, tmp_path):
    """The probe sees 64x64 frames; 512x512 ones follow. The decoder refuses them (nothing that size is decoded)
    and the run stops with the cap's message, leaving nothing behind."""
    from hififace.media.video import VideoLimitError, probe

    info = probe(clips["lying"])
    assert (info.width, info.height) == (64, 64)
    out = tmp_path / "out.mp4"
    with pytest.raises(VideoLimitError) as err:
        _run(swapper, clips["lying"], out, max_frame_pixels=100_000)
    message = str(err.value)
    for needle in ("lying.ts", "512x512 frames", "after the header's 64x64", "100,000 pixels", "--max-frame-pixels"):
        assert needle in message, message
    assert not out.exists() and leftovers(tmp_path) == []
    assert _run(swapper, clips["lying"], out, max_frame_pixels=0).frames == 63  # no limit: all of them


def test_a_header_that_understates_the_length_is_stopped_while_decoding(swapper, clips, tmp_path, monkeypatch):
    from hififace.inference import video
    from hififace.media.video import VideoLimitError, probe

    monkeypatch.setattr(video, "probe", lambda path, cap=None: _shorter(probe(path, cap)))
    with pytest.raises(VideoLimitError, match=r"more than 3 frames decoded \(the header said about 1\) are too many"):
        _run(swapper, clips["main"], tmp_path / "out.mp4", max_frames=3, batch_frames=2)
    with pytest.raises(VideoLimitError, match=r"more than 0.1 s of video decoded \(3 frames at 25 fps; the header "
                                              r"said 0.04 s\) is too long \(limit 0.1 s\)"):
        _run(swapper, clips["main"], tmp_path / "out.mp4", max_seconds=0.1, batch_frames=2)
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def _shorter(info):
    info.duration = 0.04  # one frame at 25 fps, for a clip of six
    return info


# ------------------------------------------------------------------------------------------------ 4. SIGTERM
def test_sigterm_raises_the_interrupt_in_the_main_thread_and_the_old_handler_comes_back():
    from hififace.utils.signals import Terminated, sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as info:
        with sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted at once
    assert isinstance(info.value, Terminated)
    assert signal.getsignal(signal.SIGTERM) is before


def _ffmpeg_running_on(folder: Path) -> list[str]:
    """Command lines of live processes that name ``folder`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc/self/cmdline").exists() else ():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if str(folder) in cmd and entry.name != str(os.getpid()):
            found.append(cmd)
    return found


SLOW_CLI = """
import sys, time
from pathlib import Path
from hififace.inference.pipeline import FaceSwapper
swap = FaceSwapper.swap_crops
def slow(*a, **k):
    Path(sys.argv[1]).touch()  # the swap has started: temporaries exist, ffmpeg runs
    time.sleep(0.5)
    return swap(*a, **k)
FaceSwapper.swap_crops = slow
from hififace.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def test_sigterm_mid_run_leaves_no_output_no_temporaries_and_no_ffmpeg(tmp_path, tiny_weights):
    clip = make_clip(tmp_path / "clip.mp4", face_frames(40))
    work = tmp_path / "out"
    work.mkdir()
    started = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, str(started), "video", "-s", str(SRC), "-t", str(clip),
                             "-o", str(work / "out.mp4"), "--weights", str(tiny_weights), "--frames-per-batch", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        assert any(p.name.startswith(".hififace-") for p in work.iterdir())  # the temporaries the run writes
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert list(work.iterdir()) == []  # no output, no .hififace-*.mp4, no *.video.mp4
    assert _ffmpeg_running_on(work) == []


# ------------------------------------------------------------------------------------------------ 5. names
def test_names_with_a_colon_or_a_protocol_are_files_for_ffmpeg(swapper, clips, tmp_path, monkeypatch):
    from hififace.media.video import probe

    colon = tmp_path / "12:30 clip.mp4"
    colon.write_bytes(clips["main"].read_bytes())
    out = tmp_path / "12:30 out.mkv"  # written (encoder, mux) under a name with a colon too
    report = _run(swapper, colon, out)
    assert report.frames == 6 and report.audio and len(decode(out)) == 6
    assert leftovers(tmp_path) == []
    # 'file:x.mp4' is that file, not x.mp4 (a different clip beside it); also as an output name
    monkeypatch.chdir(tmp_path)
    Path("x.mp4").write_bytes(clips["other"].read_bytes())
    Path("file:x.mp4").write_bytes(clips["main"].read_bytes())
    assert (probe("file:x.mp4").width, probe("x.mp4").width) == (192, 160)
    assert _run(swapper, Path("file:x.mp4"), Path("file:out.mp4")).frames == 6
    assert len(decode(Path("file:out.mp4"))) == 6 and not Path("out.mp4").exists()


# ------------------------------------------------------------------------------------------------ 6. mux
def _fake_run(results: list[tuple[int, str]], calls: list):
    def run(cmd, timeout=60):
        calls.append(cmd)
        rc, err = results[min(len(calls), len(results)) - 1]
        return subprocess.CompletedProcess(cmd, rc, "", err)

    return run


def _audio_info(tmp_path: Path):
    from hififace.media.video import VideoInfo

    return VideoInfo(tmp_path / "in.mkv", 64, 64, 25.0, "25", 1.0, "h264", "yuv420p", audio=["opus"])


def test_mux_on_a_full_disk_says_so_and_does_not_retry(tmp_path, monkeypatch):
    from hififace.errors import HifiFaceError
    from hififace.media import video as ffmpeg

    calls: list = []
    full = "[out#0/mov @ 0x1] Could not write header (incorrect codec parameters ?): No space left on device\n"
    monkeypatch.setattr(ffmpeg, "_run", _fake_run([(228, full)], calls))
    with pytest.raises(HifiFaceError) as info:
        ffmpeg.mux(tmp_path / "v.mp4", _audio_info(tmp_path), tmp_path / ".out.mov.tmp.mov", name="out.mov")
    assert len(calls) == 1  # no AAC retry: the disk is full, not the audio the wrong kind
    assert str(info.value) == (f"out.mov: no space left on {tmp_path}; free some space there or write the output "
                               f"elsewhere (-o)")


def test_mux_retries_with_aac_only_for_audio_the_container_cannot_hold(tmp_path, monkeypatch, caplog):
    from hififace.errors import HifiFaceError
    from hififace.media import video as ffmpeg

    opus = "[mov @ 0x1] opus only supported in MP4.\n[out#0/mov @ 0x2] Could not write header (incorrect codec " \
           "parameters ?): Invalid argument\n"
    calls: list = []
    monkeypatch.setattr(ffmpeg, "_run", _fake_run([(234, opus), (0, "")], calls))
    with caplog.at_level("INFO", logger="hififace"):
        ffmpeg.mux(tmp_path / "v.mp4", _audio_info(tmp_path), tmp_path / "out.mov")
    assert len(calls) == 2 and "aac" not in calls[0] and calls[1][calls[1].index("-c:a") + 1] == "aac"
    assert "opus only supported in MP4" in caplog.text
    calls.clear()  # any other failure: one line with ffmpeg's reason, no retry
    monkeypatch.setattr(ffmpeg, "_run", _fake_run([(1, "out.mov: Permission denied\n")], calls))
    with pytest.raises(HifiFaceError, match=r"^out.mov: writing the video failed \(out.mov: Permission denied\)$"):
        ffmpeg.mux(tmp_path / "v.mp4", _audio_info(tmp_path), tmp_path / "out.mov")
    assert len(calls) == 1


def test_opus_audio_into_mov_is_reencoded_for_real(swapper, tmp_path):
    from videokit import ffmpeg as ffmpeg_exe

    from hififace.media.video import probe

    clip = tmp_path / "opus.mkv"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(make_clip(
        tmp_path / "aac.mp4", face_frames(3))), "-c:v", "copy", "-c:a", "libopus", str(clip)], check=True)
    assert probe(clip).audio == ["opus"]
    out = tmp_path / "out.mov"
    assert _run(swapper, clip, out).audio and probe(out).audio == ["aac"]


def test_encoder_on_a_full_disk_names_the_output_and_the_folder(clips):
    from hififace.errors import HifiFaceError
    from hififace.media.video import FrameWriter, probe

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    writer = FrameWriter(Path("/dev/full"), probe(clips["main"]), preset="ultrafast", name="out.mp4")
    with pytest.raises(HifiFaceError, match=r"^out.mp4: no space left on /dev; "):
        for frame in decode(clips["main"]) * 4:
            writer.write(frame)
        writer.close()
    writer.abort()


# ------------------------------------------------------------------------------------------------ 7. progress
def test_progress_lines_are_logged_when_no_bar_is_drawn(swapper, clips, tmp_path, monkeypatch, caplog):
    from hififace.inference import video

    monkeypatch.setattr(video, "LOG_EVERY", 0.0)  # a line after every batch
    with caplog.at_level("INFO", logger="hififace"):
        _run(swapper, clips["main"], tmp_path / "out.mp4", batch_frames=2, progress=True)  # stderr: no terminal
    lines = [r.getMessage() for r in caplog.records if "frames/s" in r.getMessage()]
    assert [line.split(": ")[1].split(" ")[0] for line in lines] == ["2/6", "4/6", "6/6"], lines
    assert "main.mp4: 4/6 frames (66%)" in lines[1] and "left" in lines[1]
    caplog.clear()
    with caplog.at_level("INFO", logger="hififace"):
        _run(swapper, clips["main"], tmp_path / "out.mp4", batch_frames=2, progress=False)
    assert "frames/s" not in caplog.text


def test_the_onnx_hint_follows_its_documented_rule(tmp_path, monkeypatch, caplog):
    import argparse
    import importlib.util

    import torch

    from hififace.cli.video import onnx_hint
    from hififace.export.graphs import GRAPHS

    model_dir = tmp_path / "model"
    (model_dir / "onnx").mkdir(parents=True)
    cpu = argparse.Namespace(engine="torch", compile=False, dtype="fp32", weights=str(model_dir))
    model = argparse.Namespace(device=torch.device("cpu"))
    monkeypatch.setattr("hififace.weights.resolve.resolve_model_dir", lambda path: Path(path))
    real_find = importlib.util.find_spec
    installed = {"onnxruntime": True}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (object() if installed["onnxruntime"] else None) if name == "onnxruntime"
                        else real_find(name, *a))

    def said(args, model) -> bool:
        caplog.clear()
        with caplog.at_level("INFO", logger="hififace"):
            onnx_hint(args, model)
        return "--engine onnx" in caplog.text

    assert not said(cpu, model)  # no export yet
    for spec in GRAPHS:
        (model_dir / "onnx" / spec.file).write_bytes(b"")
    assert said(cpu, model) and caplog.text.count("--engine onnx") == 1
    assert "1.4x" in caplog.text
    assert not said(argparse.Namespace(**{**vars(cpu), "engine": "onnx"}), model)  # already on it
    assert not said(argparse.Namespace(**{**vars(cpu), "dtype": "bf16"}), model)
    assert not said(cpu, argparse.Namespace(device=torch.device("cuda")))  # measured on CPUs only
    installed["onnxruntime"] = False
    assert not said(cpu, model)


# ------------------------------------------------------------------------------------------------ 8. labels
def test_mkv_output_carries_a_video_label_read_label_reads(swapper, clips, tmp_path, tiny_weights, capsys):
    from hififace.media.labels import read_label

    rc, _, err = run_cli(["video", "-s", SRC, "-t", clips["main"], "-o", tmp_path / "out.mkv", "--weights",
                          tiny_weights, "--preset", "ultrafast"], capsys)
    assert rc == 0, err
    label = read_label(tmp_path / "out.mkv")
    assert label["Description"] == "Synthetic video generated by hififace face swapping"
    assert label["Comment"].startswith("Synthetic video generated by hififace")
    assert "AI-Generated=true" in label["Comment"] and "hififace:command=video" in label["Comment"]
    mp4 = read_label(_run(swapper, clips["main"], tmp_path / "out.mp4").output)
    assert mp4["Description"].startswith("Synthetic video") and "Synthetic image" not in mp4["Comment"]


def test_read_label_of_unlabelled_or_damaged_mkv_is_empty_not_an_error(tmp_path):
    from videokit import ffmpeg as ffmpeg_exe

    from hififace.media.labels import read_label

    plain = tmp_path / "plain.mkv"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "color=gray:s=32x32:r=5", "-frames:v", "2", "-fflags", "+bitexact", str(plain)], check=True)
    assert "Comment" not in read_label(plain)
    data = plain.read_bytes()
    for cut in (5, 40, len(data) // 2):
        (tmp_path / "cut.mkv").write_bytes(data[:cut])
        assert isinstance(read_label(tmp_path / "cut.mkv"), dict)
    (tmp_path / "huge.mkv").write_bytes(b"\x1a\x45\xdf\xa3\x80" + b"\x18\x53\x80\x67\x01\xff\xff\xff\xff\xff\xff\xff"
                                        + b"\x12\x54\xc3\x67\x08\x7f\xff\xff\xff\xff\xff\xff" + np.zeros(64,
                                                                                                     np.uint8).tobytes())
    assert read_label(tmp_path / "huge.mkv") == {}  # a Tags element claiming petabytes is not read
