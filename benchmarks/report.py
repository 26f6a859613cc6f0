#!/usr/bin/env python
"""Cost per face / per frame of issue 21's building blocks on the CPU: the quality report, the mouth region,
pose-matched sources and identity strength. One JSON line per measurement.

Cases (256 crops, the full-size identity networks of the reference variant with random weights: ArcFace IResNet-100
and the ReconNet ResNet-50, as :meth:`hififace.HifiFace.analyse` runs them; ``--quick``: the tiny test networks):

- ``analyse``: ArcFace + ReconNet on one crop: what pose weighting, identity strength (the target's own identity)
  and the report each add per face when the target's coefficients are not at hand;
- ``report_frame``: :meth:`QualityRecorder.add` for one face of one video frame (composite, ArcFace + ReconNet on
  the output and on the target, the errors, flicker); ``report_frame_coeffs``: the same with the target's
  coefficients given (one analyse pass);
- ``flicker``: :class:`FlickerMeter` alone per face and frame;
- ``write_1000``: writing the JSON and the PNG plot of a 1000-frame, one-face video report;
- ``mouth_<method>``: :func:`hififace.face.mouth.mouth_mask` per face (parsing, landmarks68, outline5);
- ``pose_weights``: head pose, pose weights of 3 sources, the weighted identity and the smoother, per face;
- ``toward``: :meth:`Identity.toward` at 0.5/0.5 per face.

    python benchmarks/report.py [--quick] [--repeats N] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import emit, machine, median_time  # noqa: E402

BENCH = "report"
SIZE = 256


def identity_networks(quick: bool):
    """analyse(x) of the reference variant's frozen networks (random weights), as HifiFace.analyse runs them."""
    from hififace import HifiFaceConfig
    from hififace.models.hififace import build_frozen
    from hififace.models.identity import ShapeAwareIdentityExtractor

    cfg = HifiFaceConfig(frozen_width=0.125, arcface_arch="r18", recon_input_size=64) if quick else HifiFaceConfig()
    torch.manual_seed(0)
    ext = ShapeAwareIdentityExtractor(cfg, *build_frozen(cfg)).eval()

    @torch.inference_mode()
    def analyse(x):
        return ext.embed(x).float(), ext.coefficients(x).float()

    return analyse, cfg


def sequence(n: int) -> np.ndarray:
    import cv2

    base = np.random.default_rng(0).integers(0, 256, (SIZE + n, SIZE + n, 3)).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 4)
    base = np.clip((base - base.mean()) * 40.0 / base.std() + 128.0, 0, 255).astype(np.uint8)
    return np.stack([base[t : t + SIZE, t : t + SIZE] for t in range(n)])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny networks, 3 repeats")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    from hififace import Identity
    from hififace.face.align import reduce68to5
    from hififace.face.mouth import mouth_mask
    from hififace.face.pose import WeightSmoother, head_pose, pose_weights, weighted_identity
    from hififace.metrics.quality import FlickerMeter, QualityRecorder, write_quality_report
    from synthface import draw_face

    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats
    common = dict(batch=1, size=SIZE, device="cpu", dtype="fp32")
    print(f"# {machine()}", file=sys.stderr)

    analyse, cfg = identity_networks(args.quick)
    nets = "tiny" if args.quick else f"IResNet-{cfg.arcface_arch.lstrip('r')} + ReconNet"
    frames = sequence(repeats + 3)
    x = torch.from_numpy(frames[:1]).permute(0, 3, 1, 2).float().div(255.0)
    emit(BENCH, case="analyse", networks=nets, value=round(median_time(lambda: analyse(x), repeats), 4),
         unit="s/face", **common)

    g = torch.Generator().manual_seed(0)
    source = Identity(torch.randn(1, 80, generator=g), F.normalize(torch.randn(1, 512, generator=g), dim=1))
    alpha = np.ones((1, SIZE, SIZE), np.float32)
    for case, give_coeffs in (("report_frame", False), ("report_frame_coeffs", True)):
        rec = QualityRecorder(analyse, "bench", kind="video", fps=25.0)
        rec.set_source(source)
        coeffs = analyse(x)[1] if give_coeffs else None
        state = {"t": 0}

        def one_frame(rec=rec, coeffs=coeffs, state=state):
            t = state["t"] = state["t"] + 1
            k = t % len(frames)
            rec.add(t, [0], frames[k : k + 1], frames[k : k + 1], alpha, target_coeffs=coeffs)

        emit(BENCH, case=case, networks=nets, value=round(median_time(one_frame, repeats), 4), unit="s/frame",
             **common)

    meter = FlickerMeter()
    state = {"t": 0}

    def flicker():
        t = state["t"] = state["t"] + 1
        meter.update(0, t, frames[t % len(frames)], frames[(t + 1) % len(frames)], alpha[0])

    emit(BENCH, case="flicker", value=round(median_time(flicker, repeats * 5), 5), unit="s/frame", **common)

    rec = QualityRecorder(lambda b: (F.normalize(torch.ones(len(b), 512), dim=1), torch.zeros(len(b), 257)),
                          kind="video", fps=25.0)
    rec.set_source(source)
    rng = np.random.default_rng(0)
    for t in range(1000):
        rec.rows.append({"frame": t, "face": 0, "id_similarity": float(rng.uniform(0.4, 0.8)),
                         "id_similarity_independent": None, "pose_error": float(rng.uniform(0, 5)),
                         "expression_error": float(rng.uniform(0, 1)), "shape_error": float(rng.uniform(0, 1)),
                         "flicker": None if t == 0 else float(rng.uniform(0.5, 2.5))})
    report = rec.report()
    with tempfile.TemporaryDirectory(prefix="hififace-report-bench-") as tmp:
        out = Path(tmp) / "report.json"
        emit(BENCH, case="write_1000", value=round(median_time(lambda: write_quality_report(out, report), 3), 3),
             unit="s per 1000-frame report", json_kib=round(out.stat().st_size / 1024, 1), **common)

    _, lm, labels = draw_face(SIZE, scale=110.0, opening=0.2)
    for method, kw in (("parsing", dict(landmarks=lm, labels=labels)), ("landmarks68", dict(landmarks=lm)),
                       ("outline5", dict(landmarks=reduce68to5(lm)))):
        emit(BENCH, case=f"mouth_{method}", value=round(median_time(lambda kw=kw: mouth_mask((SIZE, SIZE), **kw),
                                                                    repeats * 5), 5), unit="s/face", **common)

    sources = Identity(torch.randn(3, 80, generator=g), F.normalize(torch.randn(3, 512, generator=g), dim=1))
    src_pose = np.array([[-40.0, 0, 0], [0.0, 5, 0], [40.0, 0, 0]])
    target_coeffs = torch.randn(1, 257, generator=g) * 0.2
    smoother = WeightSmoother(fps=25.0)
    state = {"t": 0}

    def pose():
        t = state["t"] = state["t"] + 1
        w = smoother.update(0, t, pose_weights(head_pose(target_coeffs)[0], src_pose, "pose"))
        return weighted_identity(sources, w)

    emit(BENCH, case="pose_weights", sources=3, value=round(median_time(pose, repeats * 5), 6), unit="s/face", **common)
    target = Identity(torch.randn(1, 80, generator=g), F.normalize(torch.randn(1, 512, generator=g), dim=1))
    emit(BENCH, case="toward", value=round(median_time(lambda: source.toward(target, 0.5, 0.5), repeats * 5), 6),
         unit="s/face", **common)
    return 0


if __name__ == "__main__":
    sys.exit(main())
