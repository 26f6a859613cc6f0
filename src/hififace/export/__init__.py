"""Export to ONNX and run the exported graphs with onnxruntime (the ``onnx`` extra).

``export_onnx(folder)`` writes ``generator.onnx``, ``arcface.onnx`` and ``recon3d.onnx`` into ``<folder>/onnx``
(see :mod:`hififace.export.graphs` for their inputs, outputs and metadata); :class:`OnnxHifiFace` runs them behind
the same small interface as :class:`~hififace.HifiFace` (``identity``, ``prepare_target``, ``swap``,
``interpolate``). onnx, onnxscript and onnxruntime are imported only when used (:mod:`hififace.utils.optional`).
"""
from __future__ import annotations

from .engine import OnnxHifiFace, select_providers
from .exporter import ExportedGraph, ExportError, export_onnx
from .graphs import GRAPHS, OPSET

__all__ = ["export_onnx", "ExportError", "ExportedGraph", "OnnxHifiFace", "select_providers", "GRAPHS", "OPSET"]
