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


def series(panels: Sequence[dict], title: str, x_label: str = "frame", width: int = 640, panel_height: int = 150):
    """A PIL image: one panel per metric, its values against ``x`` (frames of a video, faces of a photo).

    Each panel is a dict with ``name``, ``x`` and ``y`` (numbers; None or NaN leave a gap), optional ``unit``,
    ``threshold`` (a dashed line) and ``higher_is_better`` (points on the wrong side of the threshold are marked).
    """
    from PIL import Image, ImageDraw

    font, small = _font(15), _font(12)
    left, right, top, gap = 64, 20, 36, 34
    h = top + len(panels) * (panel_height + gap) + 16
    img = Image.new("RGB", (width, max(h, 80)), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 10), title, fill=INK, font=font)
    pw = width - left - right
    for i, panel in enumerate(panels):
        y0 = top + i * (panel_height + gap) + 18
        x = np.asarray(panel["x"], dtype=np.float64)
        y = np.asarray([np.nan if v is None else v for v in panel["y"]], dtype=np.float64)
        ok = np.isfinite(y)
        thr = panel.get("threshold")
        name = panel["name"] + (f" ({panel['unit']})" if panel.get("unit") else "")
        d.text((left, y0 - 17), name, fill=INK, font=small)
        d.rectangle([left, y0, left + pw, y0 + panel_height], outline=GRID)
        if not ok.any():
            d.text((left + 8, y0 + 8), "no values", fill=INK, font=small)
            continue
        lo, hi = float(y[ok].min()), float(y[ok].max())
        if thr is not None:
            lo, hi = min(lo, float(thr)), max(hi, float(thr))
        pad = 0.08 * (hi - lo) if hi > lo else 0.5
        lo, hi = lo - pad, hi + pad
        x_lo, x_hi = float(x.min()), float(x.max())
        x_span = x_hi - x_lo if x_hi > x_lo else 1.0

        def to_px(xv: float, yv: float) -> tuple[float, float]:
            px = left + pw * ((xv - x_lo) / x_span if x_hi > x_lo else 0.5)
            return px, y0 + panel_height * (1.0 - (yv - lo) / (hi - lo))

        for label_v in (lo + pad, hi - pad) if hi - lo > 2 * pad else (lo + pad,):
            _, py = to_px(x_lo, label_v)
            text = _fmt(label_v, hi - lo)
            d.text((left - 6 - d.textlength(text, font=small), py - 7), text, fill=INK, font=small)
        if thr is not None:
            _, ty = to_px(x_lo, float(thr))
            for xs in range(left, left + pw, 10):
                d.line([(xs, ty), (min(xs + 5, left + pw), ty)], fill=MEAN, width=1)
        run: list[tuple[float, float]] = []
        for xv, yv, good in zip(x, y, ok):
            if good:
                run.append(to_px(xv, yv))
            elif run:
                if len(run) > 1:
                    d.line(run, fill=BAR, width=2)
                run = []
        if len(run) > 1:
            d.line(run, fill=BAR, width=2)
        few = int(ok.sum()) <= 40
        higher = panel.get("higher_is_better", True)
        for xv, yv, good in zip(x, y, ok):
            if not good:
                continue
            bad = thr is not None and (yv < thr if higher else yv > thr)
            if bad or few:
                px, py = to_px(xv, yv)
                r = 3 if bad else 2
                d.ellipse([px - r, py - r, px + r, py + r], fill=MEAN if bad else BAR)
        for xv in (x_lo, x_hi) if x_hi > x_lo else (x_lo,):
            px, _ = to_px(xv, lo)
            text = f"{xv:.0f}"
            d.text((min(max(px - d.textlength(text, font=small) / 2, 0), width - 30), y0 + panel_height + 3), text,
                   fill=INK, font=small)
    d.text((left + pw / 2 - 20, h - 18), x_label, fill=INK, font=small)
    return img
