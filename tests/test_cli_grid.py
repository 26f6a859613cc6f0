"""`hififace grid`: every source on every target, labelled first row/column, identities encoded once."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hififace import HifiFace
from hififace.media.images import read_crop
from hififace.media.labels import read_label
from inferkit import SAMPLES, assert_one_error, leftovers, run_cli, tiny_model_dir


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("w") / "tiny")


@pytest.fixture
def faces(tmp_path) -> Path:
    d = tmp_path / "faces"
    d.mkdir()
    for name in ("astronaut", "cameraman"):
        (d / f"{name}.png").write_bytes((SAMPLES / f"{name}.png").read_bytes())
    return d


def cell(grid: np.ndarray, row: int, col: int, size: int = 256, pad: int = 2) -> np.ndarray:
    band = max(12, size // 12)
    y, x = pad + row * (size + band + pad), pad + col * (size + pad)
    return grid[y : y + size, x : x + size]


def test_grid_every_source_on_every_target(faces, weights, capsys, monkeypatch):
    calls = []
    real = HifiFace.identity
    monkeypatch.setattr(HifiFace, "identity", lambda self, src: calls.append(1) or real(self, src))
    out = faces.parent / "grid.png"
    rc, _, err = run_cli(["grid", faces, "-o", out, "--weights", weights, "--batch-size", "2",
                          "--no-invisible-watermark"], capsys)  # the cells' exact pixels are compared
    assert rc == 0, err
    assert len(calls) == 2  # one identity per source, reused for every target
    g = read_crop(out)
    band = 256 // 12
    assert g.shape == (2 + 3 * (256 + band + 2), 2 + 3 * (256 + 2), 3)
    a, c = read_crop(faces / "astronaut.png"), read_crop(faces / "cameraman.png")
    np.testing.assert_array_equal(cell(g, 0, 1), a)  # header row: targets in file order
    np.testing.assert_array_equal(cell(g, 0, 2), c)
    np.testing.assert_array_equal(cell(g, 2, 0), c)  # first column: sources
    model = HifiFace.from_pretrained(weights)
    # astronaut's identity on the cameraman and back; batched runs may round 1 grey level differently
    assert np.abs(cell(g, 1, 2).astype(int) - model.swap(a, c)).max() <= 1
    assert np.abs(cell(g, 2, 1).astype(int) - model.swap(c, a)).max() <= 1
    assert np.abs(cell(g, 1, 1).astype(int) - model.swap(a, a)).max() <= 1
    assert read_label(out)["hififace:command"] == "grid"
    assert leftovers(faces.parent) == []


def test_grid_separate_targets_and_cell_size(faces, weights, tmp_path, capsys):
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "grace_hopper.png").write_bytes((SAMPLES / "grace_hopper.png").read_bytes())
    out = tmp_path / "g.jpg"
    rc, _, err = run_cli(["grid", faces, "--targets", targets, "-o", out, "--weights", weights, "--cell-size", "64"],
                         capsys)
    assert rc == 0, err
    assert read_crop(out).shape == (2 + 3 * (64 + 12 + 2), 2 + 2 * (64 + 2), 3)
    assert "Synthetic image" in read_label(out)["ImageDescription"]


def test_grid_bad_face_in_folder(faces, weights, capsys):
    (faces / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    out = faces.parent / "grid.png"
    rc, _, err = run_cli(["grid", faces, "-o", out, "--weights", weights], capsys)
    assert_one_error(rc, err, "broken.png")
    assert not out.exists() and leftovers(faces.parent) == []


def test_grid_empty_or_missing_folder(tmp_path, weights, capsys):
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli(["grid", tmp_path / "empty", "-o", tmp_path / "g.png", "--weights", weights], capsys)
    assert_one_error(rc, err, "no images")
    rc, _, err = run_cli(["grid", tmp_path / "nowhere", "-o", tmp_path / "g.png", "--weights", weights], capsys)
    assert_one_error(rc, err, "nowhere", "folder not found")
    assert not (tmp_path / "g.png").exists()
