"""What goes into an ONNX export of a model folder: three graphs, their file names, inputs, outputs and metadata.

===================  ===========================================  ========================================
file                 inputs (N = dynamic batch, S = image size)   outputs
===================  ===========================================  ========================================
``generator.onnx``   ``target`` N x 3 x S x S in [0, 1],          ``i_r`` N x 3 x S x S, ``i_low`` N x 3 x 64
                     ``v_sid`` N x 769                            x 64, ``m_r`` N x 1 x S x S, ``m_low``
                                                                  N x 1 x 64 x 64 (raw, not clamped)
``arcface.onnx``     ``image`` N x 3 x S x S in [0, 1]            ``v_id`` N x 512, L2-normalised
``recon3d.onnx``     ``image`` N x 3 x S x S in [0, 1]            ``coeffs`` N x 257 (Deep3DFaceRecon layout)
===================  ===========================================  ========================================

The generator takes the shape-aware identity vector ``v_sid = [c_src[:80], c_tgt[80:], v_id]`` rather than a
source image, so an identity computed once (``arcface.onnx`` + ``recon3d.onnx`` on the source) is fed to any number
of targets. The ArcFace and ReconNet graphs include their input preprocessing (the ``[-1, 1]`` scaling and the
resize to 112 of ArcFace, the optional resize of ReconNet), so all three take the same crops the PyTorch model
takes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .._version import __version__
from ..config import HifiFaceConfig
from ..utils.files import fingerprint
from ..models.hififace import ARCFACE_FILE, GENERATOR_FILE, RECON_FILE

#: ONNX operator set of the exports: the opset torch.onnx's dynamo exporter writes natively (no version
#: conversion; ``torch.onnx._internal.exporter._constants.TORCHLIB_OPSET``), the first with the ``antialias``
#: attribute of Resize (ReconNet's optional resize), and supported by every onnxruntime since 1.14.
OPSET = 18
FORMAT = "hififace-onnx/1"
ONNX_DIR = "onnx"  # default place of an export inside a model folder
NOTICE = ("Synthetic media: this model produces AI-generated face swaps. Label its outputs as synthetic and use it "
          "only with the consent of the people shown.")


@dataclass(frozen=True)
class GraphSpec:
    """One exported graph: its name, file, input and output names and a one-line description."""

    name: str
    file: str
    weights: str  #: the safetensors file of the model folder it is made from
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    what: str


GENERATOR = GraphSpec("generator", "generator.onnx", GENERATOR_FILE, ("target", "v_sid"), ("i_r", "i_low", "m_r", "m_low"),
                      "HifiFace generator: target crops and identity vectors v_sid -> swapped faces and masks")
ARCFACE = GraphSpec("arcface", "arcface.onnx", ARCFACE_FILE, ("image",), ("v_id",),
                    "ArcFace identity embedding (L2-normalised) of face crops in [0, 1]")
RECON = GraphSpec("recon3d", "recon3d.onnx", RECON_FILE, ("image",), ("coeffs",),
                  "Deep3DFaceRecon ReconNet: 257 3DMM coefficients of face crops in [0, 1]")
GRAPHS = (GENERATOR, ARCFACE, RECON)
BY_NAME = {spec.name: spec for spec in GRAPHS}


class IdentityNetGraph(nn.Module):
    """One method of the identity extractor as a module (what torch.onnx traces): ``embed`` (image -> v_id) or
    ``coefficients`` (image -> 257 coefficients), preprocessing included, exactly as the PyTorch model runs it."""

    def __init__(self, id_extractor: nn.Module, method: str):
        super().__init__()
        self.id_extractor = id_extractor
        self.method = method

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return getattr(self.id_extractor, self.method)(image)


def graph_module(model: nn.Module, spec: GraphSpec) -> nn.Module:
    """The PyTorch module a graph is exported from (also the reference its export is checked against)."""
    if spec is GENERATOR:
        return model.generator
    return IdentityNetGraph(model.id_extractor, "embed" if spec is ARCFACE else "coefficients").eval()


def metadata(config: HifiFaceConfig, spec: GraphSpec, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The ``metadata_props`` written into each exported file (all strings)."""
    meta = {
        "hififace:format": FORMAT,
        "hififace:graph": spec.name,
        "hififace:variant": config.variant,
        "hififace:image_size": str(config.image_size),
        "hififace:alignment": config.align,
        "hififace:inputs": ", ".join(spec.inputs),
        "hififace:outputs": ", ".join(spec.outputs),
        "hififace:notice": NOTICE,
        "hififace:config": json.dumps(config.to_dict(), sort_keys=True),
        "hififace:version": __version__,
        "hififace:torch": torch.__version__,
    }
    meta.update(extra or {})
    return meta


def source_fingerprint(folder: Path, spec: GraphSpec) -> dict[str, str]:
    """``{weight file: fingerprint}`` of the file a graph is made from (stored in its metadata)."""
    return {spec.weights: fingerprint(folder / spec.weights)}
