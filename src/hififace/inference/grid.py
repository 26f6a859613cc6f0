"""Labelled source x target grids: the first row shows the targets, the first column the sources.

Cell (i, j) holds source i swapped onto target j. Every image has a caption band beneath it with its file stem.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..face.align import template_points
from ..face.mouth import keep_target, mouth_mask

if TYPE_CHECKING:  # pragma: no cover
    from .enhance import FaceEnhancer

log = logging.getLogger(__name__)

CORNER_TEXT = "source \\ target"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType
        return ImageFont.load_default()


def _fit_text(draw, text: str, font, width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def make_grid(
    source_names: Sequence[str],
    sources: Sequence[np.ndarray],
    target_names: Sequence[str],
    targets: Sequence[np.ndarray],
    results: Sequence[Sequence[np.ndarray]],
    cell: int | None = None,
    padding: int = 2,
):
    """Compose a PIL image: ``results[i][j]`` is source i on target j (uint8 H x W x 3 arrays).

    ``cell`` is the side each image is shown at (default: the size of the first result).
    """
    from PIL import Image, ImageDraw

    ns, nt = len(sources), len(targets)
    if len(source_names) != ns or len(target_names) != nt or len(results) != ns or any(len(r) != nt for r in results):
        raise ValueError("make_grid: names, images and results do not line up")
    cell = int(cell or (results[0][0].shape[0] if ns and nt else 256))
    band = max(12, cell // 12)  # caption band under each image
    font = _font(max(8, band - 4))
    step_x, step_y = cell + padding, cell + band + padding
    canvas = Image.new("RGB", (padding + (nt + 1) * step_x, padding + (ns + 1) * step_y), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)

    def put(array: np.ndarray | None, row: int, col: int, caption: str) -> None:
        x, y = padding + col * step_x, padding + row * step_y
        if array is not None:
            img = Image.fromarray(np.ascontiguousarray(array))
            if img.size != (cell, cell):
                img = img.resize((cell, cell), Image.BILINEAR)
            canvas.paste(img, (x, y))
        if caption:
            text = _fit_text(draw, caption, font, cell - 4)
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tx = x + (cell - (right - left)) // 2 - left
            ty = y + cell + (band - (bottom - top)) // 2 - top
            draw.text((tx, ty), text, font=font, fill=(0, 0, 0))

    put(None, 0, 0, "")
    # the corner cell names the axes, centred in the empty square
    text = _fit_text(draw, CORNER_TEXT, font, cell - 4)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((padding + (cell - (right - left)) // 2 - left, padding + (cell - (bottom - top)) // 2 - top), text,
              font=font, fill=(90, 90, 90))
    for j, (name, img) in enumerate(zip(target_names, targets)):
        put(img, 0, j + 1, name)
    for i, (name, img) in enumerate(zip(source_names, sources)):
        put(img, i + 1, 0, name)
        for j in range(nt):
            put(results[i][j], i + 1, j + 1, "")
    return canvas


def swap_grid(
    model: Any,
    sources: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    batch_size: int = 4,
    progress: Callable[[int], None] | None = None,
    keep_mouth: bool = False,
    keep_lips: bool = False,
    identity_strength: float = 1.0,
    shape_strength: float = 1.0,
    enhancer: "FaceEnhancer | None" = None,
) -> list[list[np.ndarray]]:
    """Every source on every target. Each source identity (``model.identity``) and each target batch
    (``model.prepare_target``: its 3DMM coefficients and encoder features) is computed once and reused.

    ``progress(n)`` is called after each batch with the number of swaps done in it. ``keep_mouth``/``keep_lips``:
    the target's mouth (the alignment template's 5 points: crops are aligned) is blended back into each result;
    ``identity_strength``/``shape_strength`` below 1 move each source toward each target's own identity
    (:meth:`~hififace.Identity.toward`; one more identity pass per target). ``enhancer`` restores each swapped crop
    (its five points are the model's alignment template), one restorer call per batch.
    """
    batch_size = max(1, int(batch_size))
    identities = [model.identity(src) for src in sources]
    results: list[list[np.ndarray]] = [[] for _ in sources]
    strength = identity_strength < 1.0 or shape_strength < 1.0
    keep = None
    if keep_mouth or keep_lips:
        size = int(model.config.image_size)
        lm = template_points(model.config.align, size)
        keep = 1.0 - keep_target(np.ones((size, size), np.float32), mouth_mask((size, size), lm, lips=keep_lips).alpha)
        keep = keep[..., None]
    for start in range(0, len(targets), batch_size):
        chunk = list(targets[start : start + batch_size])
        prepared = model.prepare_target(chunk)
        own = model.identity(chunk) if strength else None
        for row, ident in zip(results, identities):
            outs = model.swap(ident.toward(own, identity_strength, shape_strength) if strength else ident, prepared)
            if keep is not None:
                outs = [((1.0 - keep) * o + keep * t + 0.5).astype(np.uint8) for o, t in zip(outs, chunk)]
            if enhancer is not None:
                size = outs[0].shape[0]
                outs = list(enhancer.enhance_aligned(np.stack(outs), template_points(model.config.align, size)))
            row.extend(outs)
            if progress is not None:
                progress(len(prepared))
    return results
