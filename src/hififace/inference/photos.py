"""Whole photos in and out: upright RGB for the face pipeline, and a written result that keeps the file's properties.

:func:`read_photo` decodes a photo once and keeps what writing it back needs: the pixels as stored (before EXIF
orientation), the colour mode, the EXIF block, the ICC profile and, for JPEG, the quantisation tables.
:func:`write_photo` writes the swapped result so that

* size, colour mode (RGB, L, RGBA, LA, P, CMYK, 16-bit grey), ICC profile and EXIF (orientation included; no
  embedded thumbnail) are kept, with the synthetic-content label added;
* pixels are stored in the file's own orientation, so a viewer shows the result exactly as the input;
* only pixels inside the blended face region change: every other stored value is copied from the input, so with a
  lossless output (PNG, WebP) they are bit-identical;
* a JPEG written from a JPEG reuses its quantisation tables and chroma subsampling (the same quality).

Modes PIL cannot convert to from RGB, or that the output format cannot hold, are written as RGB (or RGBA) with a
log note.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

log = logging.getLogger(__name__)

#: Largest photo accepted, in pixels (checked from the file header before decoding).
MAX_PHOTO_PIXELS = 200_000_000
#: Modes written back as they are, per output format.
_KEEP_MODES = {
    "PNG": ("RGB", "RGBA", "L", "LA", "P", "I;16", "I"),
    "JPEG": ("RGB", "L", "CMYK"),
    "WEBP": ("RGB", "RGBA"),
}


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


# ---------------------------------------------------------------- EXIF orientation as numpy index operations
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


# ---------------------------------------------------------------- reading
def read_photo(path: str | Path) -> Photo:
    """Decode a photo file; every problem is one :class:`~hififace.errors.InputImageError` naming the file."""
    from .images import _decode, _flatten

    path = Path(path)
    native = _decode(path, max_pixels=MAX_PHOTO_PIXELS, upright=False)
    try:
        orientation = int(native.getexif().get(0x0112, 1))
    except Exception as err:  # a broken EXIF block must not make a readable photo unusable
        log.warning("%s: ignoring unreadable EXIF (%s)", path, str(err)[:80])
        orientation = 1
    if orientation not in range(1, 9):
        orientation = 1
    save_info: dict[str, Any] = {}
    for key in ("icc_profile", "transparency"):
        if native.info.get(key) is not None:
            save_info[key] = native.info[key]
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as header:  # the decoded copy lost these; reading the header again costs nothing
        fmt = header.format
        if fmt == "JPEG" and getattr(header, "quantization", None):
            save_info["qtables"] = header.quantization
            save_info["subsampling"] = JpegImagePlugin.get_sampling(header)
    rgb = upright(_flatten(native, path), orientation)
    exif = native.info.get("exif")
    return Photo(rgb, path, fmt, orientation, native, exif if isinstance(exif, bytes) else None, save_info)


def photo_from_array(image: Any) -> Photo:
    """An in-memory image (uint8 array, grey or RGB(A), or a PIL image, taken as upright) as a :class:`Photo`."""
    from PIL import Image

    from ..face.io import to_rgb_uint8
    from ..utils.images_pil import pil_to_array

    if isinstance(image, Image.Image):
        return Photo(pil_to_array(image))
    return Photo(to_rgb_uint8(image))


# ---------------------------------------------------------------- writing
def _mode_values(rgb: np.ndarray, native: Any) -> np.ndarray:
    """RGB pixels in ``native``'s mode and value range (the array of an image of that mode)."""
    from PIL import Image

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


def compose(photo: Photo, result: np.ndarray, changed: np.ndarray, fmt: str) -> tuple[Any, dict[str, Any]]:
    """The PIL image to write for ``photo`` with upright ``result`` pixels where ``changed`` (upright bool mask).

    Returns the image and the extra save options that still apply (ICC, transparency, JPEG tables).
    """
    from PIL import Image

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


def write_photo(path: str | Path, photo: Photo, result: np.ndarray, changed: np.ndarray,
                meta: Mapping[str, str] | None = None, watermark: bool = False) -> Path:
    """Write ``result`` (upright H x W x 3 uint8) for ``photo`` atomically, labelled; see the module doc.

    ``changed`` (upright H x W bool) marks the pixels the swap touched; all others are copied from the input.
    With ``watermark`` the visible mark is drawn too (and those pixels change).
    """
    from .images import OUTPUT_FORMATS, check_output_path, write_labelled
    from .watermark import WATERMARK_TEXT, add_watermark

    path = check_output_path(path)
    fmt = OUTPUT_FORMATS[path.suffix.lower()]
    if watermark:
        from PIL import Image

        marked = np.asarray(add_watermark(Image.fromarray(result, "RGB"), WATERMARK_TEXT))
        changed = changed | (marked != result).any(axis=2)
        result = marked
    img, save_kw = compose(photo, result, changed, fmt)
    if photo.exif is not None:
        from PIL import Image

        exif = Image.Exif()
        exif.load(photo.exif)
    else:
        exif = None
    return write_labelled(path, img, meta, exif=exif, **save_kw)
