"""Entry point of the ``hififace`` command: one sub-command per module in this package.

Every command module exposes ``add_parser(subparsers)`` which registers its parser and sets
``func=run`` where ``run(args) -> int`` returns the exit status. User errors
(:class:`~hififace.errors.HifiFaceError`) become one line on stderr and a non-zero exit, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ..errors import HifiFaceError
from ..utils.logs import setup_logging

# name -> module (relative to this package); modules are imported lazily so that `hififace --help`
# stays fast and a missing optional extra only breaks its own command.
COMMANDS: dict[str, str] = {
    "convert": ".convert",
    "info": ".info",
    "swap": ".swap",
    "grid": ".grid",
    "interpolate": ".interpolate",
    "demo": ".demo",
    "faces": ".faces",
    "preprocess": ".preprocess",
    "train": ".train",
    "export": ".export",
}

log = logging.getLogger("hififace")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hififace",
        description="High-fidelity one-shot face swapping (HifiFace). Use only with the consent of the people shown.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and debug logs")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module, __package__)
        except ModuleNotFoundError as err:  # a command whose module is not written yet or whose extra is missing
            if err.name and err.name.startswith("hififace"):
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    setup_logging(verbose)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from .. import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HifiFaceError as err:
        log.debug("error details", exc_info=True)
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; try a smaller --batch-size or image", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
