"""``hififace enhance``: restore the faces of photos with a face restorer (GFPGAN, or an ONNX restorer), no swap."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import HifiFaceError, InputImageError
from ..face.cropper import FaceCropper
from ..inference.enhance import FaceEnhancer, as_restorer, enhance_photo
from ..inference.pipeline import DEFAULT_MIN_FACE
from ..media.images import check_output_path, read_photo, write_image, write_photo
from ..provenance.label import output_label
from ._common import (CONSENT, VIDEOS, add_detector_args, add_enhance_args, add_watermark_arg, check_detector_args,
                      check_enhance_args, pick_device, progress)
from .swap import _names, plan_folder

log = logging.getLogger("hififace")

EPILOG = f"""examples:
  hififace convert --gfpgan GFPGANv1.4.pth -o weights/gfpgan-1.4            # once
  hififace enhance photo.jpg -o restored.jpg --enhance weights/gfpgan-1.4    # every face of the photo
  hififace enhance crop512.png -o restored.png --enhance codeformer.onnx     # an aligned 512x512 crop, whole
  hififace enhance photos/ -o restored/ --enhance gpen_bfr_512.onnx --enhance-blend 0.7

Every face found is aligned to the restorer's template (FFHQ 512 five points), restored and pasted back with a
soft mask; pixels outside the faces keep their exact values. An image of exactly 512x512 is taken as an aligned
FFHQ crop and restored whole (--aligned / --detect force either path). The output keeps the photo's size,
orientation, colour mode and metadata and is labelled as altered (synthetic) in its metadata.
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enhance", help="restore the faces of photos with a face restorer (GFPGAN, ONNX), no swap",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("photos", nargs="+", metavar="PHOTO", help="photo(s), aligned 512x512 crop(s), or a folder")
    p.add_argument("-o", "--output", required=True,
                   help="output image (.png, .jpg, .webp); a folder for several photos or a folder of photos")
    path = p.add_mutually_exclusive_group()
    path.add_argument("--aligned", action="store_true", help="take every input as an aligned FFHQ crop (no detection)")
    path.add_argument("--detect", action="store_true", help="detect faces even in 512x512 images")
    g = p.add_argument_group("faces")
    g.add_argument("--min-face", type=float, default=DEFAULT_MIN_FACE, metavar="PX",
                   help=f"leave faces smaller than this alone (default {DEFAULT_MIN_FACE} px)")
    add_detector_args(g)
    g.add_argument("--align-passes", type=int, default=2, metavar="N",
                   help="landmark refinement passes before aligning (default 2)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    add_enhance_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_enhance_args(args, required=True)
    check_detector_args(args)
    if args.min_face < 0:
        raise HifiFaceError(f"--min-face {args.min_face:g}: use 0 or more pixels")
    if args.align_passes < 0:
        raise HifiFaceError(f"--align-passes {args.align_passes}: use 0 or more")
    aligned = True if args.aligned else False if args.detect else None
    inputs = [Path(p) for p in args.photos]
    for p in inputs:
        if p.suffix.lower() in VIDEOS:
            raise HifiFaceError(f"{p}: is a video; 'hififace enhance' restores photos (use 'hififace video ... "
                                f"--enhance' to restore swapped faces in a video)")
    out = Path(args.output)
    if len(inputs) == 1 and not inputs[0].is_dir():  # one photo -> one file, checked before any work
        jobs = [(inputs[0], check_output_path(out, no_clobber=args.no_clobber, inputs={"the input photo": inputs[0]}))]
        photos = {inputs[0]: read_photo(inputs[0])}
    else:
        jobs = []
        for p in inputs:
            if p.is_dir():
                jobs += plan_folder(p, out, args.no_clobber)
            elif not p.is_file():
                raise InputImageError(f"{p}: not found; check the path")
            else:
                if out.exists() and not out.is_dir():
                    raise HifiFaceError(f"{out}: is a file; with several photos, -o must be a folder")
                jobs.append((p, check_output_path(out / p.name, no_clobber=args.no_clobber)))
        photos = {}

    device = pick_device(args.device)
    enhancer = FaceEnhancer(as_restorer(args.enhance, device), args.enhance_blend)
    detector = None
    if aligned is not True:
        detector = FaceCropper(args.detector, refine_passes=args.align_passes, threshold=args.threshold,
                               detector_model=args.detector_model)
    meta = output_label("enhance", None, **enhancer.label())

    def one(src: Path, dst: Path) -> str:
        photo = photos.get(src) or read_photo(src)
        result = enhance_photo(enhancer, photo.rgb, detector, aligned, args.min_face, name=src)
        if result.aligned:
            write_image(dst, result.image, watermark=args.watermark, meta=meta)
            return "aligned crop, restored whole"
        if not result.faces:
            raise InputImageError(f"{src}: no face found; check the photo (faces smaller than about 10 px or turned "
                                  f"far away are not detected), or give --aligned for an aligned crop")
        if not result.restored:
            raise InputImageError(f"{src}: no face of at least {args.min_face:g} px; lower --min-face to restore it")
        write_photo(dst, photo, result.image, result.changed, meta=meta, watermark=args.watermark)
        return f"{len(result.restored)} of {len(result.faces)} face(s) restored"

    if len(jobs) == 1 and photos:
        src, dst = jobs[0]
        log.info("wrote %s (%s)", dst, one(src, dst))
        return 0
    failed: list[str] = []
    with progress(len(jobs), "enhance") as bar:
        for src, dst in jobs:
            try:
                one(src, dst)
            except HifiFaceError as err:
                log.warning("%s", err)
                failed.append(src.name)
            bar.update(1)
    log.info("wrote %d of %d image(s) to %s", len(jobs) - len(failed), len(jobs), out)
    if failed:
        raise HifiFaceError(f"{out}: {len(failed)} of {len(jobs)} image(s) not restored ({_names(failed)}); the "
                            f"reasons are listed above")
    return 0
