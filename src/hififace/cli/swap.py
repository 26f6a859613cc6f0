"""``hififace swap``: put the source's identity on face(s) of a target photo, a folder of photos, or an aligned crop."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ._common import CONSENT, VIDEOS, add_face_args, add_model_args, add_report_arg, add_watermark_arg

log = logging.getLogger("hififace")

EPILOG = f"""examples:
  hififace swap --source me.jpg --target group.jpg -o out.jpg                # the largest face
  hififace swap --source me.jpg --source me2.jpg --target t.jpg -o out.jpg  # identity averaged over sources
  hififace swap --source me.jpg --target t.jpg --face 1 -o out.jpg          # face #1 of 'hififace faces t.jpg'
  hififace swap --source me.jpg --target t.jpg --all-faces -o out.png
  hififace swap --source me.jpg --target t.jpg --match ref.jpg -o out.jpg   # the face most like ref.jpg
  hififace swap --source me.jpg --target photos/ -o out_dir/                # every photo of a folder
  hififace swap --source me.jpg --source me2.jpg --save-identity me.safetensors
  hififace swap --source a.png --target b.png -o out.png --weights weights/hififace-256
  hififace swap --source me.jpg --target t.jpg -o out.jpg --keep-mouth --report out.json
  hififace swap --source me.jpg --target t.jpg -o out.jpg --identity-strength 0.7 --shape-strength 0
  hififace swap --source front.jpg --source profile.jpg --target t.jpg -o out.jpg --source-weighting pose

A target of exactly the model's size (e.g. 256x256) is taken as an aligned face crop and swapped as it is; any
other photo goes through detection, alignment and paste-back (--aligned / --detect force either path). The output
keeps the photo's size, orientation, colour mode and metadata; its format follows the extension of -o.
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("swap", help="swap the source's identity onto faces in a photo, a folder of photos or a crop",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", "-t", help="photo, aligned crop, or folder of photos whose faces are replaced")
    p.add_argument("-o", "--output", help="output image (.png, .jpg, .webp), or a folder when --target is a folder")
    path = p.add_mutually_exclusive_group()
    path.add_argument("--aligned", action="store_true", help="take every input as an aligned crop (no detection)")
    path.add_argument("--detect", action="store_true", help="detect faces even in model-size images")
    add_face_args(p, align_passes=2)
    add_report_arg(p)
    add_model_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..media.images import check_output_path, read_photo
    from ..provenance.label import output_label
    from ._common import build_swapper, check_face_args, load_model, read_sources, start_report

    check_face_args(args)
    if not args.target and not args.save_identity:
        raise HifiFaceError("give --target and -o (or only --save-identity FILE to save the source identity)")
    if bool(args.target) != bool(args.output):
        raise HifiFaceError("--target and -o/--output go together: give both")
    aligned = True if args.aligned else False if args.detect else None
    # every input is checked before the model loads
    target = Path(args.target) if args.target else None
    if target is not None and target.suffix.lower() in VIDEOS:
        raise HifiFaceError(f"{target}: is a video; use 'hififace video --source ... --target {target} -o out.mp4'")
    folder = target is not None and target.is_dir()
    if args.report and (folder or target is None):
        raise HifiFaceError(f"--report {args.report}: reports one output photo; give one --target photo (not a folder)")
    if folder:
        jobs = plan_folder(target, Path(args.output), args.no_clobber)
    elif target is not None:
        out = check_output_path(args.output, no_clobber=args.no_clobber, inputs={"the target photo": target})
        photo = read_photo(target)
    sources = read_sources(args.source)
    match = read_sources([args.match], "--match")[0] if args.match else None

    model = load_model(args)
    swapper = build_swapper(args, model)
    identity = swapper.source(*sources, aligned=aligned)  # the mean, or pose-weighted sources kept apart
    if match is not None:  # a reference photo without a face is one error here, not one per target photo
        match = swapper.match_identity(match)
    if args.save_identity:
        swapper.save_identity(args.save_identity, swapper.identity(*sources, aligned=aligned),
                              swapper.source_count(*sources))
        log.info("wrote %s (identity of %d source photo(s))", args.save_identity, swapper.source_count(*sources))
    if target is None:
        return 0
    options = dict(face=args.face, all_faces=args.all_faces, match=match, aligned=aligned, watermark=args.watermark,
                   meta=output_label("swap", model, **swapper.label()))
    if not folder:
        finish = start_report(args, swapper, sources, identity, "photo", aligned=aligned)
        result = swapper.swap_file(identity, photo, out, **options)
        what = "aligned crop" if result.aligned else f"{len(result.swapped)} of {len(result.faces)} face(s) swapped"
        if not result.aligned:
            log.info("%s: share of the face region replaced: %s", out.name, result.replaced())
        log.info("wrote %s (%s)", out, what)
        if finish is not None:
            finish(out, target)
        return 0
    return swap_folder(swapper, identity, target, jobs, options)


def plan_folder(folder: Path, out_dir: Path, no_clobber: bool = False) -> list[tuple[Path, Path]]:
    """(input, output) pairs for the photos in ``folder``; other files are skipped and listed."""
    from ..errors import HifiFaceError, InputImageError
    from ..media.images import IMAGE_EXTENSIONS, OUTPUT_FORMATS, check_output_path

    if out_dir.exists() and not out_dir.is_dir():
        raise HifiFaceError(f"{out_dir}: is a file; with a folder as --target, -o must be a folder")
    if out_dir.resolve() == folder.resolve():
        raise HifiFaceError(f"{out_dir}: is the input folder; write the results into another folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
    others = [p.name for p in files if p.suffix.lower() not in IMAGE_EXTENSIONS]
    if not out_dir.exists() and out_dir.suffix.lower() in (*IMAGE_EXTENSIONS, *OUTPUT_FORMATS, *VIDEOS) and images:
        raise HifiFaceError(f"{out_dir}: looks like a file name, but --target {folder} is a folder, so -o must be a "
                            f"folder for its results; give a folder name (e.g. -o {out_dir.with_suffix('')}/)")
    if others:
        log.warning("%s: skipping %d file(s) that are not images: %s", folder, len(others), _names(others))
    if not images:
        raise InputImageError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    jobs, taken = [], set()
    for p in images:
        name = p.name if p.suffix.lower() in OUTPUT_FORMATS else p.stem + ".png"  # .bmp/.tif are written as PNG
        if name.lower() in taken:
            name = p.name + ".png"
        taken.add(name.lower())
        jobs.append((p, check_output_path(out_dir / name, no_clobber=no_clobber)))
    return jobs


def swap_folder(swapper, identity, folder: Path, jobs: list[tuple[Path, Path]], options: dict) -> int:
    from ..errors import HifiFaceError
    from ._common import progress

    failed: list[str] = []
    with progress(len(jobs), "swap") as bar:
        for src, dst in jobs:
            try:
                swapper.swap_file(identity, src, dst, **options)
            except HifiFaceError as err:
                log.warning("%s", err)
                failed.append(src.name)
            bar.update(1)
    log.info("wrote %d of %d image(s) to %s", len(jobs) - len(failed), len(jobs), jobs[0][1].parent)
    if failed:
        raise HifiFaceError(f"{folder}: {len(failed)} of {len(jobs)} image(s) not swapped ({_names(failed)}); "
                            f"the reasons are listed above")
    return 0


def _names(names: list[str], limit: int = 8) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more

