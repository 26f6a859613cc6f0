"""Reading legacy PyTorch pickles (``.pth``/``.pt``/``.ckpt``) without executing anything.

Every file goes through ``torch.load(weights_only=True)``: torch's restricted unpickler builds tensors, containers
and numbers and refuses any other global. Lightning checkpoints name a few classes besides the weights, which that
unpickler refuses although none of them is needed to read the weights:

- Lightning <= 1.4 keys ``callbacks`` by the callback's class (``{ModelCheckpoint: {...}}``): the released
  ``hififace_opensouce_299999.ckpt`` (pytorch-lightning 1.4.5) names
  ``pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint``.
- Lightning 1.x/2.x store ``hyper_parameters`` as an ``AttributeDict``, an omegaconf ``DictConfig`` (whose pickle
  names ``omegaconf.*`` node classes, ``typing.Any``, builtin types and ``collections.defaultdict``) or an
  ``argparse.Namespace``.

Those globals, and only those, are replaced by inert stand-ins for the duration of the load: classes defined here
that store what the pickle hands them and run nothing. Dict-like ones (``AttributeDict``, ``defaultdict``) become
plain dicts. Nothing of Lightning or omegaconf is imported (neither needs to be installed). Any other global stops
the load with one line naming it. The caller takes only tensors from what comes back.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import WeightsError

# Globals that may stand in the non-weight entries of a training checkpoint (module prefixes and exact names).
STAND_IN_PREFIXES = ("pytorch_lightning.", "lightning.", "lightning_fabric.", "omegaconf.")
STAND_IN_NAMES = frozenset({
    "argparse.Namespace",
    # what an omegaconf container's metadata refers to (ref_type, key_type, object_type)
    "typing.Any", "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int",
    "builtins.float", "builtins.bool", "builtins.bytes", "builtins.object", "builtins.NoneType",
    "collections.defaultdict",
})
# Stand-ins that must come back as plain dicts: the unpickler fills them with SETITEMS, which it allows on dicts only.
DICT_LIKE = re.compile(r"(^collections\.defaultdict$|\.AttributeDict$)")

_MAX_RETRIES = 64  # legacy (non-zip) files are scanned by retrying; a real checkpoint names a handful of globals


class StandIn:
    """Inert placeholder for a class named in a checkpoint's non-weight entries.

    It runs no code of the class it replaces: construction and ``__setstate__`` only keep their arguments, so
    ``callbacks``/``hyper_parameters`` entries stay inspectable (``.args``, ``.state``) but do nothing.
    """

    stands_for = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "StandIn":
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the arguments were kept by __new__
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in for {self.stands_for}>"


class DictStandIn:
    """Stand-in for a dict subclass (``AttributeDict``, ``defaultdict``): builds a plain dict instead."""

    stands_for = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> dict:  # type: ignore[misc]
        return {}  # defaultdict(factory) -> {}: the factory (itself a stand-in) is never called


_cache: dict[str, type] = {}


def stand_in(name: str) -> type:
    """The inert class standing in for global ``name`` (``module.qualname``); one class per name."""
    if name not in _cache:
        base = DictStandIn if DICT_LIKE.search(name) else StandIn
        module, _, qualname = name.rpartition(".")
        _cache[name] = type(qualname.replace(".", "_"), (base,),
                            {"stands_for": name, "__module__": module, "__qualname__": qualname})
    return _cache[name]


def may_stand_in(name: str) -> bool:
    """True for the globals a training checkpoint may name besides its weights (see the module docstring)."""
    return name.startswith(STAND_IN_PREFIXES) or name in STAND_IN_NAMES


# ------------------------------------------------------------------------------------------------ loading
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")


def load_legacy(path: str | Path, what: str = "checkpoint") -> Any:
    """Load a PyTorch pickle safely; Lightning/omegaconf/Namespace entries come back as inert stand-ins.

    ``what`` names the expected file in error messages, e.g. ``"ArcFace backbone.pth"``. Every failure is a
    :class:`~hififace.errors.WeightsError` with one line naming the file and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: file not found ({what})")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, expected the {what} file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file; download the {what} again")
    is_zip = _is_zip(path)
    if not is_zip:
        _check_pickle_magic(path, what)
    names: set[str] = set(_unsafe_globals(path, what)) if is_zip else set()
    for _ in range(_MAX_RETRIES):
        _refuse_unknown(names, path, what)
        try:
            with torch.serialization.safe_globals([(stand_in(n), n) for n in sorted(names)]):
                return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
        except pickle.UnpicklingError as err:
            text = _ANSI.sub("", str(err))
            found = _REFUSED_GLOBAL.search(text)
            if found is None or _builtin_name(found.group(1)) in names:  # not something a stand-in can serve
                raise WeightsError(f"{path}: refused to read the {what}: it holds more than weights "
                                   f"({_unpickler_reason(text)}); hififace reads only plain weight files") from None
            names.add(_builtin_name(found.group(1)))
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, TypeError,
                AttributeError, IndexError) as err:
            raise WeightsError(f"{path}: cannot read the {what} ({_clean(err)[:160]}); the file may be truncated "
                               "or damaged: download it again") from None
    raise WeightsError(f"{path}: refused to read the {what}: it names too many classes besides its weights")


def _unsafe_globals(path: Path, what: str) -> list[str]:
    """Globals a zip checkpoint names beyond torch's weights-only allowlist, read without unpickling."""
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError) as err:
        raise WeightsError(f"{path}: cannot read the {what} ({_clean(err)[:160]}); the file may be truncated "
                           "or damaged: download it again") from None


def _refuse_unknown(names: set[str], path: Path, what: str) -> None:
    bad = sorted(n for n in names if not may_stand_in(n))
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise WeightsError(f"{path}: refused to read the {what}: its pickle calls {', '.join(bad[:3])}{more}, "
                           "which is code, not weights; hififace never runs code from a weight file")


def _unpickler_reason(text: str) -> str:
    """The line of torch's weights-only error that says what was refused (not its advice to unpickle anyway)."""
    for line in text.splitlines():
        line = line.strip()
        for mark in ("WeightsUnpickler error:", "Unsupported", "Trying to", "Can only", "Can not"):
            if mark in line:
                return line[line.index(mark):].removeprefix("WeightsUnpickler error:").strip()[:160]
    return "objects other than tensors"


def _builtin_name(name: str) -> str:
    """torch's error writes builtins without their module (``dict``); the allowlist uses ``builtins.dict``."""
    return name if "." in name else f"builtins.{name}"


#: Start of files people pass by mistake -> what they are.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
               (b"RIFF", "a RIFF file (WebP, WAV, AVI)"), (b"%PDF", "a PDF document"), (b"MATLAB", "a MATLAB .mat file"),
               (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-Zip archive"))


def _check_pickle_magic(path: Path, what: str) -> None:
    """A non-zip file must start like a pickle (torch < 1.6 wrote protocol-2 pickles); say what it is otherwise."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return
    kind = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
    if kind is None:
        if len(head) >= 9 and head[8:9] == b"{":
            kind = "a safetensors file"
        elif all(32 <= c < 127 or c in (9, 10, 13) for c in head):
            kind = "a text file"
        else:
            kind = "data of another kind"
    raise WeightsError(f"{path}: not a checkpoint ({kind}, not a PyTorch .pth/.ckpt file); give the {what}")


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _clean(err: BaseException) -> str:
    """First line of an exception's text without terminal colour codes."""
    text = _ANSI.sub("", str(err)).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__
