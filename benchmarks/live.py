#!/usr/bin/env python
"""Live face swapping (``hififace live``): a recorded clip played as a camera, through the real loop.

A synthetic clip is made per frame size (a public-domain face photo, tests/data/photos, drifting over a plain
background at 25 fps; ``--sizes``, default 640x480 and 1280x720) and played by the live capture in real time, as a
camera would deliver it: frames the loop cannot take in time are dropped, never queued. Each frame taken goes through
the live frame processor (detection every ``--detect-every`` frames with the tracker in between, the cached identity,
the swap, the paste-back), the visible mark, and a JPEG encode (what the http output sends). The model is the
full-size 256 reference network (random weights unless ``--weights``: the speed is the same).

One JSON line per measurement (keys of benchmarks/README.md), per size and engine: ``fps`` (frames delivered per
second; ``frames_in``, ``frames_out``, ``dropped`` beside it), ``latency_p50`` and ``latency_p95`` (glass to glass:
the frame's capture time stamp to the JPEG out, seconds), and ``stage:NAME`` (median seconds per frame, ``p95``
beside it): ``wait`` (captured -> taken), ``detect``, ``track``, ``align``, ``swap``, ``paste``, ``draw`` (mark),
``output`` (JPEG).

Engines (``--engines``): ``torch:fp32``, ``torch:bf16`` (skipped where bf16 is emulated), ``onnx``
(onnxruntime on ``<weights>/onnx``; with random weights, ``--export-onnx`` exports them first, 1-2 minutes on a CPU).

    python benchmarks/live.py [--quick] [--weights DIR] [--seconds 10] [--engines torch:fp32,torch:bf16,onnx]
    # the GPU case (prepared; targets: >= 30 fps at 1280x720, p95 latency <= 100 ms), torch and onnxruntime-CUDA
    # side by side (onnxruntime-gpu installed):
    python benchmarks/live.py --device cuda --engines torch:fp32,torch:bf16,torch:bf16+compile,onnx \\
        --export-onnx --provider tensorrt,cuda,cpu --seconds 20
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cuda_available, emit, machine, native_bf16  # noqa: E402
from video import PHOTO, make_clip  # noqa: E402

BENCH = "live"
STAGES = ("wait", "detect", "track", "align", "swap", "paste", "draw", "output")


class JpegSink:
    """The http output's work per frame (one JPEG encode), without a socket."""

    name = "jpeg"

    def __init__(self) -> None:
        from hififace.live.outputs import encode_jpeg

        self.encode, self.frames = encode_jpeg, 0

    def write(self, frame, timestamp) -> None:
        self.encode(frame)
        self.frames += 1

    def poll(self) -> None:
        return None

    def close(self) -> None:
        pass


def load_engine(spec: str, weights: Path, device: str, provider: str | None):
    """(model, dtype name) for ``torch:fp32``, ``torch:bf16``, ``torch:bf16+compile`` or ``onnx``."""
    if spec == "onnx":
        from hififace.export import OnnxHifiFace

        return OnnxHifiFace.from_pretrained(weights, device=device, providers=provider), "fp32"
    from hififace import HifiFace

    engine, _, dtype = spec.partition(":")
    dtype, _, extra = dtype.partition("+")
    model = HifiFace.from_pretrained(weights, device=device, dtype=dtype or "fp32")
    if extra == "compile":
        model.compile(mode="reduce-overhead" if device.startswith("cuda") else None)
    return model, dtype or "fp32"


def run_case(model, clip: Path, detect_every: int):
    from hififace.inference.pipeline import FaceSwapper
    from hififace.live import Capture, run_live
    from hififace.live.overlay import VisibleMark
    from hififace.live.swapper import build_processor, open_video_file, render_mark

    # the mask m_r of random weights is empty: paste the whole face region, as a trained model's mask would (the
    # paste-back costs the same either way)
    swapper = FaceSwapper(model, align_passes=0, model_mask=False)
    source, reopen = open_video_file(clip)
    processor = build_processor(swapper, [PHOTO], detect_every=detect_every, fps=source.fps, name=clip.name)
    processor.warmup()
    processor.warmup()
    report = run_live(Capture(source, reopen), processor, [JpegSink()], mark=VisibleMark(render_mark))
    return report, processor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="640x480 only, 3 s, torch fp32")
    ap.add_argument("--weights", type=Path, help="model folder (default: random weights of the full 256 model)")
    ap.add_argument("--device", default="cuda" if cuda_available() else "cpu")
    ap.add_argument("--engines", default="torch:fp32,torch:bf16,onnx",
                    help="comma-separated: torch:fp32, torch:bf16, torch:bf16+compile, onnx (default: the first three)")
    ap.add_argument("--provider", help="onnxruntime providers for the onnx engine, e.g. tensorrt,cuda,cpu")
    ap.add_argument("--export-onnx", action="store_true", help="export the model first when it has no onnx/ folder")
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the played clip (default 10)")
    ap.add_argument("--detect-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    engines = ["torch:fp32"] if args.quick else [e.strip() for e in args.engines.split(",") if e.strip()]
    sizes = ["640x480"] if args.quick else [s.strip() for s in args.sizes.split(",")]
    seconds = 3.0 if args.quick else args.seconds
    print(json.dumps({"bench": BENCH, "machine": machine(), "device": args.device}), flush=True)
    from hififace import HifiFace, HifiFaceConfig

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = tmp / "random-256"
            HifiFace.random(HifiFaceConfig(), seed=0).save_pretrained(weights)
        if "onnx" in engines and not (weights / "onnx").is_dir():
            if args.export_onnx:  # in its own process: the exporter's imports and threads stay out of the timings
                subprocess.run([sys.executable, "-m", "hififace.cli.main", "export", "onnx", "--weights", str(weights),
                                "--no-check"], check=True, stdout=subprocess.DEVNULL)
            else:
                print(f"# onnx skipped: {weights} has no onnx/ export (add --export-onnx)", file=sys.stderr)
                engines.remove("onnx")
        clips = {}
        for size in sizes:
            w, h = (int(v) for v in size.split("x"))
            clips[size] = make_clip(tmp / f"clip_{size}.mp4", w, h, int(round(seconds * 25)))
        for spec in engines:
            if spec.startswith("torch:bf16") and not native_bf16(args.device):
                print(f"# {spec} skipped: bf16 is emulated on this CPU (tens of times slower)", file=sys.stderr)
                continue
            model, dtype = load_engine(spec, weights, args.device, args.provider)
            for size, clip in clips.items():
                report, processor = run_case(model, clip, args.detect_every)
                common = dict(batch=1, size=size, device=args.device, dtype=dtype, engine=spec.split(":")[0]
                              + ("+compile" if spec.endswith("+compile") else ""),
                              detect_every=args.detect_every)
                emit(BENCH, case="fps", value=round(report.fps, 3), unit="frames/s", frames_in=report.frames_in,
                     frames_out=report.frames_out, dropped=report.dropped, frames_swapped=processor.frames_swapped,
                     full_detections=processor.full_detections, load_average=round(os.getloadavg()[0], 2), **common)
                for q in (50, 95):
                    emit(BENCH, case=f"latency_p{q}", value=round(report.percentile("total", q), 4), unit="s",
                         **common)
                for stage in STAGES:
                    if report.percentile(stage, 50) is not None:
                        emit(BENCH, case=f"stage:{stage}", value=round(report.percentile(stage, 50), 4),
                             unit="s/frame", p95=round(report.percentile(stage, 95), 4), **common)
            del model
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    sys.exit(main())
