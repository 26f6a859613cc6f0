"""The FaceForensics++ protocol of the paper (and of FaceShifter): 10 frames of each FF++ video, swapped with the
source identity FF++ pairs it with.

Expected layout (as FaceForensics' download script writes it; only what is used must be there)::

    FFPP_DIR/original_sequences/youtube/c23/videos/000.mp4 ... 999.mp4     (c23 by default: --ffpp-compression)
             (or .../c23/images/000/0000.png ...: frames already extracted, one folder per video)
    FFPP_DIR/splits/train.json, val.json, test.json                          (FaceForensics' dataset/splits)
    FFPP_DIR/manipulated_sequences/<Method>/c23/videos/000_003.mp4 ...       (optional; or .../c23/images/000_003/)

Pairs: each split entry ``["a", "b"]`` gives two swaps, target ``a`` with source ``b`` and target ``b`` with source
``a`` (FF++ names the fake of target ``a`` with the face of ``b`` ``a_b.mp4``); all three splits together are the
1000 videos of the paper (``--split test`` keeps 140). Without ``splits/`` the pairs are read from the file names
of the first ``manipulated_sequences/<Method>/<comp>/videos`` folder.

Frames: 10 per video, frame ``floor((i + 0.5) * n / 10)`` for i = 0..9 (the middle of ten equal segments: no
randomness, the same frames on every machine). Source frame i is used for target frame i, and every sampled
source frame is in the ID-retrieval gallery, labelled with its video.

Faces: the face pipeline detects the largest face (YuNet), refines its landmarks and aligns it with the ArcFace
template at the model size, as ``hififace preprocess`` does. Aligned frames and their records are cached in
``CACHE/ffpp/<comp>/<video>/`` (PNG + ``frames.json``), so a re-run reads no video; an interrupted run resumes at
the first video without ``frames.json``. A frame without a face is counted and its pairs are left out.

Results of other methods are scored with ``--results DIR`` laid out as ``DIR/<target>_<source>/<i>.png``
(``i`` = 0..9), the layout the model's own results are written in; ``--ffpp-method Deepfakes`` (or FaceSwap,
FaceShifter, NeuralTextures, ...) scores FF++'s own fakes, frame i of ``<target>_<source>.mp4`` aligned the same way.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ConfigError, InputImageError
from ..face.cropper import FaceCropper, Skip
from ..media.images import IMAGE_EXTENSIONS, read_photo
from ..utils.atomic import atomic_path, atomic_write_text
from .pairs import Row

log = logging.getLogger(__name__)

FRAMES_PER_VIDEO = 10
SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
RECORD = "frames.json"


def sample_indices(n_frames: int, k: int = FRAMES_PER_VIDEO) -> list[int]:
    """``k`` frame indices spread over ``n_frames`` (the middle of k equal segments); all frames when fewer."""
    if n_frames <= 0:
        return []
    if n_frames <= k:
        return list(range(n_frames))
    return [int((i + 0.5) * n_frames / k) for i in range(k)]


@dataclass
class Layout:
    root: Path
    compression: str
    videos: dict[str, Path]  # video id -> video file or frame folder
    pairs: list[tuple[str, str]]  # (target, source)


def _originals(root: Path, compression: str) -> dict[str, Path]:
    return _video_entries(root / "original_sequences" / "youtube" / compression)


def _video_entries(base: Path) -> dict[str, Path]:
    """Video id -> ``base/videos/<id>.mp4`` or, where there is no video, the frame folder ``base/images/<id>/``."""
    out: dict[str, Path] = {}
    if (base / "videos").is_dir():
        out.update({p.stem: p for p in sorted((base / "videos").iterdir()) if p.suffix.lower() in VIDEO_EXTENSIONS})
    if (base / "images").is_dir():
        for p in sorted((base / "images").iterdir()):
            if p.is_dir():
                out.setdefault(p.name, p)
    return out


def read_pairs_from_splits(root: Path, split: str) -> list[tuple[str, str]] | None:
    names = SPLITS if split == "all" else (split,)
    files = [root / "splits" / f"{n}.json" for n in names]
    if not any(f.is_file() for f in files):
        return None
    pairs: list[tuple[str, str]] = []
    for f in files:
        if not f.is_file():
            raise InputImageError(f"{f}: split file not found; FaceForensics' dataset/splits/{f.name} belongs there")
        try:
            entries = json.loads(f.read_text(encoding="utf-8"))
            for a, b in entries:
                pairs += [(str(a), str(b)), (str(b), str(a))]
        except (OSError, ValueError, TypeError) as err:
            raise InputImageError(f"{f}: not a FaceForensics split file (a JSON list of [a, b] pairs): {err}") from None
    return pairs


def _pairs_from_fakes(root: Path, compression: str) -> list[tuple[str, str]] | None:
    base = root / "manipulated_sequences"
    if not base.is_dir():
        return None
    for method in sorted(p for p in base.iterdir() if p.is_dir()):
        folder = method / compression / "videos"
        if folder.is_dir():
            names = sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and "_" in p.stem)
            if names:
                return [tuple(n.split("_", 1)) for n in names]  # type: ignore[misc]
    return None


def find_layout(root: str | Path, compression: str = "c23", split: str = "all") -> Layout:
    """The videos and pairs of an FF++ folder; one clear error naming what is missing."""
    root = Path(root)
    if not root.is_dir():
        raise InputImageError(f"{root}: FaceForensics++ folder not found; pass --data FFPP_DIR (see docs/evaluation.md)")
    if split not in ("all",) + SPLITS:
        raise ConfigError(f"--split {split}: choose all, train, val or test")
    videos = _originals(root, compression)
    if not videos:
        raise InputImageError(f"{root}: no videos in original_sequences/youtube/{compression}/videos (or frame folders in "
                              f".../{compression}/images); check --data and --ffpp-compression")
    pairs = read_pairs_from_splits(root, split)
    if pairs is None:
        if split != "all":
            raise InputImageError(f"{root / 'splits' / (split + '.json')}: not found; --split needs FaceForensics' split files")
        pairs = _pairs_from_fakes(root, compression)
    if not pairs:
        raise InputImageError(f"{root}: no pairing list: put FaceForensics' splits/train.json, val.json, test.json there "
                              "(or manipulated_sequences/<Method>/<comp>/videos)")
    missing = sorted({v for p in pairs for v in p if v not in videos})
    if missing:
        more = f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
        raise InputImageError(f"{root}: {len(missing)} paired video(s) missing from original_sequences/youtube/{compression}: "
                              f"{', '.join(missing[:10])}{more}")
    return Layout(root, compression, videos, pairs)


# ---------------------------------------------------------------------------------------------- frames
def read_video_frames(path: Path, k: int = FRAMES_PER_VIDEO) -> tuple[int, list[tuple[int, np.ndarray]]]:
    """(frame count, [(index, RGB frame)]) of the sampled frames of a video file or a folder of frames."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
        return len(files), [(i, read_photo(files[i]).rgb) for i in sample_indices(len(files), k)]
    import cv2

    def grab_all(wanted: list[int]) -> tuple[int, dict[int, np.ndarray]]:
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise InputImageError(f"{path}: OpenCV cannot open this video; re-download it or extract its frames")
        got: dict[int, np.ndarray] = {}
        i, last = 0, max(wanted) if wanted else -1
        try:
            while True:
                if not cap.grab():
                    break
                if i in wanted:
                    ok, frame = cap.retrieve()
                    if ok:
                        got[i] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                i += 1
                if last >= 0 and i > last and len(wanted) == len(got):
                    break
        finally:
            cap.release()
        return i, got

    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    cap.release()
    if n <= 0:
        n, _ = grab_all([])
    wanted = sample_indices(n, k)
    read, got = grab_all(wanted)
    if len(got) < len(wanted):  # the container's frame count was wrong: sample again from the frames that exist
        n = read
        wanted = sample_indices(n, k)
        _, got = grab_all(wanted)
    return n, [(i, got[i]) for i in wanted if i in got]


def align_frame(cropper: FaceCropper, frame: np.ndarray) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The crop of a frame's largest face (refined landmarks, the cropper's template) and its record."""
    found = cropper.best(frame)
    if isinstance(found, Skip):
        return None, {"status": "no_face"}
    return found.crop, {"status": "ok", "score": round(float(found.face.score), 4),
                        "landmarks5": np.round(found.landmarks, 2).tolist(), "matrix": np.round(found.matrix, 6).tolist()}


def source_stamp(video: Path) -> list[int]:
    """Number, total size and latest modification time of a video file or of a frame folder's files: a video
    replaced (re-downloaded, re-extracted) since its frames were cached is read again."""
    files = [video] if video.is_file() else [p for p in video.iterdir() if p.is_file()]
    stats = [p.stat() for p in files]
    return [len(stats), sum(st.st_size for st in stats), max((st.st_mtime_ns for st in stats), default=0)]


def extract_video(video: Path, folder: Path, cropper: FaceCropper) -> list[dict[str, Any]]:
    """Aligned crops of the sampled frames of one video, cached in ``folder`` (``<i>.png`` + ``frames.json``)."""
    record = folder / RECORD
    stamp = source_stamp(video)
    if record.is_file():
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
            if data.get("size") == cropper.size and data.get("source") == stamp and \
                    all((folder / f["crop"]).is_file() for f in data["frames"] if f.get("crop")):
                return data["frames"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    from PIL import Image

    n, frames = read_video_frames(video)
    out = []
    for slot, (index, frame) in enumerate(frames):
        crop, info = align_frame(cropper, frame)
        info.update(slot=slot, frame=index)
        if crop is not None:
            name = f"{slot}.png"
            with atomic_path(folder / name) as tmp:
                Image.fromarray(crop).save(tmp, format="PNG", compress_level=1)
            info["crop"] = name
        out.append(info)
    atomic_write_text(record, json.dumps({"video": str(video), "source": stamp, "n_frames": n, "size": cropper.size,
                                          "frames": out}) + "\n")
    return out


@dataclass
class FFPPSet:
    rows: list[Row]
    videos: int
    frames: int
    frames_without_face: int
    pairs_left_out: int
    unreadable: list[str]


def build_rows(layout: Layout, cache: Path, size: int, results: Path | None = None, method: str | None = None,
               limit: int | None = None, progress: Callable[[int, str], Any] | None = None,
               self_recon: bool = False) -> FFPPSet:
    """Extract (or read from the cache) the aligned frames and build the rows to score.

    ``results``: other outputs as ``results/<target>_<source>/<i>.png``; ``method``: FF++'s own fakes of that
    manipulation method (aligned like the originals). Neither: rows without results (the model makes them).
    ``self_recon``: also each target frame swapped onto itself (``<target>_<target>``), for PSNR, SSIM and LPIPS.
    """
    if self_recon and method:
        raise ConfigError("--self-recon needs results of each frame swapped onto itself, which FF++'s fakes do not have")
    pairs = layout.pairs[:limit] if limit else layout.pairs
    cropper = FaceCropper(size=size, template="arcface", refine_passes=2)
    base = cache / "ffpp" / layout.compression
    fakes: dict[str, Path] = {}
    if method:
        folder = layout.root / "manipulated_sequences" / method / layout.compression
        fakes = _video_entries(folder)
        if not fakes:
            raise InputImageError(f"{folder}: no videos (or frame folders); --ffpp-method names a folder of "
                                  "manipulated_sequences")
        absent = [f"{t}_{s}" for t, s in pairs if f"{t}_{s}" not in fakes]
        if absent:
            raise InputImageError(f"{folder}: {len(absent)} fake video(s) missing, e.g. {', '.join(absent[:5])}")
    needed = sorted({v for p in pairs for v in p})
    jobs: list[tuple[str, Path, Path]] = [(v, layout.videos[v], base / v) for v in needed]
    jobs += [(f"{t}_{s}", fakes[f"{t}_{s}"], base / method / f"{t}_{s}") for t, s in pairs] if method else []
    bar = progress(len(jobs), "ffpp frames") if progress else None
    frames: dict[str, list[dict[str, Any]]] = {}
    unreadable: list[str] = []
    try:
        for name, video, folder in jobs:
            try:
                frames[name] = extract_video(video, folder, cropper)
            except InputImageError as err:
                log.warning("%s", err)
                unreadable.append(name)
                frames[name] = []
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    def crop(name: str, folder: Path, slot: int) -> Path | None:
        recs = frames.get(name, [])
        rec = recs[slot] if slot < len(recs) else None
        return folder / rec["crop"] if rec and rec.get("crop") else None

    rows: list[Row] = []
    left_out = 0
    for t, s in pairs:
        for slot in range(FRAMES_PER_VIDEO):
            src, tgt = crop(s, base / s, slot), crop(t, base / t, slot)
            if slot >= min(len(frames[s]), len(frames[t])):
                continue
            if src is None or tgt is None:
                left_out += 1
                continue
            if method:
                res = crop(f"{t}_{s}", base / method / f"{t}_{s}", slot)
                if res is None:
                    left_out += 1
                    continue
            else:
                res = results / f"{t}_{s}" / f"{slot}.png" if results is not None else None
            rows.append(Row(len(rows), src, tgt, res, s, name=f"{t}_{s}/{slot}"))
    if self_recon:
        for t in dict.fromkeys(t for t, _ in pairs):
            for slot in range(len(frames[t])):
                tgt = crop(t, base / t, slot)
                if tgt is not None:
                    res = results / f"{t}_{t}" / f"{slot}.png" if results is not None else None
                    rows.append(Row(len(rows), tgt, tgt, res, t, name=f"{t}_{t}/{slot}"))
    originals = [frames[v] for v in needed]
    return FFPPSet(rows, len(needed), sum(len(f) for f in originals),
                   sum(1 for f in originals for r in f if r.get("status") != "ok"), left_out, unreadable)

