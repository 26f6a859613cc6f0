"""A drawn face with known 68 landmarks and labels: mouth open by a chosen amount, any size and position.

The landmarks are written in the outline model's units (eye centres 0.63 apart, mouth corners 0.67 below them, see
hififace.face.outline), y down, origin between the eyes; ``scale`` pixels per unit. The labels are the landmark
parser's (skin hull, brows, eyes, nose, lips, and the inner-lip polygon as ``mouth``): the ground truth of the drawing.
"""
from __future__ import annotations

import numpy as np

COLOURS = {"background": (90, 120, 90), "skin": (205, 165, 135), "l_brow": (70, 50, 40), "r_brow": (70, 50, 40),
           "l_eye": (245, 245, 245), "r_eye": (245, 245, 245), "nose": (190, 145, 120), "u_lip": (175, 70, 70),
           "l_lip": (175, 70, 70), "mouth": (45, 15, 20)}


def _ellipse(cx: float, cy: float, rx: float, ry: float, degrees: list[float]) -> np.ndarray:
    a = np.deg2rad(np.asarray(degrees, np.float64))
    return np.stack([cx + rx * np.cos(a), cy - ry * np.sin(a)], 1)  # angles counter-clockwise on screen


def landmarks68(opening: float = 0.25) -> np.ndarray:
    """68 x 2 points in model units (y down); ``opening``: gap between the inner lips at the middle, units."""
    t = np.linspace(np.pi, 0, 17)
    g = float(opening)
    jaw = np.stack([0.68 * np.cos(t), 0.1 + (1.0 + g) * np.sin(t)], 1)  # the chin drops as the mouth opens
    bx = np.linspace(-0.56, -0.09, 5)
    brows = np.concatenate([np.stack([bx, -0.25 - 0.05 * np.sin(np.linspace(0, np.pi, 5))], 1),
                            np.stack([-bx[::-1], -0.25 - 0.05 * np.sin(np.linspace(0, np.pi, 5))], 1)])
    bridge = np.stack([np.zeros(4), [0.05, 0.15, 0.25, 0.34]], 1)
    base = np.stack([[-0.12, -0.06, 0.0, 0.06, 0.12], [0.40, 0.42, 0.43, 0.42, 0.40]], 1)
    eye_deg = [180, 120, 60, 0, -60, -120]
    left_eye = _ellipse(-0.315, 0.0, 0.12, 0.045, eye_deg)
    right_eye = _ellipse(0.315, 0.0, 0.12, 0.045, [180, 120, 60, 0, -60, -120])
    y0 = 0.67
    top_outer = np.array([[-0.25, y0], [-0.16, y0 - 0.07], [-0.06, y0 - 0.09], [0.0, y0 - 0.08], [0.06, y0 - 0.09],
                          [0.16, y0 - 0.07], [0.25, y0]])
    bottom_outer = np.array([[0.16, y0 + g + 0.08], [0.06, y0 + g + 0.11], [0.0, y0 + g + 0.11],
                             [-0.06, y0 + g + 0.11], [-0.16, y0 + g + 0.08]])
    outer = np.concatenate([top_outer, bottom_outer])  # 48..59
    inner = np.array([[-0.20, y0], [-0.08, y0 - 0.01], [0.0, y0 - 0.01], [0.08, y0 - 0.01], [0.20, y0],
                      [0.08, y0 + 0.8 * g], [0.0, y0 + g], [-0.08, y0 + 0.8 * g]])  # 60..67
    lm = np.concatenate([jaw, brows, bridge, base, left_eye, right_eye, outer, inner])
    assert lm.shape == (68, 2)
    return lm


def draw_face(size: int | tuple[int, int] = 256, scale: float = 110.0, center: tuple[float, float] | None = None,
              opening: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H x W x 3 uint8 image, 68 x 2 landmarks in pixels, H x W labels) of a drawn face: the point between the
    eyes at ``center`` (default: 0.4 units above the image centre), ``scale`` pixels per unit."""
    from hififace.face.palette import CLASSES
    from hififace.face.parse import landmark_labels

    h, w = (size, size) if isinstance(size, int) else size
    cx, cy = center if center is not None else (w / 2.0, h / 2.0 - 0.4 * scale)
    lm = landmarks68(opening) * scale + [cx, cy]
    labels = landmark_labels((h, w), lm)
    palette = np.array([COLOURS.get(name, (128, 128, 128)) for name in CLASSES], np.float64)
    img = palette[labels]
    rng = np.random.default_rng(seed)
    img += rng.normal(0.0, 4.0, img.shape)  # a little texture, the same for every method
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), lm, labels
