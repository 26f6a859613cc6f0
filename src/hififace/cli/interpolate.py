"""``hififace interpolate``: morph the identity from one source to another on a target (21-frame GIF or MP4)."""
from __future__ import annotations

import argparse
import logging

from ._common import CONSENT, add_model_args, add_watermark_arg

log = logging.getLogger("hififace")

EPILOG = f"""examples:
  hififace interpolate --source a.png --source2 c.png --target b.png --mode all -o out.gif
  hififace interpolate --source a.png --target b.png --mode identity -o out.mp4   # needs hififace[video]

As the reference: 21 frames with rate i/20 (rate 1 = --source, rate 0 = --source2), 300 ms per frame,
looping. Modes: identity (ArcFace embedding), 3d (3DMM shape), all (both). --source2 defaults to the target.
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("interpolate", help="identity interpolation between two sources on a target (GIF/MP4)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", "-s", required=True, help="first source face (rate 1)")
    p.add_argument("--source2", help="second source face (rate 0; default: the target)")
    p.add_argument("--target", "-t", required=True, help="target face")
    p.add_argument("--mode", default="all", choices=("identity", "3d", "all"), help="what is interpolated (default all)")
    p.add_argument("-o", "--output", required=True, help="output animation (.gif, or .mp4 with hififace[video])")
    p.add_argument("--frames", type=int, default=21, help="number of frames (default 21, as the reference)")
    p.add_argument("--frame-ms", type=int, default=300, help="milliseconds per frame (default 300)")
    add_model_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..inference.interpolate import interpolation_frames
    from ..media.images import read_crop
    from ..media.video import check_animation_path, write_animation
    from ..provenance.label import output_label
    from ._common import load_model, model_config, progress

    out = check_animation_path(args.output, no_clobber=args.no_clobber)
    if not 2 <= args.frames <= 1000:
        raise HifiFaceError(f"--frames {args.frames}: use between 2 and 1000")
    if not 10 <= args.frame_ms <= 60_000:
        raise HifiFaceError(f"--frame-ms {args.frame_ms}: use between 10 and 60000")
    size = model_config(args).image_size
    source = read_crop(args.source, size)
    target = read_crop(args.target, size)
    source2 = read_crop(args.source2, size) if args.source2 else target  # as the reference
    model = load_model(args)
    with progress(args.frames, "interpolate") as bar:
        frames = interpolation_frames(model, source, source2, target, args.mode, args.frames, progress=bar.update)
    write_animation(out, frames, frame_ms=args.frame_ms, watermark=args.watermark,
                    meta=output_label("interpolate", model, mode=args.mode))
    log.info("wrote %s (%d frames, mode %s)", out, len(frames), args.mode)
    return 0
