"""Face restoration networks (plain ``nn.Module``s, tensors in, tensors out), configured by dataclasses.

The engines that run them on aligned crops (and the ONNX restorers other tools distribute) are in
:mod:`hififace.restore`.
"""
from .gfpgan import GFPGAN, GFPGANConfig

__all__ = ["GFPGAN", "GFPGANConfig"]
