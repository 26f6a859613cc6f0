"""``hififace grid``: every source face on every target face, one labelled image."""
from __future__ import annotations

import argparse
import logging

from ._common import CONSENT, add_enhance_args, add_look_args, add_model_args, add_watermark_arg

log = logging.getLogger("hififace")

EPILOG = f"""examples:
  hififace grid faces/ -o grid.png --weights weights/hififace-256
  hififace grid sources/ --targets targets/ -o grid.jpg --cell-size 128

Row i, column j holds source i swapped onto target j; the first row shows the targets and the first column
the sources, captioned with their file names. Each source identity is encoded once.
{CONSENT}
"""

MAX_FACES_WARN = 32


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="every source x every target in one labelled image",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("faces", metavar="FACES_DIR", help="folder of aligned face crops (sources, and targets unless --targets)")
    p.add_argument("--targets", metavar="DIR", help="folder of target faces (default: FACES_DIR)")
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .webp)")
    p.add_argument("--cell-size", type=int, default=None, help="side of each image in the grid (default: model size)")
    p.add_argument("--batch-size", type=int, default=4, help="targets swapped per forward pass (default 4)")
    add_look_args(p)
    add_model_args(p)
    add_enhance_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..inference.grid import make_grid, swap_grid
    from ..media.images import check_output_path, list_images, read_crop, write_image
    from ..provenance.label import output_label
    from ._common import check_enhance_args, check_look_args, load_enhancer, load_model, model_config, progress

    out = check_output_path(args.output, no_clobber=args.no_clobber)
    check_enhance_args(args)
    if args.cell_size is not None and not 16 <= args.cell_size <= 1024:
        raise HifiFaceError(f"--cell-size {args.cell_size}: use a side between 16 and 1024")
    if args.batch_size < 1:
        raise HifiFaceError(f"--batch-size {args.batch_size}: use 1 or more")
    check_look_args(args)
    size = model_config(args).image_size
    source_files = list_images(args.faces)
    target_files = list_images(args.targets) if args.targets else source_files
    if max(len(source_files), len(target_files)) > MAX_FACES_WARN:
        log.warning("%d sources x %d targets: a large grid (%d swaps)", len(source_files), len(target_files),
                    len(source_files) * len(target_files))
    sources = [read_crop(f, size) for f in source_files]
    targets = sources if target_files is source_files else [read_crop(f, size) for f in target_files]
    model = load_model(args)
    enhancer = load_enhancer(args, model.device)
    with progress(len(sources) * len(targets), "grid") as bar:
        results = swap_grid(model, sources, targets, args.batch_size, progress=bar.update, keep_mouth=args.keep_mouth,
                            keep_lips=args.keep_lips, identity_strength=args.identity_strength,
                            shape_strength=args.shape_strength, enhancer=enhancer)
    canvas = make_grid([f.stem for f in source_files], sources, [f.stem for f in target_files], targets, results,
                       cell=args.cell_size or size)
    write_image(out, canvas, watermark=args.watermark,
               meta=output_label("grid", model, sources=str(len(sources)), targets=str(len(targets)),
                                **(enhancer.label() if enhancer is not None else {})))
    log.info("wrote %s (%d sources x %d targets)", out, len(sources), len(targets))
    return 0
