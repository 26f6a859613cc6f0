"""Face restoration engines behind one interface, :class:`FaceRestorer`: aligned crops in [0, 1] in, restored out.

- :class:`GFPGANRestorer`: our PyTorch GFPGAN v1.3 / v1.4 (a restorer folder made by
  ``hififace convert --gfpgan GFPGANv1.4.pth -o DIR``);
- :class:`OnnxRestorer`: the ONNX restorers other tools distribute (GFPGAN, GPEN-BFR 256-2048, CodeFormer with its
  fidelity input, RestoreFormer), run by onnxruntime.

:func:`load_restorer` picks the engine from what it is given::

    from hififace.restore import load_restorer
    restorer = load_restorer("weights/gfpgan-1.4")          # or "codeformer.onnx"
    restored = restorer.restore(crops)                       # N x 3 x restorer.size x restorer.size, [0, 1]

The crops must be aligned to ``restorer.template`` at ``restorer.size`` (:func:`hififace.face.align.estimate_transform`).
Detecting faces, aligning them and pasting the results back is the pipeline's work, not this package's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import WeightsError
from ..models.restorers.gfpgan import CONFIG_FILE, is_restorer_folder
from .base import FaceRestorer, check_crops
from .onnx_engine import OnnxRestorer
from .torch_engine import GFPGANRestorer

__all__ = ["FaceRestorer", "GFPGANRestorer", "OnnxRestorer", "load_restorer", "check_crops"]

_HOW = ("give a restorer folder (hififace convert --gfpgan GFPGANv1.4.pth -o DIR) or an ONNX restorer "
        "(gfpgan_1.4.onnx, gpen_bfr_512.onnx, codeformer.onnx, ...)")


def load_restorer(path: str | Path, device: Any = None, dtype: Any = None, **options: Any) -> FaceRestorer:
    """The restorer at ``path``: a restorer folder -> :class:`GFPGANRestorer`, a ``.onnx`` file -> :class:`OnnxRestorer`.

    ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``/None (a GPU when there is one). ``dtype`` (fp32, bf16,
    fp16) applies to the PyTorch engine; ONNX graphs run in the precision they were exported in. ``options`` go to
    the engine (``batch_size``; PyTorch: ``channels_last``; ONNX: ``fidelity``, ``size``, ``threads``, ``input_range``,
    ``template``).
    Anything else gives one :class:`~hififace.errors.WeightsError` line saying what to give instead.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsError(f"{p}: not found; {_HOW}")
    if p.is_dir():
        if is_restorer_folder(p):
            return GFPGANRestorer.from_pretrained(p, device=device, dtype=dtype, **options)
        if (p / CONFIG_FILE).is_file():
            raise WeightsError(f"{p}: not a face-restorer folder (its config.json describes another model, e.g. a "
                               f"HifiFace swap model); {_HOW}")
        raise WeightsError(f"{p}: no config.json in this folder, so it is not a restorer folder; {_HOW}")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        if dtype is not None:
            raise WeightsError(f"{p}: an ONNX graph runs in the precision it was exported in; leave dtype unset")
        return OnnxRestorer(p, device="auto" if device is None else str(device), **options)
    if suffix in (".pth", ".pt", ".ckpt", ".bin"):
        raise WeightsError(f"{p}: a PyTorch weight file is converted first: hififace convert --gfpgan {p} -o DIR "
                           "(GFPGAN v1.3/v1.4), then give DIR")
    if suffix == ".safetensors":
        raise WeightsError(f"{p}: give the folder that holds it (with its config.json), not the weight file")
    raise WeightsError(f"{p}: not a face restorer; {_HOW}")


def __getattr__(name: str) -> Any:  # the engines import torch models / onnxruntime only when used
    if name == "GFPGANRestorer":
        return GFPGANRestorer
    if name == "OnnxRestorer":
        return OnnxRestorer
    raise AttributeError(f"module 'hififace.restore' has no attribute {name!r}")
