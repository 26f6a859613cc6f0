"""Face-parsing label spaces and the colour-coded PNGs the reference's dataset code reads.

The project's label space is PSFRGAN's (CelebAMask-HQ order,
docs/formats.md#psfrgan-parser-and-the-parsing-palette); BiSeNet's own order (docs/formats.md#bisenet-face-parser) is mapped into it. Parsing PNGs are written in PSFRGAN's colours as a palette PNG: lossless, and
``Image.open(p).convert('RGB')`` (what mindslab-ai/hififace's ``dataset.py`` does) gives the exact colours its
``parsing2mask`` matches.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..utils.atomic import atomic_path

#: PSFRGAN / CelebAMask-HQ classes, index = label.
CLASSES = ("background", "skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth",
           "u_lip", "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
#: PSFRGAN's colour of each class (RGB), as written in its parsing PNGs.
PALETTE = np.array([
    (0, 0, 0), (204, 0, 0), (76, 153, 0), (204, 204, 0), (51, 51, 255), (204, 0, 204), (0, 255, 255), (255, 204, 204),
    (102, 51, 0), (255, 0, 0), (102, 204, 0), (255, 255, 0), (0, 0, 153), (0, 0, 204), (255, 51, 153), (0, 204, 204),
    (0, 51, 0), (255, 153, 51), (0, 204, 0),
], dtype=np.uint8)
#: Classes the reference counts as face (its ``parsing2mask``): skin, nose, eyes, brows, ears, mouth, lips.
FACE_CLASSES = (1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12)

#: BiSeNet (face-parsing.PyTorch) classes in its own order.
BISENET_CLASSES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
                   "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
#: BiSeNet label -> project (PSFRGAN) label, matched by class name.
BISENET_TO_PSFRGAN = np.array([CLASSES.index(c) for c in BISENET_CLASSES], dtype=np.uint8)


def face_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean H x W face region (the reference's M_tar: union of :data:`FACE_CLASSES`)."""
    return np.isin(np.asarray(labels), FACE_CLASSES)


def labels_to_image(labels: np.ndarray):
    """A PIL palette ("P") image of the labels whose RGB conversion is the PSFRGAN colour map."""
    from PIL import Image

    lab = np.asarray(labels).astype(np.uint8)
    if lab.size and lab.max() >= len(PALETTE):
        raise ValueError(f"labels outside 0..{len(PALETTE) - 1}")
    lab = np.ascontiguousarray(lab)
    img = Image.frombytes("P", (lab.shape[1], lab.shape[0]), lab.tobytes())
    flat = np.zeros((256, 3), dtype=np.uint8)
    flat[: len(PALETTE)] = PALETTE
    img.putpalette(flat.reshape(-1).tolist())
    return img


def save_parsing(path: str | Path, labels: np.ndarray) -> None:
    """Write labels atomically as a colour-coded palette PNG (the temporary file never ends in ``.png``)."""
    img = labels_to_image(labels)
    with atomic_path(path, suffix=".tmp") as tmp:
        img.save(tmp, format="PNG", optimize=False, compress_level=6)
