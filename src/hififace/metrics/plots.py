"""Report figures drawn with PIL (no plotting dependency): metric histograms and example strips."""
from __future__ import annotations

from typing import Sequence

import numpy as np

BAR = (70, 110, 180)
MEAN = (200, 40, 40)
INK = (30, 30, 30)
GRID = (225, 225, 225)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def _fmt(v: float, span: float = 1.0) -> str:
    """Enough digits to tell apart values ``span`` apart."""
    if abs(v) >= 1000:
        return f"{v:.0f}"
    digits = 3 if span <= 0 else max(3, int(np.ceil(np.log10(max(abs(v), 1e-12) / span))) + 2)
    return f"{v:.{min(digits, 9)}g}"


def histogram(values: Sequence[float], title: str, unit: str = "", bins: int = 20, size=(560, 360)):
    """A PIL image: histogram of ``values`` with the mean marked and n / mean / median in the title."""
    from PIL import Image, ImageDraw

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    w, h = size
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font, small = _font(15), _font(12)
    left, right, top, bottom = 56, 20, 44, 48
    if len(v) == 0:
        d.text((left, top), f"{title}: no values", fill=INK, font=font)
        return img
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    peak = max(int(counts.max()), 1)
    pw, ph = w - left - right, h - top - bottom
    for frac in (0.25, 0.5, 0.75, 1.0):
        y = top + ph - frac * ph
        d.line([(left, y), (left + pw, y)], fill=GRID)
    for i, c in enumerate(counts):
        x0 = left + pw * i / bins
        x1 = left + pw * (i + 1) / bins
        y0 = top + ph - ph * c / peak
        if c:
            d.rectangle([x0 + 1, y0, x1 - 1, top + ph], fill=BAR)
    mean = float(v.mean())
    xm = left + pw * (mean - lo) / (hi - lo)
    for y in range(top, top + ph, 8):
        d.line([(xm, y), (xm, min(y + 4, top + ph))], fill=MEAN, width=2)
    d.line([(left, top + ph), (left + pw, top + ph)], fill=INK)
    d.line([(left, top), (left, top + ph)], fill=INK)
    for x, val in ((left, lo), (left + pw / 2, (lo + hi) / 2), (left + pw, hi)):
        label = _fmt(val, hi - lo)
        tw = d.textlength(label, font=small)
        d.text((min(max(x - tw / 2, 0), w - tw), top + ph + 6), label, fill=INK, font=small)
    d.text((4, top - 4), str(peak), fill=INK, font=small)
    d.text((4, top + ph - 14), "0", fill=INK, font=small)
    if unit:
        tw = d.textlength(unit, font=small)
        d.text((left + (pw - tw) / 2, h - 20), unit, fill=INK, font=small)
    head = f"{title}   n={len(v)}  mean={_fmt(mean)}  median={_fmt(float(np.median(v)))}"
    d.text((left, 12), head, fill=INK, font=font)
    return img


def strip(examples: Sequence[tuple[str, Sequence[np.ndarray]]], columns: Sequence[str], title: str, cell: int = 128):
    """A PIL image: one row per example (its images side by side, resized to ``cell``), captioned on the left."""
    from PIL import Image, ImageDraw

    font, small = _font(14), _font(12)
    cap_w, head_h, row_gap = 190, 48, 6
    n = max(len(examples), 1)
    w = cap_w + cell * len(columns)
    h = head_h + n * (cell + row_gap)
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((8, 6), title, fill=INK, font=font)
    for j, name in enumerate(columns):
        d.text((cap_w + j * cell + 4, head_h - 18), name, fill=INK, font=small)
    for i, (caption, images) in enumerate(examples):
        y = head_h + i * (cell + row_gap)
        for k, line in enumerate(caption.split("\n")):
            d.text((8, y + 4 + 16 * k), line, fill=INK, font=small)
        for j, a in enumerate(images):
            if a is None:
                continue
            tile = Image.fromarray(np.ascontiguousarray(a)).convert("RGB").resize((cell, cell), Image.BILINEAR)
            img.paste(tile, (cap_w + j * cell, y))
    return img
