"""What a user meets on the way: one clear line for the usual mistakes, random weights always labelled, outputs in
range, labels readable from every format written."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from hififace import HifiFaceConfig
from hififace.cli import demo
from hififace.media.labels import read_label
from inferkit import SAMPLES, TINY, assert_one_error, run_cli, tiny_model, tiny_model_dir


@pytest.fixture
def home(monkeypatch, tmp_path):
    """An empty $HIFIFACE_HOME and ~ ; work in an empty folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HIFIFACE_HOME", str(tmp_path / "hififace_home"))
    (tmp_path / "hififace_home").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


@pytest.mark.parametrize("argv, needles", [
    (["convert", SAMPLES / "astronaut.png", "-o", "w"], ["astronaut.png", "not a checkpoint", "PNG image",
                                                          "hififace_opensouce_299999.ckpt"]),
    (["convert", "--arcface", "notimage.png", "--recon3d", "notimage.png", "-o", "w"],
     ["notimage.png", "not a checkpoint", "text file", "backbone.pth"]),
    (["convert", "--arcface", SAMPLES / "astronaut.png", "--recon3d", "notimage.png", "-o", "w"],
     ["astronaut.png", "PNG image", "backbone.pth"]),
])
def test_convert_of_a_file_that_is_no_checkpoint_says_what_it_is(home, argv, needles, capsys):
    (home / "work" / "notimage.png").write_text("hello, I am text\n")
    rc, _, err = run_cli(argv, capsys)
    line = assert_one_error(rc, err, *needles)
    assert "weights_only" not in line
    assert sorted(p.name for p in (home / "work").iterdir()) == ["notimage.png"]


def test_info_without_a_path_says_where_it_looked_and_how_to_give_one(home, capsys):
    rc, _, err = run_cli(["info"], capsys)
    line = assert_one_error(rc, err, f"$HIFIFACE_HOME={home / 'hififace_home'}", "hififace info DIR")
    assert "--weights" not in line
    assert line.endswith(f"-o {home / 'hififace_home' / 'hififace-256'}'")  # converts to where it will be found first


def test_info_on_an_incomplete_folder_prints_it_and_fails(home, capsys):
    folder = tiny_model_dir(home / "m")
    (folder / "arcface.safetensors").unlink()
    rc, out, err = run_cli(["info", folder], capsys)
    assert "generator.safetensors" in out
    assert_one_error(rc, err, "incomplete model folder", "arcface.safetensors", "hififace convert")
    rc, _, err = run_cli(["info", tiny_model_dir(home / "ok")], capsys)
    assert rc == 0 and err == []


def test_demo_says_where_it_looked_for_weights(home, monkeypatch, capsys):
    monkeypatch.setattr(demo, "smoke_config", lambda: HifiFaceConfig(**TINY))
    rc, _, err = run_cli(["demo"], capsys)
    assert rc == 0
    notice = [line for line in err if "no trained weights" in line]
    assert len(notice) == 1 and f"$HIFIFACE_HOME={home / 'hififace_home'}" in notice[0]


def test_a_folder_saved_from_random_weights_is_labelled_random(home, monkeypatch, capsys):
    folder = tiny_model_dir(home / "rnd", random_note=True)
    assert "random" in (folder / "config.json").read_text()
    rc, _, err = run_cli(["swap", "--source", SAMPLES / "astronaut.png", "--target", SAMPLES / "cameraman.png",
                          "-o", "out.png", "--weights", folder], capsys)
    assert rc == 0, err
    assert any("RANDOM weights" in line for line in err)
    assert read_label(home / "work" / "out.png")["hififace:weights"].startswith("random")
    rc, _, err = run_cli(["demo", "--weights", folder], capsys)
    assert rc == 0 and (home / "work" / "demo_out_random_weights.png").exists()
    assert not (home / "work" / "demo_out.png").exists()


def test_swap_of_float_tensors_is_clamped_and_raw_values_stay_available():
    model = tiny_model(seed=3)
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.rand(1, 3, 256, 256, generator=g), torch.rand(1, 3, 256, 256, generator=g)
    raw = model.swap(src, tgt, return_all=True).i_r
    assert raw.min() < 0 or raw.max() > 1  # random weights overshoot: the clamp is exercised
    out = model.swap(src, tgt)
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, raw.clamp(0, 1))
    mixed = model.interpolate(src, tgt, tgt, rate=0.5)
    assert mixed.min() >= 0 and mixed.max() <= 1


def test_read_label_reads_mp4_tags_and_reports_xmp_once(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    from hififace.media.images import write_image
    from hififace.media.video import write_animation

    frames = [np.full((32, 32, 3), v, np.uint8) for v in (0, 128, 255)]
    write_animation(tmp_path / "a.mp4", frames, meta={"hififace:command": "test"})
    label = read_label(tmp_path / "a.mp4")
    assert "AI-Generated=true" in label["Comment"] and "hififace:command=test" in label["Comment"]
    assert label["Description"]
    write_image(tmp_path / "a.png", frames[1])
    label = read_label(tmp_path / "a.png")
    assert "trainedAlgorithmicMedia" in label["XMP"] and "XML:com.adobe.xmp" not in label
    shutil.copy(tmp_path / "a.png", tmp_path / "b.png")
    assert sum("<x:xmpmeta" in v for v in read_label(tmp_path / "b.png").values()) == 1


def test_outputs_are_replaced_atomically_unless_no_clobber(home, capsys):
    from hififace.media.images import check_output_path
    from hififace.media.video import check_animation_path

    folder = tiny_model_dir(home / "m")
    out = home / "work" / "out.png"
    out.write_bytes(b"old")
    base = ["swap", "--source", SAMPLES / "astronaut.png", "--target", SAMPLES / "cameraman.png", "-o", out,
            "--weights", folder]
    rc, _, err = run_cli([*base, "--no-clobber"], capsys)
    assert_one_error(rc, err, "out.png", "already exists", "--no-clobber")
    assert out.read_bytes() == b"old"
    rc, _, err = run_cli(base, capsys)
    assert rc == 0, err
    assert read_label(out)["hififace:command"] == "swap"  # replaced by the new output
    assert sorted(p.name for p in (home / "work").iterdir()) == ["out.png"]  # no temporary left
    gif = home / "work" / "a.gif"
    gif.write_bytes(b"old")
    with pytest.raises(Exception, match="already exists"):
        check_animation_path(gif, no_clobber=True)
    assert check_animation_path(gif) == gif and check_output_path(out) == out


def test_opencv_ffmpeg_says_nothing_about_a_bad_video(tmp_path):
    """The commands report a video OpenCV cannot open in their own line; FFmpeg's own lines are kept out."""
    pytest.importorskip("cv2")
    import subprocess
    import sys

    (tmp_path / "bad.mp4").write_bytes(b"not a video\n")  # FFmpeg: "moov atom not found"
    code = ("from hififace.utils.logs import setup_logging; setup_logging(False); import cv2; "
            f"assert not cv2.VideoCapture({str(tmp_path / 'bad.mp4')!r}).isOpened()")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr


@pytest.mark.parametrize("damage, needles", [
    ("header is a list", ["generator.safetensors", "not a valid safetensors file", "not a JSON object"]),
    ("shape -1", ["generator.safetensors", "not a valid safetensors file", "shape [-1]"]),
    ("config type", ["config.json", "channel_multiplier must be a number", "got a string '0.5'"]),
])
def test_info_on_a_damaged_folder_is_one_line(home, capsys, damage, needles):
    import json
    import struct

    folder = tiny_model_dir(home / "m")
    gen = folder / "generator.safetensors"
    raw = gen.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    if damage == "header is a list":
        head = b"[" + b" " * (n - 2) + b"]"
        gen.write_bytes(raw[:8] + head + raw[8 + n:])
    elif damage == "shape -1":
        header = json.loads(raw[8:8 + n])
        header[next(k for k in header if k != "__metadata__")]["shape"] = [-1]
        head = json.dumps(header).encode()
        gen.write_bytes(struct.pack("<Q", len(head)) + head + raw[8 + n:])
    else:
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "channel_multiplier": "0.5"}))
    rc, _, err = run_cli(["info", folder], capsys)
    line = assert_one_error(rc, err, *needles)
    assert "unexpected" not in line


def test_info_shows_config_notes_escaped(home, capsys):
    import json

    folder = tiny_model_dir(home / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["notes"] = {"source": "\x1b[2J\x1b[1;1Hall good\n" + "x" * 5000}
    (folder / "config.json").write_text(json.dumps(cfg))
    rc, out, err = run_cli(["info", folder], capsys)
    assert rc == 0, err
    note = [line for line in out.splitlines() if "note source" in line]
    assert len(note) == 1 and "\\x1b[2J\\x1b[1;1Hall good\\x0a" in note[0] and len(note[0]) < 260, note
    assert "\x1b" not in out


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    """`hififace info DIR | head -1`: no 'unexpected BrokenPipeError', no 'Exception ignored', status 141."""
    import subprocess
    import sys

    folder = tiny_model_dir(tmp_path / "m")
    for argv in (["info", str(folder)], ["--version"]):
        proc = subprocess.Popen([sys.executable, "-m", "hififace.cli.main", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.close()  # before the child writes anything: every write of it meets a closed pipe
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=300) == 141, (argv, err)
        assert err == "", (argv, err)


def test_file_names_listed_from_a_folder_reach_the_terminal_escaped(tiny_weights, tmp_path, capsys):
    """`hififace swap --target FOLDER`: names of files found in the folder (an ANSI escape, a newline) appear in
    the skipped-files warning, in a failed image's warning and in the error line, escaped: nothing raw reaches the
    terminal, and each message stays one line."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "astronaut.png", folder / "ok\x1b[2J.png")
    (folder / "bad\x1b[31m\nOK: all 3 images swapped.png").write_bytes(b"not an image")
    (folder / "notes\x1b]0;owned\x07.txt").write_text("hello")
    rc, _, err = run_cli(["swap", "--source", SAMPLES / "grace_hopper.png", "--target", folder,
                          "-o", tmp_path / "out", "--weights", tiny_weights], capsys)
    text = "\n".join(err)
    assert rc != 0 and err[-1].startswith("error: ")
    assert "\x1b" not in text and "\x07" not in text, text
    assert not any(line.startswith("OK:") for line in err), err  # the newline did not forge a line
    assert "notes\\x1b]0;owned\\x07.txt" in text and "bad\\x1b[31m\\x0aOK: all 3 images swapped.png" in text, text
    assert (tmp_path / "out" / "ok\x1b[2J.png").is_file()  # the file itself is processed under its own name
