"""`hififace preprocess` says what it did: skip reasons as documented, a no-op rerun touches nothing, merges name
missing shards, weak ellipse masks are announced, unexpected errors stop the run in one line, no stray output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from face_helpers import photo
from hififace.data.prepare import PreprocessConfig, preprocess, read_index
from inferkit import run_cli

cv2 = pytest.importorskip("cv2")
from PIL import Image  # noqa: E402

FAST = ["--size", "128", "--parsing", "landmarks", "--landmarks68", "none", "--align-passes", "0"]


def _grace(scale: float = 1.0) -> np.ndarray:
    return cv2.resize(photo("grace_hopper.jpg"), (int(256 * scale), int(300 * scale)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    (root / "p").mkdir()
    (root / "q").mkdir()
    Image.fromarray(_grace()).save(root / "p" / "a.png")
    Image.fromarray(np.ascontiguousarray(photo("astronaut.png")[::2, ::2])).save(root / "q" / "b.png")
    (root / "p" / "text.jpg").write_text("I am a text file with an image's name\n")
    (root / "p" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 a JPEG header and then nothing")
    return root


def test_skip_reasons_match_the_docs_and_a_noop_rerun_touches_nothing(raw, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["preprocess", raw, out, *FAST, "--json"], capsys)
    assert rc == 0, err
    index = read_index(out / "index.jsonl")
    assert index["p/text.jpg"]["reason"] == "not_an_image" and index["p/cut.jpg"]["reason"] == "unreadable"
    assert {index["p/a.png"]["status"], index["q/b.png"]["status"]} == {"ok"}
    assert not any("img/s" in line or "%|" in line for line in err)  # no bar into a non-terminal
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    pngs = {str(p): p.stat().st_mtime_ns for p in out.rglob("*.png")}
    rc, stdout, err = run_cli(["preprocess", raw, out, *FAST, "--json"], capsys)
    assert rc == 0 and json.loads(stdout.splitlines()[-1])["processed"] == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()} == stamps  # index, summary, options
    assert {str(p): p.stat().st_mtime_ns for p in out.rglob("*.png")} == pngs
    assert not any("img/s" in line or "%|" in line for line in err)


def test_the_ellipse_fallback_is_announced_loudly(raw, tmp_path, capsys):
    rc, stdout, err = run_cli(["preprocess", raw, tmp_path / "out", *FAST, "--json"], capsys)
    summary = json.loads(stdout.splitlines()[-1])
    assert summary["ellipse_masks"] == 2 and "5-point ellipse" in summary["warnings"][0]
    loud = [line for line in err if "WARNING:" in line]
    assert len(loud) == 1 and "--parsing bisenet" in loud[0] and "--recon3d" in loud[0]


def test_recon_weights_give_per_image_68_point_masks(raw, tmp_path, monkeypatch, capsys):
    """With ReconNet weights the landmark parser draws each face from its own 68 points (a stand-in backend here)."""
    from hififace.face import landmarks as lm_mod

    class FakeRecon(lm_mod.Landmarker):
        name = "recon"

        def __init__(self, recon_path, bfm_path, device="cpu"):
            assert Path(recon_path).name == "epoch_20.pth" and Path(bfm_path).name == "BFM_model_front.mat"

        def landmarks68(self, image, face):  # a face outline that follows the photo: mean colour bends the jaw
            x1, y1, x2, y2 = (float(v) for v in face.box)
            t = np.linspace(0.1, 0.9, 68) * np.pi
            bend = float(image.mean()) / 255.0
            pts = np.stack([(x1 + x2) / 2 + (x2 - x1) / 2 * np.cos(t * (1 + bend)),
                            (y1 + y2) / 2 + (y2 - y1) / 2 * np.sin(t)], axis=1)
            return pts

    monkeypatch.setattr(lm_mod, "ReconLandmarker", FakeRecon)
    rc, stdout, err = run_cli(["preprocess", raw, tmp_path / "out", *FAST[:2], "--parsing", "landmarks",
                               "--align-passes", "0", "--recon3d", tmp_path / "epoch_20.pth",
                               "--bfm", tmp_path / "BFM_model_front.mat", "--json"], capsys)
    assert rc == 0, err
    summary = json.loads(stdout.splitlines()[-1])
    assert "ellipse_masks" not in summary and not any("WARNING:" in line for line in err)
    index = read_index(tmp_path / "out" / "index.jsonl")
    assert index["p/a.png"]["landmarks68_backend"] == "recon"
    masks = [np.asarray(Image.open(tmp_path / "out" / index[s]["parsing"])) for s in ("p/a.png", "q/b.png")]
    assert (masks[0] != masks[1]).mean() > 0.01  # per image, not one template ellipse
    rc, _, err = run_cli(["preprocess", raw, tmp_path / "o2", "--recon3d", "x.pth"], capsys)
    assert rc == 2 and err[-1].startswith("error: --recon3d and --bfm go together")


def test_merge_names_missing_shards_and_partial_merges_the_rest(raw, tmp_path, capsys):
    out = tmp_path / "out"
    for i in (0, 2):
        rc, _, err = run_cli(["preprocess", raw, out, *FAST, "--shard", f"{i}/3"], capsys)
        assert rc == 0, err
    rc, _, err = run_cli(["preprocess", raw, out, "--merge"], capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "1 of 3 shards have not finished (shard 1)" in err[0] and "--partial" in err[0]
    assert not (out / "index.jsonl").exists()
    rc, _, err = run_cli(["preprocess", raw, out, "--merge", "--partial", "--json"], capsys)
    assert rc == 0 and any("merged 2 of 3 shards; missing shard(s) 1" in line for line in err)
    assert json.loads((out / "summary.json").read_text())["missing_shards"] == [1]
    rc, _, err = run_cli(["preprocess", raw, tmp_path / "none", "--merge"], capsys)
    assert rc == 2 and "no shard indexes" in err[0]


def test_unexpected_errors_stop_the_run_expected_ones_skip_the_photo(raw, tmp_path, monkeypatch, capsys):
    from hififace.data.prepare import Preparer

    real = Preparer.analyse

    def odd(self, image):
        if image.shape[0] == 300:  # the grace photo: OpenCV gives up on it
            raise cv2.error("simulated OpenCV failure")
        return real(self, image)

    monkeypatch.setattr(Preparer, "analyse", odd)
    result = preprocess(raw, tmp_path / "a", PreprocessConfig(size=128, parsing="landmarks", landmarks68="none",
                                                               refine_passes=0))
    index = read_index(result.index_path)
    assert index["p/a.png"]["reason"] == "error" and index["q/b.png"]["status"] == "ok"

    def bug(self, image):
        raise KeyError("a bug")

    monkeypatch.setattr(Preparer, "analyse", bug)
    rc, _, err = run_cli(["preprocess", raw, tmp_path / "b", *FAST], capsys)
    assert rc == 1 and err[-1].startswith("error: unexpected KeyError") and "-v" in err[-1]
    assert not any("Traceback" in line for line in err)
    rc, _, err = run_cli(["-v", "preprocess", raw, tmp_path / "c", *FAST], capsys)
    assert rc == 1 and any("Traceback" in line for line in err)


def test_opencv_does_not_print_its_own_warnings():
    code = ("import numpy as np; from hififace.face.detect import get_detector; "
            "get_detector('yunet').detect(np.zeros((64, 64, 3), np.uint8))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "WARN" not in proc.stderr and "setPreferableTarget" not in proc.stderr
