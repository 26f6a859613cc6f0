"""``hififace video``: put the source's identity on a face (or all faces) throughout a video; audio and fps kept."""
from __future__ import annotations

import argparse
import logging

from ._common import CONSENT, add_face_args, add_model_args, add_watermark_arg

log = logging.getLogger("hififace")

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

EPILOG = f"""examples:
  hififace video --source me.jpg --target clip.mp4 -o out.mp4                 # the largest face
  hififace video --source me.jpg --target clip.mp4 -o out.mp4 --face 1        # face #1 in the first frame with faces
  hififace video --source me.safetensors --target clip.mov -o out.mov --all-faces

Needs the video extra (pip install 'hififace[video]': imageio-ffmpeg ships its own ffmpeg). Faces are tracked, so
--face and --match follow the same person through the video; frames without that face are passed through. The
output keeps the frame rate, resolution, rotation, audio and container metadata, and is labelled as synthetic in
its 'comment' metadata. It is written to a temporary file and renamed at the end (Ctrl-C leaves nothing behind).
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="swap the source's identity onto faces throughout a video (audio kept)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", "-t", required=True, help="video whose faces are replaced")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv)")
    add_face_args(p, align_passes=0)
    v = p.add_argument_group("video")
    v.add_argument("--frames-per-batch", type=int, default=8, metavar="N",
                   help="frames processed together (default 8)")
    v.add_argument("--smooth", type=float, default=1.0,
                   help="landmark smoothing across frames: 0 = off, 1 = default, higher = steadier (more lag)")
    v.add_argument("--crf", type=int, default=18, help="H.264 quality, 0-51, lower is better (default 18)")
    v.add_argument("--preset", default="medium", choices=PRESETS, help="H.264 encoder speed (default medium)")
    add_model_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..inference.ffmpeg import VIDEO_FORMATS, probe
    from ..inference.images import check_output_path
    from ._common import build_swapper, check_face_args, load_model, model_meta, read_sources

    check_face_args(args)
    if args.frames_per_batch < 1:
        raise HifiFaceError(f"--frames-per-batch {args.frames_per_batch}: use 1 or more")
    if not 0 <= args.crf <= 51:
        raise HifiFaceError(f"--crf {args.crf}: use 0 to 51")
    if args.smooth < 0:
        raise HifiFaceError(f"--smooth {args.smooth:g}: use 0 (off) or more")
    out = check_output_path(args.output, VIDEO_FORMATS, no_clobber=args.no_clobber,
                            inputs={"the target video": args.target})
    info = probe(args.target)  # a bad video is reported before the model loads
    sources = read_sources(args.source)
    match = read_sources([args.match], "--match")[0] if args.match else None
    model = load_model(args)
    swapper = build_swapper(args, model)
    identity = swapper.identity(*sources)
    if args.save_identity:
        swapper.save_identity(args.save_identity, identity, swapper.source_count(*sources))
        log.info("wrote %s", args.save_identity)
    report = swapper.swap_video(identity, info.path, out, face=args.face, all_faces=args.all_faces, match=match,
                                batch_frames=args.frames_per_batch, smooth=args.smooth, crf=args.crf,
                                preset=args.preset, watermark=args.watermark, meta=model_meta(model, "video"))
    w, h = report.size
    if report.coverage is not None:
        log.info("%s: %.0f %% of the face region replaced on average over %d swapped face(s)", out.name,
                 100 * report.coverage, report.faces_swapped)
    log.info("wrote %s: %d frames (%dx%d, %.3g fps%s), faces swapped in %d, %d passed through; %.2f frames/s",
             out, report.frames, w, h, report.fps, ", audio copied" if report.audio else ", no audio",
             report.frames_swapped, report.frames_passed, report.frames_per_second)
    return 0
