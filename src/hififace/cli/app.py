"""``hififace app``: the web app (Gradio) on this machine: upload photos or a video, swap, preview, download."""
from __future__ import annotations

import argparse
import ipaddress
import logging

from ._common import CONSENT, add_model_args, add_model_mask_arg

log = logging.getLogger("hififace")

LOCALHOST = "127.0.0.1"

EPILOG = f"""examples:
  hififace app --weights weights/hififace-256                 # http://127.0.0.1:7860, this machine only
  hififace app --weights weights/hififace-256 --port 8080
  hififace app --weights weights/hififace-256 --host 0.0.0.0  # reachable from your network: think twice

Needs the app extra (pip install 'hififace[app]'). Without trained weights the app says so on the page and runs
with random weights (the results are noise, named and labelled 'random weights'), like 'hififace demo'.
Results are written to a temporary folder removed when the app stops; uploads are deleted after an hour.
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
    add_model_args(p)
    add_model_mask_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError, MissingDependencyError

    if not 1 <= args.port <= 65535:
        raise HifiFaceError(f"--port {args.port}: use 1 to 65535")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise MissingDependencyError("gradio", "app", "hififace app") from None
    if not _is_loopback(args.host):
        log.warning("listening on %s: anyone who can reach this machine on port %d can use the app", args.host,
                    args.port)
    if args.share == "on":
        log.warning("--share on: the app is also reachable from the internet through a gradio.live link; anyone "
                    "with the link can use it")
    from ..app.service import SwapService
    from ..app.ui import build_ui, launch
    from .demo import load_model_or_random

    model, why_random = load_model_or_random(args)  # the one place the model is loaded (an --engine goes here)
    service = SwapService(model, **({"model_mask": False} if args.no_model_mask else {}))
    page = build_ui(service, random_reason=why_random)
    launch(page, service, args.host, args.port, share=args.share == "on")
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"hififace app: http://{host}:{args.port}" + (f"  (public link: {page.share_url})" if page.share_url else "")
          + "  (Ctrl-C to stop)", flush=True)
    try:
        page.block_thread()
    finally:
        page.close()
        service.close()
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
