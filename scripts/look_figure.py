"""Developer script: draw docs/images/keep_mouth.png, what ``--keep-mouth`` keeps of the target.

    python scripts/look_figure.py [--weights DIR] [-o docs/images/keep_mouth.png]

Without --weights it uses a small network with RANDOM weights and says so under the picture: the swapped face is
noise by construction; the figure shows which pixels stay the target's (the 5-point mouth region of an aligned crop,
feathered), not what a trained model produces. Target: the bundled astronaut sample (Eileen Collins, a
public-domain NASA photograph; src/hififace/assets/samples), source: the Grace Hopper sample.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "hififace" / "assets" / "samples"
S = 176  # panel side


def _panel(img: np.ndarray, title: str):
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)).resize((S, S), Image.LANCZOS)
    out = Image.new("RGB", (S, S + 24), (255, 255, 255))
    out.paste(pil, (0, 24))
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    ImageDraw.Draw(out).text((4, 5), title, fill=(0, 0, 0), font=font)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="a model folder (default: a small network with random weights)")
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "keep_mouth.png"))
    args = ap.parse_args()
    from PIL import Image

    from hififace import HifiFace, HifiFaceConfig
    from hififace.face.align import template_points
    from hififace.face.mouth import mouth_mask
    from hififace.inference.pipeline import FaceSwapper
    from hififace.media.images import read_crop

    if args.weights:
        model = HifiFace.from_pretrained(args.weights)
    else:
        cfg = HifiFaceConfig(channel_multiplier=1 / 16, frozen_width=0.125, arcface_arch="r18", recon_input_size=64)
        model = HifiFace.random(cfg, seed=0)
    size = model.config.image_size
    target, source = read_crop(SAMPLES / "astronaut.png", size), read_crop(SAMPLES / "grace_hopper.png", size)
    plain = FaceSwapper(model).swap(source, target).image
    kept = FaceSwapper(model, keep_mouth=True).swap(source, target).image
    keep = mouth_mask((size, size), template_points(model.config.align, size)).alpha
    shown = (target * (0.25 + 0.75 * keep[..., None])).astype(np.uint8)
    panels = [_panel(target, "target"), _panel(shown, "region kept (5 points)"), _panel(plain, "swap"),
              _panel(kept, "swap --keep-mouth")]
    canvas = Image.new("RGB", (len(panels) * (S + 4) - 4, S + 24), (255, 255, 255))
    for i, p in enumerate(panels):
        canvas.paste(p, (i * (S + 4), 0))
    canvas.save(args.output, optimize=True)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
