"""Index of a face data set: images/<identity>/<name> matched to parsing/<identity>/<name>.png, cached on disk.

Unmatched files are skipped and counted (one warning per kind), never fatal; the cache is keyed by the two
folders and invalidated when an identity folder changes (its mtime).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..utils.atomic import atomic_write_text

log = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
PARSING_EXTS = (".png", ".bmp")
CACHE_VERSION = 1


@dataclass
class FaceIndex:
    """Matched files, relative to ``images``/``parsing``, grouped by identity (the first folder level)."""

    images: Path
    parsing: Path
    items: list[tuple[str, str, str]] = field(default_factory=list)  # (identity, image rel path, parsing rel path)
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def identities(self) -> list[str]:
        return sorted({ident for ident, _, _ in self.items})

    def subset(self, identities: set[str]) -> "FaceIndex":
        return FaceIndex(self.images, self.parsing, [it for it in self.items if it[0] in identities], Counter())


def _identity_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _signature(images: Path, parsing: Path) -> str:
    h = hashlib.sha1()
    for root in (images, parsing):
        h.update(str(root.resolve()).encode())
        h.update(str(root.stat().st_mtime_ns).encode())
        for d in _identity_dirs(root):
            h.update(d.name.encode())
            h.update(str(d.stat().st_mtime_ns).encode())
    return h.hexdigest()


def _files(folder: Path, exts: tuple[str, ...]) -> dict[str, str]:
    """stem-relative path (identity/stem) -> relative path with extension."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for name in names:
            if name.startswith(".") or not name.lower().endswith(exts):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
            out.setdefault(os.path.splitext(rel)[0], rel)
    return out


def scan(images: str | Path, parsing: str | Path) -> FaceIndex:
    """Walk both folders and pair files by identity/stem."""
    images, parsing = Path(images), Path(parsing)
    for what, p in (("data.images", images), ("data.parsing", parsing)):
        if not p.is_dir():
            raise ConfigError(f"{what}: {p} is not a folder; expected <folder>/<identity>/<image files>")
    imgs, maps = _files(images, IMAGE_EXTS), _files(parsing, PARSING_EXTS)
    index = FaceIndex(images, parsing)
    for key in sorted(imgs):
        if "/" not in key:
            index.skipped["image outside an identity folder"] += 1
            continue
        if key not in maps:
            index.skipped["image without parsing map"] += 1
            continue
        index.items.append((key.split("/", 1)[0], imgs[key], maps[key]))
    index.skipped["parsing map without image"] += len(set(maps) - set(imgs))
    index.skipped = Counter({k: v for k, v in index.skipped.items() if v})
    return index


def load_index(images: str | Path, parsing: str | Path, cache: str | Path | None = None) -> FaceIndex:
    """The index of a data set, read from ``cache`` when it is still valid, else scanned (and written there)."""
    images, parsing = Path(images), Path(parsing)
    if not images.is_dir() or not parsing.is_dir():
        return scan(images, parsing)  # raises the clear error
    sig = _signature(images, parsing)
    if cache is not None and Path(cache).is_file():
        try:
            data = json.loads(Path(cache).read_text(encoding="utf-8"))
            if data.get("version") == CACHE_VERSION and data.get("signature") == sig:
                index = FaceIndex(images, parsing, [tuple(x) for x in data["items"]], Counter(data.get("skipped", {})))
                log.info("data index: %d pairs from cache %s", len(index), cache)
                _warn_skipped(index)
                return index
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("data index cache %s is unreadable; scanning again", cache)
    index = scan(images, parsing)
    log.info("data index: %d image/parsing pairs in %d identities", len(index), len(index.identities))
    _warn_skipped(index)
    if cache is not None:
        payload = {"version": CACHE_VERSION, "signature": sig, "images": str(images.resolve()),
                   "parsing": str(parsing.resolve()), "items": index.items, "skipped": dict(index.skipped)}
        atomic_write_text(Path(cache), json.dumps(payload))
    return index


def _warn_skipped(index: FaceIndex) -> None:
    for reason, n in sorted(index.skipped.items()):
        log.warning("data: skipped %d file(s): %s", n, reason)


def split_by_identity(index: FaceIndex, val_identities: int | float, seed: int = 0) -> tuple[FaceIndex, FaceIndex]:
    """Train/validation split with no identity in both: ``val_identities`` is a count (int) or a fraction (< 1)."""
    idents = index.identities
    if not val_identities:
        return index, index.subset(set())
    n = int(round(len(idents) * val_identities)) if isinstance(val_identities, float) and val_identities < 1 else int(val_identities)
    n = max(1, n) if val_identities else 0
    if n >= len(idents):
        raise ConfigError(f"data.val_identities={val_identities} leaves no training identity ({len(idents)} identities "
                          "found); lower it or add identities")
    # Stable choice: order identities by a seeded hash, not by name (names are often sorted by size or date).
    ranked = sorted(idents, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    val = set(ranked[:n])
    return index.subset(set(idents) - val), index.subset(val)
