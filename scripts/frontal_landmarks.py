#!/usr/bin/env python
"""Developer measurement (not a CI test): what our YuNet landmarks do to the ``frontal`` crops xuehy's weights expect.

xuehy/HiFiFace-pytorch aligned its training and inference crops with SCRFD (``scrfd_10g_bnkps.onnx``) 5-point
landmarks; hififace detects with YuNet. The SCRFD weights are not available here, so SCRFD itself is not measured.
What is measured, on the test photos whose swaps may be shown (tests/data/photos: astronaut, grace_hopper,
cameraman), in pixels of the 256 ``frontal`` crop:

1. how far YuNet's 5 points land from the frontal template after the least-squares similarity (the residual our
   crops carry), with the pipeline's default 2 refinement passes and without (and, for context, the residual of the
   same points on the ArcFace template the reference variant uses);
2. YuNet against a second, independent landmarker (dlib's 68-point model reduced to 5 points as Deep3DFaceRecon does:
   eye-corner midpoints, nose tip, mouth corners), when dlib and its model are installed: per-point distance, and how
   far the crop moves (mean displacement of the crop's pixels), its scale ratio and rotation between the two
   alignments. This is the size of a detector swap of the kind SCRFD -> YuNet is, not that swap itself.

    python scripts/frontal_landmarks.py [--template frontal] [--size 256]

One JSON line per face and a summary line.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut.png", "grace_hopper.jpg", "cameraman.png")
NAMES = ("eye_l", "eye_r", "nose", "mouth_l", "mouth_r")


def crop_shift(m_a: np.ndarray, m_b: np.ndarray, size: int) -> dict:
    """How crop b differs from crop a: mean / max displacement of the crop's pixels, scale ratio, rotation (deg)."""
    from hififace.face.align import compose, invert_affine, transform_points

    ys, xs = np.mgrid[0:size:8, 0:size:8]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    moved = transform_points(grid, compose(m_b, invert_affine(m_a)))  # a-crop pixel -> image -> b-crop pixel
    d = np.linalg.norm(moved - grid, axis=1)
    ra, rb = m_a[:, :2], m_b[:, :2]
    scale = float(np.sqrt(abs(np.linalg.det(rb)) / abs(np.linalg.det(ra))))
    angle = float(np.degrees(np.arctan2(rb[1, 0], rb[0, 0]) - np.arctan2(ra[1, 0], ra[0, 0])))
    return {"crop_shift_mean_px": round(float(d.mean()), 2), "crop_shift_max_px": round(float(d.max()), 2),
            "scale_ratio": round(scale, 4), "rotation_deg": round(angle, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", default="frontal")
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args()

    from hififace.errors import HifiFaceError
    from hififace.face.align import estimate_transform, reduce68to5, refine_landmarks, template_points, transform_points
    from hififace.face.detect import get_detector
    from hififace.media.images import read_crop

    det = get_detector("yunet", score_threshold=0.6)
    try:
        from hififace.face.landmarks import get_landmarker

        dlib = get_landmarker("dlib")
    except HifiFaceError as err:
        dlib = None
        print(json.dumps({"note": f"dlib landmarks unavailable ({err}); only the template residuals are measured"}))
    tpl = template_points(args.template, args.size)
    rows = []
    for file in PHOTOS:
        image = read_crop(ROOT / "tests" / "data" / "photos" / file)
        for k, face in enumerate(det.detect(image)):
            raw = face.landmarks.astype(np.float64)
            refined, _ = refine_landmarks(image, raw, det, passes=2)
            row = {"photo": file, "face": k, "box_px": round(face.size, 1)}
            for label, lm in (("raw", raw), ("refined", refined)):
                m = estimate_transform(lm, args.template, args.size)
                res = np.linalg.norm(transform_points(lm, m) - tpl, axis=1)
                row[f"template_residual_{label}_px"] = {n: round(float(r), 2) for n, r in zip(NAMES, res)}
                row[f"template_residual_{label}_rms_px"] = round(float(np.sqrt((res**2).mean())), 2)
            m_a = estimate_transform(refined, "arcface", args.size)  # context: the same points on the ArcFace template
            res = np.linalg.norm(transform_points(refined, m_a) - template_points("arcface", args.size), axis=1)
            row["arcface_template_residual_refined_rms_px"] = round(float(np.sqrt((res**2).mean())), 2)
            if dlib is not None:
                m_y = estimate_transform(refined, args.template, args.size)
                five = reduce68to5(dlib.landmarks68(image, face))
                d = np.linalg.norm(transform_points(five, m_y) - transform_points(refined, m_y), axis=1)
                row["dlib_vs_yunet_px"] = {n: round(float(v), 2) for n, v in zip(NAMES, d)}
                row.update({f"dlib_{k2}": v for k2, v in crop_shift(m_y, estimate_transform(five, args.template, args.size),
                                                                     args.size).items()})
            rows.append(row)
            print(json.dumps(row))
    summary = {"faces": len(rows), "template": args.template, "size": args.size,
               "template_residual_refined_rms_px_mean": round(float(np.mean([r["template_residual_refined_rms_px"] for r in rows])), 2),
               "template_residual_raw_rms_px_mean": round(float(np.mean([r["template_residual_raw_rms_px"] for r in rows])), 2)}
    if dlib is not None:
        summary["dlib_crop_shift_mean_px"] = round(float(np.mean([r["dlib_crop_shift_mean_px"] for r in rows])), 2)
        summary["dlib_crop_shift_max_px"] = round(float(np.max([r["dlib_crop_shift_max_px"] for r in rows])), 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
