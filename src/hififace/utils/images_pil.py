"""PIL image -> uint8 RGB array, following PIL's own conversion rules (as the reference's ``convert('RGB')``)."""
from __future__ import annotations

import numpy as np


def pil_to_array(img) -> np.ndarray:
    """H x W x 3 uint8 RGB. 16-bit greyscale is scaled to 8 bits (PIL's ``convert`` would clip it)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / peak * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(a[:, :, None], 3, axis=2)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).copy()
