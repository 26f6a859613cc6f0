"""What a written file says about itself: the synthetic-content label read back from images (PNG text, EXIF, XMP,
GIF comment) and videos (MP4/MOV and Matroska container tags, through :func:`hififace.media.video.read_tags`), for checks,
``hififace verify`` and ``info``."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..errors import InputImageError
from .video import read_tags

#: First bytes of a Matroska (EBML) file.
_EBML = b"\x1a\x45\xdf\xa3"
#: Container tags ffmpeg writes for ``-metadata comment=... description=...`` (and its encoder tag) -> label keys.
_TAGS = {"comment": "Comment", "description": "Description", "encoder": "Software"}


def read_label(path: str | Path) -> dict[str, str]:
    """The synthetic-content label of a written file (PNG text, EXIF, XMP, GIF comment, MP4/MOV and Matroska
    tags), for checks and ``info``. The XMP packet is reported once, as ``XMP``."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(12)
    if head[4:8] == b"ftyp" or head[:4] == _EBML:  # MP4 / MOV, Matroska (.mkv, .webm): PIL does not read them
        return _container_tags(path)
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


def _container_tags(path: Path) -> dict[str, str]:
    """The label tags of a video container, as ffmpeg reads them (``video`` extra); a file ffmpeg cannot open
    (damaged, cut) carries none."""
    try:
        tags = read_tags(path)
    except InputImageError:
        return {}
    return {label: tags[key] for key, label in _TAGS.items() if key in tags}
