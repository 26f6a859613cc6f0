"""Dataset preparation (``hififace preprocess``): one aligned crop and one parsing map per usable photo of a
``RAW_DIR/<identity>/<file>`` tree, written to ``OUT_DIR/images`` and ``OUT_DIR/parsing`` with one JSON record per
photo in ``OUT_DIR/index.jsonl``; sharded (``--shard i/n``, merged by the shard that completes the set), resumable
(outputs written atomically, trusted while their recorded sizes hold) and locked (one run per folder or shard).
The layout, the record schema, resuming and locking: docs/preprocessing.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from ..errors import ConfigError, HifiFaceError, InputImageError
from ..utils.atomic import TMP_PREFIX, atomic_path, atomic_write_text, storage_error
from ..face.align import TEMPLATES, transform_points
from ..face.cropper import FaceCrop, FaceCropper, Skip
from ..face.landmarks import get_landmarker
from ..face.palette import labels_to_image
from ..face.parse import PARSERS, get_parser
from ..media.images import IMAGE_EXTENSIONS, NotAnImageError, read_photo
from ..utils.logs import setup_logging

log = logging.getLogger(__name__)

SKIP_REASONS = ("unreadable", "not_an_image", "no_face", "low_score", "face_too_small", "several_faces",
                "duplicate_name", "unreadable_folder", "not_in_identity_folder", "error")
#: Options that change the outputs; a folder made with other values is refused on resume.
_OUTPUT_OPTIONS = ("size", "align", "parsing", "detector", "min_face", "min_score", "multi_face", "refine_passes",
                   "refine_jitter", "landmarks68")


@dataclass
class PreprocessConfig:
    """Options of :func:`preprocess` (the CLI flags of ``hififace preprocess``)."""

    size: int = 256
    align: str = "arcface"
    parsing: str = "auto"
    parsing_weights: str | None = None
    detector: str = "yunet"
    detector_model: str | None = None
    landmarks68: str = "auto"
    refine_passes: int = 2
    refine_jitter: bool = False
    min_face: float = 40.0
    min_score: float = 0.7
    multi_face: str = "largest"
    device: str = "cpu"
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    retry_skipped: bool = False
    #: ReconNet (``epoch_20.pth`` or ``recon3d.safetensors``) and BFM (``BFM_model_front.mat`` or
    #: ``bfm_landmarks.safetensors``) for 68-point landmarks: per-image masks from the landmark parser.
    recon3d: str | None = None
    bfm: str | None = None

    def check(self) -> None:
        if self.size < 32 or self.size > 2048:
            raise ConfigError(f"--size {self.size}: use 32..2048 (256 or 512 for training)")
        if self.align not in TEMPLATES:
            raise ConfigError(f"--align {self.align}: choose one of {', '.join(TEMPLATES)}")
        if self.parsing not in PARSERS:
            raise ConfigError(f"--parsing {self.parsing}: choose one of {', '.join(PARSERS)}")
        if self.multi_face not in ("largest", "skip"):
            raise ConfigError(f"--multi-face {self.multi_face}: choose largest or skip")
        i, n = self.shard
        if n < 1 or not 0 <= i < n:
            raise ConfigError(f"--shard {i}/{n}: need 0 <= i < n (shards are numbered from 0)")
        if self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: need at least 1")
        if bool(self.recon3d) != bool(self.bfm):
            raise ConfigError("--recon3d and --bfm go together (ReconNet's 68 landmarks need the face model)")
        if self.recon3d and self.landmarks68 not in ("auto", "recon"):
            raise ConfigError(f"--recon3d/--bfm give ReconNet landmarks, but --landmarks68 is {self.landmarks68}")


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/64"`` -> (3, 64); shards are numbered from 0 (a Slurm array ``--array=0-63``)."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 3/64 (numbered from 0)") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need 0 <= i < n (shards are numbered from 0)")
    return i, n


def shard_of(source: str, n: int) -> int:
    """Stable shard of a relative path: crc32 of its POSIX form modulo n (independent of listing order)."""
    return zlib.crc32(source.encode("utf-8")) % n


@dataclass
class Task:
    source: str
    identity: str
    path: str | None
    stem: str
    skip: str | None = None
    detail: str | None = None


def list_tasks(raw_dir: Path) -> list[Task]:
    """Every entry under RAW_DIR as a task (skips are tasks too, so they are counted), sorted by source."""
    tasks: list[Task] = []
    try:
        top = sorted(os.scandir(raw_dir), key=lambda e: e.name)
    except OSError as err:
        raise InputImageError(f"{raw_dir}: cannot list the input folder ({err.strerror or err}); check the path and permissions") from None
    for entry in top:
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            tasks.append(Task(entry.name, "", None, Path(entry.name).stem, "not_in_identity_folder",
                              "photos must sit in RAW_DIR/<identity>/"))
            continue
        if not entry.is_dir():
            continue
        try:
            files = sorted((e for e in os.scandir(entry.path) if not e.name.startswith(".")), key=lambda e: e.name)
        except OSError as err:
            tasks.append(Task(entry.name + "/", entry.name, None, "", "unreadable_folder", str(err.strerror or err)))
            continue
        seen: dict[str, str] = {}
        for f in files:
            source = f"{entry.name}/{f.name}"
            try:
                is_file = f.is_file()
            except OSError:
                is_file = False
            if not is_file:
                continue  # sub-folders are not part of the layout
            stem = Path(f.name).stem
            if Path(f.name).suffix.lower() not in IMAGE_EXTENSIONS:
                tasks.append(Task(source, entry.name, f.path, stem, "not_an_image", "extension is not an image type"))
            elif stem in seen:
                tasks.append(Task(source, entry.name, f.path, stem, "duplicate_name", f"same stem as {seen[stem]}"))
            else:
                seen[stem] = f.name
                tasks.append(Task(source, entry.name, f.path, stem))
    return tasks


# ---------------------------------------------------------------- per-process work


class Preparer:
    """The face cropper (detector, refinement, optional 68-point landmarker) and the parser of one process;
    :func:`process_task` handles one photo with it."""

    def __init__(self, config: PreprocessConfig):
        self.config = config
        if config.recon3d:
            landmarker = get_landmarker("recon", recon_path=config.recon3d, bfm_path=config.bfm, device=config.device)
        else:
            landmarker = get_landmarker(config.landmarks68)
        self.cropper = FaceCropper(config.detector, detector_model=config.detector_model, size=config.size,
                                   template=config.align, refine_passes=config.refine_passes,
                                   refine_jitter=config.refine_jitter, landmarker=landmarker)
        self.parser = get_parser(config.parsing, config.parsing_weights, device=config.device)

    @property
    def landmarker(self):
        return self.cropper.landmarker

    def analyse(self, image: np.ndarray) -> FaceCrop | Skip:
        """The crop of one photo's face (filters, refinement and alignment), or why there is none."""
        cfg = self.config
        return self.cropper.best(image, min_score=cfg.min_score, min_face=cfg.min_face, multi_face=cfg.multi_face)

    def parse(self, face: FaceCrop) -> np.ndarray:
        """The parsing map of a crop, from the parser (the landmark parser draws on the crop's landmarks)."""
        pts = transform_points(face.landmarks68 if face.landmarks68 is not None else face.landmarks, face.matrix)
        return self.parser.parse(face.crop, pts)

    def record(self, image: np.ndarray, face: FaceCrop) -> dict[str, Any]:
        """The index record fields of a cropped face (coordinates rounded to 0.01 px)."""
        lm68 = face.landmarks68
        return {
            "photo_size": [int(image.shape[1]), int(image.shape[0])],
            "faces": face.faces_found,
            "box": [round(float(v), 2) for v in face.face.box],
            "score": round(float(face.face.score), 4),
            "landmarks5": np.round(face.landmarks, 2).tolist(),
            "landmarks5_detector": np.round(face.face.landmarks.astype(np.float64), 2).tolist(),
            "landmarks68": None if lm68 is None else np.round(lm68, 2).tolist(),
            "landmarks68_backend": None if lm68 is None else self.landmarker.name,
            "matrix": np.round(face.matrix, 6).tolist(),
        }


def _tmp_prefix(shard: tuple[int, int]) -> str:
    """Prefix of the temporaries of one shard: a run removes only its own shard's leftovers (it holds that lock)."""
    i, n = shard
    return f"{TMP_PREFIX}pre-{i}-{n}-"


def _clean_temporaries(out: Path, todo: Iterable[Task], shard: tuple[int, int]) -> int:
    """Remove the temporaries a killed run left in the identity folders about to be written: this shard's own
    (it holds that shard's lock), older versions' ``.<name>.<random>.tmp`` of the files it is about to write, and,
    in a run that holds the whole folder, every hidden ``.tmp`` file there."""
    prefix, whole = _tmp_prefix(shard), shard[1] == 1
    names: dict[str, set[str]] = {}
    for t in todo:
        if not t.skip:
            names.setdefault(t.identity, set()).add(f"{t.stem}.png")
    removed = 0
    for ident, mine in sorted(names.items()):
        for sub in ("images", "parsing"):
            try:
                entries = list(os.scandir(out / sub / ident))
            except OSError:
                continue  # not made yet
            for e in entries:
                if not (e.name.startswith(".") and e.name.endswith(".tmp")):
                    continue
                if whole or e.name.startswith(prefix) or e.name[1:].rsplit(".", 2)[0] in mine:
                    with contextlib.suppress(OSError):
                        os.unlink(e.path)
                        removed += 1
    return removed


_PNG_HEAD = b"\x89PNG\r\n\x1a\n"
_PNG_TAIL = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: the last 12 bytes of every complete PNG


def png_complete(path: str | Path) -> bool:
    """True when ``path`` starts like a PNG and ends with its end chunk (a zero-byte or truncated file does not);
    two small reads, no decoding."""
    try:
        with open(path, "rb") as fh:
            if fh.read(8) != _PNG_HEAD:
                return False
            fh.seek(-12, os.SEEK_END)
            return fh.read(12) == _PNG_TAIL
    except OSError:
        return False


def output_intact(path: Path, recorded_bytes: Any) -> bool:
    """A recorded output is trusted when it has the size recorded (one stat); records of older versions, without
    sizes, when it is a complete PNG."""
    if isinstance(recorded_bytes, int):
        try:
            return os.stat(path).st_size == recorded_bytes
        except OSError:
            return False
    return png_complete(path)


def process_task(preparer: Preparer, task: Task, out_dir: Path) -> dict[str, Any]:
    """One photo -> its index record; writes the two PNGs unless complete ones exist. Never raises for bad input."""
    rec: dict[str, Any] = {"source": task.source, "identity": task.identity, "status": "skipped", "reason": task.skip,
                           "detail": task.detail}
    if task.skip:
        return rec
    cfg = preparer.config
    img_rel = f"images/{task.identity}/{task.stem}.png"
    par_rel = f"parsing/{task.identity}/{task.stem}.png"
    img_path, par_path = out_dir / img_rel, out_dir / par_rel
    try:
        image = read_photo(task.path).rgb  # type: ignore[arg-type]
        face = preparer.analyse(image)
        if isinstance(face, Skip):
            rec.update(reason=face.reason, detail=face.detail)
            return rec
        # outputs of a run killed before it recorded them are kept when complete
        have_img, have_par = png_complete(img_path), png_complete(par_path)
        parser_name = preparer.parser.name
        prefix = _tmp_prefix(cfg.shard)
        if not have_par:
            labels = preparer.parse(face)
            _save_png(par_path, labels_to_image(labels), prefix, compress_level=6)
        if not have_img:
            _save_png(img_path, face.crop, prefix, compress_level=1)  # level 1: ~2x faster than 6
        rec.update(status="ok", reason=None, detail=None, image=img_rel, parsing=par_rel, size=cfg.size, align=cfg.align,
                   parser=parser_name, image_bytes=img_path.stat().st_size, parsing_bytes=par_path.stat().st_size)
        rec.update(preparer.record(image, face))
        return rec
    except NotAnImageError as err:
        rec.update(reason="not_an_image", detail=str(err))
        return rec
    except InputImageError as err:
        rec.update(reason="unreadable", detail=str(err))
        return rec
    except _photo_errors() as err:  # OpenCV or the geometry giving up on this one photo: skip it, go on
        log.warning("%s: skipped (%s: %s)", task.source, type(err).__name__, err)
        rec.update(reason="error", detail=f"{type(err).__name__}: {str(err)[:200]}")
        return rec
    except HifiFaceError:
        raise
    except Exception as err:  # a bug, a full disk, a crashed parser: the run stops (the traceback with -v)
        log.error("%s: stopped on an unexpected %s while processing this file", task.source, type(err).__name__)
        raise


def _photo_errors() -> tuple[type[BaseException], ...]:
    """Errors one odd photo can cause in the detector, the landmark fit or the warp (skipped as ``error``)."""
    import cv2

    return (cv2.error, np.linalg.LinAlgError)


def _save_png(path: Path, img: Any, prefix: str = TMP_PREFIX, compress_level: int = 1) -> None:
    """A lossless PNG (PIL image or RGB array), atomically; the temporary never ends in ``.png``, so nothing reads it
    as an output. Its data reach the disk before the rename (a crop or mask is trusted by the next run and by
    training); the folder is not synced per file (that would double the cost): a name lost in a crash is a missing
    output, which the resume check notices and remakes."""
    if isinstance(img, np.ndarray):
        from PIL import Image

        img = Image.fromarray(img)
    with atomic_path(path, suffix=".tmp", prefix=prefix, sync_folder=False) as tmp:
        img.save(tmp, format="PNG", optimize=False, compress_level=compress_level)


_WORKER: dict[str, Any] = {}


def _worker_init(config: PreprocessConfig, out_dir: str, threads: int) -> None:
    import sys

    import cv2

    cv2.setNumThreads(max(1, threads))
    setup_logging(False)
    _WORKER["out"] = Path(out_dir)
    try:
        _WORKER["preparer"] = Preparer(config)
    except Exception as err:  # an initializer that raises would make the pool restart workers forever
        _WORKER["error"] = err
    if "torch" in sys.modules:  # only neural parsers/landmarks need torch; importing it costs seconds per worker
        sys.modules["torch"].set_num_threads(max(1, threads))


def _worker_run(task: Task) -> dict[str, Any]:
    if "error" in _WORKER:
        raise _WORKER["error"]
    return process_task(_WORKER["preparer"], task, _WORKER["out"])


# ---------------------------------------------------------------- index files


def _index_name(shard: tuple[int, int]) -> str:
    i, n = shard
    return "index.jsonl" if n == 1 else f"index.shard-{i:05d}-of-{n:05d}.jsonl"


def _summary_name(shard: tuple[int, int]) -> str:
    i, n = shard
    return "summary.json" if n == 1 else f"summary.shard-{i:05d}-of-{n:05d}.json"


def read_index(path: str | Path) -> dict[str, dict[str, Any]]:
    """Records of an index file by source; a torn last line (interrupted write) is ignored."""
    out: dict[str, dict[str, Any]] = {}
    p = Path(path)
    if not p.is_file():
        return out
    with p.open("r", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "source" in rec:
                out[rec["source"]] = rec
    return out


def _write_index(path: Path, records: Iterable[dict[str, Any]]) -> bool:
    """Write the sorted index unless the file already holds exactly that; True when written."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in sorted(records, key=lambda r: r["source"]))
    return _write_if_changed(path, text)


def _write_if_changed(path: Path, text: str) -> bool:
    """A rerun with nothing to do rewrites nothing: files are replaced only when their content changes."""
    try:
        if path.read_bytes() == text.encode("utf-8"):
            return False
    except OSError:
        pass
    atomic_write_text(path, text)
    return True


def _check_settings(out_dir: Path, config: PreprocessConfig) -> None:
    settings = {k: getattr(config, k) for k in _OUTPUT_OPTIONS}
    path = out_dir / "preprocess.json"
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict):
            diff = [k for k in _OUTPUT_OPTIONS if k in old and old[k] != settings[k]]
            if diff:
                was = ", ".join(f"{k}={old[k]!r}" for k in diff)
                raise ConfigError(f"{path}: this folder was made with {was}; rerun with the same options or use another OUT_DIR")
            return
    atomic_write_text(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def summarize(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    reasons: Counter[str] = Counter()
    parsers: Counter[str] = Counter()
    total = ok = ellipses = 0
    for r in records:
        total += 1
        if r.get("status") == "ok":
            ok += 1
            parsers[r.get("parser", "?")] += 1
            ellipses += r.get("parser") == "landmarks" and not r.get("landmarks68")
        else:
            reasons[r.get("reason") or "?"] += 1
    summary = {"files": total, "ok": ok, "skipped": total - ok, "skip_reasons": dict(sorted(reasons.items())),
               "parsers": dict(sorted(parsers.items()))}
    if ellipses:
        summary["ellipse_masks"] = ellipses
        summary["warnings"] = [ELLIPSE_WARNING.format(n=ellipses)]
    return summary


#: Said in the summary when the landmark parser had only the 5 points: aligned 5 points are nearly the template.
ELLIPSE_WARNING = ("{n} parsing map(s) are the landmark parser's 5-point ellipse: after alignment the 5 points are "
                   "nearly the template, so these masks are (almost) the same ellipse for every face, profiles "
                   "included, and training with them weakens the segmentation loss; use --parsing bisenet or psfrgan "
                   "with their weights, or give ReconNet weights (--recon3d epoch_20.pth --bfm BFM_model_front.mat) "
                   "for per-image 68-point masks")


def shard_status(out_dir: str | Path) -> tuple[int, list[int]]:
    """(N, shards not finished) of the ``index.shard-*-of-N`` files in ``out_dir``; (0, []) when there are none.

    A shard is finished when its ``summary.shard-*`` file exists (written at its end)."""
    out = Path(out_dir)
    shard_indexes = sorted(out.glob("index.shard-*-of-*.jsonl"))
    if not shard_indexes:
        return 0, []
    total = int(shard_indexes[0].name.split("-of-")[1].split(".")[0])
    return total, [i for i in range(total) if not (out / _summary_name((i, total))).is_file()]


def merge_shards(out_dir: str | Path, n: int | None = None, force: bool = False) -> dict[str, Any] | None:
    """Merge ``index.shard-*`` into ``index.jsonl`` (and a summary) once every shard has written its summary.

    Returns the merged summary, or None when shards are still missing (unless ``force``: then the shards present
    are merged and the summary lists the missing ones under ``missing_shards``). Files whose content would not
    change are not rewritten.
    """
    out = Path(out_dir)
    found, _ = shard_status(out)
    if not found:
        return None
    total = n or found
    missing = [i for i in range(total) if not (out / _summary_name((i, total))).is_file()]
    if missing and not force:
        return None
    records: dict[str, dict[str, Any]] = {}
    for p in sorted(out.glob(f"index.shard-*-of-{total:05d}.jsonl")):
        records.update(read_index(p))
    _write_index(out / "index.jsonl", records.values())
    summary = summarize(records.values())
    summary["shards"] = total
    if missing:
        summary["missing_shards"] = missing
    _write_if_changed(out / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


# ---------------------------------------------------------------- driver


@dataclass
class PreprocessResult:
    summary: dict[str, Any]
    index_path: Path
    processed: int = 0
    already_done: int = 0
    seconds: float = 0.0
    merged: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def preprocess(raw_dir: str | Path, out_dir: str | Path, config: PreprocessConfig | None = None,
               progress: bool = False) -> PreprocessResult:
    """Run (or resume) preprocessing of this shard; see the module docstring for the layout and index schema."""
    cfg = config or PreprocessConfig()
    cfg.check()
    raw, out = Path(raw_dir), Path(out_dir)
    if not raw.is_dir():
        raise InputImageError(f"{raw}: input folder not found; pass RAW_DIR with one sub-folder per identity")
    if out.resolve() == raw.resolve() or raw.resolve() in out.resolve().parents:
        raise ConfigError(f"{out}: OUT_DIR must not be inside RAW_DIR (the outputs would be read as inputs)")
    # build the cropper and parser here first: a missing or wrong weight file is one clear error before any work
    preparer = Preparer(cfg)
    out.mkdir(parents=True, exist_ok=True)
    with lock_output(out, cfg.shard):
        return _preprocess_locked(raw, out, cfg, preparer, progress)


def _preprocess_locked(raw: Path, out: Path, cfg: PreprocessConfig, preparer: Preparer,
                       progress: bool) -> PreprocessResult:
    _check_settings(out, cfg)
    i, n = cfg.shard
    index_path = out / _index_name(cfg.shard)
    existing = read_index(index_path)
    _write_index(index_path, existing.values())  # drops a torn last line of an interrupted run (if there is one)

    tasks = [t for t in list_tasks(raw) if n == 1 or shard_of(t.source, n) == i]
    todo: list[Task] = []
    records: dict[str, dict[str, Any]] = {}
    damaged: list[str] = []
    for t in tasks:
        old = existing.get(t.source)
        if old is not None and _is_done(old, out, cfg):
            records[t.source] = old
        else:
            todo.append(t)
            if old is not None and old.get("status") == "ok":
                damaged.append(t.source)
    already = len(records)
    if damaged:
        log.warning("%d recorded output(s) are missing or incomplete (%s%s); they are made again", len(damaged),
                    ", ".join(damaged[:3]), " ..." if len(damaged) > 3 else "")
    removed = _clean_temporaries(out, todo, cfg.shard)
    if removed:
        log.info("removed %d temporary file(s) an interrupted run left behind", removed)
    log.info("%d files in this shard, %d already done, %d to process", len(tasks), already, len(todo))
    if todo and preparer.parser.name == "landmarks" and preparer.landmarker is None:
        log.warning("no parser weights and no 68-point landmarks: parsing maps will be 5-point ellipses, nearly the "
                    "same for every face (see the summary)")

    t0 = time.perf_counter()
    if todo:
        try:
            with index_path.open("a", encoding="utf-8") as fh:
                for rec in _run(todo, out, cfg, progress, preparer):
                    records[rec["source"]] = rec
                    fh.write(json.dumps(rec, sort_keys=True) + "\n")
                    fh.flush()
        except OSError as err:  # a full disk while appending to the index: one line naming the folder
            mapped = storage_error(err, out)
            if mapped is None:
                raise
            raise mapped from err
    seconds = time.perf_counter() - t0
    changed = _write_index(index_path, records.values())
    summary = summarize(records.values())
    summary.update(processed=len(todo), already_done=already, seconds=round(seconds, 2))
    if n > 1:
        summary["shard"] = [i, n]
    summary_path = out / _summary_name(cfg.shard)
    if todo or changed or not summary_path.is_file():  # a rerun with nothing to do keeps the last run's summary
        atomic_write_text(summary_path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
    merged = merge_shards(out, n) if n > 1 else None
    return PreprocessResult(summary, index_path, len(todo), already, seconds, merged)


def _is_done(rec: dict[str, Any], out: Path, cfg: PreprocessConfig) -> bool:
    if rec.get("status") == "ok":
        return all(isinstance(rec.get(k), str) and output_intact(out / rec[k], rec.get(f"{k}_bytes"))
                   for k in ("image", "parsing"))
    return not cfg.retry_skipped and rec.get("reason") != "error"


LOCK_DIR = ".locks"
LOCK_FILE = "preprocess.lock"


@contextlib.contextmanager
def lock_output(out: Path, shard: tuple[int, int] = (0, 1)) -> Iterator[None]:
    """Hold the output folder for one run: exclusively for a whole run, shared by the shards of a sharded one (each
    also holds its own shard exclusively). Another holder is one clear error naming its pid. Locks go away with
    the process, however it ends; where the file system cannot lock, a warning and no lock."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    i, n = shard
    folder = out / LOCK_DIR  # a folder of its own: the outputs (and their times) stay as they were
    folder.mkdir(exist_ok=True)
    held = [(folder / LOCK_FILE, fcntl.LOCK_SH if n > 1 else fcntl.LOCK_EX)]
    if n > 1:
        held.append((folder / f"shard-{i:05d}-of-{n:05d}.lock", fcntl.LOCK_EX))
    with contextlib.ExitStack() as stack:
        for path, mode in held:
            fh = stack.enter_context(open(path, "a+", encoding="utf-8"))
            try:
                fcntl.flock(fh.fileno(), mode | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                pid = fh.read(32).strip()
                who = f" (pid {pid})" if pid.isdigit() else ""
                what = "preprocess run" if path.name == LOCK_FILE else f"run of shard {i}/{n}"
                raise HifiFaceError(f"another {what} is writing to {out}{who}; wait for it to finish or choose "
                                    "another folder") from None
            except OSError as err:  # e.g. a network file system without locks
                log.warning("%s: cannot lock the output folder (%s); make sure no other run writes there", out,
                            err.strerror or err)
                continue
            fh.seek(0)
            fh.truncate()
            fh.write(f"{os.getpid()}\n")
            fh.flush()
        yield


def _run(todo: list[Task], out: Path, cfg: PreprocessConfig, progress: bool,
         preparer: Preparer | None = None) -> Iterator[dict[str, Any]]:
    bar = None
    if progress and todo:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (a log file, a batch job)
        bar = tqdm(total=len(todo), unit="img", dynamic_ncols=True, desc="preprocess", disable=None)
    try:
        if cfg.workers <= 1 or len(todo) <= 1:
            preparer = preparer or Preparer(cfg)
            for t in todo:
                yield process_task(preparer, t, out)
                if bar:
                    bar.update(1)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # safe with torch/OpenCV threads and CUDA
            threads = max(1, (os.cpu_count() or 1) // cfg.workers)
            del preparer  # each worker builds its own
            with ctx.Pool(cfg.workers, initializer=_worker_init, initargs=(cfg, str(out), threads)) as pool:
                for rec in pool.imap_unordered(_worker_run, todo, chunksize=4):
                    yield rec
                    if bar:
                        bar.update(1)
    finally:
        if bar:
            bar.close()


def config_from_dict(d: dict[str, Any]) -> PreprocessConfig:
    names = {f.name for f in dataclasses.fields(PreprocessConfig)}
    return PreprocessConfig(**{k: v for k, v in d.items() if k in names})
