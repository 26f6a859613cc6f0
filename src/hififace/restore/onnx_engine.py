"""onnxruntime engine for the ONNX face restorers other tools distribute (GFPGAN, GPEN-BFR, CodeFormer, RestoreFormer).

Everything is read from the graph, nothing from the file name: the image input is the one 4-D input (its name varies
between exports: ``input``, ``x``, ``image``...), the output the first 4-D output; the crop size is the input's
spatial size (or, for a graph with dynamic sizes, the ``size`` argument, default 512). A second input of rank 0 or 1
is the fidelity weight of CodeFormer exports (FaceFusion's ``codeformer.onnx`` names it ``weight`` and feeds a
float64 array of one value); its element type (double or float) comes from the graph. A fixed batch axis (usually 1)
runs the faces one batch at a time; a dynamic one takes ``batch_size`` faces per call.

Normalisation (not stored in the graphs): RGB, ``x / 255``, then ``(x - 0.5) / 0.5`` -> [-1, 1]; outputs clipped to
[-1, 1] and mapped back with ``(y + 1) / 2``. That is what FaceFusion does for every one of these models
(facefusion/facefusion ``facefusion/processors/modules/face_enhancer/core.py``, ``prepare_crop_frame`` /
``normalize_crop_frame``, which also lists their sizes: 512 for GFPGAN 1.2-1.4, CodeFormer, RestoreFormer++ and
GPEN-BFR 512; 256, 1024, 2048 for the other GPEN-BFR files) and docs/formats.md#gfpgan-restorer. An export that takes
[0, 1] instead can say so with the metadata entry ``hififace:input_range`` = ``0,1`` (or ``input_range=(0, 1)``).

Alignment: FaceFusion aligns GPEN-BFR 256 to ``arcface_128`` (our ``arcface`` template at 256) and every other one to
``ffhq_512`` (our ``ffhq5``); :attr:`OnnxRestorer.template` follows that by size (256 -> ``arcface``), unless the
graph's metadata ``hififace:template`` or the ``template`` argument says otherwise.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, WeightsError
from ..face.align import template_points
from ..utils.files import fingerprint
from ..utils.onnxrt import CPU, onnx_providers
from ..utils.optional import require
from ..weights.resolve import tensorrt_cache
from .base import check_crops, check_fidelity

log = logging.getLogger(__name__)

DEFAULT_SIZE = 512
DEFAULT_FIDELITY = 0.5  # CodeFormer's and FaceFusion's default weight
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _clean(text: object, limit: int = 60) -> str:
    s = "".join(c if c.isprintable() else "?" for c in str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _sig(arg: Any) -> str:
    dims = ",".join(str(d) if isinstance(d, int) else "?" for d in (arg.shape or []))
    return f"{_clean(arg.name, 30)}[{dims}] {arg.type}"


def _parse_range(value: Any, source: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: input range {_clean(value)!r} must be two numbers, e.g. -1,1 or 0,1") from None
    if not hi > lo:
        raise ConfigError(f"{source}: input range {_clean(value)!r} must be low,high with low < high")
    return lo, hi


class OnnxRestorer:
    """An ONNX face restorer run by onnxruntime (see the module docstring for what is read from the graph).

    Attributes:
        name, size, template, is_random: the :class:`~.base.FaceRestorer` interface.
        input_name, output_name: the graph's image input and output.
        fidelity_input: name of the fidelity (CodeFormer ``weight``) input, or None.
        fidelity: the value fed to it (0: strongest restoration, 1: closest to the input).
        input_range: the value range the graph takes and returns (default (-1, 1)).
        providers: the onnxruntime providers the session runs on.
    """

    is_random = False

    def __init__(self, path: str | Path, device: str | None = "auto", threads: int | None = None,
                 size: int | None = None, fidelity: float = DEFAULT_FIDELITY,
                 input_range: tuple[float, float] | str | None = None, template: str | None = None,
                 batch_size: int = 4):
        ort = require("onnxruntime", "ONNX face restorers")
        self.path = path = Path(path).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: ONNX restorer not found; give the path of a .onnx file (e.g. gfpgan_1.4.onnx)")
        options = ort.SessionOptions()
        options.log_severity_level = 0 if log.isEnabledFor(logging.DEBUG) else 3
        if threads:
            options.intra_op_num_threads = int(threads)
        providers = onnx_providers(device, tensorrt_cache())
        self.session = self._open(ort, options, providers, CPU)
        self.providers = self.session.get_providers()
        self.name = _clean(path.name)
        self.fingerprint = fingerprint(path)  # for the output label: which file restored the faces
        self.fidelity = check_fidelity(fidelity)
        self.batch_size = max(1, int(batch_size))
        meta = self.session.get_modelmeta().custom_metadata_map
        self._read_signature(size)
        self.input_range = _parse_range(input_range if input_range is not None else meta.get("hififace:input_range", "-1,1"),
                                        str(path))
        self.template = template or meta.get("hififace:template") or ("arcface" if self.size == 256 else "ffhq5")
        template_points(self.template, self.size)  # an unknown template name fails here, not at the first face
        log.debug("ONNX restorer %s: %s -> %s, %d px, batch %s, fidelity input %s, on %s", path, self.input_name,
                  self.output_name, self.size, self.fixed_batch or "dynamic", self.fidelity_input, self.providers)

    def _open(self, ort: Any, options: Any, providers: list[Any], cpu: str) -> Any:
        try:
            return ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own types, with multi-line messages
            if len(providers) > 1:  # a GPU provider that cannot start: try the CPU
                log.debug("onnxruntime session with %s failed", providers, exc_info=True)
                return self._open(ort, options, [cpu], cpu)
            text = str(err).strip()
            first = _clean(text.splitlines()[0] if text else type(err).__name__, 160)
            raise WeightsError(f"{self.path}: onnxruntime cannot load it as an ONNX model ({first}); give an ONNX "
                               "face restorer (.onnx)") from None

    def _read_signature(self, size: int | None) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        expected = ("expected one image input N x 3 x S x S (and, for CodeFormer, one scalar fidelity input); it has "
                    + ", ".join(_sig(i) for i in inputs))
        images = [i for i in inputs if len(i.shape or []) == 4]
        others = [i for i in inputs if len(i.shape or []) != 4]
        if len(images) != 1 or len(others) > 1:
            raise WeightsError(f"{self.path}: not a face restorer graph: {expected}")
        image = images[0]
        if image.type not in _FLOAT_TYPES:
            raise WeightsError(f"{self.path}: image input {_sig(image)} is not a float tensor: {expected}")
        self.input_name, self.input_dtype = image.name, _FLOAT_TYPES[image.type]
        self.fidelity_input = self.fidelity_dtype = None
        self.fidelity_rank = 0
        if others:
            extra = others[0]
            rank = len(extra.shape or [])
            if extra.type not in _FLOAT_TYPES or rank > 1 or (rank == 1 and extra.shape[0] not in (1, None)
                                                               and not isinstance(extra.shape[0], str)):
                raise WeightsError(f"{self.path}: input {_sig(extra)} is not a scalar fidelity weight: {expected}")
            self.fidelity_input, self.fidelity_dtype, self.fidelity_rank = extra.name, _FLOAT_TYPES[extra.type], rank
        n, c, h, w = image.shape
        if isinstance(c, int) and c != 3:
            raise WeightsError(f"{self.path}: image input {_sig(image)} has {c} channels, not 3 (RGB): {expected}")
        if isinstance(h, int) and isinstance(w, int):
            if h != w:
                raise WeightsError(f"{self.path}: image input {_sig(image)} is not square; face restorers take S x S "
                                   "aligned crops")
            if size is not None and int(size) != h:
                raise ConfigError(f"{self.path}: the graph takes {h} x {h} crops, not {size}")
            self.size = h
        else:
            self.size = int(size) if size is not None else DEFAULT_SIZE
            if size is None:
                log.info("%s: the graph has dynamic spatial sizes; using %d px crops (pass size= to change)",
                         self.path, self.size)
        self.fixed_batch = n if isinstance(n, int) and n > 0 else None
        out4 = [o for o in outputs if len(o.shape or []) == 4]
        if not outputs:
            raise WeightsError(f"{self.path}: the graph has no output")
        self.output_name = (out4 or outputs)[0].name

    # ------------------------------------------------------------------ running
    @property
    def has_fidelity(self) -> bool:
        """True for graphs with a fidelity (CodeFormer ``weight``) input."""
        return self.fidelity_input is not None

    def _feed(self, batch: np.ndarray, fidelity: float) -> dict[str, np.ndarray]:
        feed = {self.input_name: batch}
        if self.fidelity_input is not None:
            value = np.array(fidelity, dtype=self.fidelity_dtype)
            feed[self.fidelity_input] = value.reshape(1) if self.fidelity_rank == 1 else value
        return feed

    def restore(self, crops: torch.Tensor, fidelity: float | None = None) -> torch.Tensor:
        """Aligned crops N x 3 x size x size in [0, 1] -> restored, float32 in [0, 1], on the crops' device.
        ``fidelity`` overrides :attr:`fidelity` for this call (graphs without a fidelity input ignore it)."""
        x = check_crops(crops, self.size, self.name)
        fid = self.fidelity if fidelity is None else check_fidelity(fidelity)
        lo, hi = self.input_range
        arr = x.detach().to("cpu", torch.float32).numpy() * (hi - lo) + lo
        step = self.fixed_batch or self.batch_size
        out = []
        for start in range(0, arr.shape[0], step):
            chunk = arr[start:start + step]
            n = chunk.shape[0]
            if self.fixed_batch and n < self.fixed_batch:  # a graph with a fixed batch > 1: pad the last batch
                chunk = np.concatenate([chunk, np.zeros((self.fixed_batch - n, *chunk.shape[1:]), chunk.dtype)])
            try:
                (y,) = self.session.run([self.output_name], self._feed(chunk.astype(self.input_dtype), fid))
            except Exception as err:  # onnxruntime's own exception types
                text = str(err).strip()
                raise WeightsError(f"{self.path}: onnxruntime failed on {n} crop(s) of {self.size} px "
                                   f"({_clean(text.splitlines()[0] if text else type(err).__name__, 160)})") from None
            if y.ndim != 4 or y.shape[1:] != (3, self.size, self.size) or y.shape[0] < n:
                raise WeightsError(f"{self.path}: output '{_clean(self.output_name, 30)}' has shape "
                                   f"{' x '.join(map(str, y.shape))}, expected {n} x 3 x {self.size} x {self.size}; "
                                   "not a face restorer of this size")
            out.append(y[:n].astype(np.float32))
        if not out:
            return torch.empty(0, 3, self.size, self.size, device=crops.device)
        y = np.concatenate(out)
        y = (np.clip(y, lo, hi) - lo) / (hi - lo)
        return torch.from_numpy(y).to(crops.device)

    def __repr__(self) -> str:
        return f"OnnxRestorer({self.name}, {self.size} px, {self.providers[0]})"
