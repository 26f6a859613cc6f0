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
difference from PyTorch fp32 on the same crops (output in [0, 1]; one grey level is 0.0039).

``--pipeline`` adds the swap pipeline around it (the full-size 256 HifiFace, random weights unless
``--swap-weights``): ``swap_photo`` and ``swap_restore_photo`` time ``FaceSwapper.swap`` on a 1920x1080 photo with one
face without and with the restorer (detection, alignment, swap, paste-back, then alignment to ffhq5, restoration and
paste-back; seconds per face), ``restore_share`` the restorer's part of it. On CUDA it also runs issue 21's GPU
target, swap + restore on a 1080p video with one face (``swap_restore_video_1080p``: frames/s end to end, through
``hififace.swap_video`` with ``--video-frames`` frames in batches of ``--video-batch``)::

    python benchmarks/restore.py --pipeline --quick                      # CPU: one repeat of each
    python benchmarks/restore.py --pipeline --device cuda --dtypes bf16 --channels-last --batches 8
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
    ap.add_argument("--pipeline", action="store_true", help="also time swap + restore per face (and video on CUDA)")
    ap.add_argument("--swap-weights", type=Path, help="swap model folder for --pipeline (default: random 256 model)")
    ap.add_argument("--video-frames", type=int, default=120, help="frames of the --pipeline video case (CUDA)")
    ap.add_argument("--video-batch", type=int, default=8, help="frames per batch of the --pipeline video case")
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
        if args.pipeline:
            key = ("torch_channels_last", dtypes[-1]) if args.channels_last else ("torch", dtypes[-1])
            pipeline(args, root, restorers.get(key, first), key[1], repeats, sync)
    return 0


def pipeline(args, root: Path, restorer, dtype: str, repeats: int, sync) -> None:
    """Swap (+ restore) per face on a 1080p photo; on CUDA swap + restore on a 1080p video, frames/s."""
    import numpy as np

    from hififace import HifiFace, HifiFaceConfig
    from hififace.inference.pipeline import FaceSwapper
    from hififace.media.images import read_photo
    from video import PHOTO, make_clip

    weights = args.swap_weights
    if weights is None:
        weights = HifiFace.random(HifiFaceConfig(), seed=0).save_pretrained(root / "hififace-random-256")
    model = HifiFace.from_pretrained(weights, device=args.device, dtype=dtype)
    face = read_photo(PHOTO).rgb
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    h, w = face.shape[:2]
    frame[300 : 300 + h, 800 : 800 + w] = face
    # without the model's mask: a random network's m_r is empty, and the swap would paste (and restore) nothing
    options = dict(parsing="landmarks", align_passes=0, model_mask=bool(args.swap_weights))
    plain = FaceSwapper(model, **options)
    enhanced = FaceSwapper(model, restorer=restorer, **options)
    ident = plain.identity(PHOTO)
    common = dict(batch=1, size="1920x1080", device=args.device, dtype=dtype, restorer_size=restorer.size)
    times: dict = {"swap_photo": [], "swap_restore_photo": []}
    for s in (plain, enhanced):  # warm-up
        s.swap(ident, frame)
    for _ in range(repeats):  # alternated, as above
        times["swap_photo"].append(median_time(lambda: plain.swap(ident, frame), 1, warmup=0, sync=sync))
        times["swap_restore_photo"].append(median_time(lambda: enhanced.swap(ident, frame), 1, warmup=0, sync=sync))
    med = {k: statistics.median(v) for k, v in times.items()}
    for case, value in med.items():
        emit(BENCH, case=case, value=round(value, 4), unit="s/face", **common)
    emit(BENCH, case="restore_share", value=round(1 - med["swap_photo"] / med["swap_restore_photo"], 3),
         unit="share of swap_restore_photo", **common)
    if not args.device.startswith("cuda"):
        return
    from hififace.inference.video import swap_video

    clip = make_clip(root / "clip.mp4", 1920, 1080, args.video_frames)
    warm = make_clip(root / "warm.mp4", 1920, 1080, args.video_batch)
    video_swapper = FaceSwapper(model, restorer=restorer, **options)
    swap_video(video_swapper, PHOTO, warm, root / "warm_out.mp4", batch_frames=args.video_batch, progress=False,
               preset="veryfast")
    report = swap_video(video_swapper, PHOTO, clip, root / "out.mp4", batch_frames=args.video_batch, progress=False,
                        preset="veryfast")
    emit(BENCH, case="swap_restore_video_1080p", value=round(report.frames_per_second, 2), unit="frames/s",
         batch=args.video_batch, size="1920x1080", device=args.device, dtype=dtype, frames=report.frames,
         faces=report.faces_swapped, target=">= 30",
         stages={k: round(v / max(report.frames, 1), 4) for k, v in report.seconds.items()})


if __name__ == "__main__":
    sys.exit(main())
