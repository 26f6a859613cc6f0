"""`hififace eval` input robustness: a pairs.csv field too long for the csv module is one line naming the file and
the line; identical rows are computed once (the model and the metric networks are called per unique pair)."""
from __future__ import annotations

import logging
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hififace.errors import ConfigError
from hififace.metrics.evaluate import EvalOptions, Evaluator, MetricModels
from hififace.metrics.pairs import Row, read_pairs
from hififace.metrics.run import make_results
from inferkit import assert_one_error, run_cli


def _png(path: Path, value: int, size: int = 32) -> Path:
    rng = np.random.default_rng(value)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def test_a_field_longer_than_the_csv_limit_is_one_line_naming_file_and_line(tmp_path, capsys):
    _png(tmp_path / "a.png", 0)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("source,target\na.png,a.png\na.png," + "x" * 140_000 + "\n")
    with pytest.raises(ConfigError, match=r"pairs\.csv: line 3 is not a pairs row \(field larger than field limit"):
        read_pairs(pairs, tmp_path)
    (tmp_path / "res").mkdir()
    rc, _, err = run_cli(["eval", "--pairs", pairs, "--results", tmp_path / "res", "-o", tmp_path / "rep"], capsys)
    line = assert_one_error(rc, err, str(pairs), "line 3", "source,target")
    assert "unexpected" not in line and len(line) < 400
    header = tmp_path / "header.csv"  # in the header line too
    header.write_text("source," + "y" * 140_000 + "\n")
    with pytest.raises(ConfigError, match="line 1 is not a pairs row"):
        read_pairs(header)


class CountingModel:
    """Stands in for HifiFace in make_results (its interface: config, identity, swap(return_all=True)): counts the
    swap calls and the images swapped, returns a grey image per pair."""

    class config:  # noqa: N801 (a namespace like HifiFaceConfig)
        image_size = 32
        variant = "reference"
        align = "arcface"

    def __init__(self) -> None:
        self.calls = 0
        self.images = 0
        self.device = torch.device("cpu")

    def prepare_target(self, crops):  # part of the interface; make_results does not use it
        raise AssertionError("not expected")

    def identity_fingerprint(self) -> str:
        return "counting"

    def identity(self, crops):
        from hififace.models.identity import Identity

        return Identity(torch.zeros(len(crops), 80), torch.ones(len(crops), 512) / 512 ** 0.5)

    def swap(self, identity, crops, return_all=False):
        assert return_all and len(identity) == len(crops)
        self.calls += 1
        self.images += len(crops)
        grey = torch.full((len(crops), 3, 32, 32), 128 / 255)
        return SimpleNamespace(i_r=grey, m_r=torch.ones(len(crops), 1, 32, 32))


def test_identical_rows_are_swapped_once_and_share_their_result(tmp_path, caplog):
    a, b, c = (_png(tmp_path / f"{n}.png", i) for i, n in enumerate("abc"))
    spelled = tmp_path / "sub" / ".." / "a.png"  # another spelling of a.png is the same work
    (tmp_path / "sub").mkdir()
    rows = [Row(i, a, b, None, "a", i + 2, f"{i:05d}_b") for i in range(200)]
    rows += [Row(200, spelled, b, None, "a", 202, "00200_b"), Row(201, b, a, None, "b", 203, "00201_a"),
             Row(202, c, c, None, "c", 204, "00202_c")]
    model = CountingModel()
    with caplog.at_level(logging.INFO, logger="hififace"):
        make_results(model, rows, tmp_path / "results", batch_size=8)
    assert model.images == 3 and model.calls == 1  # not 203 swaps
    assert "203 rows, 3 unique (source, target) pair(s)" in caplog.text
    assert {r.result for r in rows[:201]} == {tmp_path / "results" / "00000_b.png"}
    assert sorted(p.name for p in (tmp_path / "results").glob("*.png")) == ["00000_b.png", "00201_a.png",
                                                                         "00202_c.png"]
    model = CountingModel()
    make_results(model, rows, tmp_path / "results")  # resumed: nothing left to make
    assert model.images == 0


def test_identical_rows_are_scored_once_and_every_row_gets_the_scores(tmp_path, caplog):
    """10,000 rows of one pair used to be 10,000 metric computations; now one, fanned out to every row."""
    from hififace.losses.lpips import LPIPS

    a, b = _png(tmp_path / "a.png", 0), _png(tmp_path / "b.png", 1)
    lpips = LPIPS(width=0.125)
    calls = []
    lpips.register_forward_hook(lambda *args: calls.append(1))
    rows = [Row(i, a, a, b, "a") for i in range(300)] + [Row(300, b, b, a, "b")]
    ev = Evaluator(MetricModels(lpips=lpips, lpips_name="tiny LPIPS"),
                   EvalOptions(faces="template", cache_dir=tmp_path / "cache"))
    with caplog.at_level(logging.INFO, logger="hififace"):
        res = ev.run(rows)
    assert len(calls) == 2  # two unique (result, target) pairs
    assert "301 rows, 2 unique (source, target, result)" in caplog.text
    first = [s for s in res.samples if s["index"] < 300]
    assert len(first) == 300 and len({(s["psnr"], s["ssim"], s["lpips"]) for s in first}) == 1
    assert first[0]["lpips"] is not None and res.details["psnr"]["n"] == 301  # every row counts in the means
