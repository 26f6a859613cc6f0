"""Developer script: draw docs/images/enhance.png, what ``--enhance`` does after a swap.

    python scripts/enhance_figure.py [-o docs/images/enhance.png]

Both networks have RANDOM weights (a small HifiFace and a reduced-width 512 px GFPGAN), and the picture says so:
the swapped and the restored faces are noise by construction. What it shows is where the restorer acts: on the
swapped face only, aligned to the FFHQ 512 five-point template, pasted back inside the swap's own soft mask, with
every other pixel left exactly as it was. Photos: Grace Hopper (target) and Eileen Collins (source), public-domain
US government photographs (tests/data/photos/SOURCES.md).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
H = 200  # panel height


def _panel(img: np.ndarray, title: str):
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2))
    pil = pil.resize((round(pil.width * H / pil.height), H), Image.LANCZOS)
    out = Image.new("RGB", (pil.width, H + 28), (255, 255, 255))
    out.paste(pil, (0, 28))
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    ImageDraw.Draw(out).text((4, 7), title, fill=(0, 0, 0), font=font)
    return out


def main() -> None:
    from PIL import Image

    from hififace import HifiFace, HifiFaceConfig
    from hififace.inference.pipeline import FaceSwapper
    from hififace.media.images import read_photo
    from hififace.models.restorers import GFPGAN, GFPGANConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "images" / "enhance.png")
    args = ap.parse_args()
    model = HifiFace.random(HifiFaceConfig(channel_multiplier=1 / 16, frozen_width=0.125, arcface_arch="r18",
                                           recon_input_size=64), seed=0)
    target = read_photo(PHOTOS / "grace_hopper.jpg").rgb
    with tempfile.TemporaryDirectory() as tmp:
        restorer = GFPGAN.random(GFPGANConfig(out_size=512, narrow=1 / 32), seed=0).save_pretrained(Path(tmp) / "r")
        options = dict(parsing="landmarks", model_mask=False, align_passes=0)
        plain = FaceSwapper(model, **options)
        ident = plain.identity(PHOTOS / "astronaut.png")
        swapped = plain.swap(ident, target)
        restored = FaceSwapper(model, restorer=str(restorer), **options).swap(ident, target)
    moved = (restored.image != swapped.image).any(axis=2)
    where = np.full(target.shape, 255, np.uint8)
    where[swapped.changed] = (170, 200, 255)  # what the swap may change
    where[moved] = (200, 40, 40)  # what the restorer changed
    x0, y0, x1, y1 = swapped.faces[swapped.swapped[0]].box.astype(int)
    cx, cy, half = (x0 + x1) // 2, (y0 + y1) // 2, int(0.9 * max(x1 - x0, y1 - y0))
    crop = (slice(max(0, cy - half), cy + half), slice(max(0, cx - half), cx + half))
    panels = [_panel(target[crop], "target"), _panel(swapped.image[crop], "swapped (random weights)"),
              _panel(restored.image[crop], "+ --enhance (random GFPGAN)"),
              _panel(where[crop], "red: restored, blue: swap mask")]
    sheet = Image.new("RGB", (sum(p.width for p in panels) + 6 * (len(panels) - 1), panels[0].height), "white")
    x = 0
    for p in panels:
        sheet.paste(p, (x, 0))
        x += p.width + 6
    args.output.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256, method=Image.Quantize.MEDIANCUT).save(args.output, optimize=True)
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
