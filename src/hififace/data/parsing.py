"""Face-region masks from face-parsing maps: the reference's colour-coded PNGs and label-index PNGs.

Colours (RGB) are PSFRGAN's palette as used by mindslab-ai/hififace ``dataset.py``; label indices follow the
same CelebAMask-HQ class order that palette is indexed by. M_tar is the union of the 11 face classes
(hair, hat, glasses, earrings, neck, cloth and background excluded).
"""
from __future__ import annotations

import numpy as np

#: The 11 face classes: name -> (RGB colour in the reference's parsing maps, CelebAMask-HQ label index).
FACE_CLASSES: dict[str, tuple[tuple[int, int, int], int]] = {
    "skin": ((204, 0, 0), 1),
    "nose": ((76, 153, 0), 2),
    "left_eye": ((51, 51, 255), 4),
    "right_eye": ((204, 0, 204), 5),
    "left_brow": ((0, 255, 255), 6),
    "right_brow": ((255, 204, 204), 7),
    "left_ear": ((102, 51, 0), 8),
    "right_ear": ((255, 0, 0), 9),
    "mouth": ((102, 204, 0), 10),
    "upper_lip": ((255, 255, 0), 11),
    "lower_lip": ((0, 0, 153), 12),
}
FACE_COLOURS = tuple(c for c, _ in FACE_CLASSES.values())
FACE_LABELS = tuple(sorted(i for _, i in FACE_CLASSES.values()))


def _packed(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


_FACE_PACKED = np.array([(r << 16) | (g << 8) | b for r, g, b in FACE_COLOURS], dtype=np.uint32)


def colour_parsing_to_mask(rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 colour-coded parsing map -> H x W float32 face mask (exact colour match, as the reference)."""
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"a colour parsing map must be H x W x 3, got {rgb.shape}")
    return np.isin(_packed(rgb[..., :3]), _FACE_PACKED).astype(np.float32)


def label_parsing_to_mask(labels: np.ndarray) -> np.ndarray:
    """H x W integer label map (CelebAMask-HQ order) -> H x W float32 face mask."""
    if labels.ndim != 2:
        raise ValueError(f"a label parsing map must be H x W, got {labels.shape}")
    return np.isin(labels, FACE_LABELS).astype(np.float32)


def mask_from_parsing_image(img) -> np.ndarray:
    """A PIL parsing image -> face mask: RGB(A) images are colour-coded, L/P/I images hold label indices."""
    if img.mode in ("L", "P", "I", "I;16"):
        return label_parsing_to_mask(np.asarray(img).astype(np.int64))
    return colour_parsing_to_mask(np.asarray(img.convert("RGB")))
