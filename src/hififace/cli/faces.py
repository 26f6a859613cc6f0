"""``hififace faces``: detect faces in a photo and show them (boxes, scores, 5 landmarks, numbered left to right).

The numbers are the ones ``hififace swap --face N`` and ``hififace video --face N`` take.
"""
from __future__ import annotations

import argparse
import json
import logging

from ._common import add_detector_args

log = logging.getLogger("hififace")

EPILOG = """examples:
  hififace faces photo.jpg -o preview.png
  hififace faces photo.jpg --json
  hififace faces photo.jpg --detector scrfd --detector-model det_10g.onnx -o preview.png
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("faces", help="detect faces in a photo; print them and draw a numbered preview",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="photo to look at")
    p.add_argument("-o", "--output", help="write a preview image (.png, .jpg, .webp) with boxes, scores and landmarks")
    add_detector_args(p)
    p.add_argument("--refine", action="store_true", help="refine landmarks by re-detecting on aligned crops")
    p.add_argument("--landmarks68", default="none", help="also 68 points: auto, recon, dlib, mediapipe or none (default)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..face.cropper import FaceCropper
    from ..face.landmarks import get_landmarker
    from ..media.images import check_output_path, read_photo, write_image

    from ._common import check_threshold

    check_threshold(args.threshold)
    if args.output:  # before any work: an output we cannot write is one error line, not a traceback at the end
        check_output_path(args.output)
    image = read_photo(args.image).rgb
    cropper = FaceCropper(args.detector, threshold=args.threshold, detector_model=args.detector_model,
                          refine_passes=2 if args.refine else 0, landmarker=get_landmarker(args.landmarks68))
    faces = cropper.detect(image)
    if args.json:
        print(json.dumps({"image": str(args.image), "size": [int(image.shape[1]), int(image.shape[0])],
                          "faces": [dict(index=i, **f.to_dict()) for i, f in enumerate(faces)]}, indent=2))
    else:
        print(f"{args.image}: {image.shape[1]}x{image.shape[0]}, {len(faces)} face(s), numbered left to right")
        for i, f in enumerate(faces):
            x1, y1, x2, y2 = (float(v) for v in f.box)
            print(f"  #{i}  score {f.score:.3f}  box x={x1:.0f} y={y1:.0f} w={x2 - x1:.0f} h={y2 - y1:.0f}")
        if len(faces) > 1:
            print("pick one with 'hififace swap --face N' (or 'hififace video --face N'); "
                  + ("the preview shows the numbers" if args.output else "-o preview.png draws the numbers"))
    if args.output:
        from ..face.draw import draw_faces

        write_image(args.output, draw_faces(image, faces), labelled=False)
        log.info("wrote %s", args.output)
    return 0
