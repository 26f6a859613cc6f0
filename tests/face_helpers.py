"""Shared helpers of the face tests: test photos, known photo transforms and crop-registration error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hififace.face.palette import FACE_CLASSES, PALETTE

PHOTOS = Path(__file__).parent / "data" / "photos"


def photo(name: str) -> np.ndarray:
    from hififace.media.images import read_photo

    return read_photo(PHOTOS / name).rgb


def photo_transform(img: np.ndarray, angle: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0, 0),
                    flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (degrees, counter-clockwise on screen), scale, mirror and shift a photo about its centre on a canvas
    large enough to hold it; returns the new photo and the 2 x 3 matrix old -> new pixel."""
    import cv2

    h, w = img.shape[:2]
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    a = np.deg2rad(angle)
    r = scale * np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    if flip:
        r = r @ np.diag([-1.0, 1.0])
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]]) - c
    rc = corners @ r.T
    new_w = int(np.ceil(np.ptp(rc[:, 0]))) + 1 + 2 * int(abs(shift[0]))
    new_h = int(np.ceil(np.ptp(rc[:, 1]))) + 1 + 2 * int(abs(shift[1]))
    cn = np.array([(new_w - 1) / 2, (new_h - 1) / 2]) + np.asarray(shift, dtype=np.float64)
    m = np.zeros((2, 3))
    m[:, :2] = r
    m[:, 2] = cn - r @ c
    out = cv2.warpAffine(img, m, (new_w, new_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    return out, m


def crop_disagreement(m_a: np.ndarray, m_b: np.ndarray, photo_t: np.ndarray, size: int = 256) -> float:
    """Mean distance (crop pixels) between where crop A's pixels land in crop B and where they are: registering
    crop A (photo, matrix m_a) against crop B (transformed photo, matrix m_b) with the known photo transform."""
    from hififace.face.align import compose, invert_affine, transform_points

    f = compose(m_b, compose(photo_t, invert_affine(m_a)))
    ys, xs = np.mgrid[0:size:4, 0:size:4]
    p = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    return float(np.linalg.norm(transform_points(p, f) - p, axis=1).mean())


# ---------------------------------------------------------------------------------------------- parsing maps
def labels_to_color(labels: np.ndarray) -> np.ndarray:
    """H x W labels (PSFRGAN order) -> H x W x 3 uint8 RGB in PSFRGAN's colours."""
    lab = np.asarray(labels)
    if lab.size and (lab.min() < 0 or lab.max() >= len(PALETTE)):
        raise ValueError(f"labels outside 0..{len(PALETTE) - 1}")
    return PALETTE[lab.astype(np.intp)]


def color_to_labels(color: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB parsing image -> H x W uint8 labels; colours not in the palette become background (0)."""
    c = np.asarray(color)[..., :3].astype(np.int32)
    code = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    keys = (PALETTE[:, 0].astype(np.int32) << 16) | (PALETTE[:, 1].astype(np.int32) << 8) | PALETTE[:, 2]
    out = np.zeros(code.shape, dtype=np.uint8)
    for label, key in enumerate(keys):
        if label:
            out[code == key] = label
    return out


def face_mask_from_color(color: np.ndarray) -> np.ndarray:
    """The reference's ``parsing2mask`` on an RGB parsing image: exact colour matches of the face classes."""
    c = np.asarray(color)[..., :3]
    mask = np.zeros(c.shape[:2], dtype=bool)
    for label in FACE_CLASSES:
        mask |= np.all(c == PALETTE[label], axis=-1)
    return mask


def read_parsing(path: str | Path) -> np.ndarray:
    """Labels from a parsing PNG written by :func:`save_parsing` or by PSFRGAN (any RGB/palette PNG)."""
    with Image.open(path) as img:
        return color_to_labels(np.asarray(img.convert("RGB")))
