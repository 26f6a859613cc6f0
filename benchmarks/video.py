#!/usr/bin/env python
"""Video face swapping end to end (``hififace.swap_video``): frames/s and the time of each stage per frame.

A synthetic clip is made first: a public-domain face photo (tests/data/photos) drifting over a plain background at
the chosen height (720 -> 1280x720, 1080 -> 1920x1080), H.264 with a sine audio track, one face per frame. The
pipeline then runs on it with the full-size model (random weights unless ``--weights``); a short warm-up clip runs
first. Stages: decode and encode run in their own threads (their times overlap the rest), detect, align, swap and
paste (parsing mask, colour work, paste-back) run in the main thread; ``mux`` copies the streams at the end.

One JSON line per measurement: ``case`` = ``end_to_end`` (value: seconds per frame; ``fps`` too) or
``stage:NAME`` (seconds per frame, ``share`` of the wall time), and ``detect+align+paste`` (the share the issue's
CPU target wants under 25 %).

    python benchmarks/video.py [--quick] [--weights DIR] [--device cuda] [--height 1080] [--frames 120]
    # the GPU case (prepared, see README): python benchmarks/video.py --device cuda --height 1080 --frames 240 \\
    #     --batch 16 --dtype bf16
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
from _common import cuda_available, emit, machine  # noqa: E402

BENCH = "video"
ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "data" / "photos" / "grace_hopper.jpg"


def make_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """``frames`` frames of one face (about a third of the frame height) drifting right, plus a sine audio track."""
    import cv2
    import numpy as np

    from hififace.media.images import read_photo
    from hififace.media.video import ffmpeg_exe

    img = read_photo(PHOTO).rgb
    scale = height * 0.9 / img.shape[0]
    face = cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    fh, fw = face.shape[:2]
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{width}x{height}", "-framerate", str(fps), "-i", "-", "-f", "lavfi", "-i",
           f"sine=frequency=440:sample_rate=44100:duration={frames / fps:.3f}", "-c:v", "libx264", "-preset",
           "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    for i in range(frames):
        canvas = np.full((height, width, 3), (60, 70, 80), np.uint8)
        x0 = (width - fw) // 2 + int((i - frames / 2) * width / 400)
        y0 = (height - fh) // 2
        xs, xe = max(0, x0), min(width, x0 + fw)
        canvas[y0 : y0 + fh, xs:xe] = face[:, xs - x0 : xe - x0]
        proc.stdin.write(canvas.tobytes())
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError("ffmpeg could not write the benchmark clip")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="720p, 6 frames, batch 2")
    ap.add_argument("--weights", type=Path, help="model folder (default: random weights of the full 256 model)")
    ap.add_argument("--device", default="cuda" if cuda_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--height", type=int, default=720, choices=(480, 720, 1080, 2160))
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--batch", type=int, default=4, help="frames per batch (default 4)")
    ap.add_argument("--preset", default="veryfast", help="libx264 preset of the output (default veryfast)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()

    import torch

    from hififace import HifiFace, HifiFaceConfig
    from hififace.inference.pipeline import FaceSwapper
    from hififace.inference.video import swap_video

    if args.threads:
        torch.set_num_threads(args.threads)
    frames, batch, height = (6, 2, 720) if args.quick else (args.frames, args.batch, args.height)
    width = height * 16 // 9
    print(json.dumps({"bench": BENCH, "machine": machine(), "device": args.device}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = tmp / "random-256"
            HifiFace.random(HifiFaceConfig(), seed=0).save_pretrained(weights)
        model = HifiFace.from_pretrained(weights, device=args.device, dtype=args.dtype)
        swapper = FaceSwapper(model, parsing="landmarks", align_passes=0)
        clip = make_clip(tmp / "clip.mp4", width, height, frames)
        warm = make_clip(tmp / "warm.mp4", width, height, batch)
        swap_video(swapper, PHOTO, warm, tmp / "warm_out.mp4", batch_frames=batch, progress=False, preset=args.preset)
        report = swap_video(swapper, PHOTO, clip, tmp / "out.mp4", batch_frames=batch, progress=False,
                                    preset=args.preset)
    n = max(report.frames, 1)
    common = dict(batch=batch, size=f"{width}x{height}", device=args.device, dtype=args.dtype, frames=report.frames,
                  faces=report.faces_swapped)
    emit(BENCH, case="end_to_end", value=round(report.total / n, 4), unit="s/frame",
         fps=round(report.frames_per_second, 3), **common)
    for stage, seconds in report.seconds.items():
        emit(BENCH, case=f"stage:{stage}", value=round(seconds / n, 4), unit="s/frame",
             share=round(seconds / report.total, 3), **common)
    cpu_side = sum(report.seconds[s] for s in ("detect", "align", "paste"))
    emit(BENCH, case="detect+align+paste", value=round(cpu_side / n, 4), unit="s/frame",
         share=round(cpu_side / report.total, 3), **common)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    sys.exit(main())
