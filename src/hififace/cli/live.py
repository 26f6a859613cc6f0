"""``hififace live``: swap faces in real time, from a camera, a video file or a network stream, to a window, a virtual
camera, an MP4 file or an MJPEG stream in the browser."""
from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import HifiFaceError
from ..media.limits import MAX_FRAME_PIXELS
from ..provenance.label import output_label
from ..provenance.outputs import FrameMarker
from ._common import CONSENT, add_face_args, add_provenance_args, add_model_args, build_swapper, check_face_args, load_model, read_sources
from .app import LOCALHOST

log = logging.getLogger("hififace")

DEFAULT_PORT = 8765
#: Seconds between status lines in the log when stderr is not a terminal.
STATUS_EVERY = 10.0

EPILOG = f"""examples:
  hififace live --source me.jpg --camera 0 --output window         # keys: q quit, space pause, o overlay
  hififace live --source me.jpg --input clip.mp4 --output http     # then open http://127.0.0.1:{DEFAULT_PORT}/
  hififace live --source me.safetensors --camera 0 --output virtual --output rec.mp4
  hififace live --source me.jpg --input rtsp://192.168.1.20/stream --output http --host 0.0.0.0

Every live output carries a small visible 'AI-generated' mark in the bottom-right corner (live pictures have no
metadata to hold a label); --no-visible-mark removes it and says so. The MP4 file is labelled in its metadata too,
and Ctrl-C leaves it complete and playable. Frames are never queued: the newest one is swapped, older ones are
dropped, so the delay stays short however slow the machine (a CPU manages 1-2 frames/s; see docs/cli.md).
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("live", help="swap faces in real time from a camera, a video file or a stream",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (one of)").add_mutually_exclusive_group()
    src.add_argument("--camera", type=int, metavar="N", help="OpenCV camera number (default 0)")
    src.add_argument("--input", "-i", metavar="FILE|URL",
                     help="a video file (played in real time) or a network stream (rtsp://, rtmp://, http://, ...)")
    g = p.add_argument_group("input options")
    g.add_argument("--loop", action="store_true", help="play a video file again and again (Ctrl-C stops)")
    g.add_argument("--size", metavar="WxH", help="frame size to ask of the camera, e.g. 1280x720")
    g.add_argument("--reconnect", type=int, default=5, metavar="N",
                   help="reconnection attempts when a stream stalls or ends (default 5; 0 = stop at once)")
    g.add_argument("--max-frame-pixels", type=int, default=MAX_FRAME_PIXELS, metavar="N",
                   help=f"largest input frame, in pixels (default {MAX_FRAME_PIXELS:,}; 0 = no limit)")
    o = p.add_argument_group("output")
    o.add_argument("--output", "-o", action="append", metavar="WHERE",
                   help="window (default), virtual (a virtual camera: pip install 'hififace[live]'), http (an MJPEG "
                        "stream and a page on http://HOST:PORT/) or FILE.mp4/.mov/.mkv; repeat for several")
    o.add_argument("--host", default=LOCALHOST,
                   help=f"address the http output listens on (default {LOCALHOST}: this machine only)")
    o.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port of the http output (default {DEFAULT_PORT})")
    o.add_argument("--no-visible-mark", action="store_true",
                   help="leave out the visible 'AI-generated' mark (the live output is then unlabelled)")
    o.add_argument("--overlay", action="store_true", help="draw fps and latency in the top-left corner ('o' toggles)")
    o.add_argument("--no-clobber", action="store_true", help="refuse to replace an existing output file")
    add_provenance_args(p)
    add_face_args(p, align_passes=0)
    v = p.add_argument_group("live")
    v.add_argument("--detect-every", type=int, default=5, metavar="N",
                   help="detect faces in the whole frame every N frames (default 5); in between each face is "
                        "followed near where it was, and a face lost is looked for in the whole frame at once")
    v.add_argument("--smooth", type=float, default=1.0,
                   help="landmark smoothing: 0 = off, 1 = default, higher = steadier (more lag)")
    add_model_args(p)
    p.set_defaults(func=run)


def _live() -> Any:
    """The live room, imported when the command runs (it pulls the video pipeline in; ``hififace --help`` stays
    fast)."""
    from ..live import outputs, overlay, swapper  # noqa: F401 (loaded: the package then offers them as attributes)

    return sys.modules[f"{__package__.rpartition('.')[0]}.live"]


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*", text)
    if not m or not (16 <= int(m.group(1)) <= 8192 and 16 <= int(m.group(2)) <= 8192):
        raise HifiFaceError(f"--size {text}: give the camera's frame size as WIDTHxHEIGHT, e.g. 1280x720")
    return int(m.group(1)), int(m.group(2))


def plan_outputs(args: argparse.Namespace) -> list[tuple[str, Any]]:
    """(kind, detail) of each ``--output``, checked before any work: window, virtual, http or a video file."""
    VIDEO_FORMATS, check_output_path = _live().swapper.VIDEO_FORMATS, _live().swapper.check_output_path
    plan: list[tuple[str, Any]] = []
    inputs = {"the input video": args.input} if args.input and not _is_url(args.input) else None
    for item in args.output or ["window"]:
        kind = item.strip().lower()
        if kind in ("window", "virtual", "http"):
            entry: tuple[str, Any] = (kind, None)
        elif Path(item).suffix.lower() in VIDEO_FORMATS:
            entry = ("file", check_output_path(item, VIDEO_FORMATS, no_clobber=args.no_clobber, inputs=inputs))
        else:
            raise HifiFaceError(f"--output {item}: use window, virtual, http or a video file name "
                                f"({', '.join(VIDEO_FORMATS)})")
        if entry in plan:
            raise HifiFaceError(f"--output {item} is given twice")
        plan.append(entry)
    return plan


def _is_url(text: str) -> bool:
    return _live().capture.is_stream_url(text)


def open_outputs(plan: list[tuple[str, Any]], args: argparse.Namespace, fps: float) -> list[Any]:
    """The outputs of ``plan``: the window, the server socket and pyvirtualcam are checked now (one line each when
    missing), before the model loads; files and the virtual camera open with the first frame (its size)."""
    out = _live().outputs
    outputs: list[Any] = []
    try:
        for kind, detail in plan:
            if kind == "window":
                outputs.append(out.WindowOutput())
            elif kind == "virtual":
                outputs.append(out.VirtualCamera(fps))
            elif kind == "http":
                if not out.is_loopback(args.host):
                    log.warning("listening on %s: anyone who can reach this machine on port %d can watch the stream",
                                args.host, args.port)
                outputs.append(out.MjpegServer(args.host, args.port))
            else:
                outputs.append(out.VideoFileOutput(detail, fps))
    except BaseException:
        _close_quietly(outputs)
        raise
    return outputs


def _close_quietly(outputs: list[Any]) -> None:
    for out in outputs:
        try:
            out.close()
        except Exception:  # closing after another error: that error says more
            log.debug("closing %s failed", getattr(out, "name", out), exc_info=True)


def open_input(args: argparse.Namespace):
    """The source and how to open it again (``--loop``, reconnecting), checked before the model loads."""
    capture, swapper = _live().capture, _live().swapper
    limit = args.max_frame_pixels or None
    if args.input is None:
        index = 0 if args.camera is None else args.camera
        if index < 0:
            raise HifiFaceError(f"--camera {index}: cameras are numbered from 0")
        return capture.open_camera(index, parse_size(args.size), max_pixels=limit), None
    if args.size:
        raise HifiFaceError("--size applies to cameras; a file or stream keeps its own frame size")
    if capture.is_stream_url(args.input):
        url = args.input
        return capture.open_stream(url, limit), lambda: capture.open_stream(url, limit)
    if args.input.isdigit():
        raise HifiFaceError(f"--input {args.input}: for a camera use --camera {args.input}")
    return swapper.open_video_file(args.input, limit)


def run(args: argparse.Namespace) -> int:
    live = _live()
    check_face_args(args)
    if args.detect_every < 1:
        raise HifiFaceError(f"--detect-every {args.detect_every}: use 1 (every frame) or more")
    if args.smooth < 0:
        raise HifiFaceError(f"--smooth {args.smooth:g}: use 0 (off) or more")
    if not 1 <= args.port <= 65535:
        raise HifiFaceError(f"--port {args.port}: use 1 to 65535")
    if args.reconnect < 0 or args.max_frame_pixels < 0:
        raise HifiFaceError("--reconnect and --max-frame-pixels take 0 or more")
    if args.loop and (args.input is None or _is_url(args.input)):
        raise HifiFaceError("--loop applies to a video file (--input FILE)")
    plan = plan_outputs(args)
    sources = read_sources(args.source)
    match = read_sources([args.match], "--match")[0] if args.match else None
    # a missing camera, a bad file, a headless OpenCV, a port in use: one line each, before the model loads
    source, reopen = open_input(args)
    outputs: list[Any] = []
    try:
        outputs = open_outputs(plan, args, source.fps)
        model = load_model(args)
        swapper = build_swapper(args, model)
        for out in outputs:
            if hasattr(out, "meta"):  # the file's label names the model (and the restorer of --enhance)
                out.meta = output_label("live", model, **swapper.label())
        # a source photo without a face: one line, now
        processor = live.swapper.build_processor(swapper, sources, match=match, face=args.face,
                                                 all_faces=args.all_faces, detect_every=args.detect_every,
                                                 smooth=args.smooth, fps=source.fps, name=source.name)
        if args.save_identity:
            swapper.save_identity(args.save_identity, processor.identity, swapper.source_count(*sources))
            log.info("wrote %s", args.save_identity)
        processor.warmup()
    except BaseException:
        source.close()
        _close_quietly(outputs)
        raise
    invisible = FrameMarker(output_label("live", model))  # every frame, every output (unless turned off)
    if args.no_visible_mark:
        log.warning("--no-visible-mark: the live output carries no visible mark, and live pictures have no metadata: "
                    "it is unlabelled%s; tell everyone who sees it that it is synthetic",
                    " to viewers (only the invisible watermark says it, to 'hififace verify' on a recording)"
                    if invisible.enabled else "")
    _announce(source, outputs, args)
    status = _Status()
    mark = None if args.no_visible_mark else live.overlay.VisibleMark(live.swapper.render_mark)
    report = live.run_live(live.Capture(source, reopen, loop=args.loop, retries=args.reconnect), processor, outputs,
                           mark=mark, overlay=args.overlay, invisible=invisible if invisible.enabled else None,
                           on_stats=status)
    status.end()
    for out in outputs:
        if getattr(out, "path", None) is not None and getattr(out, "writer", True) is None:
            log.warning("%s: not written: no frame came out", out.path)
    how = {"interrupted": "stopped (Ctrl-C)", "terminated": "stopped (SIGTERM)", "quit": "stopped",
           "end": "the input ended", "fault": "stopped"}
    log.info("live: %s: %s", how[report.stopped], report.summary())
    if report.stage_line():
        log.info("live: stages: %s", report.stage_line())
    if report.fault:
        raise HifiFaceError(report.fault)
    if report.frames_in == 0 and report.stopped == "end":
        raise HifiFaceError(f"{source.name}: no frame could be read; check the input")
    return 0


def _announce(source: Any, outputs: list[Any], args: argparse.Namespace) -> None:
    names = ", ".join(getattr(o, "url", None) or str(getattr(o, "path", "")) or o.name for o in outputs)
    keys = "; keys in the window: q quit, space pause, o overlay" if any(o.name == "window" for o in outputs) else ""
    log.info("live: %s -> %s (Ctrl-C to stop%s)", source.name, names, keys)
    for out in outputs:
        if getattr(out, "url", None):  # on stdout, as 'hififace app' prints its address
            print(f"hififace live: {out.url}  (stream: {out.url}stream.mjpg; Ctrl-C to stop)", flush=True)


class _Status:
    """The running figures: one updating line on a terminal, a log line every :data:`STATUS_EVERY` s otherwise;
    and when the first frame is out."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.first = True
        self.last_line = time.monotonic()
        self.drawn = False

    def __call__(self, report) -> None:
        fps, latency = report.recent()
        if self.first:
            self.first = False
            log.info("live: first frame out (%.0f ms after it was captured)", 1000 * (latency or 0.0))
            return
        text = f"live: {fps:.1f} fps, latency {1000 * (latency or 0):.0f} ms, {report.frames_out} frames out"
        if self.tty:
            print(f"\r{text}   ", end="", file=sys.stderr, flush=True)
            self.drawn = True
        elif time.monotonic() - self.last_line >= STATUS_EVERY:
            self.last_line = time.monotonic()
            log.info("%s", text)

    def end(self) -> None:
        if self.drawn:
            print(file=sys.stderr, flush=True)
