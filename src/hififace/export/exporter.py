"""Export a HifiFace model to ONNX: ``generator.onnx``, ``arcface.onnx``, ``recon3d.onnx`` (see :mod:`.graphs`).

Uses torch.onnx's torch.export-based ("dynamo") exporter, the default since torch 2.9, which needs ``onnxscript``
(in the ``onnx`` extra). The TorchScript-based exporter (``dynamo=False``) is deprecated since torch 2.9 and cannot
export the antialiased resize of ReconNet's optional input resize, so it is not used.

Each graph is exported with a dynamic batch axis, fp32, opset :data:`~.graphs.OPSET`, with its metadata, into a
temporary file beside its destination; with ``check=True`` onnxruntime runs it on a batch of a different size than
the one traced and its outputs are compared with PyTorch's. Only when all three graphs are written and checked are
they renamed into place, so a failed export never leaves a partial or mixed set behind.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import HifiFaceError
from ..models.hififace import CONFIG_FILE, HifiFace
from ..utils.atomic import atomic_path, unwritable_reason
from ..utils.optional import require
from ..weights.resolve import resolve_model_dir
from .graphs import (
    ARCFACE, BY_NAME, GENERATOR, GRAPHS, ONNX_DIR, OPSET, RECON, GraphSpec, graph_module, metadata, source_fingerprint,
)

log = logging.getLogger(__name__)

#: Largest accepted difference between onnxruntime and PyTorch in the export check, relative to the outputs'
#: scale (max(1, max |output|)). Parity on random weights is ~1e-5 (tests hold it to 1e-4); a broken export
#: is off by far more.
CHECK_TOLERANCE = 1e-3
TRACE_BATCH = 2  # not 1: torch.export specialises sizes 0 and 1, which would fix the batch axis
CHECK_BATCH = 3


class ExportError(HifiFaceError):
    """The model cannot be exported, or its export does not reproduce it."""


@dataclass
class ExportedGraph:
    """One written file and how far onnxruntime's outputs were from PyTorch's in the check (None: unchecked)."""

    spec: GraphSpec
    path: Path
    max_abs_diff: float | None = None
    scale: float | None = None


def example_inputs(model: Any, batch: int, seed: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs of each graph: random crops and the v_sid the PyTorch model builds from them."""
    size = model.config.image_size
    g = torch.Generator().manual_seed(seed)
    source, target = (torch.rand(batch, 3, size, size, generator=g) for _ in range(2))
    with torch.no_grad():
        v_sid = model.id_extractor(source, target)
    return {GENERATOR.name: (target, v_sid), ARCFACE.name: (source,), RECON.name: (target,)}


def export_onnx(
    model_or_folder: Any,
    out_dir: str | Path | None = None,
    *,
    opset: int = OPSET,
    check: bool = True,
    graphs: Sequence[str] | None = None,
    seed: int = 0,
) -> list[ExportedGraph]:
    """Export a model folder (None: ``$HIFIFACE_HOME``, then ``~/.cache/hififace``) or a loaded float32 CPU
    :class:`~hififace.HifiFace` to ``out_dir``, with a copy of the model's ``config.json``.

    ``out_dir`` defaults to ``<folder>/onnx``. Existing files there are replaced, each atomically, only once the
    whole new set is written and checked. ``graphs`` picks some of ``generator``, ``arcface``, ``recon3d``
    (default all): after fine-tuning only the generator changes, the frozen ArcFace and ReconNet never do.
    """
    specs = _pick(graphs)
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    if check:
        require("onnxruntime", "checking the ONNX export")
    if "dynamo" not in inspect.signature(torch.onnx.export).parameters:
        raise ExportError(f"torch {torch.__version__} has no torch.export-based ONNX exporter: ONNX export needs torch >= 2.6")
    model, out_dir, folder = _resolve(model_or_folder, out_dir)
    trace = example_inputs(model, TRACE_BATCH, seed)
    probe = example_inputs(model, CHECK_BATCH, seed + 1) if check else {}
    created = not out_dir.exists()
    try:
        return _write_all(model, out_dir, folder, specs, opset, trace, probe)
    except BaseException as err:
        if created:  # a failed export into a new folder does not leave it behind, empty
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        if isinstance(err, OSError):  # a full disk, or a read-only place the early check could not see
            raise ExportError(f"{out_dir}: cannot write the ONNX files ({err.strerror or err}); "
                              "pass -o DIR with a folder you can write to") from None
        raise


def _write_all(model: Any, out_dir: Path, folder: Path | None, specs: list[GraphSpec], opset: int,
               trace: dict, probe: dict) -> list[ExportedGraph]:
    """Export, write and check each graph into a temporary file; rename them all into place at the end."""
    results = []
    with contextlib.ExitStack() as stack:
        for spec in specs:
            log.info("exporting %s", spec.file)
            module = graph_module(model, spec)
            tmp = stack.enter_context(atomic_path(out_dir / spec.file))  # renamed when the whole set is done
            program = _export_graph(module, trace[spec.name], spec, opset)
            source = source_fingerprint(folder, spec) if folder is not None else {}
            extra = {"hififace:opset": str(opset), "hififace:source": json.dumps(source, sort_keys=True),
                     "hififace:identity_fingerprint": model.identity_fingerprint()}
            program.model.metadata_props.update(metadata(model.config, spec, extra))
            program.model.doc_string = spec.what
            program.save(tmp, external_data=False)
            del program
            result = ExportedGraph(spec, out_dir / spec.file)
            if probe:
                result.max_abs_diff, result.scale = _check(tmp, module, probe[spec.name], spec)
            results.append(result)
        # config.json beside the graphs: the folder then works as --weights of the commands (with --engine onnx)
        config_tmp = stack.enter_context(atomic_path(out_dir / CONFIG_FILE))
        model.config.save(config_tmp)
    return results


def _pick(graphs: Sequence[str] | None) -> list[GraphSpec]:
    if graphs is None:
        return list(GRAPHS)
    unknown = [g for g in graphs if g not in BY_NAME]
    if unknown or not graphs:
        raise ExportError(f"unknown graph(s) {', '.join(unknown) or '(none)'}: choose from {', '.join(BY_NAME)}")
    return [BY_NAME[g] for g in BY_NAME if g in graphs]


def _resolve(model_or_folder: Any, out_dir: str | Path | None) -> tuple[Any, Path, Path | None]:
    """The model to export, the output folder and the model folder it came from (None for a loaded model)."""
    if model_or_folder is None or isinstance(model_or_folder, (str, Path)):
        folder = resolve_model_dir(model_or_folder)
        out = Path(out_dir) if out_dir is not None else folder / ONNX_DIR
        _check_out_dir(out)  # before the (slow) load
        return HifiFace.from_pretrained(folder, device="cpu"), out, folder
    model = model_or_folder
    if out_dir is None:
        raise ExportError("export_onnx(model, out_dir): give the output folder when exporting a loaded model")
    if model.dtype != torch.float32 or model.device.type != "cpu":
        raise ExportError(f"ONNX export needs a float32 model on the CPU (got {model.dtype} on {model.device}); "
                          "load it with HifiFace.from_pretrained(path) without dtype/device")
    _check_out_dir(Path(out_dir))
    return model, Path(out_dir), None


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: is a file; give a folder for the ONNX files (-o DIR)")
    why = unwritable_reason(out)
    if why:
        raise ExportError(f"{out}: cannot write the ONNX files there ({why}); pass -o DIR with a folder you can "
                          "write to")


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx logs missing torchvision ops and warns about internals at every export, onnxscript logs each
    optimisation pass: keep that out of the way unless our own logger is at debug level."""
    loggers = {name: logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")}
    levels = {name: logger.level for name, logger in loggers.items()}
    if not log.isEnabledFor(logging.DEBUG):
        for logger in loggers.values():
            logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*axis name", category=UserWarning)
            yield
    finally:
        for name, logger in loggers.items():
            logger.setLevel(levels[name])


def _export_graph(module: torch.nn.Module, args: tuple[torch.Tensor, ...], spec: GraphSpec, opset: int):
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with torch.no_grad(), _quiet_exporter():
            return torch.onnx.export(
                module, args, dynamo=True, opset_version=opset, input_names=list(spec.inputs),
                output_names=list(spec.outputs), dynamic_shapes=tuple({0: batch} for _ in args), optimize=True,
                verbose=False,
            )
    except HifiFaceError:
        raise
    except Exception as err:  # torch.export / onnxscript errors are long; keep the first line, details at -v
        log.debug("export of %s failed", spec.name, exc_info=True)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if isinstance(err, ImportError):  # onnxscript older than this torch's exporter
            import onnxscript

            raise ExportError(f"{spec.file}: torch {torch.__version__} cannot export with onnxscript "
                              f"{getattr(onnxscript, '__version__', '?')} ({first}); pip install -U onnxscript") from None
        raise ExportError(f"{spec.file}: torch.onnx export failed ({first}); run with -v for details") from None


def _check(path: Path, module: torch.nn.Module, args: tuple[torch.Tensor, ...], spec: GraphSpec) -> tuple[float, float]:
    """Run the exported file with onnxruntime (CPU) and compare with PyTorch: (max |difference|, output scale)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(spec.outputs), {name: a.numpy() for name, a in zip(spec.inputs, args)})
    with torch.no_grad():
        want = module(*args)
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
    scale = max(1.0, max(float(np.abs(w).max()) for w in want))
    if not diff <= CHECK_TOLERANCE * scale:  # also catches NaN
        raise ExportError(f"{spec.file}: onnxruntime's outputs differ from PyTorch's by {diff:.3g} (output scale "
                          f"{scale:.3g}): the export is wrong; report it with your torch and onnxscript versions")
    log.debug("%s: max |onnxruntime - torch| = %.3g (scale %.3g)", spec.file, diff, scale)
    return diff, scale
