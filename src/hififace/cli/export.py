"""``hififace export onnx``: the model folder's generator, ArcFace and ReconNet as ONNX graphs for onnxruntime."""
from __future__ import annotations

import argparse
import logging

from ._common import CONSENT

log = logging.getLogger("hififace")

EPILOG = f"""examples:
  hififace export onnx --weights weights/hififace-256             # -> weights/hififace-256/onnx/
  hififace export onnx --weights weights/hififace-256 -o onnx-256
  hififace swap --engine onnx --source a.png --target b.png -o out.png --weights weights/hififace-256

Writes generator.onnx (target crops + identity vectors v_sid -> i_r, i_low, m_r, m_low), arcface.onnx and
recon3d.onnx (crops -> identity embedding, 3DMM coefficients) and config.json: float32, dynamic batch axis, opset 18,
with the model's variant, size, alignment and a synthetic-content notice in their metadata. Each graph is run by
onnxruntime and compared with PyTorch before the files are put in place (existing files are replaced only then).
Needs the onnx extra: pip install 'hififace[onnx]'.
{CONSENT}
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model folder for other runtimes (ONNX)", allow_abbrev=False,
                       description="Export a model folder for other runtimes. Formats: onnx.")
    formats = p.add_subparsers(dest="format", metavar="FORMAT")
    formats.required = True
    o = formats.add_parser("onnx", help="generator, ArcFace and ReconNet as ONNX graphs (onnxruntime, TensorRT)",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    o.add_argument("--weights", metavar="DIR",
                   help="model folder (from 'hififace convert'); default: $HIFIFACE_HOME, then ~/.cache/hififace")
    o.add_argument("-o", "--output", metavar="DIR", help="output folder (default: <weights>/onnx)")
    o.add_argument("--no-check", action="store_true",
                   help="do not compare onnxruntime's outputs with PyTorch's before writing (faster)")
    o.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.exporter import export_onnx

    results = export_onnx(args.weights, args.output, check=not args.no_check)
    for r in results:
        size = r.path.stat().st_size / 2**20
        checked = "" if r.max_abs_diff is None else f"; onnxruntime vs PyTorch max |diff| {r.max_abs_diff:.1e}"
        log.info("wrote %s (%.1f MiB%s)", r.path, size, checked)
    folder = results[0].path.parent
    log.info("run it with: hififace swap --engine onnx --weights %s ...", folder)
    return 0
