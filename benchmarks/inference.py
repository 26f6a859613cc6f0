#!/usr/bin/env python
"""Inference speed and memory of ``HifiFace.swap`` and of its onnxruntime engine: one JSON line per measurement.

Cases: ``cold`` (source image given: identity computed every call) and ``cached`` (a source identity from
``model.identity`` reused), at batch 1 and 4, sizes 256 and 512, fp32 and bf16; on a GPU also channels_last and
``HifiFace.compile()`` (``--variants`` picks them on any device). ``swap_peak_rss`` runs a fresh process that loads the model folder and swaps one pair, and reports
its peak resident memory. Without ``--weights`` a random-weight model of the full size is written to a temporary
folder first (the load path is then the same as for real weights).

Every line has an ``engine`` field: ``torch`` (PyTorch eager) or ``onnx`` (:class:`hififace.export.OnnxHifiFace`,
onnxruntime with the same number of threads, on the folder's ``onnx/`` export or, when there is none, a fresh
export into a temporary folder; ``export_onnx`` reports how long that took). In fp32 the two engines are timed in
alternation, call by call, so that a shared machine's drift hits both alike.

    python benchmarks/inference.py [--quick] [--weights DIR] [--device cuda] [--dtypes fp32,bf16] [--engines torch,onnx]
        [--variants eager,channels_last,compile]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine, median_time, native_bf16, peak_rss_mib  # noqa: E402

BENCH = "inference"


def make_model_dir(size: int, root: Path) -> Path:
    from hififace import HifiFace, HifiFaceConfig

    out = root / f"random-{size}"
    if not (out / "config.json").exists():
        HifiFace.random(HifiFaceConfig(image_size=size), seed=0).save_pretrained(out)
    return out


def onnx_dir_for(model_dir: Path, root: Path, size: int) -> Path:
    """The folder's ONNX export, or a fresh one in ``root`` (reported as ``export_onnx``)."""
    import time

    from hififace.export import export_onnx

    if (model_dir / "onnx" / "generator.onnx").is_file():
        return model_dir / "onnx"
    out = root / f"onnx-{size}"
    t0 = time.perf_counter()
    export_onnx(model_dir, out, check=False)
    emit(BENCH, case="export_onnx", batch=2, size=size, device="cpu", dtype="fp32", engine="onnx",
         value=round(time.perf_counter() - t0, 1))
    return out


def peak_of_fresh_swap(model_dir: Path, size: int, device: str, dtype: str, engine: str = "torch") -> float:
    """Peak RSS (MiB) of a new process that loads ``model_dir`` (an ONNX folder for ``engine="onnx"``) and swaps one pair."""
    if engine == "onnx":
        load = f"from hififace.export import OnnxHifiFace\nm = OnnxHifiFace.from_pretrained({str(model_dir)!r}, device='cpu')"
    else:
        load = f"from hififace import HifiFace\nm = HifiFace.from_pretrained({str(model_dir)!r}, device={device!r}, dtype={dtype!r})"
    code = f"""
import sys, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
from _common import peak_rss_mib
{load}
g = torch.Generator().manual_seed(0)
s, t = torch.rand(1, 3, {size}, {size}, generator=g), torch.rand(1, 3, {size}, {size}, generator=g)
m.swap(s, t)
print(peak_rss_mib())
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return round(float(out.stdout.strip().splitlines()[-1]), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1, size 256, fp32, 2 repeats")
    ap.add_argument("--weights", type=Path, help="model folder (default: random weights of the full size)")
    ap.add_argument("--device", default="cuda" if _cuda() else "cpu")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--force-bf16", action="store_true", help="run bf16 even on a CPU without native bf16")
    ap.add_argument("--no-memory", action="store_true", help="skip the fresh-process peak-memory case")
    ap.add_argument("--engines", default="torch,onnx",
                    help="torch (PyTorch eager) and/or onnx (onnxruntime, fp32 only; skipped without onnxruntime)")
    ap.add_argument("--variants", default=None,
                    help="comma list of eager, channels_last, compile (default: all on CUDA without --quick, else eager)")
    args = ap.parse_args()

    import torch

    from hififace import HifiFace

    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [256] if args.quick else [int(s) for s in args.sizes.split(",")]
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    dtypes = ["fp32"] if args.quick else args.dtypes.split(",")
    repeats = 2 if args.quick else args.repeats
    known = {"eager": ("eager", False, False), "channels_last": ("channels_last", True, False),
             "compile": ("compile", False, True)}
    names = args.variants.split(",") if args.variants else (
        list(known) if args.device.startswith("cuda") and not args.quick else ["eager"])
    variants = [known[n] for n in names]
    print(json.dumps({"bench": BENCH, "machine": machine(), "device": args.device}), flush=True)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None

    engines = [e for e in args.engines.split(",") if e]
    if "onnx" in engines and not _has_onnxruntime():
        print(json.dumps({"bench": BENCH, "engine": "onnx", "skipped": "onnxruntime is not installed"}), flush=True)
        engines.remove("onnx")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            model_dir = args.weights if args.weights else make_model_dir(size, Path(tmp))
            onnx_dir = onnx_dir_for(model_dir, Path(tmp), size) if "onnx" in engines else None
            for dtype in dtypes:
                if dtype == "bf16" and not (args.force_bf16 or native_bf16(args.device)):
                    print(json.dumps({"bench": BENCH, "size": size, "device": args.device, "dtype": dtype,
                                      "skipped": "no native bf16 on this CPU (--force-bf16 to run anyway)"}), flush=True)
                    continue
                for vname, channels_last, compiled in variants:
                    models = {}
                    if "torch" in engines:
                        model = HifiFace.from_pretrained(model_dir, device=args.device, dtype=dtype,
                                                         channels_last=channels_last)
                        if compiled:  # the methods swap / identity / prepare_target call (CUDA graphs on CUDA)
                            model.compile(mode="reduce-overhead" if args.device.startswith("cuda") else None)
                        models["torch"] = model
                    if onnx_dir is not None and dtype == "fp32" and vname == "eager":  # the export is fp32
                        from hififace.export import OnnxHifiFace

                        models["onnx"] = OnnxHifiFace.from_pretrained(
                            onnx_dir, device=args.device, threads=torch.get_num_threads())
                    if not models or next(iter(models.values())).config.image_size != size:
                        continue
                    g = torch.Generator().manual_seed(0)
                    for batch in batches:
                        src = torch.rand(1, 3, size, size, generator=g).to(args.device)
                        tgt = torch.rand(batch, 3, size, size, generator=g).to(args.device)
                        for case in ("cold", "cached"):
                            calls = {name: (lambda m=m, s=(src if case == "cold" else m.identity(src)): m.swap(s, tgt))
                                     for name, m in models.items()}
                            for name, value in alternating_medians(calls, repeats, sync=sync).items():
                                emit(BENCH, case=case if vname == "eager" else f"{case}+{vname}", batch=batch,
                                     size=size, device=args.device, dtype=dtype, engine=name, value=round(value, 4))
                    del models
                if not args.no_memory and args.device == "cpu":
                    for name, folder in (("torch", model_dir), ("onnx", onnx_dir)):
                        if name in engines and (name == "torch" or dtype == "fp32"):
                            emit(BENCH, case="swap_peak_rss", batch=1, size=size, device=args.device, dtype=dtype,
                                 engine=name, value=peak_of_fresh_swap(folder, size, args.device, dtype, name),
                                 unit="MiB", peak_rss_mib=peak_rss_mib())
    return 0


def alternating_medians(calls: dict, repeats: int, sync=None) -> dict[str, float]:
    """Median seconds of each call, the calls run in turn (A B A B ...) after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        fn()
    for _ in range(repeats):
        for name, fn in calls.items():
            times[name].append(median_time(fn, 1, warmup=0, sync=sync))
    return {name: statistics.median(ts) for name, ts in times.items()}


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
