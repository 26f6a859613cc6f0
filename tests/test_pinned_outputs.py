"""What users see, pinned: `hififace swap` (a model-size crop; a whole photo, all faces), `hififace preprocess` (crop,
mask, index record) and `hififace eval` (metrics) on small fixtures with a tiny random-weight model, compared with
the values stored in ``data/pins/outputs.json``. Only the command line is used, so code may move underneath.

Portable: float results change in their last bits between CPUs, thread counts and kernels (see README), so images
are compared as means of pixel blocks (a grey level flipping here and there moves a 16x16 block's mean by
~0.004; a crop shifted by a pixel moves it by whole levels), coordinates within 0.02 px, metrics within 1e-3
relative; exact where the value is exact by construction (labels, counts, the index's text fields).

The stored values change only on purpose: ``python tests/test_pinned_outputs.py --record`` rewrites them (say why in
the commit). For a bit-for-bit check of more outputs before and after a change, see ``scripts/pin_outputs.py``.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTOS = HERE / "data" / "photos"
SAMPLES = HERE.parent / "src" / "hififace" / "assets" / "samples"
STORED = HERE / "data" / "pins" / "outputs.json"

BLOCK_ATOL = 0.1  # grey levels, on block means
POINT_ATOL = 0.02  # pixels (the index rounds coordinates to 0.01)
MATRIX_ATOL = 1e-3
METRIC_RTOL = 1e-3
MASK_PIXELS = 24  # parsing classes: pixels of difference allowed per class (the ellipse's rim)
FINGERPRINT = "hififace:fingerprint"
BOX_PX = 1


def _block_means(path: Path, block: int) -> list:
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float64)
    h, w = a.shape[0] // block * block, a.shape[1] // block * block
    means = a[:h, :w].reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))
    return np.round(means, 3).tolist()


def _png_text(path: Path) -> dict:
    """The label's text fields, read with PIL (not with hififace), without the version-dependent Software field."""
    with Image.open(path) as im:
        text = {k: v for k, v in getattr(im, "text", {}).items() if k != "Software" and not k.startswith("XML")}
    return text


def _without(fields: dict, key: str) -> dict:
    return {k: v for k, v in fields.items() if k != key}


def _changed_boxes(out: Path, original: Path, split_x: int) -> list:
    """Bounding box [x0, y0, x1, y1] of the changed pixels left and right of ``split_x``."""
    with Image.open(out) as a, Image.open(original) as b:
        changed = (np.asarray(a.convert("RGB")) != np.asarray(b.convert("RGB"))).any(axis=2)
    boxes = []
    for lo, hi in ((0, split_x), (split_x, changed.shape[1])):
        ys, xs = np.nonzero(changed[:, lo:hi])
        boxes.append([int(xs.min()) + lo, int(ys.min()), int(xs.max()) + lo, int(ys.max())] if len(xs) else None)
    return boxes


def compute(work: Path) -> dict:
    """Run the commands in ``work`` and reduce their outputs to what is stored."""
    from hififace.cli.main import main as cli
    from inferkit import tiny_model_dir

    work.mkdir(parents=True, exist_ok=True)
    weights = tiny_model_dir(work / "model")

    def run(*argv) -> None:
        rc = cli([str(a) for a in argv])
        assert rc == 0, argv

    got: dict = {}
    out = work / "crop.png"  # a model-size target: swapped as it is, no detection
    unmarked = ("--no-invisible-watermark", "--no-c2pa")  # the model's pixels (the watermark: test_provenance_outputs)
    run("swap", "--source", SAMPLES / "astronaut.png", "--target", SAMPLES / "cameraman.png", "-o", out,
        "--weights", weights, "--device", "cpu", *unmarked)
    got["swap_crop"] = {"blocks16": _block_means(out, 16), "label": _png_text(out)}

    out = work / "all.png"
    run("swap", "--source", PHOTOS / "grace_hopper.jpg", "--target", PHOTOS / "two_people.jpg", "--all-faces", "-o", out,
        "--weights", weights, "--device", "cpu", *unmarked)
    got["swap_photo_all_faces"] = {"blocks32": _block_means(out, 32),
                                   "changed_boxes": _changed_boxes(out, PHOTOS / "two_people.jpg", 563)}

    raw = work / "raw" / "grace"
    raw.mkdir(parents=True)
    Image.open(PHOTOS / "grace_hopper.jpg").convert("RGB").resize((256, 300), Image.BILINEAR).save(raw / "g.png")
    prep = work / "prep"
    run("preprocess", work / "raw", prep, "--size", "128", "--parsing", "landmarks", "--landmarks68", "none",
        "--no-progress")
    record = json.loads((prep / "index.jsonl").read_text().splitlines()[0])
    with Image.open(prep / record["parsing"]) as m:
        mask = np.asarray(m.convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(mask, axis=0, return_counts=True)
    got["preprocess"] = {
        "record": {k: record[k] for k in ("source", "identity", "status", "image", "parsing", "size", "align",
                                          "parser", "photo_size", "faces")},
        "landmarks5": record["landmarks5"], "matrix": record["matrix"],
        "crop_blocks16": _block_means(prep / record["image"], 16),
        "mask_classes": {",".join(map(str, c)): int(n) for c, n in zip(colours.tolist(), counts.tolist())},
    }

    crops = work / "eval"
    crops.mkdir()
    for name in ("astronaut", "grace_hopper", "cameraman"):
        shutil.copy(SAMPLES / f"{name}.png", crops / f"{name}.png")
    (crops / "pairs.csv").write_text("source,target\nastronaut.png,grace_hopper.png\ngrace_hopper.png,cameraman.png\n"
                                     "cameraman.png,cameraman.png\n")  # the last: a self-swap (PSNR, SSIM)
    run("eval", "--weights", weights, "--pairs", crops / "pairs.csv", "-o", crops / "report", "--faces", "template",
        "--id-model", "none", "--no-figures", "--device", "cpu")
    metrics = json.loads((crops / "report" / "metrics.json").read_text())
    got["eval"] = {k: metrics[k] for k in ("n_pairs", "pose_error", "expression_error", "shape_error", "psnr", "ssim")}
    return got


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict:
    pytest.importorskip("cv2")
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("home")  # never the developer's weights
    mp.setenv("HOME", str(home))
    mp.setenv("HIFIFACE_HOME", str(home / "hififace_home"))
    mp.setenv("TORCH_HOME", str(home / "torch"))
    try:
        yield compute(tmp_path_factory.mktemp("pins"))
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def stored() -> dict:
    return json.loads(STORED.read_text())


def _close(got, want, atol, what):
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    worst = float(np.abs(got - want).max())
    assert worst <= atol, f"{what}: differs by up to {worst:g} (allowed {atol:g})"


def test_swap_of_a_model_size_crop(outputs, stored):
    got, want = outputs["swap_crop"], stored["swap_crop"]
    _close(got["blocks16"], want["blocks16"], BLOCK_ATOL, "swap crop, 16x16 block means")
    # the weights' fingerprint hashes the bits of the randomly initialised tiny weights, which other kernels
    # (ATEN_CPU_CAPABILITY, oneDNN's ISA) round differently: its form is checked, not its value
    assert re.fullmatch(r"[0-9a-f]{16}", got["label"].get(FINGERPRINT, "")), got["label"]
    assert _without(got["label"], FINGERPRINT) == _without(want["label"], FINGERPRINT)


def test_swap_of_every_face_in_a_photo(outputs, stored):
    got, want = outputs["swap_photo_all_faces"], stored["swap_photo_all_faces"]
    _close(got["changed_boxes"], want["changed_boxes"], BOX_PX, "changed regions")
    _close(got["blocks32"], want["blocks32"], BLOCK_ATOL, "photo, 32x32 block means")


def test_preprocess_crop_mask_and_index(outputs, stored):
    got, want = outputs["preprocess"], stored["preprocess"]
    assert got["record"] == want["record"]
    _close(got["landmarks5"], want["landmarks5"], POINT_ATOL, "landmarks5")
    _close(got["matrix"], want["matrix"], MATRIX_ATOL, "crop matrix")
    _close(got["crop_blocks16"], want["crop_blocks16"], BLOCK_ATOL, "crop, 16x16 block means")
    assert set(got["mask_classes"]) == set(want["mask_classes"])
    for colour, n in want["mask_classes"].items():
        assert abs(got["mask_classes"][colour] - n) <= MASK_PIXELS, (colour, got["mask_classes"][colour], n)


def test_eval_metrics(outputs, stored):
    got, want = outputs["eval"], stored["eval"]
    assert got["n_pairs"] == want["n_pairs"]
    for key in ("pose_error", "expression_error", "shape_error", "psnr", "ssim"):
        assert got[key] == pytest.approx(want[key], rel=METRIC_RTOL, abs=1e-6), key


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    import os

    sys.path.insert(0, str(HERE))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(HOME=tmp, HIFIFACE_HOME=f"{tmp}/hififace_home", TORCH_HOME=f"{tmp}/torch")
        values = compute(Path(tmp) / "work")
    STORED.parent.mkdir(parents=True, exist_ok=True)
    STORED.write_text(json.dumps(values, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {STORED}")
