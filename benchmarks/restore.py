#!/usr/bin/env python
"""Cost per face of the face restorers: our GFPGAN (PyTorch) and, optionally, its ONNX export run by onnxruntime.

One JSON line per measurement: ``value`` is the median time per face in seconds (``case`` ``restore``), over
``restorer.restore(crops)`` on aligned 512 crops in [0, 1] (normalisation, network, clamp included; detection,
alignment and paste-back are the pipeline's and not here). Without ``--weights`` a random-weight GFPGAN of the full
size is written to a temporary restorer folder first (``random_release_state``: the released file's layout), so the
load path is the one real weights take. ``gflop`` gives the network's FLOPs per face (``torch.utils.flop_counter``).

    python benchmarks/restore.py [--quick] [--weights DIR] [--device cuda] [--dtypes fp32,bf16] [--batches 1,4]
        [--engines torch,onnx] [--channels-last]

bf16 on a CPU without native bf16 (no AVX512-BF16/AMX) is skipped unless ``--force-bf16`` (emulated, many times
slower than fp32). ``onnx`` exports our model with ``torch.onnx`` (dynamo) once per run (``export_onnx`` line) and
times onnxruntime alternately with PyTorch, call by call; ``max_abs_vs_torch_fp32`` lines give each variant's largest
difference from PyTorch fp32 on the same crops (output in [0, 1]; one grey level is 0.0039). The GPU target of issue 21 (swap + restore >= 30 frames/s
on 1080p with one face) is measured end to end by the pipeline once ``--enhance`` exists; on a GPU this script gives
the restorer's share.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cuda_available, emit, machine, median_time, native_bf16  # noqa: E402

BENCH = "restore"


def random_folder(root: Path) -> Path:
    import torch

    from hififace.converters.gfpgan import convert_gfpgan, random_release_state

    src = root / "GFPGANv1.4-random.pth"
    torch.save({"params_ema": random_release_state(seed=0)}, src)
    folder = convert_gfpgan(src, root / "gfpgan-random")
    src.unlink()
    return folder


def gflop_per_face(model, size: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size, device=next(model.parameters()).device, dtype=next(model.parameters()).dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


def export_onnx(model, path: Path) -> Path:
    import torch

    x = torch.zeros(2, 3, model.config.out_size, model.config.out_size)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.onnx.export(model.float().cpu(), (x,), dynamo=True, input_names=["input"], output_names=["output"],
                                dynamic_shapes=({0: batch},), verbose=False)
    program.save(str(path))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="batch 1, fp32, torch only, 2 repeats")
    ap.add_argument("--weights", type=Path, help="restorer folder (default: random weights of the full size)")
    ap.add_argument("--device", default="cuda" if cuda_available() else "cpu")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--engines", default="torch", help="comma list of torch, onnx (onnx: export first, CPU/CUDA EP)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: torch's)")
    ap.add_argument("--force-bf16", action="store_true", help="run bf16 even on a CPU without native bf16")
    ap.add_argument("--channels-last", action="store_true", help="also time the channels_last layout")
    args = ap.parse_args()

    import torch

    from hififace.restore import load_restorer

    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    dtypes = ["fp32"] if args.quick else args.dtypes.split(",")
    engines = ["torch"] if args.quick else args.engines.split(",")
    repeats = 2 if args.quick else args.repeats
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else None
    print(f"# {machine()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="hififace-restore-bench-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        folder = args.weights or random_folder(root)
        if args.weights is None:
            emit(BENCH, case="convert_random_512", batch=1, size=512, device="cpu", dtype="fp32",
                 value=round(time.perf_counter() - t0, 2))
        restorers = {}
        for dtype in dtypes:
            if dtype == "bf16" and not native_bf16(args.device) and not args.force_bf16:
                print(f"# bf16 skipped: no native bf16 on {args.device} (--force-bf16 runs it emulated)", file=sys.stderr)
                continue
            restorers[("torch", dtype)] = load_restorer(folder, device=args.device, dtype=dtype)
        first = next(iter(restorers.values()))
        size = first.size
        emit(BENCH, case="gflop", batch=1, size=size, device=args.device, dtype="fp32", unit="GFLOP",
             value=round(gflop_per_face(first.model, size), 1))
        if args.channels_last:
            for (engine, dtype), r in list(restorers.items()):
                restorers[("torch_channels_last", dtype)] = load_restorer(folder, device=args.device, dtype=dtype,
                                                                          channels_last=True)
        if "onnx" in engines:
            from hififace.restore.onnx_engine import OnnxRestorer

            t0 = time.perf_counter()
            path = export_onnx(load_restorer(folder, device="cpu").model, root / "gfpgan.onnx")
            emit(BENCH, case="export_onnx", batch=2, size=size, device="cpu", dtype="fp32", engine="onnx",
                 value=round(time.perf_counter() - t0, 1))
            restorers[("onnx", "fp32")] = OnnxRestorer(path, device=args.device, threads=args.threads)
        for batch in batches:
            crops = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
            for r in restorers.values():
                r.batch_size = batch
            # alternate the engines call by call, so that a shared machine's drift hits all alike
            times: dict = {key: [] for key in restorers}
            for key, r in restorers.items():  # warm-up
                r.restore(crops)
            for _ in range(repeats):
                for key, r in restorers.items():
                    times[key].append(median_time(lambda r=r: r.restore(crops), 1, warmup=0, sync=sync))
            for (engine, dtype), values in times.items():
                emit(BENCH, case="restore", batch=batch, size=size, device=args.device, dtype=dtype, engine=engine,
                     value=round(statistics.median(values) / batch, 4), unit="s/face")
            reference = restorers.get(("torch", "fp32"))
            for (engine, dtype), r in restorers.items():  # how far each variant is from torch fp32, in [0, 1] units
                if reference is not None and r is not reference:
                    diff = float((r.restore(crops).float() - reference.restore(crops)).abs().max())
                    emit(BENCH, case="max_abs_vs_torch_fp32", batch=batch, size=size, device=args.device, dtype=dtype,
                         engine=engine, value=float(f"{diff:.3g}"), unit="max |delta| of [0,1] output")
    return 0


if __name__ == "__main__":
    sys.exit(main())
