"""What is drawn on live frames: the visible "AI-generated" mark (on by default) and the fps/latency overlay (off).

Live outputs (a window, a virtual camera, a stream) carry no file metadata, so the mark is what says that the
picture is synthetic. It is drawn by the same function as ``--watermark`` on files (a small dark box with white
text in the bottom-right corner, about 1/20 of the frame's shorter side high); :class:`VisibleMark` renders it
once per frame size and then blends only that corner into each frame (a fraction of a millisecond at 720p).
"""
from __future__ import annotations

from typing import Callable

import numpy as np


class VisibleMark:
    """Blends the mark that ``render`` draws into frames, in place.

    ``render(rgb) -> rgb`` draws the mark on an image (e.g. :func:`hififace.inference.watermark.add_watermark`). It is
    called twice per frame size, on a black and on a white image: the difference gives the mark's opacity, the black
    rendering its colour, so each frame costs one blend over the mark's box.
    """

    def __init__(self, render: Callable[[np.ndarray], np.ndarray]):
        self.render = render
        self._cache: dict[tuple[int, int], tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]] = {}

    def _prepare(self, h: int, w: int) -> tuple[tuple[int, int, int, int], np.ndarray, np.ndarray]:
        black = np.asarray(self.render(np.zeros((h, w, 3), np.uint8)), np.float32)
        white = np.asarray(self.render(np.full((h, w, 3), 255, np.uint8)), np.float32)
        alpha = np.clip(1.0 - (white - black).mean(axis=2, keepdims=True) / 255.0, 0.0, 1.0)
        ys, xs = np.nonzero(alpha[:, :, 0] > 0.0)
        if not len(ys):
            box = (0, 0, 0, 0)
            return box, np.zeros((0, 0, 1), np.float32), np.zeros((0, 0, 3), np.float32)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        x0, y0, x1, y1 = box
        return box, alpha[y0:y1, x0:x1], black[y0:y1, x0:x1]

    def box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the pixels the mark covers in a frame of that size."""
        key = (int(height), int(width))
        if key not in self._cache:
            self._cache[key] = self._prepare(*key)
        return self._cache[key][0]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = self.box(w, h)
        if x1 > x0:
            _, alpha, colour = self._cache[(h, w)]
            roi = frame[y0:y1, x0:x1].astype(np.float32)
            frame[y0:y1, x0:x1] = np.clip(colour + (1.0 - alpha) * roi + 0.5, 0, 255).astype(np.uint8)
        return frame


def draw_stats(frame: np.ndarray, text: str) -> np.ndarray:
    """``text`` (e.g. ``"12.3 fps  85 ms"``) in a dark box in the top-left corner, in place (OpenCV's font)."""
    import cv2

    h = frame.shape[0]
    scale = max(0.35, h / 900.0)
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, int(th * 0.4))
    x1, y1 = min(frame.shape[1], tw + 2 * pad), min(h, th + base + 2 * pad)
    roi = frame[:y1, :x1]
    roi[:] = (roi.astype(np.float32) * 0.4).astype(np.uint8)
    cv2.putText(frame, text, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return frame
