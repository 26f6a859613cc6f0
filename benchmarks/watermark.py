#!/usr/bin/env python
"""Robustness, false positives, visibility and speed of the invisible watermark (hififace.provenance.watermark).

Images: the bundled photos (src/hififace/assets/samples, tests/data/photos, and ../shared/assets when present) plus
generated natural-image stand-ins (dead-leaves images: overlapping discs with power-law sizes, the standard
stand-in for natural image statistics; and 1/f "pink" noise). Each image gets a random 16-bit payload.

Attacks: JPEG 75 and 50, resize 0.5x (bicubic), a 10 % crop (random offset), a screenshot-like PNG round trip
(gamma 1.1, 2 % contrast loss, +2 brightness, re-saved as RGB PNG), their combinations, and H.264 CRF 28 (a
short clip, each frame marked, re-encoded with libx264 through imageio-ffmpeg; detection over all frames and per
frame). Reported per attack: detection rate and bit accuracy (16 payload bits, counted over all marked images).

False positives: unmarked images (the photos with random crops, rescales and JPEG, stand-ins, Gaussian and
uniform noise, flat and gradient images), >= 1000 trials without --quick: the measured rate at the threshold, the
largest score seen, and the scores' upper quantiles (the threshold was set from such a run: see README).

Region: the mark over the whole frame vs only a face-sized box (a quarter of the frame), at the same PSNR.

Cost (what every output pays, hififace.provenance.outputs): embedding per video frame at 720p and 1080p, and
signing one file with the C2PA manifest (local key; JPEG, PNG and MP4 of a 1080p picture), median of repeats.

    python benchmarks/watermark.py [--quick] [--null 1000] [--parts robustness,region,video,null,cost] [--scores FILE]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small matrix products: threads only cost on a busy box
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine, median_time  # noqa: E402

BENCH = "watermark"
ROOT = Path(__file__).resolve().parents[1]
#: The bundled photos, then the project's shared assets (``../shared`` beside the clone, or two levels up from a
#: worktree) when present.
PHOTO_DIRS = [ROOT / "src" / "hififace" / "assets" / "samples", ROOT / "tests" / "data" / "photos",
              ROOT.parent / "shared" / "assets", ROOT.parents[1] / "shared" / "assets"]


# ------------------------------------------------------------------------------------------------------ images
def photos() -> list[tuple[str, np.ndarray]]:
    from PIL import Image

    out, seen = [], set()
    for d in PHOTO_DIRS:
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                continue
            with Image.open(p) as im:
                a = np.asarray(im.convert("RGB"))
            key = (p.name.split(".")[0], a.shape)
            if key in seen:
                continue
            seen.add(key)
            out.append((f"{d.name}/{p.name}", a))
    return out


def dead_leaves(rng: np.random.Generator, h: int, w: int, colour: bool = True) -> np.ndarray:
    """Overlapping random discs, radii ~ r^-3 (scale invariant), slightly blurred, with sensor-like noise."""
    from scipy import ndimage

    img = np.zeros((h, w, 3), np.float64)
    img[:] = rng.uniform(0, 255, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    rmin, rmax = 2.0, max(h, w) / 3
    for _ in range(int(h * w / 400) + 50):
        u = rng.uniform()
        r = (rmin ** -2 - u * (rmin ** -2 - rmax ** -2)) ** -0.5
        cy, cx = rng.uniform(-r, h + r), rng.uniform(-r, w + r)
        y0, y1 = int(max(0, cy - r)), int(min(h, cy + r + 1))
        x0, x1 = int(max(0, cx - r)), int(min(w, cx + r + 1))
        if y0 >= y1 or x0 >= x1:
            continue
        m = (yy[y0:y1, x0:x1] - cy) ** 2 + (xx[y0:y1, x0:x1] - cx) ** 2 <= r * r
        img[y0:y1, x0:x1][m] = rng.uniform(0, 255, 3) if colour else rng.uniform(0, 255)
    img = ndimage.gaussian_filter(img, (0.8, 0.8, 0)) + rng.normal(0, 1.5, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def pink_noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1
    out = []
    for _ in range(3):
        spec = (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape)) / f
        x = np.fft.irfft2(spec, s=(h, w))
        out.append((x - x.mean()) / x.std())
    a = np.stack(out, -1) * 40 + 128
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def stand_ins(rng: np.random.Generator, n: int) -> list[tuple[str, np.ndarray]]:
    sizes = [(256, 256), (320, 480), (512, 512), (600, 800), (720, 1280)]
    out = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        kind = "dead_leaves" if i % 3 else "pink_noise"
        out.append((f"{kind}_{h}x{w}_{i}", dead_leaves(rng, h, w) if kind == "dead_leaves" else pink_noise(rng, h, w)))
    return out


# ------------------------------------------------------------------------------------------------------ attacks
def jpeg(a: np.ndarray, q: int) -> np.ndarray:
    from PIL import Image

    b = io.BytesIO()
    Image.fromarray(a).save(b, "JPEG", quality=q)
    return np.asarray(Image.open(b).convert("RGB"))


def resize(a: np.ndarray, s: float) -> np.ndarray:
    from PIL import Image

    h, w = a.shape[:2]
    return np.asarray(Image.fromarray(a).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC))


def crop(a: np.ndarray, rng: np.random.Generator, frac: float = 0.10) -> np.ndarray:
    """Remove ``frac`` of each dimension, at a random offset."""
    h, w = a.shape[:2]
    ch, cw = round(h * (1 - frac)), round(w * (1 - frac))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return a[y:y + ch, x:x + cw]


def screenshot(a: np.ndarray) -> np.ndarray:
    """A screenshot-like round trip: a display gamma/contrast change, then an RGB PNG re-save."""
    from PIL import Image

    x = (a / 255.0) ** (1 / 1.1) * 255 * 0.98 + 2
    b = io.BytesIO()
    Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8)).save(b, "PNG")
    return np.asarray(Image.open(b).convert("RGB"))


ATTACKS = {
    "none": lambda a, r: a,
    "jpeg75": lambda a, r: jpeg(a, 75),
    "jpeg50": lambda a, r: jpeg(a, 50),
    "resize0.5": lambda a, r: resize(a, 0.5),
    "crop10": lambda a, r: crop(a, r),
    "screenshot_png": lambda a, r: screenshot(a),
    "jpeg75+resize0.5": lambda a, r: resize(jpeg(a, 75), 0.5),
    "resize0.5+jpeg75": lambda a, r: jpeg(resize(a, 0.5), 75),
    "crop10+resize0.5+jpeg75": lambda a, r: jpeg(resize(crop(a, r), 0.5), 75),
    "screenshot+jpeg50": lambda a, r: jpeg(screenshot(a), 50),
}


def h264_roundtrip(frames: list[np.ndarray], crf: int = 28) -> list[np.ndarray]:
    import imageio.v2 as iio

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "clip.mp4")
        w = iio.get_writer(path, fps=25, codec="libx264", quality=None, macro_block_size=2,
                           ffmpeg_params=["-crf", str(crf), "-preset", "medium"], pixelformat="yuv420p")
        for f in frames:
            w.append_data(f)
        w.close()
        r = iio.get_reader(path)
        out = [np.asarray(f) for f in r]
        r.close()
    return out


def clip_of(a: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` frames of a slow pan over ``a`` (a 90 % window moving a few pixels per frame)."""
    h, w = a.shape[:2]
    ch, cw = (int(h * 0.9) // 2) * 2, (int(w * 0.9) // 2) * 2
    out = []
    for i in range(n):
        y = min(h - ch, int(i * (h - ch) / max(n - 1, 1)))
        x = min(w - cw, int(i * (w - cw) / max(n - 1, 1)))
        out.append(np.ascontiguousarray(a[y:y + ch, x:x + cw]))
    return out


# ------------------------------------------------------------------------------------------------------ runs
def bit_acc(bits: int | None, payload: int) -> float:
    if bits is None:
        return 0.5  # nothing read: as good as a guess
    return 1.0 - bin((bits ^ payload) & 0xFFFF).count("1") / 16


def robustness(images, wm, rng, args) -> None:
    from collections import defaultdict

    det, acc, psnrs, t_embed, t_detect, mp = defaultdict(list), defaultdict(list), [], [], [], []
    for name, a in images:
        payload = int(rng.integers(0, 1 << 16))
        t0 = time.perf_counter()
        marked = wm.embed(a, payload)
        t_embed.append(time.perf_counter() - t0)
        mp.append(a.shape[0] * a.shape[1] / 1e6)
        psnrs.append(wm.psnr_db(a, marked))
        for attack, fn in ATTACKS.items():
            x = fn(marked, rng)
            t0 = time.perf_counter()
            d = wm.detect(x)
            if attack == "none":
                t_detect.append(time.perf_counter() - t0)
            det[attack].append(d.detected)
            acc[attack].append(bit_acc(d.bits, payload))
            if args.verbose:
                print(f"# {name} {a.shape[:2]} {attack}: score {d.score:.2f} detected {d.detected} "
                      f"bits {'ok' if d.bits == payload else d.bits}", file=sys.stderr, flush=True)
    n = len(images)
    for attack in ATTACKS:
        emit(BENCH, case=f"detect:{attack}", batch=1, size="mixed", device="cpu", dtype="uint8",
             value=round(float(np.mean(det[attack])), 4), unit="rate", bit_accuracy=round(float(np.mean(acc[attack])), 4), n=n)
    emit(BENCH, case="psnr", batch=1, size="mixed", device="cpu", dtype="uint8", value=round(float(np.median(psnrs)), 2),
         unit="dB", min=round(float(np.min(psnrs)), 2), n=n)
    emit(BENCH, case="embed_time_per_mp", batch=1, size="mixed", device="cpu", dtype="uint8",
         value=round(float(np.median(np.array(t_embed) / np.array(mp))), 4), unit="s/MP", n=n)
    emit(BENCH, case="detect_time_per_mp", batch=1, size="mixed", device="cpu", dtype="uint8",
         value=round(float(np.median(np.array(t_detect) / np.array(mp))), 4), unit="s/MP", n=n,
         median_s=round(float(np.median(t_detect)), 3))


def region(images, wm, rng) -> None:
    """Whole frame vs a face-sized central box (a quarter of the area), same PSNR; hardest attacks."""
    for where in ("whole_frame", "face_box"):
        hits = {k: [] for k in ("jpeg75+resize0.5", "jpeg50", "crop10+resize0.5+jpeg75")}
        for _, a in images:
            h, w = a.shape[:2]
            mask = None
            if where == "face_box":
                mask = np.zeros((h, w))
                mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1.0
            payload = int(rng.integers(0, 1 << 16))
            marked = wm.embed(a, payload, mask=mask)
            for k in hits:
                hits[k].append(wm.detect(ATTACKS[k](marked, rng)).detected)
        for k, v in hits.items():
            emit(BENCH, case=f"region:{where}:{k}", batch=1, size="mixed", device="cpu", dtype="uint8",
                 value=round(float(np.mean(v)), 4), unit="rate", n=len(v))


def video(images, wm, rng, frames: int) -> None:
    det_clip, det_frame, acc = [], [], []
    for _, a in images:
        payload = int(rng.integers(0, 1 << 16))
        clip = [wm.embed(f, payload) for f in clip_of(a, frames, rng)]
        back = h264_roundtrip(clip)
        d = wm.detect_frames(back)
        det_clip.append(d.detected)
        acc.append(bit_acc(d.bits, payload))
        det_frame += [wm.detect(f).detected for f in back[:: max(1, len(back) // 4)]]
    emit(BENCH, case="detect:h264_crf28:clip", batch=frames, size="mixed", device="cpu", dtype="uint8",
         value=round(float(np.mean(det_clip)), 4), unit="rate", bit_accuracy=round(float(np.mean(acc)), 4), n=len(det_clip))
    emit(BENCH, case="detect:h264_crf28:single_frame", batch=1, size="mixed", device="cpu", dtype="uint8",
         value=round(float(np.mean(det_frame)), 4), unit="rate", n=len(det_frame))


def _random_view(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random crop (40-100 % of each side), rescale (0.3-1.5x) and, half the time, JPEG (quality 40-95)."""
    h, w = a.shape[:2]
    ch, cw = max(64, int(h * rng.uniform(0.4, 1.0))), max(64, int(w * rng.uniform(0.4, 1.0)))
    y, x = int(rng.integers(0, h - min(h, ch) + 1)), int(rng.integers(0, w - min(w, cw) + 1))
    a = a[y:y + ch, x:x + cw]
    s = rng.uniform(0.3, 1.5)
    if min(a.shape[:2]) * s >= 64:
        a = resize(a, s)
    if rng.uniform() < 0.5:
        a = jpeg(a, int(rng.integers(40, 96)))
    return a


def null_trials(photo_set, wm, rng, n: int, scores_file=None) -> None:
    """Unmarked images: random views (crop, rescale, JPEG) of the photos and of a pool of stand-ins, fresh 1/f
    noise, Gaussian and uniform noise, flat and gradient images."""
    if n <= 0:
        return
    pool = stand_ins(rng, 12)
    scores, kinds = [], []
    for i in range(n):
        kind = ["photo", "stand_in", "photo", "stand_in", "pink_noise", "gauss_noise", "uniform_noise",
                "flat_gradient"][i % 8]
        h, w = int(rng.integers(96, 720)), int(rng.integers(96, 720))
        if kind == "photo":
            a = _random_view(photo_set[int(rng.integers(len(photo_set)))][1], rng)
        elif kind == "stand_in":
            a = _random_view(pool[int(rng.integers(len(pool)))][1], rng)
        elif kind == "pink_noise":
            a = pink_noise(rng, h, w)
        elif kind == "gauss_noise":
            a = np.clip(rng.normal(128, rng.uniform(2, 60), (h, w, 3)), 0, 255).astype(np.uint8)
        elif kind == "uniform_noise":
            a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        else:
            g = np.linspace(rng.uniform(0, 255), rng.uniform(0, 255), w)[None, :, None] + np.zeros((h, 1, 3))
            a = np.clip(np.rint(g + rng.normal(0, rng.uniform(0, 3), g.shape)), 0, 255).astype(np.uint8)
        d = wm.detect(a)
        scores.append(d.score)
        kinds.append(kind)
        if scores_file:
            print(f"{d.score:.4f} {kind} {a.shape[0]}x{a.shape[1]}", file=scores_file, flush=True)
    s = np.array(scores)
    fp = int(np.sum(s >= wm.THRESHOLD))
    emit(BENCH, case="false_positive_rate", batch=1, size="mixed", device="cpu", dtype="uint8",
         value=round(fp / n, 5), unit="rate", n=n, false_positives=fp, threshold=wm.THRESHOLD,
         max_score=round(float(s.max()), 3), q999=round(float(np.quantile(s, 0.999)), 3),
         q99=round(float(np.quantile(s, 0.99)), 3), mean=round(float(s.mean()), 3), std=round(float(s.std()), 3),
         worst_kind=kinds[int(np.argmax(s))])


def cost(images, wm, repeats: int) -> None:
    """Per-frame embedding time at 720p / 1080p and per-file signing time (JPEG, PNG, MP4 of a 1080p picture)."""
    from PIL import Image

    from hififace.provenance import credentials as cr
    from hififace.provenance import outputs as po

    base = max(images, key=lambda x: x[1].size)[1]
    for name, (h, w) in (("720p", (720, 1280)), ("1080p", (1080, 1920))):
        frame = np.asarray(Image.fromarray(base).resize((w, h), Image.BICUBIC))
        marker = po.FrameMarker({"hififace:command": "video", "hififace:fingerprint": "beef0123456789ab"})
        emit(BENCH, case=f"embed_frame:{name}", batch=1, size=f"{w}x{h}", device="cpu", dtype="uint8",
             value=round(median_time(lambda: marker(frame), repeats), 4), threads=1)
    if not cr.available():
        print("# c2pa-python not installed: signing not measured", file=sys.stderr)
        return
    frame = np.asarray(Image.fromarray(base).resize((1920, 1080), Image.BICUBIC))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("HIFIFACE_HOME", str(Path(tmp) / "home"))
        identity = cr.resolve_identity()
        files = {".jpg": Path(tmp) / "f.jpg", ".png": Path(tmp) / "f.png"}
        Image.fromarray(frame).save(files[".jpg"], quality=95)
        Image.fromarray(frame).save(files[".png"])
        with contextlib.suppress(Exception):
            import imageio.v2 as iio

            files[".mp4"] = Path(tmp) / "f.mp4"
            iio.mimwrite(files[".mp4"], [frame] * 25, fps=25, codec="libx264", quality=8, macro_block_size=8)
        for ext, src in files.items():
            out = Path(tmp) / f"signed{ext}"
            value = median_time(lambda: cr.sign_file(src, out, cr.Facts(fingerprint="beef0123456789ab"), identity),
                                repeats)
            emit(BENCH, case=f"sign_file:{ext[1:]}", batch=1, size=f"1920x1080 ({src.stat().st_size // 1024} KiB)",
                 device="cpu", dtype="uint8", value=round(value, 4), threads=1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a few images, 100 null trials, a short clip")
    p.add_argument("--null", type=int, default=None, help="unmarked trials (default 1000, --quick 100)")
    p.add_argument("--stand-ins", type=int, default=None, help="generated images (default 10, --quick 2)")
    p.add_argument("--parts", default="robustness,region,video,null,cost",
                   help="comma-separated subset of robustness,region,video,null,cost")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scores", default=None, help="write every unmarked trial's score to this file")
    p.add_argument("--verbose", action="store_true", help="one stderr line per detection")
    args = p.parse_args()

    from hififace.provenance import watermark as wm

    rng = np.random.default_rng(args.seed)
    print("# machine", machine(), file=sys.stderr)
    photo_set = photos()
    if args.quick:
        photo_set = photo_set[:4]
    images = photo_set + stand_ins(rng, args.stand_ins if args.stand_ins is not None else (2 if args.quick else 10))
    parts = set(args.parts.split(","))
    if "robustness" in parts:
        robustness(images, wm, rng, args)
    if "region" in parts:
        region(images if not args.quick else images[:3], wm, rng)
    if "video" in parts:
        video(images[:2] if args.quick else images[:8], wm, rng, 8 if args.quick else 16)
    if "cost" in parts:
        cost(photo_set, wm, 3 if args.quick else 7)
    if "null" in parts:
        with open(args.scores, "w") if args.scores else contextlib.nullcontext() as f:
            null_trials(photo_set, wm, rng, args.null if args.null is not None else (100 if args.quick else 1000), f)


if __name__ == "__main__":
    main()
