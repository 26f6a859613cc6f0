"""``hififace app``: the web app (Gradio) on this machine: upload photos or a video, swap, preview, download."""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..media.limits import APP_JOB_SECONDS, APP_MAX_UPLOAD_MB, APP_QUEUE_SIZE, APP_RESULT_SECONDS
from ..utils.net import is_loopback
from ..utils.optional import require
from ._common import CONSENT, add_enhance_args, add_model_args, add_model_mask_arg, add_provenance_args, check_enhance_args
from .video import add_limit_args, video_limits

log = logging.getLogger("hififace")

LOCALHOST = "127.0.0.1"

EPILOG = f"""examples:
  hififace app --weights weights/hififace-256                 # http://127.0.0.1:7860, this machine only
  hififace app --weights weights/hififace-256 --port 8080
  hififace app --weights weights/hififace-256 --host 0.0.0.0  # reachable from your network: think twice

Needs the app extra (pip install 'hififace[app]'). Without trained weights the app says so on the page and runs
with random weights (the results are noise, named and labelled 'random weights'), like 'hififace demo'.
Uploads, results and Gradio's copies live in a private temporary folder (readable by you only), removed when the
app stops (Ctrl-C or SIGTERM); results are deleted {APP_RESULT_SECONDS / 60:g} minutes after they were made, uploads after
an hour. One swap runs at a time and --queue-size more may wait; a job over --job-timeout stops; uploads over
--max-upload-mb and videos over the video limits are refused.
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="web app on this machine: swap faces in photos and videos in the browser",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=LOCALHOST,
                   help=f"address to listen on (default {LOCALHOST}: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    p.add_argument("--share", choices=("on", "off"), default="off",
                   help="on: also a public gradio.live link that anyone who has it can use (default off)")
    g = p.add_argument_group("limits (0 = no limit)")
    g.add_argument("--max-upload-mb", type=float, default=APP_MAX_UPLOAD_MB, metavar="MB",
                   help=f"largest uploaded file, in megabytes (default {APP_MAX_UPLOAD_MB})")
    g.add_argument("--queue-size", type=int, default=APP_QUEUE_SIZE, metavar="N",
                   help=f"jobs that may wait while one runs; more are refused (default {APP_QUEUE_SIZE})")
    g.add_argument("--job-timeout", type=float, default=APP_JOB_SECONDS, metavar="S",
                   help=f"longest job in seconds; a video stops between batches of frames (default {APP_JOB_SECONDS:g})")
    add_limit_args(p)
    add_model_args(p)
    add_model_mask_arg(p)
    add_enhance_args(p)
    add_provenance_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError

    if not 1 <= args.port <= 65535:
        raise HifiFaceError(f"--port {args.port}: use 1 to 65535")
    for option in ("max_upload_mb", "queue_size", "job_timeout"):
        if getattr(args, option) < 0:
            raise HifiFaceError(f"--{option.replace('_', '-')} {getattr(args, option):g}: use 0 (no limit) or more")
    check_enhance_args(args)
    limits = video_limits(args)
    # one private folder (0700) for everything the app writes, Gradio's uploads and copies too (GRADIO_TEMP_DIR,
    # unless the user set it): nothing in /tmp for others to read, and nothing at all once the app stops
    root = Path(tempfile.mkdtemp(prefix="hififace-app-"))
    saved = os.environ.get("GRADIO_TEMP_DIR")
    if saved is None:
        os.environ["GRADIO_TEMP_DIR"] = str(root)
    try:
        return _serve(args, root, limits)
    finally:
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        shutil.rmtree(root, ignore_errors=True)


def _serve(args: argparse.Namespace, root: Path, limits) -> int:
    require("gradio", "hififace app")
    if not is_loopback(args.host):
        log.warning("listening on %s: anyone who can reach this machine on port %d can use the app", args.host,
                    args.port)
    if args.share == "on":
        log.warning("--share on: the app is also reachable from the internet through a gradio.live link; anyone "
                    "with the link can use it")
    from ..app.service import SwapService
    from ..app.ui import build_ui, launch
    from .demo import load_model_or_random

    model, why_random = load_model_or_random(args)  # the one place the model is loaded (an --engine goes here)
    # results inside Gradio's cache folder: served from there as they are, not copied
    service = SwapService(model, workdir=root / "results", max_upload_mb=args.max_upload_mb,
                          job_seconds=args.job_timeout, result_seconds=APP_RESULT_SECONDS, video_limits=limits,
                          restorer=args.enhance, enhance_blend=args.enhance_blend,
                          **({"model_mask": False} if args.no_model_mask else {}))
    page = None
    try:
        page = build_ui(service, random_reason=why_random)
        launch(page, service, args.host, args.port, share=args.share == "on", queue_size=args.queue_size)
        host = f"[{args.host}]" if ":" in args.host else args.host
        link = f"  (public link: {page.share_url})" if page.share_url else ""
        print(f"hififace app: http://{host}:{args.port}{link}  (Ctrl-C to stop)", flush=True)
        page.block_thread()  # returns on Ctrl-C, and on SIGTERM (the command turns it into the same interrupt)
    finally:
        if page is not None:
            page.close()
        service.close()
    return 0


