#!/usr/bin/env python
"""Side-by-side swap timings against the reference implementation, in one process (developer script).

Needs ``../shared/seedref`` built (see its README) and a folder converted from its ``seed_random.ckpt``
(``hififace convert $CACHE/seedref/seed_random.ckpt -o /tmp/seed-model``). Run it with the seedref interpreter,
which has the reference's libraries; our package is imported from ``src/``::

    $CACHE/seedenv/bin/python benchmarks/reference_side_by_side.py --model /tmp/seed-model [--batch 1] [--rounds 7]

The reference module is built with the same seed as ``seed_random.ckpt`` (identical weights). Calls alternate
(reference, ours cold, ours cached) round by round so that drifts of the shared machine hit all three alike.
Prints one JSON line per case (median seconds) and checks that the outputs are identical.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))
SEEDREF = Path(os.environ.get("SEEDREF_KIT", ROOT.parent / "shared" / "seedref"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True, help="our folder converted from seed_random.ckpt")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import importlib.util

    import torch

    from _common import emit, peak_rss_mib  # benchmarks/_common.py

    spec = importlib.util.spec_from_file_location("seedref_common", SEEDREF / "_common.py")
    kit = importlib.util.module_from_spec(spec)
    sys.modules["seedref_common"] = kit  # the kit registers state on its own module object
    sys.path.insert(0, str(SEEDREF))
    spec.loader.exec_module(kit)  # type: ignore[union-attr]
    kit.set_determinism(threads=args.threads)
    module, _ = kit.build_module(kit.default_ref_dir(), kit.default_out_dir())
    module.eval()

    from hififace import HifiFace

    ours = HifiFace.from_pretrained(args.model)
    g = torch.Generator().manual_seed(0)
    src = torch.rand(args.batch, 3, 256, 256, generator=g)
    tgt = torch.rand(args.batch, 3, 256, 256, generator=g)
    ident = ours.identity(src)

    with torch.no_grad():
        ref_out = module.generator(src, tgt)[0]
    ours_out = ours.swap(src, tgt, return_all=True).i_r
    cached_out = ours.swap(ident, tgt, return_all=True).i_r
    identical = bool(torch.equal(ref_out, ours_out))
    cases = {
        "reference": lambda: module.generator(src, tgt),
        "cold": lambda: ours.swap(src, tgt),
        "cached": lambda: ours.swap(ident, tgt),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    with torch.no_grad():
        for fn in cases.values():  # warm-up
            fn()
        for _ in range(args.rounds):
            for name, fn in cases.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for name, value in med.items():
        emit("inference_vs_reference", case=name, batch=args.batch, size=256, device="cpu", dtype="fp32",
             value=round(value, 4), min=round(min(times[name]), 4), max=round(max(times[name]), 4),
             speedup_vs_reference=round(med["reference"] / value, 3))
    print(json.dumps({"bench": "inference_vs_reference", "outputs_identical": identical,
                      "cold_max_abs_diff": float((ref_out - ours_out).abs().max()),
                      "cached_max_abs_diff": float((ref_out - cached_out).abs().max()),
                      "peak_rss_mib": peak_rss_mib()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
