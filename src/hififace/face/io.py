"""Reading photos for the face pipeline: any file PIL opens -> H x W x 3 uint8 RGB, upright per EXIF."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import InputImageError
from ..utils.files import require_regular
from ..utils.images_pil import pil_to_array

#: Extensions the preprocessing walks (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
#: Decompression-bomb guard: larger photos are refused as unusable input, not a crash.
MAX_PIXELS = 200_000_000


class NotAnImageError(InputImageError):
    """The file is not an image at all (text, a document, ...), as opposed to a damaged image file."""


#: First bytes of the image formats the walk accepts (a file with one of them but undecodable is damaged).
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")


def _has_image_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def read_image(path: str | Path) -> np.ndarray:
    """Decode ``path`` fully into an RGB uint8 array; any failure is an :class:`InputImageError` naming the file
    (:class:`NotAnImageError` when it is no image at all)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    require_regular(path, "image", InputImageError)  # a FIFO would make PIL wait forever
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise InputImageError(f"{path}: {img.width}x{img.height} is too large; downscale it first")
                img.load()  # decode now, so truncated files fail here and not later
                img = ImageOps.exif_transpose(img)
                return pil_to_array(img)
    except InputImageError:
        raise
    except UnidentifiedImageError:
        if _has_image_magic(path):  # an image header PIL cannot parse: a damaged file
            raise InputImageError(f"{path}: cannot decode (damaged image header); the file may be truncated") from None
        raise NotAnImageError(f"{path}: not an image (PIL cannot identify it); remove it or convert it to PNG/JPEG") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputImageError(f"{path}: cannot decode ({reason[:120]}); the file may be truncated") from None


def to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Accept H x W (grey), H x W x 3 or H x W x 4 uint8 (or float in [0, 1]) and return contiguous H x W x 3 uint8."""
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
