"""Helpers for the inference/CLI tests: a tiny random model folder, sample faces, CLI runs and leftover checks."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from hififace import HifiFace, HifiFaceConfig
from hififace.cli.main import main as cli

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "hififace" / "assets" / "samples"
TINY = dict(channel_multiplier=1 / 16, frozen_width=0.125, arcface_arch="r18", recon_input_size=64)


def tiny_model(seed: int = 0) -> HifiFace:
    return HifiFace.random(HifiFaceConfig(**TINY), seed=seed)


def tiny_model_dir(path: Path, seed: int = 0, random_note: bool = False) -> Path:
    """A tiny model folder standing in for trained weights: without ``random_note`` its config does not carry
    HifiFace.random's note (which would label every output 'random weights')."""
    model = tiny_model(seed)
    if not random_note:
        model.config.notes.pop("weights")
    return model.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny random model folder, once per test module (import this fixture into the module)."""
    return tiny_model_dir(tmp_path_factory.mktemp("w") / "tiny")


@pytest.fixture
def isolated_home(monkeypatch, tmp_path_factory):
    """Never pick up a model or parser weights from the developer's $HIFIFACE_HOME or ~/.cache/hififace."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HIFIFACE_HOME", str(home / "hififace_home"))


def sample(name: str) -> np.ndarray:
    from hififace.media.images import read_crop

    return read_crop(SAMPLES / f"{name}.png")


def run_cli(argv, capsys) -> tuple[int, str, list[str]]:
    """Exit code, stdout and the stderr lines of one in-process CLI run."""
    capsys.readouterr()
    rc = cli([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, [line for line in captured.err.splitlines() if line.strip()]


def assert_one_error(rc: int, err: list[str], *needles: str) -> str:
    """Exactly one stderr line, an `error:` line, non-zero exit, no traceback; it mentions every needle."""
    assert rc != 0
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in line
    for needle in needles:
        assert needle.lower() in line.lower(), (needle, line)
    return line


def leftovers(folder: Path) -> list[str]:
    """Hidden files (atomic-write temporaries start with '.') left in ``folder``."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose IHDR claims ``width`` x ``height`` (8-bit RGB) with a tiny, incomplete IDAT: built in bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


class FakeEngine:
    """A swap engine (the interface the photo/video pipelines use) that costs next to nothing: the "identity" of a
    crop is its pooled pixels, the "swap" inverts the crop's colours and the mask covers the whole crop. For tests of
    the pipeline around the model (faces, crops, paste-back, files, video), not of the model."""

    image_size = 256
    align = "arcface"

    def __init__(self, tag: str = "fake"):
        import torch

        self.device = torch.device("cpu")
        self.tag = tag
        self.calls = 0

    def identity(self, crops):
        import torch
        import torch.nn.functional as F

        from hififace import Identity

        pooled = F.adaptive_avg_pool2d(crops.float(), (8, 8)).flatten(1)  # N x 192
        v = F.normalize(torch.cat([pooled - pooled.mean(1, keepdim=True), torch.zeros(len(crops), 320)], 1), dim=1)
        return Identity(pooled[:, :80].contiguous(), v)

    def swap(self, identity, crops):
        self.calls += 1
        return 1.0 - crops, crops.new_ones(crops.shape[0], 1, *crops.shape[-2:])

    def fingerprint(self) -> str:
        return self.tag
