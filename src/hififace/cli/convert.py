"""``hififace convert``: weight files users hold -> our model folder, and back to the reference format."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("hififace")

EPILOG = """examples:
  hififace convert hififace_opensouce_299999.ckpt -o weights/hififace-256
  hififace convert standard_model/generator_320000.pth -o weights/xuehy-standard
  hififace convert with_gaze_and_mouth --iteration 190000 -o weights/xuehy-gaze-mouth
  hififace convert --arcface backbone.pth --recon3d epoch_20.pth --bfm BFM_model_front.mat -o weights/init-256
  hififace convert runs/x/last.ckpt -o weights/my-model
  hififace convert weights/hififace-256 --to reference -o hififace_ref.ckpt
  hififace convert --gfpgan GFPGANv1.4.pth -o weights/gfpgan-1.4
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert weight files into a hififace model folder (or back)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", nargs="?", help="reference .ckpt, xuehy generator_<iter>.pth (or its folder with "
                   "--iteration), a 'hififace train' checkpoint, or (with --to) a model folder")
    p.add_argument("--iteration", type=int, metavar="N",
                   help="xuehy model folders: convert its generator_N.pth (as its own loader's folder + iteration)")
    p.add_argument("-o", "--output", required=True, help="output model folder (or .ckpt file with --to reference)")
    p.add_argument("--arcface", help="insightface ArcFace backbone.pth (fresh model from separate files)")
    p.add_argument("--recon3d", help="Deep3DFaceRecon epoch_20.pth (fresh model from separate files)")
    p.add_argument("--bfm", help="BFM_model_front.mat (shape loss in training; with a checkpoint or separate files)")
    p.add_argument("--gfpgan", metavar="FILE",
                   help="GFPGANv1.3.pth / GFPGANv1.4.pth: convert the face restorer into a restorer folder")
    p.add_argument("--size", type=int, default=256, choices=(256, 512), help="image size of a fresh model")
    p.add_argument("--variant", default="reference", choices=("reference", "paper"), help="variant of a fresh model")
    p.add_argument("--seed", type=int, default=0, help="seed of a fresh generator's random initialisation")
    p.add_argument("--frozen-from", metavar="DIR",
                   help="training checkpoints: model folder holding the run's frozen ArcFace/ReconNet (default: recorded)")
    p.add_argument("--no-ema", action="store_true", help="training checkpoints: export the raw generator, not its EMA")
    p.add_argument("--to", choices=("reference",), help="write a model folder as a reference Lightning checkpoint")
    p.add_argument("--allow-random-training-parts", action="store_true",
                   help="with --to reference: write fresh discriminator/LPIPS weights when the folder has none")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..converters import convert as conv

    if args.gfpgan:
        if args.checkpoint or args.arcface or args.recon3d or args.to or args.iteration is not None:
            raise HifiFaceError("--gfpgan converts the restorer on its own: give no checkpoint, --arcface, --recon3d, "
                                "--to or --iteration with it")
        from ..converters.gfpgan import convert_gfpgan

        out = convert_gfpgan(args.gfpgan, args.output, overwrite=args.overwrite)
        log.info("wrote restorer folder %s", out)
        return 0
    if args.iteration is not None and (args.to or not args.checkpoint):
        raise HifiFaceError("--iteration picks generator_N.pth in a xuehy model folder: give that folder as the "
                            "checkpoint (hififace convert FOLDER --iteration N -o OUT)")
    if args.to == "reference":
        from ..converters.reference import export_reference_checkpoint

        if not args.checkpoint:
            raise HifiFaceError("--to reference needs the model folder to export as first argument")
        out = export_reference_checkpoint(args.checkpoint, args.output, args.allow_random_training_parts)
        log.info("wrote reference checkpoint %s", out)
        return 0
    if args.checkpoint and (args.arcface or args.recon3d):
        raise HifiFaceError("give either a checkpoint or --arcface/--recon3d files, not both")
    if args.checkpoint:
        out = conv.convert_checkpoint(args.checkpoint, args.output, overwrite=args.overwrite,
                                      frozen_from=args.frozen_from, use_ema=not args.no_ema, iteration=args.iteration,
                                      bfm=args.bfm)
    elif args.arcface or args.recon3d:
        out = conv.convert_separate_files(args.output, args.arcface, args.recon3d, args.bfm, args.size, args.variant,
                                          args.seed, overwrite=args.overwrite)
    else:
        raise HifiFaceError("nothing to convert: give a checkpoint, or --arcface backbone.pth --recon3d epoch_20.pth, "
                            "or --gfpgan GFPGANv1.4.pth")
    log.info("wrote model folder %s", out)
    return 0
