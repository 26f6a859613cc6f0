"""Entry point of the ``hififace`` command: one sub-command per module in this package.

Every command module exposes ``add_parser(subparsers)`` which registers its parser and sets
``func=run`` where ``run(args) -> int`` returns the exit status. User errors
(:class:`~hififace.errors.HifiFaceError`) become one line on stderr and a non-zero exit, never a traceback;
anything unforeseen is one line too, with the traceback under ``-v``.

When the reader of stdout goes away (``hififace info DIR | head -4``), the command stops quietly with status 141,
what a shell reports for a tool killed by SIGPIPE (``yes | head``), so ``set -o pipefail`` scripts see what they see
with any other tool. SIGPIPE itself stays ignored (Python's default): a dying ffmpeg must be an error, not death.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import logging
import os
import sys
from typing import Sequence

from ..errors import HifiFaceError
from ..utils.logs import cli_logging
from ..utils.optional import EXTRAS as OPTIONAL
from ..utils.signals import Terminated, sigterm_as_interrupt
from ..utils.text import terminal_line

# name -> module (relative to this package); modules are imported lazily so that `hififace --help`
# stays fast and a missing optional extra only breaks its own command.
COMMANDS: dict[str, str] = {
    "convert": ".convert",
    "info": ".info",
    "swap": ".swap",
    "video": ".video",
    "enhance": ".enhance",
    "live": ".live",
    "grid": ".grid",
    "interpolate": ".interpolate",
    "demo": ".demo",
    "faces": ".faces",
    "preprocess": ".preprocess",
    "train": ".train",
    "eval": ".eval",
    "export": ".export",
    "app": ".app",
    "verify": ".verify",
}

#: Top-level module a command may need -> the extra that installs it.
EXTRAS: dict[str, str] = {module: extra for module, (extra, _) in OPTIONAL.items()}

log = logging.getLogger("hififace")

#: Exit status when stdout's reader has gone: 128 + SIGPIPE, as a shell reports for tools the signal killed.
BROKEN_PIPE_EXIT = 141


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching (``--trainer.max 4`` must not mean ``--trainer.max_steps``); sub-command
    parsers are of this class too."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def build_parser() -> Parser:
    parser = Parser(
        prog="hififace",
        description="High-fidelity one-shot face swapping (HifiFace). Use only with the consent of the people shown.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show library warnings and debug logs")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module, __package__)
        except ImportError as err:  # an extra is missing (or the install is broken): say so when it is used
            _add_unavailable(sub, name, err)
            continue
        mod.add_parser(sub)
    parser.commands = sub.choices  # type: ignore[attr-defined]
    return parser


def unavailable_reason(err: ImportError) -> str:
    """What to install (or that the install is broken) for a command whose module failed to import."""
    missing = (err.name or "").split(".")[0]
    if missing in EXTRAS:
        return f"{missing} is not installed: pip install 'hififace[{EXTRAS[missing]}]'"
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"cannot import {err.name or 'a module'} ({first}); reinstall hififace"


def _add_unavailable(sub: argparse._SubParsersAction, name: str, err: ImportError) -> None:
    why = unavailable_reason(err)
    p = sub.add_parser(name, help=f"(unavailable: {why})", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    def run(args: argparse.Namespace) -> int:
        raise HifiFaceError(f"hififace {name} is unavailable: {why}")

    p.set_defaults(func=run, unavailable=True)


def _known_options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for action in parser._actions for s in action.option_strings]


def _report_unknown(target: argparse.ArgumentParser, unknown: list[str]) -> None:
    """Usage of the (sub-)command the arguments were given to, and the closest known option of each; exits 2."""
    known = _known_options(target)
    hints = []
    for arg in unknown:
        name = arg.split("=", 1)[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if name.startswith("-") else []
        if close:
            hints.append(f"{name}: did you mean {close[0]}?")
    target.error(f"unrecognized arguments: {' '.join(unknown)}" + (f" ({'; '.join(hints)})" if hints else ""))


def _check_long_options(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Unknown ``--options`` of a sub-command, found before argparse parses (so a typo is named even when it
    also makes a required option look missing)."""
    commands = getattr(parser, "commands", {})
    rest = list(argv)
    top = set(_known_options(parser))
    while rest and rest[0].startswith("-"):  # top-level options (-v, --version, -h) before the command
        if rest[0].startswith("--") and rest[0].split("=", 1)[0] not in top:  # '--verbos info': the top level's typo
            _report_unknown(parser, [rest[0]])
        rest.pop(0)
    if not rest or rest[0] not in commands:
        return
    target, rest = commands[rest[0]], rest[1:]
    while True:  # nested sub-commands ('export onnx'): the options are the innermost parser's
        choices = next((a.choices for a in target._actions if isinstance(a, argparse._SubParsersAction)), None)
        positional = next((a for a in rest if not a.startswith("-")), None)
        if choices and positional is not None and positional not in choices:
            return  # an unknown sub-command ('export tflite'): argparse names it and the choices
        if not choices or positional not in choices:
            break
        target, rest = choices[positional], rest[rest.index(positional) + 1:]
    if not _known_options(target):  # an unavailable command takes everything
        return
    known = set(_known_options(target))
    unknown = []
    for arg in rest:
        if arg == "--":
            break
        if arg.startswith("--") and arg.split("=", 1)[0] not in known:
            unknown.append(arg)
    if unknown:
        _report_unknown(target, unknown)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    try:
        try:
            # SIGTERM cleans up as Ctrl-C does, in every command
            with cli_logging(verbose), sigterm_as_interrupt():
                return _main(argv, verbose)
        finally:  # also after argparse's SystemExit (--help): what is still buffered fails here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:
        if not stdout_is_broken():
            raise
        _silence_stdout()
        return BROKEN_PIPE_EXIT


def stdout_is_broken() -> bool:
    """True when stdout is a pipe whose reader has gone (poll reports an error on it)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a non-file (tests capture it)
        return False
    try:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() (Windows): a broken pipe is most likely stdout's
        return True


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


def _main(argv: list[str], verbose: bool) -> int:
    parser = build_parser()
    _check_long_options(parser, argv)  # argparse exits on --help (0) and on usage errors (2), as here
    args, extras = parser.parse_known_args(argv)
    if extras and not getattr(args, "unavailable", False):
        _report_unknown(getattr(parser, "commands", {}).get(getattr(args, "command", None), parser), extras)
    if args.version:
        from .._version import __version__

        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        # what every output carries (C2PA manifest, invisible watermark): set by the commands that write outputs
        scope = getattr(args, "provenance_scope", None)
        with scope(args) if scope is not None else contextlib.nullcontext():
            return int(args.func(args) or 0)
    except HifiFaceError as err:
        log.debug("error details", exc_info=True)
        print(f"error: {terminal_line(err)}", file=sys.stderr)
        return err.exit_code
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("error: out of memory; try a smaller --batch-size or image", file=sys.stderr)
        return 1
    except OSError as err:  # a full disk, a quota, a read-only place, a name too long: one line naming where
        from ..utils.atomic import storage_error

        mapped = storage_error(err)
        if mapped is None:
            return _unexpected(err, verbose)
        log.debug("error details", exc_info=True)
        print(f"error: {terminal_line(mapped)}", file=sys.stderr)
        return mapped.exit_code
    except Exception as err:  # not foreseen (a bug, or a library failing): one line, the traceback with -v
        return _unexpected(err, verbose)


def _unexpected(err: Exception, verbose: bool) -> int:
    if isinstance(err, BrokenPipeError) and stdout_is_broken():
        raise err  # the reader of stdout went away: main() exits quietly
    log.debug("traceback", exc_info=True)
    text = terminal_line(str(err).strip().splitlines()[0], 300) if str(err).strip() else ""
    hint = "" if verbose else "; run with -v for the traceback"
    print(f"error: unexpected {type(err).__name__}{': ' + text if text else ''}{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
