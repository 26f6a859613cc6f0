"""Developer script: draw docs/images/pipeline.jpg, the stages of ``hififace swap`` on a whole photo.

    python scripts/pipeline_figure.py [--weights DIR] [-o docs/images/pipeline.jpg]

Without --weights it uses the full-size reference network with RANDOM weights and says so on the picture: the
swapped face is then noise by construction, and the model's mask m_r (meaningless too) is left out of the
paste-back mask; the figure shows what each stage does (detection, alignment, the paste-back mask, the paste-back
itself), not the quality of a swap. Photos: Grace Hopper (target) and Eileen
Collins (source), public-domain US government photographs (tests/data/photos/SOURCES.md).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
H = 230  # panel height


def _panel(img: np.ndarray, title: str, width: int | None = None):
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2))
    w = width or round(pil.width * H / pil.height)
    pil = pil.resize((w, H), Image.LANCZOS)
    out = Image.new("RGB", (w, H + 34), (255, 255, 255))
    out.paste(pil, (0, 34))
    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    ImageDraw.Draw(out).text((4, 8), title, fill=(0, 0, 0), font=font)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="a trained model folder (default: random weights, labelled as such)")
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "pipeline.jpg"))
    args = ap.parse_args()

    from PIL import Image, ImageDraw, ImageFont

    from hififace import HifiFace, HifiFaceConfig
    from hififace.face.align import transform_points
    from hififace.face.draw import draw_faces
    from hififace.face.palette import face_mask
    from hififace.media.images import read_photo
    from hififace.inference.pipeline import FaceSwapper

    model = HifiFace.from_pretrained(args.weights) if args.weights else HifiFace.random(HifiFaceConfig(), seed=0)
    # a random network's mask m_r is meaningless (mostly 0 after clamping): without trained weights the face region
    # alone is used, so the paste-back stays visible; the panel says so
    swapper = FaceSwapper(model, parsing="landmarks", model_mask=bool(args.weights))
    target = read_photo(PHOTOS / "grace_hopper.jpg").rgb
    source = read_photo(PHOTOS / "astronaut.png").rgb
    faces = swapper.detect(target)
    crops, mats = swapper.align(target, [faces[0].landmarks])
    src_crop, _ = swapper.align(source, [swapper.detect(source)[0].landmarks])
    identity = swapper.identity(src_crop[0])
    i_r, m_r = swapper.swap_crops(identity, crops)
    lms = transform_points(faces[0].landmarks, mats[0])[None]
    blend = swapper.blend_faces(crops, i_r, m_r, lms)
    swapped, alphas = blend.faces, blend.alphas
    region = face_mask(swapper.parser.parse(crops, lms))[0]
    result = swapper.swap(identity, target).image

    panels = [
        _panel(src_crop[0], "source (aligned)"),
        _panel(draw_faces(target, faces), "1 target: detect (#0)"),
        _panel(crops[0], f"2 align ({model.config.align})"),
        _panel((region * 255).astype(np.uint8), "3 face region"),
        _panel((alphas[0] * 255).astype(np.uint8), "x m_r, feathered" if args.weights else "feathered (m_r off)"),
        _panel(swapped[0], "4 swap (model output)"),
        _panel(result, "5 pasted back"),
    ]
    gap = 8
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    banner = 30
    fig = Image.new("RGB", (width, panels[0].height + banner), (255, 255, 255))
    x = 0
    for p in panels:
        fig.paste(p, (x, banner))
        x += p.width + gap
    try:
        font = ImageFont.load_default(size=17)
    except TypeError:
        font = ImageFont.load_default()
    note = ("trained weights: " + str(args.weights)) if args.weights else \
        "RANDOM WEIGHTS: the swapped face is noise by construction; this shows the pipeline's stages, not a result"
    ImageDraw.Draw(fig).text((4, 6), f"hififace swap on a photo - {note}", fill=(170, 0, 0), font=font)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    from hififace.media.images import write_image

    write_image(out, np.asarray(fig), meta={"hififace:weights": "trained" if args.weights else "random"})
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
