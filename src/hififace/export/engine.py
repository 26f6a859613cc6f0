"""onnxruntime behind the small inference interface of :class:`~hififace.HifiFace`.

:class:`OnnxHifiFace` runs the files written by ``hififace export onnx`` and offers what the inference code uses
of the PyTorch model: ``config``, ``identity(source)``, ``prepare_target(target)``, ``swap(source_or_identity,
target, return_all=False)`` and ``interpolate(...)``. It takes and returns the same kinds (tensors in [0, 1], PIL
images, uint8 arrays, lists; :class:`~hififace.Identity`, :class:`~hififace.PreparedTarget`,
:class:`~hififace.SwapOutput` of CPU float32 tensors), so code written for one runs on the other::

    from hififace.export import OnnxHifiFace
    model = OnnxHifiFace.from_pretrained("weights/hififace-256")      # uses weights/hififace-256/onnx/
    out = model.swap(source, target)

Providers: the CPU unless onnxruntime offers TensorRT or CUDA (``onnxruntime-gpu``); ``device="cpu"`` forces the
CPU, ``device="cuda:N"`` a GPU. ``providers=("tensorrt", "cuda", "cpu")`` names them in order of preference
instead (``--provider``; see :mod:`hififace.export.providers`), with TensorRT's fp16 and engine cache folder as
``trt_fp16``/``trt_cache``; a named provider this onnxruntime lacks is one warning line. The exported graphs are
float32; ``prepare_target`` keeps no encoder features (the generator graph runs whole), so a prepared target saves
its ReconNet pass only.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..config import N_ID_COEFFS, HifiFaceConfig
from ..errors import HifiFaceError, WeightsError
from ..media.tensors import as_batch
from ..models.generator import GeneratorOutput
from ..models.hififace import HifiFace, PreparedTarget, is_random_config
from ..models.identity import Identity, ShapeAwareIdentityExtractor
from ..utils.onnxrt import device_index, onnx_providers
from ..utils.optional import require
from ..weights.resolve import resolve_model_dir, tensorrt_cache
from .graphs import ARCFACE, FORMAT, GENERATOR, GRAPHS, ONNX_DIR, RECON, GraphSpec, fingerprint
from .providers import CPU, CUDA, TENSORRT, ProviderOptions, missing_line, parse_providers, provider_list

log = logging.getLogger(__name__)

__all__ = ["CPU", "CUDA", "TENSORRT", "OnnxHifiFace", "find_onnx_dir", "select_providers"]


def select_providers(device: str | None = "auto", prefer: Sequence[str] | str | None = None, trt_fp16: bool = False,
                     trt_cache: str | Path | None = None) -> list[Any]:
    """onnxruntime providers for ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``), best first, CPU last.

    ``prefer``: provider short names in order of preference (``("tensorrt", "cuda", "cpu")``, see
    :data:`hififace.export.providers.PROVIDERS`); those this onnxruntime lacks are left out with one warning line.
    ``device`` then only gives the GPU number (``cuda:N``). ``trt_fp16`` and ``trt_cache`` (default
    :func:`~hififace.weights.resolve.tensorrt_cache`) are TensorRT's options.
    """
    cache = Path(trt_cache) if trt_cache else tensorrt_cache()
    if prefer is None:
        return onnx_providers(device, cache, trt_fp16)
    ort = require("onnxruntime", "--engine onnx")
    available = ort.get_available_providers()
    names = parse_providers(prefer)
    if (device or "auto").strip().lower() == "cpu" and any(n != "cpu" for n in names):
        raise HifiFaceError(f"--device cpu and --provider {','.join(names)} contradict each other: drop one "
                            "(--provider cpu runs on the CPU)")
    providers, missing = provider_list(names, available, ProviderOptions(device_index(device), trt_fp16, cache))
    if missing:
        log.warning("%s", missing_line(missing, available, providers))
    return providers


def find_onnx_dir(path: str | Path | None = None) -> tuple[Path, Path | None]:
    """The folder holding the ONNX files and the model folder they belong to (None when given the ONNX folder).

    ``path`` is a model folder (its ``onnx/`` subfolder is used), an ONNX folder written with ``-o``, or None
    (``$HIFIFACE_HOME``, then ``~/.cache/hififace``).
    """
    if path is not None and (Path(path).expanduser() / GENERATOR.file).is_file():
        return Path(path).expanduser(), None
    folder = resolve_model_dir(path)
    onnx_dir = folder / ONNX_DIR
    if not onnx_dir.is_dir():
        raise WeightsError(f"{onnx_dir}: no ONNX export of this model folder; make it with "
                           f"'hififace export onnx --weights {folder}'")
    return onnx_dir, folder


class OnnxHifiFace:
    """The exported generator, ArcFace and ReconNet run by onnxruntime (see the module docstring).

    Attributes:
        config: the :class:`~hififace.HifiFaceConfig` the graphs were exported from (from their metadata).
        metadata: the ``hififace:*`` metadata of the generator graph (variant, size, alignment, notice, ...).
        providers: the onnxruntime providers the generator session runs on.
    """

    def __init__(self, onnx_dir: str | Path, device: str | None = "auto", threads: int | None = None,
                 model_dir: str | Path | None = None, providers: Sequence[str] | str | None = None,
                 trt_fp16: bool = False, trt_cache: str | Path | None = None):
        ort = require("onnxruntime", "--engine onnx")
        self.onnx_dir = Path(onnx_dir)
        self.model_dir = Path(model_dir) if model_dir is not None else None
        options = ort.SessionOptions()
        options.log_severity_level = 0 if log.isEnabledFor(logging.DEBUG) else 3  # ORT's warnings only at -v
        if threads:
            options.intra_op_num_threads = int(threads)
        if providers is None and not trt_fp16 and trt_cache is None:
            providers = select_providers(device)
        else:
            providers = select_providers(device, providers, trt_fp16=trt_fp16, trt_cache=trt_cache)
        self.sessions = {spec.name: self._open(spec, options, providers) for spec in GRAPHS}
        metas = {name: s.get_modelmeta().custom_metadata_map for name, s in self.sessions.items()}
        self.metadata = dict(metas[GENERATOR.name])
        self.config = self._config(metas)
        if self.model_dir is not None:
            self._warn_if_stale(self.model_dir, metas)
        self.providers = self.sessions[GENERATOR.name].get_providers()
        if len(providers) > 1 and self.providers[0] == CPU:
            first = providers[0][0] if isinstance(providers[0], tuple) else providers[0]
            log.warning("onnxruntime could not start %s; running on the CPU", first)
        log.debug("onnx engine %s on %s", self.onnx_dir, ", ".join(self.providers))

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | None = "auto", threads: int | None = None,
                        providers: Sequence[str] | str | None = None, trt_fp16: bool = False,
                        trt_cache: str | Path | None = None) -> "OnnxHifiFace":
        """Load the export of a model folder (``<path>/onnx``) or an ONNX folder; see :func:`find_onnx_dir`.
        ``providers``, ``trt_fp16``, ``trt_cache``: as :func:`select_providers`'s ``prefer``, ``trt_fp16``,
        ``trt_cache``."""
        onnx_dir, model_dir = find_onnx_dir(path)
        return cls(onnx_dir, device=device, threads=threads, model_dir=model_dir, providers=providers,
                   trt_fp16=trt_fp16, trt_cache=trt_cache)

    # ------------------------------------------------------------------ loading
    def _open(self, spec: GraphSpec, options: Any, providers: list[Any]) -> Any:
        import onnxruntime as ort

        path = self.onnx_dir / spec.file
        if not path.is_file():
            how = (f"--weights {self.model_dir}" if self.model_dir is not None
                   else f"--weights MODEL_DIR -o {self.onnx_dir}")
            raise WeightsError(f"{path}: missing ONNX {spec.name} graph; the export is incomplete, re-create it with "
                               f"'hififace export onnx {how}'")
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as err:  # onnxruntime raises its own exception types, with multi-line messages
            if len(providers) == 1:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise WeightsError(f"{path}: onnxruntime cannot load it ({first}); re-create it with "
                                   "'hififace export onnx'") from None
            # a GPU provider that is listed but cannot start (no driver, no TensorRT libraries): try the CPU
            log.debug("onnxruntime session with %s failed", providers, exc_info=True)
            return self._open(spec, options, [CPU])
        meta = session.get_modelmeta().custom_metadata_map
        if meta.get("hififace:format") != FORMAT or meta.get("hififace:graph") != spec.name:
            raise WeightsError(f"{path}: not the {spec.name} graph of a hififace ONNX export ({FORMAT}); re-create it "
                               "with 'hififace export onnx'")
        names = tuple(i.name for i in session.get_inputs()), tuple(o.name for o in session.get_outputs())
        if names != (spec.inputs, spec.outputs):
            raise WeightsError(f"{path}: inputs/outputs {names} are not {(spec.inputs, spec.outputs)}; re-create it "
                               "with 'hififace export onnx'")
        return session

    def _config(self, metas: dict[str, dict[str, str]]) -> HifiFaceConfig:
        """The config of the export: all three graphs must come from the same model configuration."""
        dicts = {}
        for name, meta in metas.items():
            try:
                dicts[name] = json.loads(meta["hififace:config"])
            except (KeyError, json.JSONDecodeError):
                raise WeightsError(f"{self.onnx_dir / name}.onnx: no readable hififace:config metadata; re-create it "
                                   "with 'hififace export onnx'") from None
        plain = {name: {k: v for k, v in d.items() if k != "notes"} for name, d in dicts.items()}
        for spec in (ARCFACE, RECON):
            if plain[spec.name] != plain[GENERATOR.name]:
                raise WeightsError(f"{self.onnx_dir}: {spec.file} and {GENERATOR.file} were exported from models of "
                                   "different configurations; re-export them together with 'hififace export onnx'")
        return HifiFaceConfig.from_dict(dicts[GENERATOR.name], source=str(self.onnx_dir / GENERATOR.file))

    def _warn_if_stale(self, model_dir: Path, metas: dict[str, dict[str, str]]) -> None:
        for spec in GRAPHS:
            stored = json.loads(metas[spec.name].get("hififace:source") or "{}").get(spec.weights)
            file = model_dir / spec.weights
            if stored and file.is_file() and fingerprint(file) != stored:
                log.warning("%s was exported from another %s than the one in %s now; re-export it with "
                            "'hififace export onnx --weights %s'", spec.file, spec.weights, model_dir, model_dir)

    # ------------------------------------------------------------------ the HifiFace interface
    @property
    def device(self) -> torch.device:
        """Where results are returned (onnxruntime's own device placement is in :attr:`providers`)."""
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def is_random(self) -> bool:
        """True when exported from random weights (:meth:`HifiFace.random`), as :attr:`HifiFace.is_random`: the
        commands then warn and label the outputs 'random weights'."""
        return is_random_config(self.config)

    def run_graph(self, spec: GraphSpec, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Run one exported graph (``graphs.GENERATOR``, ``ARCFACE`` or ``RECON``) on CPU float32 tensors."""
        feed = {name: x.detach().to("cpu", torch.float32).contiguous().numpy() for name, x in zip(spec.inputs, inputs)}
        return [torch.from_numpy(np.ascontiguousarray(y)) for y in self.sessions[spec.name].run(list(spec.outputs), feed)]

    def _batch(self, images: Any) -> tuple[torch.Tensor, Any]:
        batch, kind = as_batch(images, self.config.image_size)
        return batch.to("cpu", torch.float32), kind

    def identity(self, source: Any) -> Identity:
        """Encode source face(s) once; pass the result to :meth:`swap` in place of the source image."""
        batch, _ = self._batch(source)
        (v_id,) = self.run_graph(ARCFACE, batch)
        (coeffs,) = self.run_graph(RECON, batch)
        return Identity(coeffs[:, :N_ID_COEFFS].contiguous(), v_id)

    def analyse(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The ArcFace embedding (N x 512) and the 257 3DMM coefficients of aligned face(s), as
        :meth:`hififace.HifiFace.analyse`."""
        batch, _ = self._batch(images)
        (v_id,) = self.run_graph(ARCFACE, batch)
        (coeffs,) = self.run_graph(RECON, batch)
        return v_id, coeffs

    def prepare_target(self, target: Any) -> PreparedTarget:
        """Target face(s) and their 3DMM coefficients (no encoder features: the generator graph runs whole)."""
        batch, kind = self._batch(target)
        (coeffs,) = self.run_graph(RECON, batch)
        return PreparedTarget(batch, coeffs, None, None, kind)

    def _run(self, identity: Identity, target: PreparedTarget) -> GeneratorOutput:
        """The generator's four raw outputs for an identity and a prepared target (as ``HifiFace._run``)."""
        v_sid = ShapeAwareIdentityExtractor.fuse(identity.to("cpu", torch.float32), target.coeffs)
        return GeneratorOutput(*self.run_graph(GENERATOR, target.image, v_sid))

    def identity_fingerprint(self) -> str:
        """The PyTorch model's :meth:`~hififace.HifiFace.identity_fingerprint`, recorded at export: identity files
        saved with either engine work with the other."""
        value = self.metadata.get("hififace:identity_fingerprint")
        if not value:
            raise WeightsError(f"{self.onnx_dir}: this export predates identity fingerprints; re-create it with "
                               "'hififace export onnx'")
        return value

    # The rest of the interface is HifiFace's own code on top of identity / prepare_target / _run, so both engines
    # take and return the same kinds by construction.
    swap = HifiFace.swap
    interpolate = HifiFace.interpolate
