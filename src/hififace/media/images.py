"""Image files in and out: the one decoder, the one list of extensions, the one labelled writer.

Reading turns every problem with a file into one :class:`~hififace.errors.InputImageError` line naming the file and
the fix (:class:`NotAnImageError` when the file holds no image at all). :func:`decode` checks the header (size
limits of :mod:`hififace.media.limits`, one per use), decodes fully (a truncated file fails here) and keeps what
writing back needs; :func:`to_rgb` turns any colour mode into H x W x 3 uint8 RGB:

* transparency (RGBA, LA, palette with a transparent colour) is composited onto black; opaque pixels are unchanged;
* 16-bit greyscale is scaled to 8 bits (PIL's ``convert`` would clip it); 16-bit RGB is read as 8 bits by PIL;
* greyscale, palette, CMYK and the rest go to RGB the way PIL's ``convert("RGB")`` does, as the reference does;
* an ICC profile is kept for writing back, never applied.

EXIF orientation is applied as numpy index operations (:func:`upright`), so the stored pixels stay available:
:func:`read_photo` keeps them (with the mode, EXIF, ICC profile and JPEG tables) so that :func:`write_photo` can
write a result that keeps the file's properties; :func:`read_crop` reads an aligned face crop (fitted to the model
size as the reference's ``Resize`` does when asked).

Writing (:func:`write_image`) is the one place an image file is made: the format comes from the extension, the file
is written atomically (a temporary renamed into place) and labelled as synthetic (:mod:`hififace.provenance.label`).
8-bit pixels are written as they are, so a PNG of the model output equals the reference's ``ToPILImage().save()``.
:func:`hififace.media.labels.read_label` reads a label back.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from ..errors import HifiFaceError, InputImageError
from ..provenance import outputs as _prov
from ..provenance.label import WATERMARK_TEXT, add_watermark, exif_bytes, label_fields, xmp_packet
from ..utils.atomic import atomic_path, unwritable_reason
from ..utils.files import require_regular
from .limits import CROP_MAX_PIXELS, MIN_SIDE, PHOTO_MAX_PIXELS

log = logging.getLogger(__name__)

#: Extensions read as images wherever a folder is walked (compared lower-case); messages list them in this order.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: Output extension -> PIL format.
OUTPUT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
FIX_CROP = "give an aligned square face crop (ideally the model size, e.g. 256x256 PNG)"
#: Modes written back as they are, per output format.
_KEEP_MODES = {
    "PNG": ("RGB", "RGBA", "L", "LA", "P", "I;16", "I"),
    "JPEG": ("RGB", "L", "CMYK"),
    "WEBP": ("RGB", "RGBA"),
}
#: First bytes of the image formats read (a file that starts with one of them but does not decode is damaged).
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


class NotAnImageError(InputImageError):
    """The file is not an image at all (empty, text, a document, ...), as opposed to a damaged image file."""


# ---------------------------------------------------------------------------------------------- decoding
def decode(path: str | Path, *, max_pixels: int, min_side: int = MIN_SIDE) -> Image.Image:
    """Open ``path``, refuse it from its header when over ``max_pixels`` or under ``min_side``, decode it fully and
    return the PIL image as stored (EXIF orientation not applied; its ``info`` keeps ICC profile and EXIF)."""
    path = Path(path)
    if not path.exists():
        raise InputImageError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise InputImageError(f"{path}: is a folder, not an image file")
    require_regular(path, "image", InputImageError)  # a FIFO would make PIL wait forever
    try:
        if path.stat().st_size == 0:
            raise NotAnImageError(f"{path}: empty file (0 bytes); re-export or re-download the image")
        img = Image.open(path)
    except InputImageError:
        raise
    except PermissionError:
        raise InputImageError(f"{path}: cannot read the file (permission denied); check its permissions") from None
    except UnidentifiedImageError:
        damaged = _has_image_magic(path)  # an image header PIL cannot parse, or no image at all
        raise (InputImageError if damaged else NotAnImageError)(
            f"{path}: not an image file PIL can read; use PNG or JPEG") from None
    except Image.DecompressionBombError:
        raise InputImageError(f"{path}: image is far too large to decode safely; {FIX_CROP}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InputImageError(f"{path}: cannot read the image ({_reason(err)}); re-export it as PNG or JPEG") from None
    with img:
        w, h = img.size
        if w * h > max_pixels:  # from the header: nothing is decoded yet
            raise InputImageError(f"{path}: {w}x{h} is too large (limit {max_pixels // 1_000_000} megapixels); "
                                  f"{FIX_CROP}")
        if min(w, h) < min_side:
            raise InputImageError(f"{path}: {w}x{h} is too small (at least {min_side}x{min_side}); {FIX_CROP}")
        try:
            img.load()  # decode now so that a truncated file fails here
        except MemoryError:
            raise InputImageError(f"{path}: not enough memory to decode {w}x{h}; {FIX_CROP}") from None
        except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, zlib/struct errors on bad data
            raise InputImageError(
                f"{path}: cannot decode the image ({_reason(err)}); the file is truncated or corrupt, re-export it"
            ) from None
        return img.copy()


def _has_image_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


def exif_orientation(img: Image.Image, name: Any = "image") -> int:
    """EXIF orientation 1..8 of a decoded image (1 when absent, invalid or unreadable, with a warning)."""
    try:
        value = int(img.getexif().get(0x0112, 1))
    except Exception as err:  # a broken EXIF block must not make a readable photo unusable
        log.warning("%s: ignoring unreadable EXIF (%s)", name, str(err)[:80])
        return 1
    return value if value in range(1, 9) else 1


def to_rgb(img: Image.Image, name: Any = "image") -> np.ndarray:
    """PIL image of any mode -> H x W x 3 uint8 RGB (see the module doc); transparency composited onto black."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if alpha.min() < 255:
            log.warning("%s: has transparency; composited onto black", name)
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / peak * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """H x W (grey), H x W x 3 or H x W x 4 uint8 (or float in [0, 1]) -> contiguous H x W x 3 uint8."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.floating):
            a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        else:
            raise InputImageError(f"image of dtype {a.dtype}: expected uint8 RGB or float in [0, 1]")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputImageError(f"image of shape {a.shape}: expected H x W x 3 RGB")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


# ---------------------------------------------------------------------------------------------- EXIF orientation
def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels -> displayed pixels for EXIF ``orientation`` 1..8 (what ``ImageOps.exif_transpose`` does)."""
    ops = {
        1: lambda x: x,
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: np.swapaxes(x, 0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: np.swapaxes(x[::-1, ::-1], 0, 1),
        8: lambda x: np.rot90(x, 1),
    }
    return np.ascontiguousarray(ops.get(int(orientation), ops[1])(a))


def stored(a: np.ndarray, orientation: int) -> np.ndarray:
    """Inverse of :func:`upright`: displayed pixels back to the file's orientation."""
    inverse = {6: 8, 8: 6}
    return upright(a, inverse.get(int(orientation), int(orientation)))


# ---------------------------------------------------------------------------------------------- photos and crops
@dataclass
class Photo:
    """A decoded photo: ``rgb`` is upright (EXIF orientation applied) H x W x 3 uint8, what detection sees."""

    rgb: np.ndarray
    path: Path | None = None
    format: str | None = None
    orientation: int = 1
    native: Any = None  # PIL image as stored in the file (orientation not applied), or None for in-memory arrays
    exif: bytes | None = None
    save_info: dict[str, Any] = field(default_factory=dict)  # icc_profile, transparency, JPEG tables

    @property
    def size(self) -> tuple[int, int]:
        """Upright (width, height)."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


def read_photo(path: str | Path, max_pixels: int = PHOTO_MAX_PIXELS) -> Photo:
    """Decode a whole photo (up to :data:`~hififace.media.limits.PHOTO_MAX_PIXELS`), keeping what writing it back
    needs; every problem is one :class:`~hififace.errors.InputImageError` naming the file."""
    path = Path(path)
    native = decode(path, max_pixels=max_pixels)
    turn = exif_orientation(native, path)
    save_info: dict[str, Any] = {}
    for key in ("icc_profile", "transparency"):
        if native.info.get(key) is not None:
            save_info[key] = native.info[key]
    with Image.open(path) as header:  # the decoded copy lost these; reading the header again costs nothing
        fmt = header.format
        if fmt == "JPEG" and getattr(header, "quantization", None):
            save_info["qtables"] = header.quantization
            save_info["subsampling"] = JpegImagePlugin.get_sampling(header)
    rgb = upright(to_rgb(native, path), turn)
    exif = native.info.get("exif")
    return Photo(rgb, path, fmt, turn, native, exif if isinstance(exif, bytes) else None, save_info)


def photo_from_array(image: Any) -> Photo:
    """An in-memory image (uint8 array, grey or RGB(A), or a PIL image, taken as upright) as a :class:`Photo`."""
    if isinstance(image, Image.Image):
        return Photo(to_rgb(image))
    return Photo(to_rgb_uint8(image))


def read_crop(path: str | Path, size: int | None = None) -> np.ndarray:
    """Read an aligned face crop (up to :data:`~hififace.media.limits.CROP_MAX_PIXELS`) as upright H x W x 3 uint8
    RGB; with ``size``, fitted to ``size`` x ``size`` by :func:`fit_to_size`."""
    photo = read_photo(path, CROP_MAX_PIXELS)
    return photo.rgb if size is None else fit_to_size(photo.rgb, size, name=str(path))


def fit_to_size(array: np.ndarray, size: int, name: str = "image") -> np.ndarray:
    """Resize like the reference's ``Resize(size)`` (PIL bilinear, shorter side) then centre-crop to a square.

    An array that already is ``size`` x ``size`` is returned unchanged.
    """
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


# ---------------------------------------------------------------------------------------------- writing
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
    why = unwritable_reason(path.parent)  # missing folders are made when writing; one that cannot be is refused now
    if why:
        raise HifiFaceError(f"{path}: cannot write there ({why}); choose another -o")
    return path


def to_pil(image: Any) -> Image.Image:
    """uint8 H x W x 3 array or PIL image -> RGB PIL image (8-bit values kept as they are)."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise TypeError(f"expected a uint8 array (use hififace.media.tensors.to_uint8), got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(a[:, :, :3]), "RGB")


def write_image(path: str | Path, image: Any, *, meta: Mapping[str, str] | None = None, labelled: bool = True,
                watermark: bool = False, watermark_text: str | None = None, exif: Any = None,
                provenance: "_prov.Provenance | None" = None, ingredient: str | Path | None = None,
                **save_kw: Any) -> Path:
    """Write ``image`` to ``path`` atomically, in the format of its extension, labelled as synthetic: the one place
    an image file is made (every label, mark and signature an output carries is applied here).

    ``image``: a uint8 H x W x 3 array, or a PIL image (written in its own mode where the format holds it, e.g. the
    grey, palette or 16-bit photos of :func:`write_photo`; else as RGB). ``meta``: extra label fields (e.g. :func:`hififace.provenance.label.output_label`'s).
    PNG gets text chunks and an XMP packet, JPEG and WebP EXIF (ImageDescription, Software, UserComment) and XMP;
    ``exif`` (a ``PIL.Image.Exif``) is kept and the label's tags are added to it. ``watermark`` also draws the
    visible mark. ``labelled=False`` writes the pixels alone (the ``faces`` preview, which shows no face of anyone's
    making). ``save_kw`` go to PIL's ``save`` (``icc_profile``, ``transparency``, JPEG ``qtables``; JPEG quality
    defaults to 95 when labelled).

    A model output (``meta`` from :func:`~hififace.provenance.label.output_label`) also gets the invisible
    watermark (after the visible mark, before encoding; RGB images) and a signed C2PA manifest on the temporary
    file before the rename (:mod:`hififace.provenance.outputs`; ``provenance`` overrides the run's default,
    ``ingredient`` is the target file, added to the manifest only with ``--c2pa-ingredients``).
    """
    path = check_output_path(path)
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    if isinstance(image, Image.Image):  # written in its own mode where the format holds it
        img = image if image.mode in _KEEP_MODES[fmt] else image.convert("RGB")
    else:
        img = to_pil(image)
    if watermark:
        img = add_watermark(img, watermark_text or WATERMARK_TEXT)
    if labelled and img.mode == "RGB":
        pixels = np.asarray(img)
        marked = _prov.mark(pixels, meta, provenance)
        if marked is not pixels:
            img = Image.fromarray(marked, "RGB")
    with atomic_path(path) as tmp:
        if not labelled:
            img.save(tmp, format=fmt, **save_kw)
        elif fmt == "PNG":
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
        if labelled:
            _prov.sign(tmp, meta, name=path, ingredient=ingredient, provenance=provenance)
    return path


def write_photo(path: str | Path, photo: Photo, result: np.ndarray, changed: np.ndarray,
                meta: Mapping[str, str] | None = None, watermark: bool = False,
                provenance: "_prov.Provenance | None" = None) -> Path:
    """Write ``result`` (upright H x W x 3 uint8) for ``photo`` so that the file keeps the photo's properties:

    * size, colour mode (RGB, L, RGBA, LA, P, CMYK, 16-bit grey), ICC profile and EXIF (orientation included; no
      embedded thumbnail) are kept, with the synthetic-content label added;
    * pixels are stored in the file's own orientation, so a viewer shows the result exactly as the input;
    * only pixels where ``changed`` (upright H x W bool) change: every other stored value is copied from the input,
      so with a lossless output (PNG, WebP) they are bit-identical;
    * a JPEG written from a JPEG reuses its quantisation tables and chroma subsampling (the same quality).

    Modes PIL cannot convert to from RGB, or that the output format cannot hold, are written as RGB (or RGBA) with
    a log note. With ``watermark`` the visible mark is drawn too (and those pixels change). A model output (``meta``
    from :func:`~hififace.provenance.label.output_label`) gets the invisible watermark over the whole frame (so
    any pixel may change by a few levels; PSNR 41 dB) and a C2PA manifest, as :func:`write_image` says; the photo's file
    is then the manifest's ingredient when ``--c2pa-ingredients`` asks for it.
    """
    path = check_output_path(path)
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    if watermark:
        marked = np.asarray(add_watermark(Image.fromarray(result, "RGB"), WATERMARK_TEXT))
        changed = changed | (marked != result).any(axis=2)
        result = marked
    prov = provenance if provenance is not None else _prov.current()
    marked = _prov.mark(result, meta, prov)
    if marked is not result:  # the whole frame carries the mark
        changed = changed | (marked != result).any(axis=2)
        result = marked
    img, save_kw = _compose(photo, result, changed, fmt)
    exif = None
    if photo.exif is not None:
        exif = Image.Exif()
        exif.load(photo.exif)
    return write_image(path, img, meta=meta, exif=exif, provenance=prov.replace(invisible=False),
                       ingredient=photo.path, **save_kw)


def _mode_values(rgb: np.ndarray, native: Any) -> np.ndarray:
    """RGB pixels in ``native``'s mode and value range (the array of an image of that mode)."""
    mode = native.mode
    img = Image.fromarray(rgb, "RGB")
    if mode in ("RGB", "RGBA"):
        return rgb
    if mode in ("L", "LA"):
        return np.asarray(img.convert("L"))
    if mode == "CMYK":
        return np.asarray(img.convert("CMYK"))
    if mode == "P":
        return np.asarray(img.quantize(palette=native, dither=Image.Dither.NONE))
    if mode in ("I;16", "I"):
        grey = np.asarray(img.convert("L")).astype(np.uint32)
        scale = 257 if mode == "I;16" or np.asarray(native).max() > 255 else 1
        return grey * scale
    raise ValueError(mode)


def _compose(photo: Photo, result: np.ndarray, changed: np.ndarray, fmt: str) -> tuple[Any, dict[str, Any]]:
    """The PIL image to write for ``photo`` with upright ``result`` pixels where ``changed`` (upright bool mask),
    and the extra save options that still apply (ICC, transparency, JPEG tables)."""
    rgb_stored = stored(result, photo.orientation)
    mask = stored(changed, photo.orientation)
    native = photo.native
    if native is None:  # an in-memory image: nothing else to keep
        return Image.fromarray(rgb_stored, "RGB"), {}
    mode = native.mode
    if mode in _KEEP_MODES[fmt] and (mode != "P" or native.palette is not None):
        values = _mode_values(rgb_stored, native)
        arr = np.asarray(native).copy()
        if mode in ("RGBA", "LA"):  # colour channels swapped, the alpha channel kept
            arr[..., : arr.shape[2] - 1][mask] = values[mask].reshape(-1, arr.shape[2] - 1)
        else:
            arr[mask] = values[mask].astype(arr.dtype)
        out = Image.fromarray(arr.astype(np.uint16), "I;16") if mode == "I;16" else Image.fromarray(arr, mode)
        if mode == "P":
            out.putpalette(native.getpalette())
    else:
        new_mode = "RGBA" if ("A" in mode or "transparency" in native.info) and "RGBA" in _KEEP_MODES[fmt] else "RGB"
        log.info("%s: colour mode %s written as %s (%s cannot hold it unchanged)", photo.path, mode, new_mode, fmt)
        arr = np.asarray(native.convert(new_mode)).copy()
        arr[..., :3][mask] = rgb_stored[mask]
        out = Image.fromarray(arr, new_mode)
    info = {k: v for k, v in photo.save_info.items() if k == "icc_profile"}
    if out.mode == mode and fmt == "PNG" and "transparency" in photo.save_info:
        info["transparency"] = photo.save_info["transparency"]
    if out.mode == mode and fmt == "JPEG" and photo.format == "JPEG" and "qtables" in photo.save_info:
        info.update(qtables=photo.save_info["qtables"], subsampling=photo.save_info["subsampling"])
    return out, info
