"""``hififace swap``: put the source face's identity on the target face (aligned square crops)."""
from __future__ import annotations

import argparse
import logging

from ._common import CONSENT, add_model_args, add_watermark_arg

log = logging.getLogger("hififace")

EPILOG = f"""examples:
  hififace swap --source a.png --target b.png -o out.png --weights weights/hififace-256
  hififace swap --source a.png --target b.png -o out.jpg --watermark

Inputs are aligned face crops; other sizes are resized to the model size with a warning.
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("swap", help="swap the source's identity onto the target face",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", "-s", required=True, help="image whose identity is used")
    p.add_argument("--target", "-t", required=True, help="image whose pose, expression, lighting and background are kept")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp)")
    add_model_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..inference.images import check_output_path, load_image, save_image
    from ._common import load_model, model_config, model_meta

    out = check_output_path(args.output, no_clobber=args.no_clobber)
    size = model_config(args).image_size  # bad inputs are reported before the model is loaded
    source = load_image(args.source, size)
    target = load_image(args.target, size)
    model = load_model(args)
    result = model.swap(source, target)
    save_image(out, result, watermark=args.watermark, meta=model_meta(model, "swap"))
    log.info("wrote %s", out)
    return 0
