"""``hififace video``: put the source's identity on a face (or all faces) throughout a video; audio and fps kept."""
from __future__ import annotations

import argparse
import logging

from ..media.limits import MAX_FRAME_PIXELS, MAX_FRAMES, MAX_SECONDS
from ._common import CONSENT, add_face_args, add_model_args, add_report_arg, add_watermark_arg

log = logging.getLogger("hififace")

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")

EPILOG = f"""examples:
  hififace video --source me.jpg --target clip.mp4 -o out.mp4                 # the largest face
  hififace video --source me.jpg --target clip.mp4 -o out.mp4 --face 1        # face #1 in the first frame with faces
  hififace video --source me.safetensors --target clip.mov -o out.mov --all-faces
  hififace video --source me.jpg --target clip.mp4 -o out.mp4 --keep-mouth --report out.json  # flicker, flagged frames
  hififace video --source front.jpg --source left.jpg --target clip.mp4 -o out.mp4 --source-weighting pose

Needs the video extra (pip install 'hififace[video]': imageio-ffmpeg ships its own ffmpeg). Faces are tracked, so
--face and --match follow the same person through the video; frames without that face are passed through. The
output keeps the frame rate, resolution, rotation, audio and container metadata, and is labelled as synthetic in
its 'comment' metadata. It is written to a temporary file and renamed at the end (Ctrl-C or SIGTERM leaves nothing
behind). Videos over the limits (frame size, frame count, length) are refused before decoding; raise them with
--max-frame-pixels, --max-frames, --max-seconds (0 = no limit).
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("video", help="swap the source's identity onto faces throughout a video (audio kept)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", "-t", required=True, help="video whose faces are replaced")
    p.add_argument("-o", "--output", required=True, help="output video (.mp4, .mov, .mkv)")
    add_face_args(p, align_passes=0)
    add_report_arg(p)
    v = p.add_argument_group("video")
    v.add_argument("--frames-per-batch", type=int, default=8, metavar="N",
                   help="frames processed together (default 8)")
    v.add_argument("--smooth", type=float, default=1.0,
                   help="landmark smoothing across frames: 0 = off, 1 = default, higher = steadier (more lag)")
    v.add_argument("--crf", type=int, default=18, help="H.264 quality, 0-51, lower is better (default 18)")
    v.add_argument("--preset", default="medium", choices=PRESETS, help="H.264 encoder speed (default medium)")
    add_limit_args(p)
    add_model_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def add_limit_args(p: argparse.ArgumentParser) -> None:
    """The caps on input videos (``video`` and ``app``): see :class:`hififace.media.video.VideoLimits`."""
    g = p.add_argument_group("video limits (checked before decoding; 0 = no limit)")
    g.add_argument("--max-frame-pixels", type=int, default=MAX_FRAME_PIXELS, metavar="N",
                   help=f"largest frame, in pixels (default {MAX_FRAME_PIXELS:,} = 4096x4096: every 4K format)")
    g.add_argument("--max-frames", type=int, default=MAX_FRAMES, metavar="N",
                   help=f"most frames (default {MAX_FRAMES:,}: an hour at 60 fps)")
    g.add_argument("--max-seconds", type=float, default=MAX_SECONDS, metavar="S",
                   help=f"longest video, in seconds (default {MAX_SECONDS:g}: an hour)")


def video_limits(args: argparse.Namespace):
    """The :class:`~hififace.media.video.VideoLimits` of :func:`add_limit_args`; a negative value is refused."""
    from ..errors import HifiFaceError
    from ..media.video import VideoLimits

    for option in ("max_frame_pixels", "max_frames", "max_seconds"):
        value = getattr(args, option)
        if value < 0:
            raise HifiFaceError(f"--{option.replace('_', '-')} {value:g}: use 0 (no limit) or more")
    return VideoLimits(args.max_frame_pixels, args.max_frames, args.max_seconds)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..media.video import VIDEO_FORMATS, probe
    from ..media.images import check_output_path
    from ..inference.video import swap_video
    from ..provenance.label import output_label
    from ._common import build_swapper, check_face_args, load_model, read_sources, start_report

    check_face_args(args)
    if args.frames_per_batch < 1:
        raise HifiFaceError(f"--frames-per-batch {args.frames_per_batch}: use 1 or more")
    if not 0 <= args.crf <= 51:
        raise HifiFaceError(f"--crf {args.crf}: use 0 to 51")
    if args.smooth < 0:
        raise HifiFaceError(f"--smooth {args.smooth:g}: use 0 (off) or more")
    limits = video_limits(args)
    out = check_output_path(args.output, VIDEO_FORMATS, no_clobber=args.no_clobber,
                            inputs={"the target video": args.target})
    info = probe(args.target, limits.max_frame_pixels)  # a bad or too large video is reported before the model loads
    limits.check(info)
    sources = read_sources(args.source)
    match = read_sources([args.match], "--match")[0] if args.match else None
    model = load_model(args)
    onnx_hint(args, model)
    swapper = build_swapper(args, model)
    identity = swapper.source(*sources)  # the mean, or pose-weighted sources kept apart
    if args.save_identity:
        swapper.save_identity(args.save_identity, swapper.identity(*sources), swapper.source_count(*sources))
        log.info("wrote %s", args.save_identity)
    finish = start_report(args, swapper, sources, identity, "video", fps=info.fps)
    report = swap_video(swapper, identity, info.path, out, face=args.face, all_faces=args.all_faces, match=match,
                        batch_frames=args.frames_per_batch, smooth=args.smooth, crf=args.crf,
                        preset=args.preset, watermark=args.watermark, meta=output_label("video", model, **swapper.label()),
                        max_frame_pixels=limits.max_frame_pixels, max_frames=limits.max_frames,
                        max_seconds=limits.max_seconds)
    w, h = report.size
    if report.coverage is not None:
        log.info("%s: %.0f %% of the face region replaced on average over %d swapped face(s)", out.name,
                 100 * report.coverage, report.faces_swapped)
    log.info("wrote %s: %d frames (%dx%d, %.3g fps%s), faces swapped in %d, %d passed through; %.2f frames/s",
             out, report.frames, w, h, report.fps, ", audio copied" if report.audio else ", no audio",
             report.frames_swapped, report.frames_passed, report.frames_per_second)
    if finish is not None:
        finish(out, info.path)
    return 0


def onnx_hint(args: argparse.Namespace, model) -> None:
    """Say once when ``--engine onnx`` would be faster. The rule (benchmarks/README.md: onnxruntime was not slower
    than PyTorch eager in any CPU case measured, about 1.4x faster at one thread): PyTorch eager in fp32 on the CPU,
    onnxruntime installed and the model folder holding its ONNX export (``<weights>/onnx``, from 'hififace export
    onnx'). Nothing is timed at run time."""
    if (getattr(args, "engine", "torch") != "torch" or getattr(args, "compile", False)
            or getattr(args, "dtype", "fp32") != "fp32" or getattr(getattr(model, "device", None), "type", "") != "cpu"):
        return
    import importlib.util

    try:
        if importlib.util.find_spec("onnxruntime") is None:
            return
    except (ImportError, ValueError):
        return
    from ..export.graphs import GRAPHS, ONNX_DIR
    from ..weights.resolve import resolve_model_dir

    folder = resolve_model_dir(getattr(args, "weights", None)) / ONNX_DIR
    if all((folder / spec.file).is_file() for spec in GRAPHS):
        log.info("hint: add --engine onnx to run onnxruntime on %s: about 1.4x faster than PyTorch on a CPU "
                 "(benchmarks/README.md)", folder)
