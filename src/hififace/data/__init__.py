"""Training data: dataset preparation (``prepare``: ``hififace preprocess``), face-parsing masks, the data-set index
(cached) and source/target pair sampling. The names below are loaded on first use, so that preparation workers
never import torch."""
from __future__ import annotations

__all__ = [
    "FacePairDataset", "PairConfig", "PairSampler", "collate_pairs",
    "FaceIndex", "load_index", "scan", "split_by_identity",
    "FACE_CLASSES", "colour_parsing_to_mask", "label_parsing_to_mask", "mask_from_parsing_image",
]
_WHERE = {"dataset": __all__[:4], "index": __all__[4:8], "parsing": __all__[8:]}


def __getattr__(name: str):
    for module, names in _WHERE.items():
        if name in names:
            import importlib

            return getattr(importlib.import_module(f".{module}", __name__), name)
    raise AttributeError(f"module 'hififace.data' has no attribute {name!r}")
