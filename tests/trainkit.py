"""Helpers for the training tests: a tiny synthetic face data set on disk and a tiny training config."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from hififace.data.parsing import FACE_COLOURS
from hififace.training.config import SHIPPED_CONFIGS

HAIR = (0, 0, 204)  # a non-face class of the palette


def make_dataset(root: Path, identities: int = 3, per_identity: int = 3, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """images/<id>/<n>.png + parsing/<id>/<n>.png: a bright 'face' disc on a dark background, colour-coded map."""
    rng = np.random.default_rng(seed)
    images, parsing = root / "images", root / "parsing"
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(identities):
        base = rng.uniform(0.3, 0.9, size=3)
        for j in range(per_identity):
            (images / f"id{i}").mkdir(parents=True, exist_ok=True)
            (parsing / f"id{i}").mkdir(parents=True, exist_ok=True)
            cx, cy, r = size / 2 + rng.uniform(-4, 4), size / 2 + rng.uniform(-4, 4), size * 0.3
            face = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
            img = rng.uniform(0, 0.2, size=(size, size, 3))
            img[face] = base + rng.normal(0, 0.05, size=(int(face.sum()), 3))
            Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(images / f"id{i}" / f"{j}.png")
            seg = np.zeros((size, size, 3), np.uint8)
            seg[yy < size // 5] = HAIR
            seg[face] = FACE_COLOURS[0]
            seg[face & (yy > cy + r / 3)] = FACE_COLOURS[j % len(FACE_COLOURS)]
            Image.fromarray(seg).save(parsing / f"id{i}" / f"{j}.png")
    return images, parsing


def tiny_overrides(tmp: Path, images: Path, parsing: Path, **extra) -> dict:
    out = {
        "data.images": str(images), "data.parsing": str(parsing),
        "checkpoint.dir": str(tmp / "run"), "logging.tensorboard": False, "trainer.progress_bar": False,
    }
    out.update({k: v for k, v in extra.items()})
    return out


CONFIG = SHIPPED_CONFIGS / "hififace_tiny.yaml"
