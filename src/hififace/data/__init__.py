"""Training data: dataset preparation (``prepare``: ``hififace preprocess``), face-parsing masks, the data-set index
(cached) and source/target pair sampling."""
from .dataset import FacePairDataset, PairConfig, PairSampler, collate_pairs
from .index import FaceIndex, load_index, scan, split_by_identity
from .parsing import FACE_CLASSES, colour_parsing_to_mask, label_parsing_to_mask, mask_from_parsing_image

__all__ = [
    "FacePairDataset", "PairConfig", "PairSampler", "collate_pairs",
    "FaceIndex", "load_index", "scan", "split_by_identity",
    "FACE_CLASSES", "colour_parsing_to_mask", "label_parsing_to_mask", "mask_from_parsing_image",
]
