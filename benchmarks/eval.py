#!/usr/bin/env python
"""``hififace eval`` throughput: one JSON line per measurement.

Cases (full-size networks; random weights in the real formats where the real files cannot be shipped, so the cost
is the real one and the values mean nothing):

- ``stage_<name>``: median seconds per image of each per-image step on 256 crops: ``detect`` (YuNet 5 points),
  ``dlib`` (dlib face descriptor incl. its 5-point predictor; the real model), ``recon`` (ReconNet on the 224
  Deep3DFaceRecon crop), ``inception`` (FID Inception-v3 at 299), ``lpips`` (LPIPS-VGG at 256), ``psnr_ssim``;
  batched stages are timed at ``--batch`` images per call and divided.
- ``pairs_cold`` / ``pairs_cached``: :class:`hififace.metrics.evaluate.Evaluator` end to end over N synthetic pairs
  (distinct source, target and result crops per pair; every metric on; ``--faces detect``), first with an empty
  cache, then again from the cache; value = seconds per pair, plus ``pairs_per_s`` and the projected minutes for
  1000 pairs.

    python benchmarks/eval.py [--quick] [--device cpu|cuda] [--pairs N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import emit, median_time  # noqa: E402

BENCH = "eval"
SAMPLES = Path(__file__).resolve().parents[1] / "src" / "hififace" / "assets" / "samples"


def crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """n distinct 256 face crops: the bundled samples, jittered (shift, brightness, noise) so no two are equal."""
    from hififace.media.images import read_crop

    base = [read_crop(p) for p in sorted(SAMPLES.glob("*.png"))]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = np.roll(base[i % len(base)], (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1)).astype(int)
        img = img + int(rng.integers(-12, 13)) + rng.integers(-3, 4, img.shape)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def full_models(tmp: Path, device: torch.device):
    """Every metric network at full size: dlib (real), ReconNet / Inception / LPIPS with random weights."""
    from fakes import write_deep3d, write_fid_inception
    from hififace.losses.lpips import LPIPS
    from hififace.metrics.evaluate import MetricModels
    from hififace.metrics.inception import load_fid_inception
    from hififace.metrics.threedmm import ReconCoefficients

    m = MetricModels(device=device)
    try:
        from hififace.metrics.identity import DlibIdentity

        m.identity = DlibIdentity()
    except Exception as err:  # noqa: BLE001 - a benchmark reports what it could not measure
        print(f"# dlib unavailable: {err}", file=sys.stderr)
    m.recon = ReconCoefficients.from_file(write_deep3d(tmp / "epoch_20.pth"), device)
    m.inception = load_fid_inception(write_fid_inception(tmp / "pt_inception-2015-12-05-6726825d.pth")).to(device)
    m.inception_name, m.inception_key = "random FID Inception", "bench-inception"
    torch.manual_seed(0)
    m.lpips, m.lpips_name = LPIPS().to(device), "random LPIPS"
    return m


def bench_stages(models, images: list[np.ndarray], batch: int, repeats: int, device: torch.device) -> None:
    import torch.nn.functional as F

    from hififace.face.detect import get_detector
    from hififace.metrics.image import psnr, ssim

    det = get_detector("yunet")
    lms = [max(det.detect(im), key=lambda f: f.area).landmarks.astype(np.float64) for im in images[:batch]]
    ims = images[:batch]
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    x = torch.stack([torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in ims]).to(device)
    x299 = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    stages = {
        "detect": (lambda: [det.detect(im) for im in ims], len(ims)),
        "recon": (lambda: models.recon.coefficients(ims, lms), len(ims)),
        "inception": (lambda: models.inception.features(x299), len(ims)),
        "lpips": (lambda: models.lpips(x, x.flip(0)), len(ims)),
        "psnr_ssim": (lambda: [(psnr(a, b), ssim(a, b)) for a, b in zip(ims, ims[::-1])], len(ims)),
    }
    if models.identity is not None:
        stages["dlib"] = (lambda: models.identity.embed(ims, lms), len(ims))
    with torch.no_grad():
        for name, (fn, n) in stages.items():
            value = median_time(fn, repeats, sync=sync) / n
            emit(BENCH, case=f"stage_{name}", batch=batch if name in ("recon", "inception", "lpips") else 1, size=256,
                 device="cpu" if name in ("detect", "dlib", "psnr_ssim") else device.type, dtype="fp32",
                 value=round(value, 5))


def bench_pairs(models, n: int, batch: int, tmp: Path, device: torch.device) -> None:
    from PIL import Image

    from hififace.metrics.evaluate import EvalOptions, Evaluator
    from hififace.metrics.pairs import Row

    images = crops(3 * n, seed=1)
    folder = tmp / "pairs"
    folder.mkdir()
    paths = []
    for i, im in enumerate(images):
        p = folder / f"{i:05d}.png"
        Image.fromarray(im).save(p)
        paths.append(p)
    rows = [Row(i, paths[3 * i], paths[3 * i + 1], paths[3 * i + 2], f"s{i}") for i in range(n)]
    cache = tmp / "cache"
    for case in ("pairs_cold", "pairs_cached"):
        ev = Evaluator(models, EvalOptions(faces="detect", batch_size=batch, cache_dir=cache))
        t0 = time.perf_counter()
        res = ev.run(rows)
        dt = (time.perf_counter() - t0) / n
        emit(BENCH, case=case, batch=batch, size=256, device=device.type, dtype="fp32", value=round(dt, 4),
             pairs=n, pairs_per_s=round(1 / dt, 2), minutes_per_1000_pairs=round(1000 * dt / 60, 1),
             identity="dlib" if models.identity is not None else "none",
             scored=res.counts["n"].get("pose_error", 0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer pairs and repeats")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pairs", type=int, default=None, help="pairs of the end-to-end case (default 32, quick 6)")
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    device = torch.device(args.device)
    n = args.pairs or (6 if args.quick else 32)
    repeats = 2 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        models = full_models(Path(tmp), device)
        bench_stages(models, crops(args.batch), args.batch, repeats, device)
        bench_pairs(models, n, args.batch, Path(tmp), device)


if __name__ == "__main__":
    main()
