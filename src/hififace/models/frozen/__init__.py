"""Frozen pretrained networks (ArcFace, ReconNet + BFM, LPIPS VGG): eval mode, no grad, built once."""
from ._frozen import FrozenModule

__all__ = ["FrozenModule"]
