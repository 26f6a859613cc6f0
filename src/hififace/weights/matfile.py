"""Checking a MATLAB ``.mat`` file (MAT v5) before scipy reads it, with bounded memory and time.

``scipy.io.loadmat`` trusts what a file declares: the byte count of a zlib-compressed element is inflated as far
as it goes (a few MB of zeros inflate to many GB), the dimensions of a cell or character array are allocated as
declared, and a data element's byte count is read as given. :func:`check_mat_file` walks the file's element tags
first, without building any array:

- the 128-byte header must say MAT v5 (a v7.3 file is HDF5, a v4 file has no header: both are named);
- every top-level element is a matrix (``miMATRIX``) or a compressed one (``miCOMPRESSED``) whose byte count ends
  inside the file; a compressed element is inflated in bounded steps (``zlib.decompressobj`` with ``max_length``)
  and refused as soon as it passes :attr:`MatLimits.max_array_bytes`, keeping only the first bytes (its tags);
- every variable is a numeric or character array (cells, structs, objects, sparse matrices and function handles
  are refused), with 2 to :attr:`MatLimits.max_dims` dimensions, whose real data element holds exactly
  ``prod(dims)`` values of its stored type and whose in-memory size is at most ``max_array_bytes``.

Layout facts (MathWorks, "MAT-File Format", R2019b, chapter 1): a data element is an 8-byte tag (uint32 type,
uint32 byte count) then the data padded to 8 bytes, or a 4-byte "small element" tag (uint16 byte count, uint16
type) with up to 4 bytes of data; a matrix holds array flags (class in the low byte, complex flag 0x800), the
dimensions (int32), the name (int8), then the real and, if complex, imaginary data.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from math import prod
from typing import BinaryIO

from ..errors import WeightsError
from ..utils.text import printable

# data element types -> bytes per value (miINT8 .. miUINT64, miUTF8/16/32)
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MI_INT8, _MI_UINT32, _MI_INT32, _MI_MATRIX, _MI_COMPRESSED = 1, 6, 5, 14, 15
# array classes -> bytes per value once read (mxCHAR becomes numpy 'U1': 4 bytes), for the ones we accept
_CLASS_SIZE = {4: 4, 6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8}
_CLASS_NAME = {1: "cell array", 2: "struct", 3: "object", 5: "sparse matrix", 16: "function handle", 17: "object"}
_HEAD = 64 * 1024  # bytes of an inflated element kept to read its tags (flags, dims, a name of <= 63 chars)
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MatLimits:
    """Bounds on a ``.mat`` file :func:`check_mat_file` lets through. The defaults are several times what a real
    ``BFM_model_front.mat`` holds (about 200 MB in all, its largest array ``idBase`` 107127 x 80 doubles: 69 MB)."""

    #: Largest file.
    max_file_bytes: int = 1 * 2**30
    #: Largest variable once read (and once inflated, for a compressed one).
    max_array_bytes: int = 256 * 2**20
    #: Largest sum of all variables once inflated (bounds the time the check takes).
    max_total_bytes: int = 1 * 2**30
    #: Most variables.
    max_variables: int = 1000
    #: Most dimensions of one array.
    max_dims: int = 32


LIMITS = MatLimits()


class _Bad(Exception):
    """A structural problem: becomes one WeightsError line naming the file."""


def check_mat_file(f: BinaryIO, path, what: str, limits: MatLimits | None = None) -> None:
    """Walk the MAT v5 file open as ``f`` (any position; left at an undefined one) and raise a
    :class:`~hififace.errors.WeightsError` naming ``path`` (the file's name) and ``what`` (the expected file, e.g.
    ``BFM_model_front.mat``) for anything scipy could not read within :class:`MatLimits`."""
    limits = limits or LIMITS
    size = f.seek(0, 2)
    if size > limits.max_file_bytes:
        raise WeightsError(f"{path}: refused to read the {what}: the file is {_mib(size)}, over the "
                           f"{_mib(limits.max_file_bytes)} a {what} can be; not a {what}")
    f.seek(0)
    header = f.read(128)
    if header.startswith(b"\x89HDF\r\n\x1a\n") or (len(header) == 128 and header[124:128] in (b"\x00\x02IM", b"\x02\x00MI")):
        raise WeightsError(f"{path}: a MATLAB v7.3 (HDF5) .mat file, which hififace does not read; save it again in "
                           f"MATLAB with save(..., '-v7'), or use the {what} as Deep3DFaceRecon_pytorch writes it")
    if len(header) < 128 or header[126:128] not in (b"IM", b"MI") or b"\x00" in header[:4]:
        raise WeightsError(f"{path}: cannot read as a MATLAB 5 .mat file (no MAT-file header); expected the {what}")
    little = header[126:128] == b"IM"
    if struct.unpack("<H" if little else ">H", header[124:126])[0] != 0x0100:
        raise WeightsError(f"{path}: cannot read this MAT-file version; expected the {what} (MAT v5)")
    end = "<" if little else ">"
    total = count = 0
    pos = 128
    try:
        while pos < size:
            if size - pos < 8:
                raise _Bad(f"{size - pos} stray byte(s) at the end")
            f.seek(pos)
            mtype, nbytes = struct.unpack(end + "II", f.read(8))
            if nbytes > size - pos - 8:
                raise _Bad(f"an element at byte {pos} declares {nbytes:,} bytes, past the end of the file")
            count += 1
            if count > limits.max_variables:
                raise _Bad(f"more than {limits.max_variables} variables")
            if mtype == _MI_COMPRESSED:
                body, inflated = _inflate(f, nbytes, limits)
                if len(body) < 8:
                    raise _Bad(f"a compressed element at byte {pos} holds no complete element")
                itype, ibytes = struct.unpack(end + "II", body[:8])
                if itype != _MI_MATRIX or ibytes > inflated - 8:  # (padding after it is scipy's to skip)
                    raise _Bad(f"a compressed element at byte {pos} does not hold the matrix it declares")
                total += inflated
                body = body[8:]
            elif mtype == _MI_MATRIX:
                total += nbytes
                body = f.read(min(nbytes, _HEAD))
            else:
                raise _Bad(f"an element of type {mtype} at byte {pos}, where a variable belongs")
            if total > limits.max_total_bytes:
                raise _Bad(f"its variables hold more than {_mib(limits.max_total_bytes)}")
            _check_matrix(body, ibytes if mtype == _MI_COMPRESSED else nbytes, end, limits, what)
            pos += 8 + nbytes
    except _Bad as err:
        raise WeightsError(f"{path}: refused to read the {what}: {err}; a damaged or hostile file") from None
    except (zlib.error, struct.error) as err:
        raise WeightsError(f"{path}: cannot read as a MATLAB .mat file ({printable(err, 120)}); expected the "
                           f"{what}") from None


def _inflate(f: BinaryIO, nbytes: int, limits: MatLimits) -> tuple[bytes, int]:
    """Inflate ``nbytes`` compressed bytes from ``f`` in bounded steps: (the first :data:`_HEAD` bytes, the total)."""
    d = zlib.decompressobj()
    head, total, left = b"", 0, nbytes
    cap = limits.max_array_bytes + 4096  # a matrix's tags and padding come on top of its data
    pending = b""
    while True:
        if not pending:
            if left == 0:
                break
            pending = f.read(min(left, _CHUNK))
            if not pending:
                raise _Bad("the file ends inside a compressed element")
            left -= len(pending)
        out = d.decompress(pending, _CHUNK)
        pending = d.unconsumed_tail
        total += len(out)
        if len(head) < _HEAD:
            head += out[: _HEAD - len(head)]
        if total > cap:
            raise _Bad(f"a compressed variable inflates to more than {_mib(limits.max_array_bytes)}")
        if d.eof:
            break
    if not d.eof:
        raise _Bad("a compressed element is incomplete")
    return head, total


def _tag(body: bytes, at: int, end: str) -> tuple[int, int, int]:
    """(type, byte count, offset of the data) of the element at ``at``; a small element's data is in its tag."""
    if len(body) < at + 4:
        raise _Bad("a variable ends inside its header")
    first = struct.unpack_from(end + "I", body, at)[0]
    if first >> 16:  # small data element: byte count in the high half, data in the next 4 bytes
        return first & 0xFFFF, first >> 16, at + 4
    if len(body) < at + 8:
        raise _Bad("a variable ends inside its header")
    return first, struct.unpack_from(end + "I", body, at + 4)[0], at + 8


def _next(at_data: int, nbytes: int, small: bool) -> int:
    return at_data + 4 if small else at_data + nbytes + (-nbytes % 8)


def _check_matrix(body: bytes, length: int, end: str, limits: MatLimits, what: str) -> None:
    """The tags of one matrix element (``body``: its first bytes, ``length``: its full byte count)."""
    if length == 0:
        raise _Bad("an empty variable")
    mtype, n, at = _tag(body, 0, end)  # array flags
    if mtype != _MI_UINT32 or n != 8 or len(body) < at + 8:
        raise _Bad("a variable without array flags")
    flags = struct.unpack_from(end + "I", body, at)[0]
    cls = flags & 0xFF
    pos = _next(at, n, False)
    mtype, n, at = _tag(body, pos, end)  # dimensions
    small = at == pos + 4
    if mtype != _MI_INT32 or n % 4 or not 2 <= n // 4 <= limits.max_dims or len(body) < at + n:
        raise _Bad("a variable with malformed dimensions")
    dims = struct.unpack_from(f"{end}{n // 4}i", body, at)
    pos = _next(at, n, small)
    mtype, n, at = _tag(body, pos, end)  # name
    small = at == pos + 4
    if mtype != _MI_INT8 or n > 63 or len(body) < at + n:
        raise _Bad("a variable with a malformed name")
    name = printable(body[at:at + n].decode("latin-1"), 63)
    pos = _next(at, n, small)
    if cls not in _CLASS_SIZE:
        kind = _CLASS_NAME.get(cls, f"array of class {cls}")
        raise _Bad(f"variable {name!r} is a {kind}; a {what} holds numeric arrays only")
    if any(d < 0 for d in dims):
        raise _Bad(f"variable {name!r} has negative dimensions {dims}")
    count = prod(dims)
    if count * _CLASS_SIZE[cls] > limits.max_array_bytes:
        raise _Bad(f"variable {name!r} declares {' x '.join(map(str, dims))} values, over "
                   f"{_mib(limits.max_array_bytes)}")
    # the real part (an imaginary part follows it: the whole element is bounded already, a wrong size is
    # scipy's own error)
    if pos + 8 > min(len(body), length):
        raise _Bad(f"variable {name!r} has no data")
    mtype, n, at = _tag(body, pos, end)
    small = at == pos + 4
    if cls == 4 and mtype in (16, 17, 18):  # text stored as UTF-8/16/32: a character takes 1 to 4 bytes
        fits = n <= 4 * count
    else:
        fits = mtype in _TYPE_SIZE and n == count * _TYPE_SIZE[mtype]
    if not fits or _next(at, n, small) > length:
        raise _Bad(f"variable {name!r} ({' x '.join(map(str, dims))}) does not hold the data its dimensions "
                   "declare")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"
