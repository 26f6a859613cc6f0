"""Preview drawings of detections: numbered boxes, scores and landmarks (for ``hififace faces`` and the app).

Labels are sized to their face (about a quarter of its height) and placed outside the boxes, so that in a crowded
group photo no label hides a face or another label: :func:`place_labels` tries positions around each box (above,
below, beside, then further out, joined to the box by a thin line), and keeps the first one that overlaps no face box
and no label placed before it. Where the score does not fit, the label is only the number (what ``--face N``
takes; ``hififace faces`` prints the scores).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .detect import Face

#: One colour per 5-point landmark (eye_left, eye_right, nose, mouth_left, mouth_right), RGB.
LANDMARK_COLORS = ((255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 160, 0), (200, 64, 255))
#: Label text height as a share of the face box height, and its bounds in pixels.
LABEL_SHARE, LABEL_MIN_PX, LABEL_MAX_PX = 0.26, 10.0, 48.0
#: Rings of candidate positions tried around a box before settling for the least overlap.
RINGS = 8
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
_PAD = 2  # pixels of label background around the text

Rect = tuple[float, float, float, float]  # x0, y0, x1, y1


def _font_scale(face_height: float) -> float:
    """cv2 font scale whose capital height is about :data:`LABEL_SHARE` of the face (HERSHEY_SIMPLEX: 22 px at 1)."""
    px = min(max(LABEL_SHARE * face_height, LABEL_MIN_PX), LABEL_MAX_PX)
    return px / 22.0


def _label_size(text: str, scale: float) -> tuple[int, int, int, int]:
    """(width, height, baseline, thickness) of a label's background rectangle."""
    import cv2

    thick = max(1, int(round(scale * 1.6)))
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    return tw + 2 * _PAD, th + base + 2 * _PAD, base, thick


def _overlap(a: Rect, b: Rect) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _candidates(box: Rect, w: float, h: float, ring: int) -> list[Rect]:
    """Label rectangles (w x h) around ``box``, ``ring`` label-steps away from it: above, below, right, left."""
    x0, y0, x1, y1 = box
    gap = max(2.0, 0.15 * h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    top = y0 - gap - h - ring * (h + gap)
    bottom = y1 + gap + ring * (h + gap)
    right = x1 + gap + ring * (w + gap)
    left = x0 - gap - w - ring * (w + gap)
    xs = (x0, cx - w / 2, x1 - w, x0 - w / 2, x1 - w / 2)
    ys = (cy - h / 2, y0, y1 - h)
    out = [(x, top, x + w, top + h) for x in xs] + [(x, bottom, x + w, bottom + h) for x in xs]
    out += [(right, y, right + w, y + h) for y in ys] + [(left, y, left + w, y + h) for y in ys]
    return out


def place_labels(boxes: Sequence[Rect], sizes: Sequence[Sequence[tuple[float, float]]],
                 image_hw: tuple[int, int]) -> list[tuple[int, Rect]]:
    """Greedy placement: for box i, the first candidate label rectangle (``sizes[i]``: the sizes to try, best
    first, e.g. with and without the score) that lies inside the image and overlaps no box and no label placed
    before; failing that, the least-overlapping one. Returns (which size, rectangle) per box."""
    h_img, w_img = image_hw
    boxes = [tuple(float(v) for v in b) for b in boxes]
    placed: list[Rect] = []
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0]))  # top rows first: less room there
    chosen: dict[int, tuple[int, Rect]] = {}
    for i in order:
        best: tuple[float, int, Rect] | None = None
        found = None
        for ring in range(RINGS):
            for k, (w, h) in enumerate(sizes[i]):
                if k == 0 and ring > 0:
                    continue  # the full label only next to its box; further out the number alone
                for r in _candidates(boxes[i], w, h, ring):
                    if r[0] < 0 or r[1] < 0 or r[2] > w_img or r[3] > h_img:
                        continue
                    cost = sum(_overlap(r, b) for b in boxes) * 4 + sum(_overlap(r, p) for p in placed)
                    if cost == 0:
                        found = (k, r)
                        break
                    if best is None or cost < best[0]:
                        best = (cost, k, r)
                if found:
                    break
            if found:
                break
        if found is None:
            if best is None:  # nothing fits inside the image at all: on the box's top left corner
                w, h = sizes[i][-1]
                x0 = min(max(boxes[i][0], 0.0), max(w_img - w, 0.0))
                y0 = min(max(boxes[i][1], 0.0), max(h_img - h, 0.0))
                found = (len(sizes[i]) - 1, (x0, y0, x0 + w, y0 + h))
            else:
                found = (best[1], best[2])
        chosen[i] = found
        placed.append(found[1])
    return [chosen[i] for i in range(len(boxes))]


def label_layout(faces: Sequence[Face], image_hw: tuple[int, int]) -> list[tuple[str, float, Rect]]:
    """(text, font scale, rectangle) of each face's label as :func:`draw_faces` draws it."""
    texts, scales, sizes = [], [], []
    for i, f in enumerate(faces):
        scale = _font_scale(f.height)
        options = [f"#{i} {f.score:.2f}", f"#{i}"]
        texts.append(options)
        scales.append(scale)
        sizes.append([_label_size(t, scale)[:2] for t in options])
    places = place_labels([tuple(float(v) for v in f.box) for f in faces], sizes, image_hw)
    return [(texts[i][k], scales[i], rect) for i, (k, rect) in enumerate(places)]


def draw_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of ``image`` (RGB uint8) with each face's box, landmarks and a label (index, score) that covers no
    face and no other label (see :func:`place_labels`)."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    for f in faces:
        x1, y1, x2, y2 = (int(round(float(v))) for v in f.box)
        thick = max(1, int(round(f.height / 60)))
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick, cv2.LINE_AA)
        r = max(2, int(round(f.width / 40)))
        for (x, y), c in zip(f.landmarks, LANDMARK_COLORS):
            cv2.circle(out, (int(round(float(x))), int(round(float(y)))), r, c, -1, cv2.LINE_AA)
        if f.landmarks68 is not None:
            for x, y in f.landmarks68:
                cv2.circle(out, (int(round(float(x))), int(round(float(y)))), max(1, r // 2), (255, 255, 255), -1, cv2.LINE_AA)
    for f, (text, scale, rect) in zip(faces, label_layout(faces, out.shape[:2])):
        lx0, ly0, lx1, ly1 = (int(round(v)) for v in rect)
        _, _, base, thick = _label_size(text, scale)
        box = tuple(float(v) for v in f.box)
        if _overlap((rect[0] - 3, rect[1] - 3, rect[2] + 3, rect[3] + 3), box) == 0:  # away from its box: a leader
            near = (min(max((lx0 + lx1) / 2, box[0]), box[2]), min(max((ly0 + ly1) / 2, box[1]), box[3]))
            end = (min(max(near[0], lx0), lx1), min(max(near[1], ly0), ly1))
            cv2.line(out, tuple(int(round(v)) for v in near), tuple(int(round(v)) for v in end), (0, 255, 0), 1,
                     cv2.LINE_AA)
        cv2.rectangle(out, (lx0, ly0), (lx1 - 1, ly1 - 1), (0, 0, 0), -1)
        cv2.putText(out, text, (lx0 + _PAD, ly1 - _PAD - base), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out
