#!/usr/bin/env python
"""Developer check (not a CI test): our reference variant vs the reference implementation itself.

Uses ``../shared/seedref`` (the reference code run on deterministic random weights, built by its ``ensure.sh``):
converts its ``seed_random.ckpt`` with ``hififace convert``, swaps the same 256x256 PNG crops with the reference's
own inference path and with ``hififace swap``, and compares the PNGs (grey levels) and the raw float outputs.

    python scripts/parity_reference.py --images a.png b.png c.png [--work /tmp/parity]

Each image is cut to a centred square and resized to 256x256 first (so both sides read identical files).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CACHE = Path(os.environ.get("HIFIFACE_REF_CACHE", Path.home() / ".cache" / "hififace-reference"))
SEEDREF = Path(__file__).resolve().parents[1].parent / "shared" / "seedref"


def square_crop(src: Path, dst: Path) -> Path:
    img = Image.open(src).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((256, 256), Image.LANCZOS)
    img.save(dst)
    return dst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", nargs="+", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hififace-parity"))
    ap.add_argument("--ckpt", type=Path, default=CACHE / "seedref" / "seed_random.ckpt")
    ap.add_argument("--ref-python", default=str(CACHE / "seedenv" / "bin" / "python"))
    ap.add_argument("--pairs", type=int, default=4)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    crops = [square_crop(p, args.work / f"crop{i}.png") for i, p in enumerate(args.images)]
    model_dir = args.work / "model"
    if not (model_dir / "config.json").exists():
        subprocess.run([sys.executable, "-m", "hififace.cli.main", "convert", str(args.ckpt), "-o", str(model_dir)], check=True)

    import torch

    from hififace import HifiFace

    model = HifiFace.from_pretrained(model_dir)
    results = []
    for k, (s, t) in enumerate(itertools.islice(itertools.permutations(crops, 2), args.pairs)):
        ref_png, ref_npy = args.work / f"ref{k}.png", args.work / f"ref{k}.npy"
        subprocess.run([args.ref_python, str(SEEDREF / "reference_swap.py"), "--source", str(s), "--target", str(t),
                        "-o", str(ref_png), "--npy", str(ref_npy), "--ckpt", str(args.ckpt)], check=True,
                       stdout=subprocess.DEVNULL)
        ours_png = args.work / f"ours{k}.png"
        subprocess.run([sys.executable, "-m", "hififace.cli.main", "swap", "--source", str(s), "--target", str(t),
                        "-o", str(ours_png), "--weights", str(model_dir),
                        "--no-invisible-watermark", "--no-c2pa"], check=True)  # the model's own pixels
        a = np.asarray(Image.open(ref_png).convert("RGB"), dtype=np.int16)
        b = np.asarray(Image.open(ours_png).convert("RGB"), dtype=np.int16)
        src = torch.from_numpy(np.asarray(Image.open(s).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        tgt = torch.from_numpy(np.asarray(Image.open(t).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        raw = model.swap(src, tgt, return_all=True).i_r[0].permute(1, 2, 0).numpy()
        ref_raw = np.load(ref_npy)
        d = np.abs(a - b)
        results.append({"pair": k, "source": s.name, "target": t.name, "png_max_diff": int(d.max()),
                        "png_frac_diff": float((d > 0).mean()), "float_max_abs": float(np.abs(raw - ref_raw).max()),
                        "float_mean_abs": float(np.abs(raw - ref_raw).mean())})
        print(json.dumps(results[-1]))
    worst = max(r["png_max_diff"] for r in results)
    print(json.dumps({"pairs": len(results), "worst_png_max_diff": worst, "pass": worst <= 1}))
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
