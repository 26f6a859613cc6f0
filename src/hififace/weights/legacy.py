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

Before torch sees the file it is checked without unpickling anything (the bounds are :class:`LegacyLimits`): a zip
checkpoint's members must be stored or deflated, their declared sizes consistent with the file and bounded (torch
writes every member *stored*; a deflated tensor record would even be read as its compressed bytes through a memory
map), and its pickle is read with a limit; a pre-1.6 raw pickle's pickles must end within the same limit. Every
pickle is then scanned opcode by opcode (:mod:`hififace.weights.pickles`) for nesting depth, size and the globals it
names, whatever the opcode. After the load, the tensors may not hold more bytes than the file (an old-format
pickle can declare storages of any size).
"""
from __future__ import annotations

import pickle
import re
import struct
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ..errors import WeightsError
from ..utils.files import open_regular
from ..utils.text import printable, printable_list
from .pickles import MAX_DEPTH, PickleRefused, PickleScan, scan_pickle

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
        return f"<stand-in for {printable(self.stands_for)}>"


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



# ------------------------------------------------------------------------------------------------ limits
@dataclass(frozen=True)
class LegacyLimits:
    """Bounds on what a legacy file may make :func:`load_legacy` read or build (see docs/cli.md, "Weight files").

    The defaults are far above every checkpoint hififace reads (the reference checkpoint's pickle is 1 MB with
    0.33 M opcodes, 11 k zip members, nesting 6 deep) and far below what exhausts memory or the C stack.
    """

    #: Largest pickle (a zip's ``data.pkl`` uncompressed, or the pickles at the start of a pre-1.6 file).
    max_pickle_bytes: int = 16 * 2**20
    #: Most opcodes in one pickle (each may create an object in the unpickler).
    max_pickle_ops: int = 8_000_000
    #: Deepest container nesting in a pickle.
    max_depth: int = MAX_DEPTH
    #: Most members in a zip checkpoint (one per tensor storage, plus a few).
    max_members: int = 200_000
    #: Largest uncompressed/compressed ratio of a deflated member (deflate reaches ~1000; pickles deflate ~4x).
    max_ratio: int = 100


LIMITS = LegacyLimits()

# ------------------------------------------------------------------------------------------------ loading
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_REFUSED_GLOBAL = re.compile(r"GLOBAL (\S+) was not an allowed global")
_ZIP_MAGIC = b"PK\x03\x04"  # torch tells its zip format from the first bytes (not from the end, as zipfile does)
_LEGACY_PICKLES = 5  # pre-1.6 torch.save: magic number, protocol, sys info, the object, storage keys; then data


def load_legacy(path: str | Path, what: str = "checkpoint", limits: LegacyLimits | None = None) -> Any:
    """Load a PyTorch pickle safely; Lightning/omegaconf/Namespace entries come back as inert stand-ins.

    ``what`` names the expected file in error messages, e.g. ``"ArcFace backbone.pth"``. Every failure is a
    :class:`~hififace.errors.WeightsError` with one line naming the file and what to do. ``limits`` defaults to
    :data:`LIMITS`.
    """
    path = Path(path)
    limits = limits or LIMITS
    if not path.exists():
        raise WeightsError(f"{path}: file not found ({what})")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, expected the {what} file")
    try:
        with open_regular(path, what, WeightsError) as f:
            size = f.seek(0, 2)
            if size == 0:
                raise WeightsError(f"{path}: empty file; download the {what} again")
            f.seek(0)
            is_zip = f.read(4) == _ZIP_MAGIC
            scans = _check_zip(f, size, path, what, limits) if is_zip else _check_raw(f, size, path, what, limits)
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error) as err:
        raise _damaged(path, what, err) from None
    names = _check_globals(scans, path, what)
    for _ in range(_MAX_RETRIES):
        _refuse_unknown(names, path, what)
        try:
            with torch.serialization.safe_globals([(stand_in(n), n) for n in sorted(names)]):
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
        except pickle.UnpicklingError as err:
            text = _ANSI.sub("", str(err))
            found = _REFUSED_GLOBAL.search(text)
            if found is None or _builtin_name(found.group(1)) in names:  # not something a stand-in can serve
                raise WeightsError(f"{path}: refused to read the {what}: it holds more than weights "
                                   f"({_unpickler_reason(text)}); hififace reads only plain weight files") from None
            names.add(_builtin_name(found.group(1)))
            continue
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, TypeError,
                AttributeError, IndexError, RecursionError) as err:
            raise _damaged(path, what, err) from None
        _check_storage_bytes(obj, size, path, what)
        return obj
    raise WeightsError(f"{path}: refused to read the {what}: it names too many classes besides its weights")


def _damaged(path: Path, what: str, err: BaseException) -> WeightsError:
    return WeightsError(f"{path}: cannot read the {what} ({printable(_clean(err), 160)}); the file may be truncated "
                        "or damaged: download it again")


def _too_big(path: Path, what: str, why: str) -> WeightsError:
    return WeightsError(f"{path}: refused to read the {what}: {why}; this is not how torch.save writes weights "
                        "(a damaged or hostile file; docs/cli.md 'Weight files' says how to read a genuine one)")


# ------------------------------------------------------------------------------------------------ zip checks
def _zip_directory(f: BinaryIO, size: int) -> tuple[int, int]:
    """(member count, central directory bytes) from the end records, before zipfile builds an object per member."""
    tail_len = min(size, 22 + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise zipfile.BadZipFile("no end of central directory record")
    entries, cd_size = struct.unpack("<HI", tail[at + 10:at + 16])
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # zip64: the counts are in the zip64 end record
        loc = at - 20
        if loc < 0 or tail[loc:loc + 4] != b"PK\x06\x07":
            raise zipfile.BadZipFile("zip64 end of central directory locator missing")
        (offset,) = struct.unpack("<Q", tail[loc + 8:loc + 16])
        if offset > size - 56:
            raise zipfile.BadZipFile("zip64 end of central directory record out of range")
        f.seek(offset)
        record = f.read(56)
        if record[:4] != b"PK\x06\x06":
            raise zipfile.BadZipFile("zip64 end of central directory record missing")
        entries, cd_size = struct.unpack("<QQ", record[32:48])
    return entries, cd_size


def _check_zip(f: BinaryIO, size: int, path: Path, what: str, limits: LegacyLimits) -> list[PickleScan]:
    """Check every member of a zip checkpoint against its declared sizes and :class:`LegacyLimits`, then read and
    scan its pickles with a limit; nothing is decompressed beyond the limit."""
    entries, cd_size = _zip_directory(f, size)
    if entries > limits.max_members:
        raise _too_big(path, what, f"its zip has {entries:,} members (limit {limits.max_members:,})")
    if cd_size > size:
        raise zipfile.BadZipFile("central directory larger than the file")
    f.seek(0)
    archive = zipfile.ZipFile(f)
    infos = archive.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise _too_big(path, what, f"its zip holds two members named {printable(dup)}")
    unpacked = 0
    for info in infos:
        member = printable(info.filename)
        if info.flag_bits & 0x1:
            raise _too_big(path, what, f"zip member {member} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _too_big(path, what, f"zip member {member} uses compression method {info.compress_type} "
                                       "(torch reads stored or deflated members only)")
        if info.header_offset + info.compress_size > size:
            raise zipfile.BadZipFile(f"member {member} extends past the end of the file")
        if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
            raise zipfile.BadZipFile(f"stored member {member} declares {info.file_size} bytes in "
                                     f"{info.compress_size}")
        if info.compress_type == zipfile.ZIP_DEFLATED:
            if "/data/" in f"/{info.filename}":
                raise _too_big(path, what, f"tensor record {member} is compressed (torch stores tensor data "
                                           "uncompressed and would read the compressed bytes as weights)")
            if info.file_size > limits.max_pickle_bytes:
                raise _too_big(path, what, f"zip member {member} inflates to {_mib(info.file_size)} "
                                           f"(limit {_mib(limits.max_pickle_bytes)})")
            if info.file_size > max(info.compress_size, 1) * limits.max_ratio:
                raise _too_big(path, what, f"zip member {member} inflates {info.file_size // max(info.compress_size, 1):,}"
                                           f"-fold (a zip bomb; limit {limits.max_ratio}-fold)")
        unpacked += info.file_size
    end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):  # each member's bytes once: overlapping members
        if info.header_offset < end:  # (one deflated kernel shared by many entries) are how zip bombs multiply
            raise _too_big(path, what, f"its zip member {printable(info.filename)} overlaps the one before it")
        end = info.header_offset + 30 + info.compress_size  # 30: the smallest local header
    if unpacked > size + limits.max_pickle_bytes:
        raise _too_big(path, what, f"its zip members inflate to {_mib(unpacked)}, far more than the file's "
                                   f"{_mib(size)}")
    pickles = [i for i in infos if i.filename.endswith(".pkl")]
    if not any(i.filename.rsplit("/", 1)[-1] == "data.pkl" for i in pickles):
        raise WeightsError(f"{path}: not a torch.save checkpoint (its zip has no data.pkl); give the {what}")
    scans = []
    for info in pickles:
        if info.file_size > limits.max_pickle_bytes:
            raise _too_big(path, what, f"its pickle {printable(info.filename)} is {_mib(info.file_size)} "
                                       f"(limit {_mib(limits.max_pickle_bytes)})")
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)  # never more than declared, whatever the stream holds
        if len(data) != info.file_size:
            raise zipfile.BadZipFile(f"member {printable(info.filename)} does not hold its declared size")
        scans.append(_scan(data, 0, path, what, limits))
    return scans


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


# ------------------------------------------------------------------------------------------------ raw pickles
def _check_raw(f: BinaryIO, size: int, path: Path, what: str, limits: LegacyLimits) -> list[PickleScan]:
    """A pre-1.6 file: five pickles then raw tensor data. The pickles must end within the limit and pass the scan;
    anything that is no pickle at all is named (an image, a text file, ...)."""
    f.seek(0)
    window = f.read(min(size, limits.max_pickle_bytes))
    is_pickle = window[:1] == b"\x80" and len(window) > 1 and 2 <= window[1] <= 5
    if is_pickle:
        f.seek(0)
        if tarfile.is_tarfile(f):  # torch < 0.4's tar format: pickles inside members, extracted to a temp folder
            raise WeightsError(f"{path}: a tar checkpoint of PyTorch < 0.4, which hififace does not read; load and "
                               "re-save it with a current PyTorch (torch.save)")
    else:
        _refuse_non_pickle(window, path, what, limits)  # says what the file is; a protocol-0 pickle goes on
    scans: list[PickleScan] = []
    at = 0
    while len(scans) < _LEGACY_PICKLES and at < len(window):
        try:
            scan = scan_pickle(window, at, max_depth=limits.max_depth, max_ops=limits.max_pickle_ops)
        except PickleRefused as err:
            if size > len(window) and "malformed" in str(err):  # cut by the window, not necessarily damaged
                raise _too_big(path, what, f"its pickles do not end within the first {_mib(len(window))} "
                                           "(the limit)") from None
            raise _refused(path, what, err) from None
        scans.append(scan)
        at = scan.end
    if len(scans) < _LEGACY_PICKLES and size > len(window):  # torch would read the next pickle unchecked
        raise _too_big(path, what, f"its pickles do not end within the first {_mib(len(window))} (the limit)")
    return scans


def _refuse_non_pickle(head: bytes, path: Path, what: str, limits: LegacyLimits) -> None:
    """Name what a file that does not start like a torch pickle is; return if it parses as a (protocol 0/1)
    pickle anyway, so that the globals it names are refused like any others."""
    kind = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
    if kind is None:
        try:
            scan_pickle(head, 0, max_depth=limits.max_depth, max_ops=limits.max_pickle_ops)
            return
        except PickleRefused as err:
            if "malformed" not in str(err):
                raise _refused(path, what, err) from None
        if len(head) >= 9 and head[8:9] == b"{":
            kind = "a safetensors file"
        elif all(32 <= c < 127 or c in (9, 10, 13) for c in head[:16]):
            kind = "a text file"
        else:
            kind = "data of another kind"
    raise WeightsError(f"{path}: not a checkpoint ({kind}, not a PyTorch .pth/.ckpt file); give the {what}")


# ------------------------------------------------------------------------------------------------ pickle checks
def _scan(data: bytes, start: int, path: Path, what: str, limits: LegacyLimits) -> PickleScan:
    try:
        return scan_pickle(data, start, max_depth=limits.max_depth, max_ops=limits.max_pickle_ops)
    except PickleRefused as err:
        raise _refused(path, what, err) from None


def _refused(path: Path, what: str, err: PickleRefused) -> WeightsError:
    if "malformed" in str(err):
        return WeightsError(f"{path}: cannot read the {what} ({err}); the file may be truncated or damaged: "
                            "download it again")
    return _too_big(path, what, f"its pickle has {err}")


def _torch_allowed() -> set[str]:
    """The globals torch's weights-only unpickler builds (what ``get_unsafe_globals_in_checkpoint`` compares to)."""
    from torch import _weights_only_unpickler as unpickler

    return set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())


def _check_globals(scans: list[PickleScan], path: Path, what: str) -> set[str]:
    """Refuse pickles that name code or that torch's weights-only unpickler cannot read; return the names that
    need inert stand-ins."""
    allowed = _torch_allowed()
    named = [(op, name) for scan in scans for op, name in scan.globals]
    code = sorted({name for _, name in named if name not in allowed and not may_stand_in(name)})
    _refuse_unknown(set(code), path, what)
    odd = sorted({(op, name) for op, name in named if op != "GLOBAL"})
    if odd:
        op, name = odd[0]
        raise WeightsError(f"{path}: refused to read the {what}: its pickle names {printable(name)} with {op}, an "
                           "opcode torch's weights-only loader does not read; re-save it with torch.save's default "
                           "pickle protocol")
    return {name for _, name in named if name not in allowed}


def _check_storage_bytes(obj: Any, size: int, path: Path, what: str) -> None:
    """Refuse a result whose tensors span more bytes than the file holds (old-format pickles declare the size of
    each storage, which torch allocates before reading it)."""
    spans: dict[int, int] = {}
    todo, seen = [obj], set()
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            if storage.nbytes() and item.device.type != "meta":
                ptr = storage.data_ptr()
                spans[ptr] = max(spans.get(ptr, 0), storage.nbytes())
        elif isinstance(item, dict):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo.extend(item)
        elif isinstance(item, StandIn):
            todo.extend([item.args, item.kwargs, item.state])
    total = end = 0
    for ptr, n in sorted(spans.items()):  # views of one storage overlap: count each byte once
        total += max(0, ptr + n - max(ptr, end))
        end = max(end, ptr + n)
    if total > size:
        raise _too_big(path, what, f"its tensors declare {_mib(total)} of data in a file of {_mib(size)}")


def _refuse_unknown(names: set[str], path: Path, what: str) -> None:
    bad = sorted(n for n in names if not may_stand_in(n))
    if bad:
        raise WeightsError(f"{path}: refused to read the {what}: its pickle calls {printable_list(bad, 3)}, "
                           "which is code, not weights; hififace never runs code from a weight file")


def _unpickler_reason(text: str) -> str:
    """The line of torch's weights-only error that says what was refused (not its advice to unpickle anyway)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        for mark in ("WeightsUnpickler error:", "Unsupported", "Trying to", "Can only", "Can not"):
            if mark in line:
                return printable(line[line.index(mark):].removeprefix("WeightsUnpickler error:").strip(), 160)
    return printable(lines[0], 160) if lines else "objects other than tensors"


def _builtin_name(name: str) -> str:
    """torch's error writes builtins without their module (``dict``); the allowlist uses ``builtins.dict``."""
    return name if "." in name else f"builtins.{name}"


#: Start of files people pass by mistake -> what they are.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
               (b"RIFF", "a RIFF file (WebP, WAV, AVI)"), (b"%PDF", "a PDF document"), (b"MATLAB", "a MATLAB .mat file"),
               (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"PK", "a zip archive"))


def _clean(err: BaseException) -> str:
    """First line of an exception's text without terminal colour codes."""
    text = _ANSI.sub("", str(err)).strip()
    return text.splitlines()[0].strip() if text else type(err).__name__
