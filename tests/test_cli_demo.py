"""`hififace demo`: bundled sample faces; without weights, one line and a labelled random-weight smoke run."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from hififace import HifiFaceConfig
from hififace.cli import demo
from hififace.media.images import read_crop
from hififace.media.labels import read_label
from inferkit import SAMPLES, TINY, leftovers, run_cli, tiny_model_dir


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No model in $HIFIFACE_HOME or ~/.cache/hififace; run in an empty folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HIFIFACE_HOME", str(tmp_path / "hififace_home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_samples_are_aligned_256_crops_with_a_licence_note():
    files = sorted(SAMPLES.glob("*.png"))
    assert [p.stem for p in files] == ["astronaut", "cameraman", "grace_hopper"]
    for p in files:
        with Image.open(p) as img:
            assert img.size == (256, 256) and img.mode == "RGB"
    readme = (SAMPLES / "README.md").read_text()
    assert "Public domain" in readme and "CC0" in readme
    assert (SAMPLES / "LICENSE.md").exists()


def test_demo_with_weights(tmp_path, isolated, capsys):
    weights = tiny_model_dir(tmp_path / "tiny")
    rc, _, err = run_cli(["demo", "--weights", weights], capsys)
    assert rc == 0, err
    out = isolated / "demo_out.png"
    assert out.exists() and not any("random" in line for line in err)
    g = read_crop(out)
    assert g.shape == (2 + 2 * (256 + 21 + 2), 2 + 3 * (256 + 2), 3)  # 1 source x 2 targets plus headers
    label = read_label(out)
    assert label["hififace:command"] == "demo" and "hififace:weights" not in label
    assert leftovers(isolated) == []


def test_demo_finds_weights_in_hififace_home(tmp_path, isolated, monkeypatch, capsys):
    tiny_model_dir(tmp_path / "hififace_home" / "hififace-256")
    rc, _, err = run_cli(["demo", "-o", "d.png"], capsys)
    assert rc == 0, err
    assert (isolated / "d.png").exists() and not (isolated / "d_random_weights.png").exists()


def test_demo_without_weights_is_a_labelled_smoke_run(isolated, monkeypatch, capsys):
    # the real smoke model is the full-size reference config; a tiny one keeps the test fast
    monkeypatch.setattr(demo, "smoke_config", lambda: HifiFaceConfig(**TINY))
    rc, _, err = run_cli(["demo"], capsys)
    assert rc == 0, err
    notices = [line for line in err if "no trained weights" in line]
    assert len(notices) == 1 and "random" in notices[0].lower()
    assert not (isolated / "demo_out.png").exists()
    out = isolated / "demo_out_random_weights.png"
    label = read_label(out)
    assert label["hififace:weights"].startswith("random")
    # the visible mark is always drawn in this mode: its dark box covers the (otherwise white) caption band of the
    # bottom-right result cell
    band = read_crop(out)[-18:-9, -150:-12]
    assert (band < 160).mean() > 0.5 and (band > 200).any()  # box and white text
    assert leftovers(isolated) == []


def test_smoke_config_is_the_full_reference_model():
    cfg = demo.smoke_config()
    assert (cfg.image_size, cfg.variant, cfg.channel_multiplier, cfg.frozen_width) == (256, "reference", 1.0, 1.0)


def test_random_output_name():
    assert demo.random_output_name(Path("demo_out.png")) == Path("demo_out_random_weights.png")
    assert demo.random_output_name(Path("x/run_random_weights.jpg")) == Path("x/run_random_weights.jpg")


def test_demo_with_a_bad_weights_folder(isolated, capsys):
    rc, _, err = run_cli(["demo", "--weights", "nowhere"], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ") and "nowhere" in err[0]
    assert list(isolated.iterdir()) == []
