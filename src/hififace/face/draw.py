"""Preview drawings of detections: numbered boxes, scores and landmarks (for ``hififace faces``)."""
from __future__ import annotations

import numpy as np

from .detect import Face

#: One colour per 5-point landmark (eye_left, eye_right, nose, mouth_left, mouth_right), RGB.
LANDMARK_COLORS = ((255, 64, 64), (64, 160, 255), (64, 220, 64), (255, 160, 0), (200, 64, 255))


def draw_faces(image: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of ``image`` (RGB uint8) with each face's box, index, score and landmarks drawn to scale."""
    import cv2

    out = np.ascontiguousarray(image.copy())
    side = max(image.shape[:2])
    thick = max(1, int(round(side / 400)))
    font = max(0.4, side / 1200)
    for i, f in enumerate(faces):
        x1, y1, x2, y2 = (int(round(float(v))) for v in f.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick, cv2.LINE_AA)
        r = max(2, int(round(f.width / 40)))
        for (x, y), c in zip(f.landmarks, LANDMARK_COLORS):
            cv2.circle(out, (int(round(float(x))), int(round(float(y)))), r, c, -1, cv2.LINE_AA)
        if f.landmarks68 is not None:
            for x, y in f.landmarks68:
                cv2.circle(out, (int(round(float(x))), int(round(float(y)))), max(1, r // 2), (255, 255, 255), -1, cv2.LINE_AA)
        label = f"#{i} {f.score:.2f}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        ty = y1 - 4 if y1 - th - 4 > 0 else y2 + th + 4
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base), (0, 0, 0), -1)
        cv2.putText(out, label, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255), thick, cv2.LINE_AA)
    return out
