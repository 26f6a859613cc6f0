"""Export to ONNX and run the exported graphs with onnxruntime (the ``onnx`` extra).

``export_onnx(folder)`` writes ``generator.onnx``, ``arcface.onnx`` and ``recon3d.onnx`` into ``<folder>/onnx``
(see :mod:`hififace.export.graphs` for their inputs, outputs and metadata); :class:`OnnxHifiFace` runs them behind
the same small interface as :class:`~hififace.HifiFace` (``identity``, ``prepare_target``, ``swap``,
``interpolate``). onnx, onnxscript and onnxruntime are imported only when used.
"""
from __future__ import annotations

__all__ = ["export_onnx", "ExportError", "ExportedGraph", "OnnxHifiFace", "select_providers", "GRAPHS", "OPSET"]


def __getattr__(name: str):  # lazy: importing hififace.export stays cheap
    if name in ("export_onnx", "ExportError", "ExportedGraph"):
        from . import exporter

        return getattr(exporter, name)
    if name in ("OnnxHifiFace", "select_providers"):
        from . import engine

        return getattr(engine, name)
    if name in ("GRAPHS", "OPSET"):
        from . import graphs

        return getattr(graphs, name)
    raise AttributeError(f"module 'hififace.export' has no attribute {name!r}")
