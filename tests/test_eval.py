"""`hififace eval` and the evaluator: known answers on tiny random networks, dlib identity on real photos, the
report files, --compare, the FF++ protocol on a tiny synthetic FF++ folder, resume, and bad input."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hififace.metrics.evaluate import METRICS, EvalOptions, Evaluator, MetricModels
from hififace.metrics.pairs import Row
from inferkit import SAMPLES, assert_one_error, leftovers, run_cli, tiny_model_dir

PHOTOS = Path(__file__).parent / "data" / "photos"
TOP_KEYS = set(METRICS) | {"n_pairs", "skipped", "models"}


def have_dlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None


@pytest.fixture(autouse=True)
def no_user_weights(monkeypatch, tmp_path_factory):
    """Never pick up weights from the developer's $HIFIFACE_HOME, ~/.cache or torch hub."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HIFIFACE_HOME", str(home / "hififace_home"))
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("w") / "tiny")


def tiny_models(lpips: bool = True) -> MetricModels:
    """Every metric network, tiny and random (the maths, not the numbers, is under test)."""
    from hififace.losses.lpips import LPIPS
    from hififace.metrics.identity import IResNetIdentity
    from hififace.metrics.inception import FIDInceptionV3
    from hififace.metrics.threedmm import ReconCoefficients
    from hififace.models.frozen.arcface import IResNet
    from hififace.models.frozen.recon import ReconNet

    torch.manual_seed(0)
    return MetricModels(identity=IResNetIdentity(IResNet("r18", 0.125), "tiny IResNet", "tiny-id"),
                        recon=ReconCoefficients(ReconNet(0.125), "tiny ReconNet", "tiny-recon"),
                        inception=FIDInceptionV3(0.125, input_size=75), inception_name="tiny Inception", inception_key="tiny-incep",
                        lpips=LPIPS(width=0.125) if lpips else None, lpips_name="tiny LPIPS")


def write_png(path: Path, seed: int, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # smooth-ish: upsampled blocks plus noise
    img = np.kron(base, np.ones((size // 8, size // 8, 1), np.uint8)).astype(int) + rng.integers(-20, 20, (size, size, 3))
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


# ---------------------------------------------------------------------------------------------- known answers
def test_identical_images_score_perfectly(tmp_path):
    """Result = source = target: zero 3D errors, similarity 1, retrieval 100 %, FID 0, PSNR cap, SSIM 1, LPIPS 0."""
    a, b, c = (write_png(tmp_path / f"{n}.png", i) for i, n in enumerate("abc"))
    copy = tmp_path / "a_copy.png"
    shutil.copy(a, copy)  # another file with the same bytes: one cache entry
    rows = [Row(0, a, a, copy, "a"), Row(1, b, b, b, "b"), Row(2, c, c, c, "c")]
    res = Evaluator(tiny_models(), EvalOptions(faces="template", cache_dir=tmp_path / "cache")).run(rows)
    m = res.metrics
    assert m["id_similarity"] == pytest.approx(1.0, abs=1e-6) and m["id_retrieval"] == 1.0
    assert m["pose_error"] == 0 and m["expression_error"] == 0 and m["shape_error"] == 0
    assert m["fid"] == pytest.approx(0.0, abs=1e-6) and np.isfinite(m["kid"])
    assert m["psnr"] == 100.0 and m["ssim"] == pytest.approx(1.0, abs=1e-12) and m["lpips"] == pytest.approx(0.0, abs=1e-7)
    assert res.skipped == {} and res.counts["self"] == 3 and res.counts["images"] == 4


def test_swap_metrics_measure_what_they_claim(tmp_path):
    """A shifted result: PSNR as computed by hand; a result equal to its target: zero pose/expression error but a
    non-zero shape error against a different source; a wrong identity is not retrieved."""
    from hififace.metrics.image import psnr

    a, b, c, d = (write_png(tmp_path / f"{n}.png", i) for i, n in enumerate("abcd"))
    arr = np.asarray(Image.open(b)).astype(int)
    shifted = tmp_path / "b_shifted.png"
    Image.fromarray(np.clip(arr + 12, 0, 255).astype(np.uint8)).save(shifted)
    b_copy = tmp_path / "b_result.png"
    shutil.copy(b, b_copy)
    rows = [Row(0, a, b, b_copy, "a"),      # result = target: pose/expression 0; identity of b, not a
            Row(1, c, d, c, "c"),           # result = source: similarity 1, shape error 0, retrieved
            Row(2, b, b, shifted, "b")]     # self-reconstruction, off by 12 grey levels (clipped at 255)
    res = Evaluator(tiny_models(lpips=False), EvalOptions(faces="template")).run(rows)
    s = {r["index"]: r for r in res.samples}
    assert s[0]["pose_error"] == 0 and s[0]["expression_error"] == 0 and s[0]["shape_error"] > 0
    assert s[1]["id_similarity"] == pytest.approx(1.0, abs=1e-6) and s[1]["shape_error"] == 0 and s[1]["id_retrieved"] == 1
    assert s[0]["id_similarity"] < 0.999
    mse = np.mean(((np.clip(arr + 12, 0, 255) - arr) / 255.0) ** 2)
    assert s[2]["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-12) == psnr(arr.astype(np.uint8), np.asarray(Image.open(shifted)))
    assert s[2]["id_similarity"] is None  # self rows are left out of the swap metrics when swap rows exist
    assert res.metrics["lpips"] is None and res.skipped["lpips"] == "no LPIPS model given"
    assert res.counts["swap"] == 2 and res.details["pose_error"]["n"] == 2


def test_images_without_a_face_are_counted_and_left_out(tmp_path):
    """--faces detect: a result without a face leaves the identity and 3D metrics, is counted and noted."""
    pytest.importorskip("cv2")
    noise = write_png(tmp_path / "noise.png", 5, size=256)
    a, g = SAMPLES / "astronaut.png", SAMPLES / "grace_hopper.png"
    rows = [Row(0, a, g, noise, "a"), Row(1, g, a, a, "g")]
    res = Evaluator(tiny_models(lpips=False), EvalOptions(faces="detect")).run(rows)
    s = res.samples
    assert (s[0]["result_face"], s[1]["result_face"], s[0]["source_face"]) == (0, 1, 1)
    assert s[0]["id_similarity"] is None and s[0]["pose_error"] is None and s[1]["pose_error"] is not None
    assert res.counts["no_face"] == {"source": 0, "target": 0, "result": 1} and res.details["pose_error"]["n"] == 1
    assert any("faces not found" in n and "1 result" in n for n in res.notes)
    assert res.details["fid"]["n"] == 2  # FID/KID still see every result


@pytest.mark.skipif(not have_dlib(), reason="dlib-bin / face-recognition-models not installed (the eval extra)")
def test_dlib_identity_same_person_scores_higher():
    """Real photos: two photos of one person are closer than photos of different people, and retrieval finds them."""
    tmp = PHOTOS
    rows = [Row(0, tmp / "obama_crop.jpg", tmp / "astronaut.png", tmp / "obama2_crop.jpg", "obama"),
            Row(1, tmp / "obama_crop.jpg", tmp / "astronaut.png", tmp / "grace_hopper.jpg", "obama"),
            Row(2, tmp / "grace_hopper.jpg", tmp / "obama_crop.jpg", tmp / "astronaut.png", "hopper")]
    from hififace.metrics.identity import DlibIdentity

    res = Evaluator(MetricModels(identity=DlibIdentity()), EvalOptions(faces="detect")).run(rows)
    sim = [r["id_similarity"] for r in res.samples]
    assert sim[0] > 0.93 and sim[0] > max(sim[1], sim[2]) + 0.05, sim  # measured: 0.968 vs 0.821 / 0.891
    assert [r["id_retrieved"] for r in res.samples] == [1, 0, 1]
    assert "dlib" in res.models["id_similarity"] and res.counts["no_face"] == {"source": 0, "target": 0, "result": 0}


# ---------------------------------------------------------------------------------------------- report files
def parse_markdown_table(text: str) -> list[list[str]]:
    import re

    lines = [ln.strip() for ln in text.splitlines() if ln.startswith("|")]
    rows = [[c.strip() for c in re.split(r"(?<!\\)\|", ln[1:-1])] for ln in lines]  # cells split at unescaped |
    assert len(rows) > 2 and all(len(r) == len(rows[0]) for r in rows), rows
    assert all(set(c) == {"-"} for c in rows[1])  # the separator row
    return [rows[0]] + rows[2:]


def test_report_files(tmp_path):
    from hififace.metrics.report import write_report

    imgs = [write_png(tmp_path / f"{i}.png", i) for i in range(5)]
    rows = [Row(i, imgs[i], imgs[(i + 1) % 5], imgs[(i + 2) % 5], f"id{i}") for i in range(5)]
    rows.append(Row(5, imgs[0], imgs[0], imgs[1], "id0"))
    res = Evaluator(tiny_models(lpips=False), EvalOptions(faces="template")).run(rows)
    out = tmp_path / "report"
    write_report(out, res, protocol="pairs")
    data = json.loads((out / "metrics.json").read_text())
    assert TOP_KEYS <= set(data) and data["n_pairs"] == 6
    assert data["lpips"] is None and "lpips" in data["skipped"] and "lpips" not in data["models"]
    for key in METRICS:
        assert (data[key] is None) == (key in data["skipped"]), key
        assert (data[key] is not None) == (key in data["models"]), key
    with open(out / "per_sample.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 6 and table[5]["kind"] == "self" and float(table[5]["psnr"]) > 0 and table[0]["psnr"] == ""
    assert float(table[0]["pose_error"]) == pytest.approx(res.samples[0]["pose_error"], rel=1e-5)
    md = (out / "report.md").read_text()
    rows_md = parse_markdown_table(md)
    assert rows_md[0][:2] == ["metric", "value"] and len(rows_md) == 1 + len(METRICS)
    assert any(r[0] == "LPIPS" and r[1] == "—" and "skipped" in r[-1] for r in rows_md)
    figs = {p.name for p in out.glob("*.png")}
    assert {"hist_id_similarity.png", "hist_pose_error.png", "best_id_similarity.png", "worst_pose_error.png"} <= figs
    for name in figs:
        assert f"]({name})" in md
        with Image.open(out / name) as im:
            assert im.size[0] > 100 and im.mode == "RGB"
    assert leftovers(out) == []


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def crops(tmp_path) -> Path:
    for name in ("astronaut", "grace_hopper", "cameraman"):
        shutil.copy(SAMPLES / f"{name}.png", tmp_path / f"{name}.png")
    (tmp_path / "pairs.csv").write_text("source,target\nastronaut.png,grace_hopper.png\ngrace_hopper.png,cameraman.png\n"
                                        "cameraman.png,astronaut.png\nastronaut.png,astronaut.png\n")
    return tmp_path


def test_cli_makes_scores_resumes_and_compares(crops, weights, capsys):
    out = crops / "report"
    rc, stdout, err = run_cli(["eval", "--weights", weights, "--pairs", crops / "pairs.csv", "-o", out, "--faces", "template",
                               "--no-figures"], capsys)
    assert rc == 0, err
    assert "4 pairs" in stdout and "skipped: " in stdout and "fid" in stdout
    data = json.loads((out / "metrics.json").read_text())
    assert TOP_KEYS <= set(data) and data["n_pairs"] == 4 and data["counts"]["self"] == 1
    assert data["pose_error"] is not None and "tiny/recon3d.safetensors" in data["models"]["pose_error"]
    assert data["fid"] is None and "--inception" in data["skipped"]["fid"]
    assert data["psnr"] is not None and data["lpips"] is None and "--lpips" in data["skipped"]["lpips"]
    if have_dlib():
        assert data["id_similarity"] is not None and "dlib" in data["models"]["id_similarity"]
    else:
        assert "pip install 'hififace[eval]'" in data["skipped"]["id_similarity"]
    made = sorted((out / "results").glob("*.png"))
    assert [p.name for p in made] == ["00000_grace_hopper.png", "00001_cameraman.png", "00002_astronaut.png",
                                      "00003_astronaut.png"]
    from hififace.media.labels import read_label

    assert "eval" in json.dumps(read_label(made[0]))  # labelled as synthetic, like every output
    stamps = [p.stat().st_mtime_ns for p in made]
    # a second run resumes: nothing is swapped again, features come from the cache, the same numbers come out
    rc, _, err = run_cli(["eval", "--weights", weights, "--pairs", crops / "pairs.csv", "-o", out, "--faces", "template",
                          "--no-figures"], capsys)
    assert rc == 0 and [p.stat().st_mtime_ns for p in made] == stamps
    again = json.loads((out / "metrics.json").read_text())
    assert {k: again[k] for k in METRICS} == {k: data[k] for k in METRICS}
    # score those same images as another method's outputs (--results), without shape metrics
    (crops / "pairs2.csv").write_text("source,target,result\n" + "".join(
        f"{r['source']},{r['target']},{Path(r['result']).name}\n" for r in csv.DictReader(open(out / "per_sample.csv"))))
    other = crops / "report_other"
    rc, _, err = run_cli(["eval", "--pairs", crops / "pairs2.csv", "--results", out / "results", "-o", other,
                          "--faces", "template", "--id-model", "none", "--no-figures"], capsys)
    assert rc == 0, err
    b = json.loads((other / "metrics.json").read_text())
    assert b["id_similarity"] is None and b["skipped"]["id_similarity"] == "disabled with --id-model none"
    assert b["pose_error"] is None and "--recon" in b["skipped"]["pose_error"]
    assert b["psnr"] == pytest.approx(data["psnr"])
    rc, stdout, err = run_cli(["eval", "--compare", out, other, "-o", crops / "cmp.md"], capsys)
    assert rc == 0, err
    table = parse_markdown_table(stdout)
    assert table[0] == ["metric", "A", "B", "B - A", "better"]
    by = {r[0]: r for r in table[1:]}
    assert by["PSNR"][3] == "+0" and by["PSNR"][4] == "same"
    assert by["pose error"][2] == "—" and by["pose error"][1] != "—"
    assert (crops / "cmp.md").read_text() == stdout


def test_cli_compare_shows_which_is_better(tmp_path, capsys):
    base = {"n_pairs": 10, "id_retrieval": 0.9, "pose_error": 3.0, "fid": 20.0, "models": {"id_retrieval": "dlib"}}
    for name, change in (("a", {}), ("b", {"id_retrieval": 0.95, "pose_error": 3.5, "fid": 20.0,
                                            "models": {"id_retrieval": "insightface IResNet-100 (backbone.pth)"}})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps({**base, **change}))
    rc, stdout, err = run_cli(["eval", "--compare", tmp_path / "a", tmp_path / "b"], capsys)
    assert rc == 0, err
    by = {r[0]: r for r in parse_markdown_table(stdout)[1:]}
    assert by["ID retrieval"][1:] == ["90.00 %", "95.00 %", "+5.00 pp", "B"]
    assert by["pose error"][3:] == ["+0.5", "A"] and by["FID"][4] == "same"
    assert "ID retrieval measured with different models: A dlib; B insightface IResNet-100" in stdout
    rc, _, err = run_cli(["eval", "--compare", tmp_path / "a", tmp_path / "nothing"], capsys)
    assert_one_error(rc, err, "nothing", "metrics.json")


def test_cli_bad_input_is_one_clear_error(crops, capsys):
    (crops / "res").mkdir()
    (crops / "bad.csv").write_text("source,target\nastronaut.png,grace_hopper.png\nnope.png,cameraman.png\n"
                                   "astronaut.png,missing_target.png\n")
    rc, _, err = run_cli(["eval", "--pairs", crops / "bad.csv", "--results", crops / "res", "-o", crops / "r"], capsys)
    line = assert_one_error(rc, err, "not found", "nope.png", "missing_target.png", "line 3 source", "line 2 result")
    assert "5 path(s)" in line and not (crops / "r").exists()  # 3 results, a source, a target
    (crops / "ok.csv").write_text("source,target\nastronaut.png,grace_hopper.png\n")
    cases = [
        (["--pairs", crops / "pairs.csv"], ["-o"]),
        (["--pairs", crops / "pairs.csv", "--protocol", "ffpp", "-o", crops / "r"], ["either --pairs"]),
        (["--protocol", "ffpp", "-o", crops / "r"], ["--data"]),
        (["--pairs", crops / "pairs.csv", "-o", crops / "r"], ["--weights"]),  # no results, nothing to make them
        (["--pairs", crops / "pairs.csv", "--results", crops, "-o", crops / "astronaut.png"], ["is a file"]),
        (["--pairs", crops / "pairs.csv", "--results", crops, "-o", crops / "r"], ["lines 4 and 5", "result column"]),
        (["--pairs", crops / "ok.csv", "--results", crops, "-o", crops / "r", "--inception", crops / "x.pth"],
         ["x.pth", "pt_inception-2015-12-05"]),
        (["--compare", crops, crops, "--pairs", crops / "pairs.csv"], ["drop --pairs"]),
        (["--pairs", crops / "ok.csv", "--results", crops, "-o", crops / "r", "--limit", "0"], ["--limit 0"]),
        (["--pairs", crops / "ok.csv", "--results", crops, "-o", crops / "r", "--self-recon"], ["--protocol ffpp"]),
        (["--pairs", crops / "ok.csv", "--results", crops, "-o", crops / "astronaut.png" / "r"],
         ["astronaut.png is a file, not a folder", "-o REPORT_DIR"]),
        (["--pairs", crops / "ok.csv", "--results", crops, "-o", crops / "r", "--cache", crops / "ok.csv" / "c"],
         ["ok.csv is a file", "--cache DIR"]),
        (["--compare", crops, crops, "-o", crops / "ok.csv" / "cmp.md"], ["ok.csv is a file", ".md file"]),
    ]
    for args, needles in cases:
        rc, _, err = run_cli(["eval", *args], capsys)
        assert_one_error(rc, err, *needles)
    assert not (crops / "r").exists()
    with pytest.raises(SystemExit):  # no abbreviations: --pair is not --pairs
        run_cli(["eval", "--pair", crops / "pairs.csv", "-o", crops / "r"], capsys)


# ---------------------------------------------------------------------------------------------- FF++
def make_ffpp(root: Path, n_frames: int = 12) -> Path:
    """A tiny FaceForensics++ folder: 3 'videos' as frame folders (the sample faces, shifted a little per frame),
    the split files, and one manipulation method whose fakes are the target frames themselves."""
    base = root / "original_sequences" / "youtube" / "c23" / "images"
    for vid, name in (("000", "astronaut"), ("001", "grace_hopper"), ("002", "cameraman")):
        img = np.asarray(Image.open(SAMPLES / f"{name}.png").convert("RGB"))
        (base / vid).mkdir(parents=True)
        for i in range(n_frames):
            Image.fromarray(np.roll(img, (i % 4) - 2, axis=1)).save(base / vid / f"{i:04d}.png")
    (root / "splits").mkdir()
    (root / "splits" / "train.json").write_text('[["000", "002"]]')
    (root / "splits" / "val.json").write_text("[]")
    (root / "splits" / "test.json").write_text('[["000", "001"]]')
    fake = root / "manipulated_sequences" / "Same" / "c23" / "images"
    for t, s in (("000", "002"), ("002", "000"), ("000", "001"), ("001", "000")):
        shutil.copytree(base / t, fake / f"{t}_{s}")
    return root


def test_cli_ffpp_protocol(tmp_path, weights, capsys, monkeypatch):
    data = make_ffpp(tmp_path / "ffpp")
    out = tmp_path / "report"
    args = ["eval", "--protocol", "ffpp", "--data", data, "--split", "test", "--ffpp-method", "Same", "--weights", weights,
            "--id-model", "none", "-o", out, "--no-figures"]
    rc, _, err = run_cli(args, capsys)
    assert rc == 0, err
    d = json.loads((out / "metrics.json").read_text())
    assert d["protocol"] == "ffpp" and d["ffpp"]["pairs"] == 2 and d["ffpp"]["videos"] == 2
    assert d["n_pairs"] == 20 and d["ffpp"]["frames"] == 20  # 10 frames per video, both directions of one pair
    assert d["pose_error"] == 0 and d["expression_error"] == 0 and d["shape_error"] > 0  # fakes = targets
    crops = sorted((out / "cache" / "ffpp" / "c23" / "000").glob("*.png"))
    assert [p.name for p in crops] == [f"{i}.png" for i in range(10)]
    rec = json.loads((out / "cache" / "ffpp" / "c23" / "000" / "frames.json").read_text())
    assert [f["frame"] for f in rec["frames"]] == [0, 1, 3, 4, 5, 6, 7, 9, 10, 11]  # floor((i + 0.5) * 12 / 10)
    with Image.open(crops[0]) as im:
        assert im.size == (256, 256)
    import hififace.metrics.ffpp as ffpp

    # an interrupted run (a video without frames.json) resumes there, and a video replaced since it was cached is
    # read again: only those two videos are read
    (out / "cache" / "ffpp" / "c23" / "001" / "frames.json").unlink()
    frame = data / "original_sequences" / "youtube" / "c23" / "images" / "000" / "0005.png"
    os.utime(frame, ns=(frame.stat().st_atime_ns, frame.stat().st_mtime_ns + 10**9))
    read, real_read = [], ffpp.read_video_frames
    monkeypatch.setattr(ffpp, "read_video_frames", lambda path, *a, **k: read.append(path.name) or real_read(path, *a, **k))
    rc, _, err = run_cli(args, capsys)
    assert rc == 0 and sorted(read) == ["000", "001"], (err, read)
    # a re-run reads no frame again: everything comes from the cache
    monkeypatch.setattr(ffpp, "read_video_frames", lambda *a, **k: pytest.fail("frames read again"))
    rc, _, err = run_cli(args, capsys)
    assert rc == 0, err
    assert json.loads((out / "metrics.json").read_text())["pose_error"] == 0
    # another method's outputs in the documented layout RESULTS/<target>_<source>/<i>.png, plus self-reconstruction
    # rows RESULTS/<target>_<target>/<i>.png: here every result is its target frame
    cache = out / "cache" / "ffpp" / "c23"
    results = tmp_path / "other"
    for t, s in (("000", "001"), ("001", "000"), ("000", "000"), ("001", "001")):
        shutil.copytree(cache / t, results / f"{t}_{s}", ignore=shutil.ignore_patterns("*.json"))
    args2 = ["eval", "--protocol", "ffpp", "--data", data, "--split", "test", "--results", results, "--self-recon",
             "--weights", weights, "--id-model", "none", "--cache", out / "cache", "-o", tmp_path / "r2", "--no-figures"]
    rc, _, err = run_cli(args2, capsys)
    assert rc == 0, err
    d2 = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert d2["counts"]["self"] == 20 and d2["counts"]["swap"] == 20 and d2["psnr"] == 100.0 and d2["ssim"] == 1.0
    assert d2["pose_error"] == 0 and d2["shape_error"] == d["shape_error"]
    shutil.rmtree(results / "001_000")
    rc, _, err = run_cli(args2, capsys)
    assert_one_error(rc, err, "10 path(s) not found", "001_000")


def test_lpips_from_a_file_or_the_model_folder(tmp_path, caplog):
    """--lpips lpips.safetensors, or the --weights folder's: the file's weights are used, and no 'random weights'
    warning is logged (the metric is named after the file)."""
    import logging

    from safetensors.torch import save_file

    from hififace.losses.lpips import LPIPS
    from hififace.metrics.run import EvalRequest, _lpips

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LPIPS().state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = {k: torch.rand(s, generator=g) for k, s in shapes.items()}
    (tmp_path / "w").mkdir()
    save_file(state, tmp_path / "w" / "lpips.safetensors")
    for req, folder in ((EvalRequest(tmp_path / "r", lpips=[str(tmp_path / "w" / "lpips.safetensors")]), None),
                        (EvalRequest(tmp_path / "r"), tmp_path / "w")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="hififace"):
            net, name, reason = _lpips(req, folder)
        assert reason is None and name == "LPIPS-VGG v0.1 (lpips.safetensors)" and net.pretrained
        assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
        assert not net.training and not any(p.requires_grad for p in net.parameters())  # frozen, as every LPIPS
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_id_model_equal_to_the_training_arcface_is_warned_about(weights, tmp_path, caplog):
    """--id-model FILE holding the --weights folder's own ArcFace: a warning that the scores are biased; another
    network: silent."""
    import logging

    from safetensors.torch import load_file

    from hififace.metrics.run import _warn_if_training_arcface

    torch.save(load_file(weights / "arcface.safetensors"), tmp_path / "backbone.pth")
    other = tiny_model_dir(tmp_path / "other", seed=1)
    for folder, warned in ((weights, True), (other, False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hififace"):
            _warn_if_training_arcface(tmp_path / "backbone.pth", folder)
        assert any("biased" in r.getMessage() for r in caplog.records) == warned, (folder, caplog.text)


def test_rows_that_would_score_one_result_file_twice_are_refused(crops, capsys):
    """Two rows with different pairs reading the same result file (here the documented CSV layout with an empty
    result column under --results): the same image would be scored as both, e.g. a swap as a self-reconstruction
    with PSNR 100. Refused in one line naming the lines; names quoted from the file are made printable."""
    res = crops / "res"
    res.mkdir()
    shutil.copy(crops / "astronaut.png", res / "grace_hopper.png")
    (crops / "doc.csv").write_text("source,target,result,source_id\nastronaut.png,grace_hopper.png,,a\n"
                                   "cameraman.png,grace_hopper.png,,c\ngrace_hopper.png,grace_hopper.png,,g\n")
    rc, _, err = run_cli(["eval", "--pairs", crops / "doc.csv", "--results", res, "-o", crops / "r"], capsys)
    assert_one_error(rc, err, "lines 2, 3 and 4", "grace_hopper.png", "result column")
    weird = "x\x1b[2J.png"
    (crops / "same.csv").write_text(f"source,target,result\nastronaut.png,grace_hopper.png,{weird}\n"
                                    f"cameraman.png,astronaut.png,{weird}\n")
    rc, _, err = run_cli(["eval", "--pairs", crops / "same.csv", "--results", res, "-o", crops / "r"], capsys)
    line = assert_one_error(rc, err, "lines 2 and 3", "same result file", "x\\x1b[2J.png")
    assert "\x1b" not in line and not (crops / "r").exists()
    # the same pair twice is the same work, not a clash
    (crops / "twice.csv").write_text("source,target\nastronaut.png,grace_hopper.png\nastronaut.png,grace_hopper.png\n")
    from hififace.metrics.pairs import read_pairs

    assert len(read_pairs(crops / "twice.csv", res)) == 2


def test_cli_detects_and_aligns_whole_photos_and_skips_rows_without_a_face(tmp_path, weights, capsys):
    """Whole photos are not centre-cropped and regenerated whole: their largest face is detected and aligned as
    `hififace swap` does (the same crop, bit for bit), the result is scored against that aligned target crop, and
    each row says what was done (aligned, detected, no-face); a row without a face is listed, not scored."""
    pytest.importorskip("cv2")
    from hififace import HifiFace
    from hififace.media.images import read_photo
    from hififace.inference.pipeline import FaceSwapper

    shutil.copy(SAMPLES / "astronaut.png", tmp_path / "astronaut.png")  # a 256 aligned crop
    for name in ("grace_hopper.jpg", "two_people.jpg"):
        shutil.copy(PHOTOS / name, tmp_path / name)
    Image.new("RGB", (320, 240), (90, 100, 110)).save(tmp_path / "wall.png")
    (tmp_path / "pairs.csv").write_text("source,target\ngrace_hopper.jpg,two_people.jpg\nastronaut.png,astronaut.png\n"
                                        "astronaut.png,wall.png\n")
    out = tmp_path / "report"
    args = ["eval", "--weights", weights, "--pairs", tmp_path / "pairs.csv", "-o", out, "--id-model", "none",
            "--faces", "template", "--no-figures"]  # template: the random model's results show no face to detect
    rc, stdout, err = run_cli(args, capsys)
    assert rc == 0, err
    assert "3 pairs (1 not scored: no face)" in stdout
    data = json.loads((out / "metrics.json").read_text())
    assert data["counts"]["crop"] == {"aligned": 1, "detected": 1, "no-face": 1} and data["counts"]["skipped_rows"] == 1
    assert data["details"]["pose_error"]["n"] == 1 and data["psnr"] is not None  # the swap row, the self row
    assert any("1 row(s) not scored" in n and "4" in n for n in data["notes"])  # line 4 of the CSV
    assert "1 without a face (not scored)" in (out / "report.md").read_text()
    rows = {int(r["index"]): r for r in csv.DictReader(open(out / "per_sample.csv"))}
    assert [rows[i]["crop"] for i in range(3)] == ["detected", "aligned", "no-face"]
    assert rows[2]["skipped"] == "no face found in the target photo" and rows[2]["result"] == ""
    assert rows[2]["pose_error"] == "" and rows[1]["target_crop"] == "" and rows[1]["psnr"] != ""
    crop = Path(rows[0]["target_crop"])
    assert crop.parent == out / "results" / "targets" and rows[0]["target"] == str(tmp_path / "two_people.jpg")
    made = np.asarray(Image.open(rows[0]["result"]).convert("RGB"))
    assert made.shape == (256, 256, 3)
    swapper = FaceSwapper(HifiFace.from_pretrained(weights), parsing="landmarks", min_face=0)  # as `hififace swap`
    np.testing.assert_array_equal(np.asarray(Image.open(crop)),
                                  swapper.face_crops(read_photo(tmp_path / "two_people.jpg").rgb).crops[0])
    assert sorted(p.name for p in (out / "results").glob("*.png")) == ["00000_two_people.png", "00001_astronaut.png"]
    # a re-run resumes: nothing is detected or swapped again, the rows say the same
    stamps = {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.png")}
    rc, _, err = run_cli(args, capsys)
    assert rc == 0 and {p: p.stat().st_mtime_ns for p in (out / "results").rglob("*.png")} == stamps, err
    again = {int(r["index"]): r for r in csv.DictReader(open(out / "per_sample.csv"))}
    assert [again[i]["crop"] for i in range(3)] == ["detected", "aligned", "no-face"]
    # nothing to score at all: one line
    (tmp_path / "none.csv").write_text("source,target\nastronaut.png,wall.png\n")
    rc, _, err = run_cli(["eval", "--weights", weights, "--pairs", tmp_path / "none.csv", "-o", tmp_path / "r2",
                          "--id-model", "none", "--no-figures"], capsys)
    assert_one_error(rc, err, "no row to score", "line 2", "no face found in the target photo")
