#!/usr/bin/env python
"""Dataset preprocessing speed and alignment consistency: one JSON line per measurement.

Cases:
- ``throughput``: ``hififace.data.prepare.preprocess`` end to end on a synthetic VGGFace2-like tree (the repo's
  test photos, rotated/scaled/shifted into 250-400 px photos in identity folders) at 256 with the default detector
  (YuNet) and the fallback (landmark) parser; value = seconds per image (and ``images_per_s``), for each
  ``--align-passes`` setting.
- ``stage``: single-process median seconds per image of each stage: read, detect, refine, align (warp), parse, write.
- ``alignment_consistency``: crops of one photo under known rotations (±6°, ±12°), scales (0.7-1.35) and shifts must
  agree: per case the mean displacement (crop pixels at 256) between where crop A's pixels land in crop B and where
  they are; value = median over cases, ``worst`` = the largest case (and ``worst_max`` = the largest per-pixel
  displacement anywhere).
- ``write_durable`` / ``write_no_fsync``: median seconds to write one image's two PNGs (crop and mask) the way
  preprocess does (atomic, data fsynced before the rename), and the same with the fsyncs turned off: the cost of
  durability.
- ``resume_check_sizes`` / ``resume_check_png_end`` / ``resume_check_exists``: microseconds per record to decide
  on resume that a finished file's two outputs are intact: by the sizes recorded in the index (one stat each, the
  default), by the PNG end marker (records of older versions), and the old existence test, for comparison.

    python benchmarks/preprocess.py [--quick] [--workers N] [--cases throughput,stages,consistency,write,resume]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import emit  # noqa: E402

BENCH = "preprocess"
PHOTOS = ("astronaut.png", "grace_hopper.jpg", "cameraman.png", "two_people.jpg")


def make_tree(root: Path, n_images: int, seed: int = 0) -> Path:
    """VGGFace2-like photos: loose crops around each test face (face about half the width), randomly rotated, scaled
    and shifted, resized to 250-400 px, in 8 identity folders."""
    import cv2
    from PIL import Image

    from face_helpers import photo, photo_transform
    from hififace.face.detect import get_detector

    det = get_detector("yunet")
    rng = np.random.default_rng(seed)
    loose = []
    for name in PHOTOS:
        img = photo(name)
        for f in det.detect(img):
            cx, cy = f.center
            half = 1.1 * max(f.width, f.height)
            m = np.array([[1.0, 0, half - cx], [0, 1.0, half - cy]])
            loose.append(cv2.warpAffine(img, m, (int(2 * half), int(2 * half)), borderMode=cv2.BORDER_REFLECT_101))
    for i in range(n_images):
        src = loose[i % len(loose)]
        img, _ = photo_transform(src, angle=float(rng.uniform(-12, 12)), scale=float(rng.uniform(0.8, 1.2)),
                                 shift=(float(rng.integers(-10, 10)), float(rng.integers(-10, 10))))
        side = int(rng.integers(250, 400))
        h, w = img.shape[:2]
        img = cv2.resize(img, (side, int(round(side * h / w))), interpolation=cv2.INTER_AREA if side < w else cv2.INTER_CUBIC)
        out = root / f"id{i % 8:05d}" / f"{i:04d}_01.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(out, quality=90)
    return root


def bench_throughput(raw: Path, workers: int, passes: int, repeats: int) -> None:
    from hififace.data.prepare import PreprocessConfig, preprocess

    times, n = [], 0
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as out:
            cfg = PreprocessConfig(size=256, parsing="landmarks", landmarks68="none", refine_passes=passes, workers=workers)
            t0 = time.perf_counter()
            res = preprocess(raw, out, cfg)
            times.append(time.perf_counter() - t0)
            n = res.summary["files"]
            ok = res.summary["ok"]
    per = statistics.median(times) / max(n, 1)
    emit(BENCH, case=f"throughput_passes{passes}", batch=workers, size=256, device="cpu", dtype="uint8", value=round(per, 5),
         images_per_s=round(1.0 / per, 2), images=n, crops=ok, workers=workers, detector="yunet", parser="landmarks",
         note="includes worker start-up" if workers > 1 else "single process")


def bench_stages(raw: Path, limit: int) -> None:
    import cv2

    from hififace.face.align import align_crop, estimate_transform, refine_landmarks, transform_points
    from hififace.face.detect import get_detector
    from hififace.media.images import read_photo
    from hififace.face.palette import save_parsing
    from hififace.face.parse import get_parser
    from hififace.data.prepare import _save_png

    det = get_detector("yunet")
    parser = get_parser("landmarks")
    files = sorted(raw.rglob("*.jpg"))[:limit]
    stages: dict[str, list[float]] = {k: [] for k in ("read", "detect", "refine", "align", "parse", "write")}
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(files):
            t = time.perf_counter()
            img = read_photo(f).rgb
            t1 = time.perf_counter()
            faces = det.detect(img)
            t2 = time.perf_counter()
            if not faces:
                continue
            face = max(faces, key=lambda x: x.area)
            lm, _ = refine_landmarks(img, face.landmarks, det)
            t3 = time.perf_counter()
            m = estimate_transform(lm, "arcface", 256)
            crop = align_crop(img, m, 256)
            t4 = time.perf_counter()
            labels = parser.parse(crop, transform_points(lm, m))
            t5 = time.perf_counter()
            save_parsing(Path(tmp) / f"p{i}.png", labels)
            _save_png(Path(tmp) / f"i{i}.png", crop)
            t6 = time.perf_counter()
            for k, a, b in (("read", t, t1), ("detect", t1, t2), ("refine", t2, t3), ("align", t3, t4), ("parse", t4, t5),
                            ("write", t5, t6)):
                stages[k].append(b - a)
    for k, v in stages.items():
        emit(BENCH, case=f"stage_{k}", batch=1, size=256, device="cpu", dtype="uint8", value=round(statistics.median(v), 5),
             images=len(v), cv2_threads=cv2.getNumThreads())


def bench_write(raw: Path, limit: int) -> None:
    """Two PNGs per image as preprocess writes them, durable (fsync of file and folder) vs not."""
    from hififace.face.align import align_crop, estimate_transform, transform_points
    from hififace.face.detect import get_detector
    from hififace.media.images import read_photo
    from hififace.face.palette import labels_to_image
    from hififace.face.parse import get_parser
    from hififace.data.prepare import _save_png
    from hififace.utils import atomic

    det, parser = get_detector("yunet"), get_parser("landmarks")
    items = []
    for f in sorted(raw.rglob("*.jpg"))[:limit]:
        img = read_photo(f).rgb
        faces = det.detect(img)
        if faces:
            face = max(faces, key=lambda x: x.area)
            m = estimate_transform(face.landmarks, "arcface", 256)
            crop = align_crop(img, m, 256)
            items.append((crop, labels_to_image(parser.parse(crop, transform_points(face.landmarks, m)))))
    real = atomic.fsync_path, atomic.fsync_dir
    for case, sync in (("write_durable", True), ("write_no_fsync", False)):
        if not sync:
            atomic.fsync_path = atomic.fsync_dir = lambda p: None
        times = []
        try:
            with tempfile.TemporaryDirectory(dir=raw.parent) as tmp:  # the file system the outputs go to
                for i, (crop, mask) in enumerate(items):
                    t0 = time.perf_counter()
                    _save_png(Path(tmp) / "parsing" / f"{i}.png", mask, compress_level=6)
                    _save_png(Path(tmp) / "images" / f"{i}.png", crop, compress_level=1)
                    times.append(time.perf_counter() - t0)
        finally:
            atomic.fsync_path, atomic.fsync_dir = real
        emit(BENCH, case=case, batch=1, size=256, device="cpu", dtype="uint8", value=round(statistics.median(times), 5),
             images=len(times), note="two PNGs (crop level 1, mask level 6) per image")


def bench_resume(n: int) -> None:
    """Per-record cost of trusting a finished file on resume: recorded sizes vs PNG end marker vs existence."""
    import json

    from hififace.data.prepare import PreprocessConfig, _is_done, output_intact, png_complete

    cfg = PreprocessConfig()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        from PIL import Image

        rng = np.random.default_rng(0)
        records = []
        for i in range(n):
            rel = {k: f"{k}s/id{i % 50:05d}/{i:06d}.png" for k in ("image", "parsing")}
            for k, r in rel.items():
                (out / r).parent.mkdir(parents=True, exist_ok=True)
                if i < 50:  # a few real PNGs; the rest are copies (the cost is the file system's, not the bytes')
                    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(out / r)
                else:
                    (out / r).write_bytes((out / f"{k}s/id{i % 50:05d}/{i % 50:06d}.png").read_bytes())
            rec = {"source": f"id/{i}.jpg", "status": "ok", **rel}
            rec.update({f"{k}_bytes": (out / r).stat().st_size for k, r in rel.items()})
            records.append(json.loads(json.dumps(rec)))
        legacy = [{k: v for k, v in r.items() if not k.endswith("_bytes")} for r in records]
        cases = (("resume_check_sizes", lambda: [_is_done(r, out, cfg) for r in records]),
                 ("resume_check_png_end", lambda: [_is_done(r, out, cfg) for r in legacy]),
                 ("resume_check_exists", lambda: [(out / r["image"]).is_file() and (out / r["parsing"]).is_file()
                                                   for r in records]))
        assert all(_is_done(r, out, cfg) for r in records) and all(_is_done(r, out, cfg) for r in legacy)
        assert output_intact(out / records[0]["image"], None) == png_complete(out / records[0]["image"])
        for case, fn in cases:
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            emit(BENCH, case=case, batch=n, size=256, device="cpu", dtype="-", unit="us/record",
                 value=round(statistics.median(times) / n * 1e6, 2), note="warm page cache")


def bench_consistency(passes_list: list[int], jitter: bool) -> None:
    from face_helpers import crop_disagreement, photo, photo_transform
    from hififace.face.align import JITTER_4, compose, estimate_transform, invert_affine, refine_landmarks, transform_points
    from hififace.face.detect import get_detector

    det = get_detector("yunet")
    cases = ([dict(angle=a) for a in (-12.0, -6.0, 6.0, 12.0)] + [dict(scale=s) for s in (0.7, 0.85, 1.15, 1.35)]
             + [dict(shift=(37, -23)), dict(shift=(-51, 19)), dict(angle=9.0, scale=0.8, shift=(15, 10))])
    photos = [p for p in PHOTOS if p != "two_people.jpg"]
    settings = [(p, False) for p in passes_list] + ([(2, True)] if jitter else [])
    for passes, jit in settings:
        def matrix(img):
            faces = det.detect(img)
            lm = max(faces, key=lambda f: f.area).landmarks
            if passes:
                lm = refine_landmarks(img, lm, det, passes=passes, jitter=JITTER_4 if jit else ((0.0, 0.0),))[0]
            return estimate_transform(lm, "arcface", 256)

        errs, worst_max = [], 0.0
        t0 = time.perf_counter()
        for name in photos:
            img = photo(name)
            m_a = matrix(img)
            for c in cases:
                out, t = photo_transform(img, **c)
                m_b = matrix(out)
                errs.append(crop_disagreement(m_a, m_b, t))
                f = compose(m_b, compose(t, invert_affine(m_a)))
                ys, xs = np.mgrid[0:256:8, 0:256:8]
                p = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
                worst_max = max(worst_max, float(np.linalg.norm(transform_points(p, f) - p, axis=1).max()))
        emit(BENCH, case=f"alignment_consistency_passes{passes}{'_jitter' if jit else ''}", batch=1, size=256,
             device="cpu", dtype="float64", value=round(float(np.median(errs)), 3), unit="px",
             worst=round(float(np.max(errs)), 3), worst_max=round(worst_max, 3), cases=len(errs), photos=photos,
             seconds=round(time.perf_counter() - t0, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images and settings")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cases", default="throughput,stages,consistency,write,resume",
                    help="comma-separated subset of throughput, stages, consistency, write, resume")
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    n = 24 if args.quick else 96
    with tempfile.TemporaryDirectory() as tmp:
        raw = make_tree(Path(tmp) / "raw", n) if cases & {"throughput", "stages", "write"} else Path(tmp)
        if "throughput" in cases:
            for passes in ((2,) if args.quick else (0, 1, 2)):
                bench_throughput(raw, args.workers, passes, 1 if args.quick else 2)
        if "stages" in cases:
            bench_stages(raw, 12 if args.quick else 48)
        if "write" in cases:
            bench_write(raw, 12 if args.quick else 48)
    if "resume" in cases:
        bench_resume(1000 if args.quick else 10000)
    if "consistency" in cases:
        bench_consistency([0, 2] if args.quick else [0, 1, 2], jitter=not args.quick)


if __name__ == "__main__":
    main()
