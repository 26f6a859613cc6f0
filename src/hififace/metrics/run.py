"""``hififace eval`` as a library call: rows from pairs.csv or the FF++ protocol, results made by the model when
needed, the metric networks that are available, the scores and the report folder."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .._version import __version__
from ..config import HifiFaceConfig
from ..converters.arcface import load_arcface_state
from ..errors import ConfigError, HifiFaceError, InputImageError, WeightsError
from ..face.landmarks import find_recon_files
from ..inference.pipeline import FaceSwapper
from ..losses.lpips import LPIPS
from ..media.images import read_photo, write_image
from ..media.tensors import to_uint8
from ..models.hififace import ARCFACE_FILE, CONFIG_FILE, GENERATOR_FILE, LPIPS_FILE, HifiFace
from ..models.identity import Identity
from ..provenance.label import output_label
from ..provenance.outputs import UNMARKED
from ..utils.atomic import atomic_path, atomic_write_text, unwritable_reason
from ..weights.io import load_safetensors
from ..weights.resolve import resolve_model_dir
from .cache import file_fingerprint
from .evaluate import EvalOptions, Evaluator, MetricModels
from .ffpp import build_rows, find_layout
from .identity import DlibIdentity, IResNetIdentity
from .inception import WEIGHT_NAME, find_fid_inception, load_fid_inception
from .pairs import Row, check_paths, read_pairs, unique_pairs
from .report import write_report
from .threedmm import ReconCoefficients

log = logging.getLogger(__name__)

RESULTS_DIR = "results"
RESULTS_STAMP = ".hififace-weights.json"
#: Under the results folder: the aligned crops of detected targets, which their results are scored against.
TARGETS_DIR = "targets"
#: Under the results folder: how each row's result was made (its source and target paths, aligned/detected/no-face).
RESULTS_RECORD = ".hififace-rows.json"


@dataclass
class EvalRequest:
    output: Path
    pairs: Path | None = None
    protocol: str | None = None
    data: Path | None = None
    weights: str | None = None
    results: Path | None = None
    ffpp_method: str | None = None
    ffpp_compression: str = "c23"
    split: str = "all"
    self_recon: bool = False
    limit: int | None = None
    id_model: str = "dlib"
    recon: str | None = None
    inception: str | None = None
    lpips: Sequence[str] = ()
    faces: str = "detect"
    cache: Path | None = None
    batch_size: int = 16
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: str = "fp32"
    figures: bool = True


def _explicit_file(value: str | None, option: str, what: str) -> Path | None:
    """A weight file the user named must exist (a typo is an error before any work, not a silently skipped metric)."""
    if value is None:
        return None
    p = Path(value).expanduser()
    if not p.is_file():
        raise WeightsError(f"{p}: {option} file not found; expected {what}")
    return p


def build_metric_models(req: EvalRequest, model_dir: Path | None) -> MetricModels:
    """The metric networks that are available; every missing one becomes a skip reason (never an error)."""
    m = MetricModels(device=req.device)
    # identity: a face-recognition model other than the training ArcFace
    if req.id_model == "none":
        m.skipped["id_similarity"] = m.skipped["id_retrieval"] = "disabled with --id-model none"
    elif req.id_model == "dlib":
        try:
            m.identity = DlibIdentity()
        except HifiFaceError as err:
            m.skipped["id_similarity"] = m.skipped["id_retrieval"] = f"no dlib face descriptor: {err}"
    else:
        path = _explicit_file(req.id_model, "--id-model", "an insightface IResNet backbone.pth (ArcFace/CosFace)")
        m.identity = IResNetIdentity.from_file(path, req.device)
        _warn_if_training_arcface(path, model_dir)
    # 3DMM coefficients

    recon = _explicit_file(req.recon, "--recon", "Deep3DFaceRecon epoch_20.pth")
    if recon is None and model_dir is None:
        found = find_recon_files()
        recon = found[0] if found else None
    if recon is not None:
        m.recon = ReconCoefficients.from_file(recon, req.device)
    elif model_dir is not None:
        m.recon = ReconCoefficients.from_model_dir(model_dir, req.device)
    else:
        for k in ("pose_error", "expression_error", "shape_error"):
            m.skipped[k] = ("no ReconNet weights: pass --recon epoch_20.pth (Deep3DFaceRecon) or --weights DIR, "
                            "or put epoch_20.pth and BFM_model_front.mat in $HIFIFACE_HOME")
    # FID / KID
    incep = _explicit_file(req.inception, "--inception", f"{WEIGHT_NAME} (pytorch-fid's FID Inception weights)") \
        or find_fid_inception()
    if incep is not None:
        m.inception = load_fid_inception(incep).to(req.device)
        m.inception_name = f"FID Inception-v3 ({incep.name})"
        m.inception_key = f"inception-{file_fingerprint(incep)}"
    else:
        m.skipped["fid"] = m.skipped["kid"] = (f"no FID Inception weights: pass --inception {WEIGHT_NAME} "
                                               "(pytorch-fid's file) or put it in $HIFIFACE_HOME")
    # LPIPS
    m.lpips, m.lpips_name, reason = _lpips(req, model_dir)
    if reason:
        m.skipped["lpips"] = reason
    return m


def _lpips(req: EvalRequest, model_dir: Path | None) -> tuple[Any, str, str | None]:
    files = [_explicit_file(f, "--lpips", "lpips.safetensors, or vgg16-397923af.pth and lpips' vgg.pth") for f in req.lpips]
    if len(files) > 2:
        raise ConfigError("--lpips takes lpips.safetensors, or two files: vgg16-397923af.pth and lpips' v0.1 vgg.pth")
    if len(files) == 2:
        net = LPIPS(files[0], files[1])
        return net.to(req.device), f"LPIPS-VGG v0.1 ({files[0].name}, {files[1].name})", None

    single = files[0] if files else (model_dir / LPIPS_FILE if model_dir is not None and (model_dir / LPIPS_FILE).is_file() else None)
    if single is None:
        return None, "", ("no LPIPS weights: pass --lpips lpips.safetensors (a training model folder has one) or "
                          "--lpips vgg16-397923af.pth vgg.pth")
    net = LPIPS.from_safetensors(single)
    return net.to(req.device), f"LPIPS-VGG v0.1 ({single.name})", None


def _warn_if_training_arcface(path: Path, model_dir: Path | None) -> None:
    if model_dir is None:
        return

    try:
        own = load_safetensors(model_dir / ARCFACE_FILE, "ArcFace weights").get("fc.weight")
        _, theirs = load_arcface_state(path)
    except HifiFaceError:
        return
    if own is not None and theirs.get("fc.weight") is not None and own.shape == theirs["fc.weight"].shape \
            and torch.equal(own, theirs["fc.weight"]):
        log.warning("%s is the ArcFace the model trained with: identity scores from it are biased upwards; use a "
                    "different face-recognition model (a CosFace file, or the default dlib descriptor)", path)


# ---------------------------------------------------------------------------------------------- results
def make_results(model, rows: list[Row], folder: Path, batch_size: int = 8, progress: Callable | None = None,
                 stamp: dict[str, str] | None = None, detector: str = "yunet") -> None:
    """Swap every row without a result into ``folder/<row.name>.png``; existing files are kept (resume).

    Faces are taken as ``hififace swap`` takes them (:meth:`FaceSwapper.one_face_crop`): an image of the model's
    size is an aligned crop, any other photo is detected and its largest face aligned with the weights' template.
    The result is the model's output for the aligned target crop; a detected target's crop is kept in
    ``folder/targets/<row.name>.png`` and the result is scored against it (``row.target_crop``). ``row.crop`` says
    what was done (``aligned``, ``detected``); a row whose source or target shows no face is not swapped:
    ``row.crop`` is ``no-face`` and ``row.skipped`` the reason. ``folder/.hififace-rows.json`` records each row's
    source, target and outcome, so a re-run resumes (a row whose paths changed is made again).

    Rows with the same source and target are swapped once: they share the result of the first of them.
    """
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    stamp_file = folder / RESULTS_STAMP
    if stamp is not None:
        if stamp_file.is_file():
            old = json.loads(stamp_file.read_text(encoding="utf-8"))
            if old.get("fingerprint") != stamp["fingerprint"]:
                raise ConfigError(f"{folder}: holds results of other weights ({old.get('weights')}); use another -o "
                                  "or delete that folder")
        else:
            atomic_write_text(stamp_file, json.dumps(stamp) + "\n")
    swapper = FaceSwapper(model, detector=detector, parsing="landmarks", min_face=0, batch_size=batch_size)
    record_file = folder / RESULTS_RECORD
    record = _read_record(record_file)
    todo = []
    groups = unique_pairs(rows)
    if len(groups) < len(rows):
        log.info("%d rows, %d unique (source, target) pair(s): each pair is swapped once and its result shared by "
                 "its rows", len(rows), len(groups))
    unique = [group[0] for group in groups.values()]
    for r in unique:
        r.result = folder / f"{r.name}.png"
        done = record.get(r.name)
        if not (isinstance(done, dict) and done.get("source") == str(r.source) and done.get("target") == str(r.target)):
            todo.append(r)  # not made, made by an older hififace, or made for another row of that name
        elif done.get("crop") == "no-face":
            r.result, r.crop, r.skipped = None, "no-face", str(done.get("skipped", "no face found"))
        elif not r.result.is_file() or (done.get("target_crop")
                                        and not (folder / TARGETS_DIR / f"{r.name}.png").is_file()):
            todo.append(r)  # a file made then lost: made again
        else:
            r.crop = str(done.get("crop", ""))
            r.target_crop = folder / TARGETS_DIR / f"{r.name}.png" if done.get("target_crop") else None
    if len(todo) < len(unique):
        log.info("%d of %d results already made (resuming)", len(unique) - len(todo), len(unique))
    meta = output_label("eval", model)
    crops: dict[Path, tuple[str, Any]] = {}  # each photo detected once, however many rows use it
    identities: dict[Path, Any] = {}

    def crop_of(path: Path) -> tuple[str, Any]:
        if path not in crops:
            crops[path] = swapper.one_face_crop(read_photo(path).rgb, path)
        return crops[path]

    bar = progress(len(todo), "swap") if progress and todo else None
    try:
        for i in range(0, len(todo), batch_size):
            part = todo[i: i + batch_size]
            chunk, ids, targets = [], [], []
            for r in part:
                (how_s, src), (how_t, tgt) = crop_of(r.source), crop_of(r.target)
                if src is None or tgt is None:
                    r.result, r.crop = None, "no-face"
                    r.skipped = f"no face found in the {'source' if src is None else 'target'} photo"
                    continue
                r.crop = "detected" if "detected" in (how_s, how_t) else "aligned"
                if r.source not in identities:
                    identities[r.source] = swapper.crop_identity(src[None])
                chunk.append(r)
                ids.append(identities[r.source])
                targets.append(tgt)
            if chunk:
                i_r, _ = swapper.swap_crops(Identity.cat(ids), np.stack(targets))
                for k, r in enumerate(chunk):
                    if crop_of(r.target)[0] == "detected":  # what the result is scored against
                        r.target_crop = folder / TARGETS_DIR / f"{r.name}.png"
                        _write_crop(r.target_crop, targets[k])
                    # as HifiFace.swap writes its outputs; unmarked: the metrics measure the model, not the watermark
                    write_image(r.result, to_uint8(i_r[k]), meta=meta, provenance=UNMARKED)
            for r in part:
                record[r.name] = {"source": str(r.source), "target": str(r.target), "crop": r.crop,
                                  "target_crop": r.target_crop is not None, "skipped": r.skipped}
            _write_record(record_file, record)
            if bar is not None:
                bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    for group in groups.values():  # rows repeating a pair share what was done for its first row
        first = group[0]
        for r in group[1:]:
            r.result, r.crop, r.target_crop, r.skipped = first.result, first.crop, first.target_crop, first.skipped


def _read_record(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_record(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record) + "\n")


def _write_crop(path: Path, crop) -> None:
    """A crop of the user's own photo (not synthetic: no label), written atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(crop).save(tmp, format="PNG", compress_level=1)


# ---------------------------------------------------------------------------------------------- driver
def _rows(req: EvalRequest, model_dir: Path | None, size: int, progress) -> tuple[list[Row], dict[str, Any]]:
    info: dict[str, Any] = {}
    if req.pairs is not None:
        rows = read_pairs(req.pairs, req.results, need_results=model_dir is None)
        if req.limit:
            rows = rows[: req.limit]
        info["protocol"] = "pairs"
        info["pairs_file"] = str(req.pairs)
        return rows, info

    layout = find_layout(req.data, req.ffpp_compression, req.split)
    cache = req.cache or req.output / "cache"
    built = build_rows(layout, cache, size, req.results, req.ffpp_method, req.limit, progress, req.self_recon)
    if req.results is not None:
        check_paths(built.rows, req.results)
    if not built.rows:
        raise InputImageError(f"{req.data}: no frame pair with a face on both sides; check the videos")
    info.update(protocol="ffpp", ffpp={"videos": built.videos, "frames": built.frames,
                                       "frames_without_face": built.frames_without_face,
                                       "frame_pairs_left_out": built.pairs_left_out, "unreadable_videos": built.unreadable,
                                       "pairs": len(layout.pairs[: req.limit] if req.limit else layout.pairs),
                                       "split": req.split, "compression": req.ffpp_compression,
                                       "method": req.ffpp_method})
    if built.frames_without_face or built.unreadable:
        info.setdefault("notes", []).append(
            f"FF++: {built.frames_without_face} sampled frame(s) without a face and {len(built.unreadable)} unreadable "
            f"video(s); {built.pairs_left_out} frame pair(s) left out")
    return built.rows, info


def check_request(req: EvalRequest) -> None:
    if (req.pairs is None) == (req.protocol is None):
        raise ConfigError("give either --pairs pairs.csv or --protocol ffpp --data FFPP_DIR")
    if req.protocol is not None and req.protocol != "ffpp":
        raise ConfigError(f"--protocol {req.protocol}: the only protocol is ffpp")
    if req.protocol == "ffpp" and req.data is None:
        raise ConfigError("--protocol ffpp needs --data FFPP_DIR (the FaceForensics++ folder)")
    if req.ffpp_method and req.protocol != "ffpp":
        raise ConfigError("--ffpp-method is for --protocol ffpp")
    if req.self_recon and req.protocol != "ffpp":
        raise ConfigError("--self-recon is for --protocol ffpp; with --pairs list rows whose source is the target")
    if req.ffpp_method and req.results is not None:
        raise ConfigError("--ffpp-method and --results both give the results: pass one of them")
    if req.output.exists() and not req.output.is_dir():
        raise ConfigError(f"{req.output}: is a file; -o takes a report folder")

    for folder, option in ((req.output, "-o REPORT_DIR"), (req.cache, "--cache DIR")):
        why = unwritable_reason(folder) if folder is not None else None
        if why:
            raise ConfigError(f"{folder}: cannot write there ({why}); give {option} a folder you can write to")
    if req.batch_size < 1:
        raise ConfigError(f"--batch-size {req.batch_size}: use 1 or more")
    if req.limit is not None and req.limit < 1:
        raise ConfigError(f"--limit {req.limit}: use 1 or more")


def run_eval(req: EvalRequest, progress: Callable | None = None) -> dict[str, Any]:
    """Everything ``hififace eval`` does short of printing; returns the content of metrics.json."""
    check_request(req)
    model_dir = None
    if req.weights is not None:
        model_dir = resolve_model_dir(req.weights)
    size = 256
    if model_dir is not None:
        size = HifiFaceConfig.load(model_dir / CONFIG_FILE).image_size
    generate = req.results is None and not req.ffpp_method
    rows, info = _rows(req, model_dir if generate else None, size, progress)
    if generate and any(r.result is None for r in rows):
        if model_dir is None:
            raise ConfigError("no results to score: pass --weights DIR to make them, or --results DIR")
        models_ = build_metric_models(req, model_dir)  # fail on a bad metric file before the long swap
        _generate(req, model_dir, rows, progress)
    else:
        models_ = build_metric_models(req, model_dir)
    if all(r.skipped for r in rows):
        shown = "; ".join(f"line {r.line}: {r.skipped}" if r.line else f"{r.name}: {r.skipped}" for r in rows[:3])
        raise InputImageError(f"{req.pairs or req.data}: no row to score: {shown}{' ...' if len(rows) > 3 else ''}; "
                              "use photos where the face is clearly visible, or aligned crops of the model's size")
    evaluator = Evaluator(models_, EvalOptions(faces=req.faces, batch_size=req.batch_size,
                                               cache_dir=req.cache or req.output / "cache"))
    result = evaluator.run(rows, progress)
    result.notes[:0] = info.pop("notes", [])
    from datetime import datetime, timezone

    meta = dict(info, weights=str(model_dir) if model_dir else None,
                results=str(req.results) if req.results else (f"made by the model in {req.output / RESULTS_DIR}" if generate else None),
                faces=req.faces, created=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                hififace_version=__version__)
    return write_report(req.output, result, figures=req.figures, **meta)


def _generate(req: EvalRequest, model_dir: Path, rows: list[Row], progress) -> None:
    model = HifiFace.from_pretrained(model_dir, device=req.device, dtype=req.dtype)
    stamp = {"weights": str(model_dir), "fingerprint": file_fingerprint(model_dir / GENERATOR_FILE), "dtype": req.dtype}
    make_results(model, rows, req.output / RESULTS_DIR, req.batch_size, progress, stamp)
    del model
