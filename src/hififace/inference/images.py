"""Image files in and out for the command line: careful reading of aligned face crops, labelled atomic writing.

Reading (:func:`load_image`) turns every problem with a file into one :class:`~hififace.errors.InputImageError`
line naming the file and the fix. Conversions, in order:

* EXIF orientation is applied (``ImageOps.exif_transpose``), so a phone photo is upright;
* transparency (RGBA, LA, palette with a transparent colour) is composited onto black; opaque pixels are unchanged;
* 16-bit greyscale is scaled to 8 bits (PIL would clip it); 16-bit RGB is read as 8 bits by PIL;
* greyscale, palette, CMYK and the rest go to RGB the way PIL's ``convert("RGB")`` does, as the reference does.

Given ``size``, an image that is not ``size`` x ``size`` is resized as the reference does (``Resize(size)``:
PIL bilinear, shorter side to ``size``) and, when not square, centre-cropped; both with a logged warning. A crop
that already has the model size is used as it is, so its pixels are exactly ``uint8 / 255`` as in the reference.

Writing (:func:`save_image`) picks the format from the extension, writes atomically and labels the image as
synthetic (see :mod:`hififace.inference.watermark`). 8-bit pixels are written as they are, so a PNG of the
model output equals the reference's ``ToPILImage().save()`` pixel for pixel (see
:func:`hififace.utils.imagetypes.to_uint8`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import HifiFaceError, InputImageError
from ..utils.files import require_regular

log = logging.getLogger(__name__)

#: Smallest side accepted: smaller crops hold no usable face.
MIN_SIDE = 16
#: Largest input accepted, in pixels (checked from the file header, before decoding).
MAX_PIXELS = 40_000_000
#: Extensions read when a folder of faces is given (compared lower-case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Output extension -> PIL format.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
FIX_CROP = "give an aligned square face crop (ideally the model size, e.g. 256x256 PNG)"


def _decode(path: Path, max_pixels: int | None = None, upright: bool = True):
    """Open, check the header size, decode fully and (``upright``) apply EXIF orientation; return a PIL image.

    ``max_pixels`` defaults to :data:`MAX_PIXELS` (face crops); whole photos use a larger limit.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.exists():
        raise InputImageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InputImageError(f"{path}: is a folder, not an image file")
    require_regular(path, "image", InputImageError)  # a FIFO would make PIL wait forever
    try:
        if path.stat().st_size == 0:
            raise InputImageError(f"{path}: empty file (0 bytes); re-export or re-download the image")
        img = Image.open(path)
    except InputImageError:
        raise
    except PermissionError:
        raise InputImageError(f"{path}: cannot read the file (permission denied); check its permissions") from None
    except UnidentifiedImageError:
        raise InputImageError(f"{path}: not an image file PIL can read; use PNG or JPEG") from None
    except Image.DecompressionBombError:
        raise InputImageError(f"{path}: image is far too large to decode safely; {FIX_CROP}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputImageError(f"{path}: cannot read the image ({_reason(err)}); re-export it as PNG or JPEG") from None
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    with img:
        w, h = img.size
        if w * h > limit:  # from the header: nothing is decoded yet
            raise InputImageError(
                f"{path}: {w}x{h} is too large (limit {limit // 1_000_000} megapixels); {FIX_CROP}"
            )
        if min(w, h) < MIN_SIDE:
            raise InputImageError(f"{path}: {w}x{h} is too small (at least {MIN_SIDE}x{MIN_SIDE}); {FIX_CROP}")
        try:
            img.load()  # decode now so that a truncated file fails here
        except MemoryError:
            raise InputImageError(f"{path}: not enough memory to decode {w}x{h}; {FIX_CROP}") from None
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, zlib/struct errors on bad data
            raise InputImageError(
                f"{path}: cannot decode the image ({_reason(err)}); the file is truncated or corrupt, re-export it"
            ) from None
        if not upright:
            return img.copy()
        try:
            out = ImageOps.exif_transpose(img)
        except Exception as err:  # a broken EXIF block must not make a readable image unusable
            log.warning("%s: ignoring unreadable EXIF orientation (%s)", path, _reason(err))
            out = img
        return out.copy() if out is img else out


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def _flatten(img, path: Path) -> np.ndarray:
    """PIL image of any mode -> H x W x 3 uint8 RGB; transparency composited onto black."""
    from PIL import Image

    from ..utils.images_pil import pil_to_array

    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if alpha.min() < 255:
            log.warning("%s: has transparency; composited onto black", path)
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba).convert("RGB")
    return pil_to_array(img)


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB; with ``size``, fitted to ``size`` x ``size`` (see module doc).

    Raises :class:`~hififace.errors.InputImageError` (one line naming the file and the fix) for missing, empty,
    unreadable, truncated, non-image, too small or too large files.
    """
    path = Path(path)
    img = _decode(path)
    array = _flatten(img, path)
    return array if size is None else fit_to_size(array, size, name=str(path))


def fit_to_size(array: np.ndarray, size: int, name: str = "image") -> np.ndarray:
    """Resize like the reference's ``Resize(size)`` (PIL bilinear, shorter side) then centre-crop to a square.

    An array that already is ``size`` x ``size`` is returned unchanged.
    """
    from PIL import Image

    h, w = array.shape[:2]
    if (h, w) == (size, size):
        return array
    if h == w:
        log.warning("%s: %dx%d resized to the model size %dx%d", name, w, h, size, size)
    else:
        log.warning(
            "%s: %dx%d is not square; shorter side resized to %d and centre-cropped to %dx%d; for best results %s",
            name, w, h, size, size, size, FIX_CROP,
        )
    # torchvision's Resize(int) rule: the shorter side becomes `size`, the longer int(size * long / short)
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    img = Image.fromarray(array).resize((new_w, new_h), Image.BILINEAR)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))  # as torchvision CenterCrop
    return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8).copy()


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted by name; hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "folder not found"
        raise InputImageError(f"{folder}: {what}; give a folder of aligned face crops")
    files = sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise InputImageError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    return files


def check_output_path(path: str | Path, formats: Mapping[str, str] = OUTPUT_FORMATS, no_clobber: bool = False,
                      inputs: Mapping[str, str | Path] | None = None) -> Path:
    """Refuse an output path we cannot write, before any work is done.

    The replacement policy of every command: an existing output file is replaced, atomically (the old file stays
    whole until the new one is complete, so a failed run never damages it); ``no_clobber`` (``--no-clobber``)
    refuses an existing file instead. ``inputs`` (what it is -> path, e.g. ``{"the target photo": t}``) are never
    replaced: an output that resolves to one of them is refused.
    """
    path = Path(path)
    for what, source in (inputs or {}).items():
        if path.resolve() == Path(source).resolve():
            raise HifiFaceError(f"{path}: is {what}; write the result to another file (-o) so that the original is kept")
    if path.is_dir():
        example = path / f"out{next(iter(formats))}"
        raise HifiFaceError(f"{path}: is a folder; give an output file name such as {example}")
    if path.suffix.lower() not in formats:
        names = list(formats)
        allowed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        raise HifiFaceError(f"{path}: unsupported output format {path.suffix or '(none)'}; use {allowed}")
    if no_clobber and path.exists():
        raise HifiFaceError(f"{path}: already exists and --no-clobber is given; choose another -o or drop --no-clobber")
    from ..utils.atomic import unwritable_reason

    why = unwritable_reason(path.parent)  # missing folders are made when writing; one that cannot be is refused now
    if why:
        raise HifiFaceError(f"{path}: cannot write there ({why}); choose another -o")
    return path


def to_pil(image: Any):
    """uint8 H x W x 3 array or PIL image -> RGB PIL image (8-bit values kept as they are)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"expected a uint8 array (use hififace.utils.imagetypes.to_uint8), got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(a[:, :, :3]), "RGB")


def save_image(
    path: str | Path,
    image: Any,
    watermark: bool = False,
    meta: Mapping[str, str] | None = None,
    watermark_text: str | None = None,
) -> Path:
    """Write ``image`` (uint8 H x W x 3 array or PIL image) to ``path``, atomically, labelled as synthetic.

    The format comes from the extension (.png, .jpg/.jpeg, .webp). PNG gets text chunks and an XMP packet, JPEG
    and WebP EXIF (ImageDescription, Software, UserComment) and XMP. ``watermark`` also draws a visible mark.
    """
    from .watermark import WATERMARK_TEXT, add_watermark

    path = check_output_path(path)
    img = to_pil(image)
    if watermark:
        img = add_watermark(img, watermark_text or WATERMARK_TEXT)
    return write_labelled(path, img, meta)


def write_labelled(path: Path, img: Any, meta: Mapping[str, str] | None = None, exif: Any = None, **save_kw: Any) -> Path:
    """Write PIL image ``img`` atomically in the format of ``path``'s extension with the synthetic-content label.

    ``exif`` (a ``PIL.Image.Exif``) is kept and the label's tags are added to it; ``save_kw`` go to PIL's ``save``
    (e.g. ``icc_profile``, ``transparency``, JPEG ``qtables``; JPEG quality defaults to 95).
    """
    from PIL.PngImagePlugin import PngInfo

    from ..utils.atomic import atomic_path
    from .watermark import exif_bytes, label_fields, xmp_packet

    fmt = OUTPUT_FORMATS[Path(path).suffix.lower()]
    with atomic_path(path) as tmp:
        if fmt == "PNG":
            info = PngInfo()
            for key, value in label_fields(meta).items():
                if value.isascii():
                    info.add_text(key, value)
                else:
                    info.add_itxt(key, value)
            info.add_itxt("XML:com.adobe.xmp", xmp_packet(meta).decode("utf-8"))
            if exif is not None:
                save_kw["exif"] = exif_bytes(meta, exif)
            img.save(tmp, format="PNG", pnginfo=info, **save_kw)
        elif fmt == "JPEG":
            if "qtables" not in save_kw:
                save_kw.setdefault("quality", 95)
            img.save(tmp, format="JPEG", exif=exif_bytes(meta, exif), xmp=xmp_packet(meta), **save_kw)
        else:  # WebP, lossless so the pixels stay exact
            img.save(tmp, format="WEBP", lossless=True, exif=exif_bytes(meta, exif), xmp=xmp_packet(meta), **save_kw)
    return Path(path)


def read_label(path: str | Path) -> dict[str, str]:
    """The synthetic-content label of a written file (PNG text, EXIF, XMP, GIF comment, MP4/MOV and Matroska
    tags), for checks and ``info``. The XMP packet is reported once, as ``XMP``."""
    from PIL import Image

    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp":  # MP4 / MOV: PIL does not read them
        return _mp4_tags(path)
    if head[:4] == _EBML:  # Matroska (.mkv, .webm)
        return _mkv_tags(path)
    out: dict[str, str] = {}
    with Image.open(path) as img:
        for key, value in getattr(img, "text", {}).items():
            out["XMP" if key == "XML:com.adobe.xmp" else key] = str(value)
        comment = img.info.get("comment")
        if comment:
            out["Comment"] = comment.decode("utf-8", "replace") if isinstance(comment, bytes) else str(comment)
        exif = img.getexif()
        if 0x010E in exif:
            out["ImageDescription"] = str(exif[0x010E])
        if 0x0131 in exif:
            out["Software"] = str(exif[0x0131])
        user = exif.get_ifd(0x8769).get(0x9286)
        if user:
            raw = user if isinstance(user, bytes) else str(user).encode()
            out["UserComment"] = raw[8:].decode("ascii", "replace") if raw[:8] == b"ASCII\x00\x00\x00" else raw.decode("utf-8", "replace")
        xmp = img.info.get("xmp")
        if xmp and "XMP" not in out:  # PNG's iTXt packet is also in img.info["xmp"]: once is enough
            out["XMP"] = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
    return out


#: iTunes-style metadata items ffmpeg writes for ``-metadata comment=... description=...`` -> our label keys.
_MP4_TAGS = {b"\xa9cmt": "Comment", b"desc": "Description", b"\xa9too": "Software"}


def _mp4_boxes(data: bytes, start: int, end: int):
    """(type, payload start, end) of the boxes in ``data[start:end]``."""
    i = start
    while i + 8 <= end:
        size, head = int.from_bytes(data[i : i + 4], "big"), 8
        if size == 1:
            size, head = int.from_bytes(data[i + 8 : i + 16], "big"), 16
        elif size == 0:
            size = end - i
        if size < head or i + size > end:
            return
        yield data[i + 4 : i + 8], i + head, i + size
        i += size


def _mp4_tags(path: Path) -> dict[str, str]:
    """Comment / description / encoder tags of an MP4 (moov/udta/meta/ilst), reading only the moov box."""
    moov = b""
    with open(path, "rb") as f:
        size = path.stat().st_size
        pos = 0
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            n, skip = int.from_bytes(head[:4], "big"), 8
            if n == 1:
                n, skip = int.from_bytes(head[8:16], "big"), 16
            elif n == 0:
                n = size - pos
            if n < skip:
                break
            if head[4:8] == b"moov":
                f.seek(pos + skip)
                moov = f.read(n - skip)
                break
            pos += n
    out: dict[str, str] = {}
    ilst = _mp4_find(moov, 0, len(moov), (b"udta", b"meta", b"ilst"))
    for item, a, b in _mp4_boxes(moov, *ilst) if ilst else ():
        data = _mp4_find(moov, a, b, (b"data",))
        if data and item in _MP4_TAGS:  # 4 bytes type + 4 bytes locale, then the value
            out[_MP4_TAGS[item]] = moov[data[0] + 8 : data[1]].decode("utf-8", "replace")
    return out


def _mp4_find(data: bytes, start: int, end: int, path: tuple[bytes, ...]) -> tuple[int, int] | None:
    """Payload (start, end) of the box at ``path`` below ``data[start:end]``."""
    for kind, a, b in _mp4_boxes(data, start, end):
        if kind == path[0]:
            a += 4 if kind == b"meta" else 0  # meta is a full box: 4 bytes of version and flags first
            return (a, b) if len(path) == 1 else _mp4_find(data, a, b, path[1:])
    return None


# ---------------------------------------------------------------------- Matroska tags
_EBML = b"\x1a\x45\xdf\xa3"
_MKV_SEGMENT, _MKV_TAGS, _MKV_TAG, _MKV_TARGETS, _MKV_SIMPLE = 0x18538067, 0x1254C367, 0x7373, 0x63C0, 0x67C8
_MKV_NAME, _MKV_STRING = 0x45A3, 0x4487
_MKV_TARGET_TYPE = (0x68CA, 0x63CA)  # TargetTypeValue, TargetType: a level, not a track
#: Global Matroska tags ffmpeg writes for ``-metadata comment=... description=...`` -> our label keys.
_MKV_LABEL = {"COMMENT": "Comment", "DESCRIPTION": "Description", "ENCODER": "Software"}
#: Largest Tags element read (a label is a few hundred bytes; a hostile size is not read).
_MKV_MAX_TAGS = 1 << 20


def _ebml_vint(data: bytes, i: int, keep_marker: bool) -> tuple[int | None, int]:
    """An EBML variable-length integer at ``data[i]``: (value, next index); value None for "unknown size"."""
    if i >= len(data) or data[i] == 0:
        raise ValueError("bad EBML number")
    n = 9 - data[i].bit_length()  # bytes in the number: the position of the first set bit
    if i + n > len(data):
        raise ValueError("truncated EBML number")
    value = int.from_bytes(data[i : i + n], "big")
    if not keep_marker:
        value &= (1 << (7 * n)) - 1
        if value == (1 << (7 * n)) - 1:
            return None, i + n
    return value, i + n


def _ebml_children(data: bytes, start: int, end: int):
    """(id, payload start, payload end) of the EBML elements in ``data[start:end]``."""
    i = start
    while i < end:
        eid, i = _ebml_vint(data, i, keep_marker=True)
        size, i = _ebml_vint(data, i, keep_marker=False)
        stop = end if size is None else i + size
        if stop > end:
            return
        yield eid, i, stop
        i = stop


def _mkv_tags(path: Path) -> dict[str, str]:
    """The global COMMENT / DESCRIPTION / ENCODER tags of a Matroska file: the top-level elements of the segment
    are skipped by their sizes; only the Tags element is read."""
    out: dict[str, str] = {}
    size = path.stat().st_size
    with open(path, "rb") as f:
        def element(pos: int) -> tuple[int, int | None, int]:
            f.seek(pos)
            head = f.read(12)
            eid, i = _ebml_vint(head, 0, keep_marker=True)
            length, j = _ebml_vint(head, i, keep_marker=False)
            return eid, length, pos + j

        try:
            eid, length, pos = element(0)  # the EBML header
            pos += length or 0
            while pos < size:  # top-level: find the segment
                eid, length, body = element(pos)
                if eid == _MKV_SEGMENT:
                    break
                if length is None:
                    return out
                pos = body + length
            else:
                return out
            seg_end = size if length is None else min(size, body + length)
            pos = body
            while pos < seg_end:
                eid, length, body = element(pos)
                if length is None:  # an element of unknown size (a live stream's cluster): nothing after it is found
                    break
                if eid == _MKV_TAGS and length <= _MKV_MAX_TAGS:
                    f.seek(body)
                    tags = f.read(length)
                    for kind, a, b in _ebml_children(tags, 0, len(tags)):
                        if kind == _MKV_TAG:
                            _mkv_tag(tags, a, b, out)
                pos = body + length
        except ValueError:  # a damaged file: what was found so far
            pass
    return out


def _mkv_tag(data: bytes, start: int, end: int, out: dict[str, str]) -> None:
    """The simple tags of one Tag element that targets the whole file (its Targets name no track)."""
    simple = []
    for kind, a, b in _ebml_children(data, start, end):
        if kind == _MKV_TARGETS and any(t not in _MKV_TARGET_TYPE for t, _, _ in _ebml_children(data, a, b)):
            return  # a tag of one track, edition, chapter or attachment (e.g. a track's DURATION)
        if kind == _MKV_SIMPLE:
            simple.append((a, b))
    for a, b in simple:
        name = value = None
        for kind, x, y in _ebml_children(data, a, b):
            if kind == _MKV_NAME:
                name = data[x:y].decode("utf-8", "replace")
            elif kind == _MKV_STRING:
                value = data[x:y].decode("utf-8", "replace")
        if name and value is not None and name.upper() in _MKV_LABEL:
            out[_MKV_LABEL[name.upper()]] = value
