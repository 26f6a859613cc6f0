"""The quality report of one output (``--report FILE.json``): per face of a photo, per face and frame of a video.

What ``hififace eval`` measures over a data set, applied to one output with eval's own functions
(:func:`~hififace.metrics.identity.cosine`, :func:`~hififace.metrics.threedmm.pose_error`, ``expression_error``,
``shape_error``, :func:`~hififace.metrics.evaluate.describe`):

- ``id_similarity``: cosine of the output's and the source's ArcFace embeddings, measured with **the swap model's
  own ArcFace**, the network it was trained to satisfy: optimistic (a swap can score well on it and still not look
  like the source to people or to another face recogniser);
- ``id_similarity_independent``: the same with an independent face-recognition model (the ``eval`` extra's dlib
  descriptor, or an insightface IResNet the user brings), when one is available;
- ``pose_error`` (degrees) and ``expression_error``: output against target, ``shape_error``: output against source,
  from the swap model's ReconNet 3DMM coefficients of the aligned crops (the same network and crops for both);
- ``flicker`` (video): per track, the mean frame-to-frame change of the output's face region divided by the
  target's own change in that region (:class:`FlickerMeter`): 0 for a still video, about 1 when the output changes
  as the target does, higher when the swap flickers.

A face's output is scored in the crop frame, as the composite the paste-back blends into the photo
(``alpha * swapped + (1 - alpha) * target``, :func:`composite`): the target's own pixels count where they are kept
(mouth, occluders, the feathered edge). Faces (or frames) on the wrong side of a threshold (:data:`THRESHOLDS`) are
listed in ``flagged``. The JSON schema is in :meth:`QualityReport.to_json`; a PNG plot is written next to it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .._version import __version__
from ..errors import ConfigError, HifiFaceError
from ..face.align import template_points
from ..media.images import photo_from_array, read_photo
from ..models.identity import Identity
from ..utils.atomic import atomic_path, atomic_write_text
from .evaluate import describe
from .identity import DlibIdentity, IdentityModel, cosine
from .plots import series
from .threedmm import expression_error, pose_error, shape_error

FORMAT = "hififace-quality/1"
#: Per-face measures, in report order.
MEASURES = ("id_similarity", "id_similarity_independent", "pose_error", "expression_error", "shape_error", "flicker")
HIGHER_IS_BETTER = {"id_similarity": True, "id_similarity_independent": True, "pose_error": False,
                    "expression_error": False, "shape_error": False, "flicker": False}
UNITS = {"id_similarity": "cosine output-source, the swap model's own ArcFace (optimistic)",
         "id_similarity_independent": "cosine output-source, an independent face-recognition model",
         "pose_error": "degrees, L2 of (pitch, yaw, roll) output-target (the swap model's ReconNet)",
         "expression_error": "L2 of 64 3DMM expression coefficients output-target",
         "shape_error": "L2 of 80 3DMM shape coefficients output-source",
         "flicker": "frame-to-frame change of the output's face region / the target's own (0 still, ~1 as the target)"}
#: Default thresholds: a face is flagged below ``id_similarity`` or above ``flicker``.
THRESHOLDS = {"id_similarity": 0.3, "flicker": 2.0}
#: Frame-to-frame change (grey levels) below which the target counts as still: the flicker's denominator floor.
FLICKER_FLOOR = 1.0
KINDS = ("photo", "video")


def composite(targets: np.ndarray, swapped: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """What the paste-back puts into the photo, in the crop frame: ``alpha * swapped + (1 - alpha) * target``
    (N x S x S x 3 uint8 from uint8 crops and N x S x S alphas in [0, 1])."""
    a = np.clip(np.asarray(alphas, np.float32), 0.0, 1.0)[..., None]
    out = np.asarray(targets, np.float32) * (1.0 - a) + np.asarray(swapped, np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def region_change(previous: np.ndarray, current: np.ndarray, weight: np.ndarray | None = None) -> float | None:
    """Mean absolute change (grey levels, over channels) between two crops of one face, weighted by ``weight``
    (S x S, e.g. the paste alpha); None where the weights are all 0."""
    diff = np.abs(np.asarray(current, np.float32) - np.asarray(previous, np.float32)).mean(axis=-1)
    w = np.ones(diff.shape, np.float32) if weight is None else np.asarray(weight, np.float32)
    total = float(w.sum())
    return None if total <= 1e-6 else float((diff * w).sum() / total)


class FlickerMeter:
    """Flicker of each track: ``update(track, frame, output, target, weight)`` -> the output's frame-to-frame change
    over the target's (floored at ``floor`` grey levels), or None on a track's first frame or after a gap."""

    def __init__(self, floor: float = FLICKER_FLOOR):
        if not floor > 0:
            raise ConfigError(f"the flicker floor must be positive, got {floor}")
        self.floor = float(floor)
        self._last: dict[Any, tuple[int, np.ndarray, np.ndarray, np.ndarray | None]] = {}

    def update(self, track: Any, frame: int, output: np.ndarray, target: np.ndarray,
               weight: np.ndarray | None = None) -> float | None:
        last = self._last.get(track)
        self._last[track] = (int(frame), np.asarray(output), np.asarray(target), weight)
        if last is None or int(frame) != last[0] + 1:
            return None
        w = weight if last[3] is None or weight is None else 0.5 * (np.asarray(weight, np.float32) + last[3])
        d_out, d_tgt = region_change(last[1], output, w), region_change(last[2], target, w)
        if d_out is None or d_tgt is None:
            return None
        return d_out / max(d_tgt, self.floor)

    def forget(self, keep: Sequence[Any]) -> None:
        alive = set(keep)
        self._last = {k: v for k, v in self._last.items() if k in alive}


def flicker_scores(outputs: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                   weights: Sequence[np.ndarray] | None = None, floor: float = FLICKER_FLOOR) -> list[float | None]:
    """:class:`FlickerMeter` over one face's crops of consecutive frames: one value per frame (None for the first)."""
    meter = FlickerMeter(floor)
    return [meter.update(0, t, o, g, None if weights is None else weights[t])
            for t, (o, g) in enumerate(zip(outputs, targets))]


def _number(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class QualityReport:
    """Per-face rows (``frame``, ``face`` and every measure of :data:`MEASURES`, None where not measured), the
    models that measured, the thresholds, the measures skipped with their reason, and notes."""

    kind: str
    faces: list[dict[str, Any]]
    models: dict[str, str]
    thresholds: dict[str, float]
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fps: float | None = None

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for key in MEASURES:
            vals = [r[key] for r in self.faces if r.get(key) is not None]
            if vals:
                out[key] = describe(vals)
        return out

    def flagged(self) -> list[dict[str, Any]]:
        """The faces on the wrong side of a threshold, each with why."""
        out = []
        for r in self.faces:
            why = []
            for key, limit in self.thresholds.items():
                v = r.get(key)
                if v is None:
                    continue
                if (v < limit) if HIGHER_IS_BETTER[key] else (v > limit):
                    why.append(f"{key} {v:.3g} {'<' if HIGHER_IS_BETTER[key] else '>'} {limit:g}")
            if why:
                out.append({"frame": r["frame"], "face": r["face"], "why": why})
        return out

    def to_json(self, **meta: Any) -> dict[str, Any]:
        """The report file's content::

            format            "hififace-quality/1"
            kind              "photo" | "video"
            fps               frames per second (video) or null
            faces             [{frame, face, id_similarity, id_similarity_independent, pose_error,
                                expression_error, shape_error, flicker}, ...]   (frame 0 for a photo; face: the
                                face's index in the photo, or its track id in a video; null: not measured)
            summary           {measure: {mean, std, median, min, max, n}}
            thresholds        {measure: value}
            flagged           [{frame, face, why: ["flicker 3.1 > 2"]}, ...]
            flagged_frames    sorted frame numbers with a flagged face
            models            {measure: the network that measured it}
            units, higher_is_better   {measure: ...}
            skipped           {measure: why it was not measured}
            notes             [...]
            ...meta           what the caller adds (output, target, sources, weights, created, hififace_version)
        """
        flagged = self.flagged()
        out: dict[str, Any] = {"format": FORMAT, "kind": self.kind, "fps": self.fps, "faces": self.faces,
                               "summary": self.summary(), "thresholds": dict(self.thresholds), "flagged": flagged,
                               "flagged_frames": sorted({f["frame"] for f in flagged}), "models": dict(self.models),
                               "units": {k: UNITS[k] for k in MEASURES}, "higher_is_better": dict(HIGHER_IS_BETTER),
                               "skipped": dict(self.skipped), "notes": list(self.notes)}
        out.update(meta)
        return out


class QualityRecorder:
    """Collects the quality of each swapped face as the pipeline makes it; :meth:`report` gives the report.

    Args:
        analyse: the swap engine's ``analyse(crops) -> (v_id N x 512, coeffs N x 257)`` on N x 3 x S x S crops in
            [0, 1] (:meth:`hififace.HifiFace.analyse`).
        swap_model: how to name the swap model's networks in the report (e.g. its folder).
        kind: ``photo`` or ``video``; ``fps`` for a video.
        independent: an independent identity model (:mod:`hififace.metrics.identity`), or None with
            ``independent_skipped`` saying why (e.g. the eval extra is not installed).
        thresholds: overrides of :data:`THRESHOLDS` (a value of None drops that check).
    """

    def __init__(self, analyse: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], swap_model: str = "",
                 kind: str = "photo", fps: float | None = None, independent: IdentityModel | None = None,
                 independent_skipped: str = "no independent face-recognition model given",
                 thresholds: dict[str, float | None] | None = None, flicker_floor: float = FLICKER_FLOOR):
        if kind not in KINDS:
            raise ConfigError(f"report kind must be photo or video, got {kind!r}")
        limits: dict[str, float | None] = {**THRESHOLDS, **(thresholds or {})}
        unknown = sorted(set(limits) - set(MEASURES))
        if unknown:
            raise ConfigError(f"unknown report threshold(s) {', '.join(unknown)}; use {', '.join(MEASURES)}")
        self.thresholds = {k: float(v) for k, v in limits.items() if v is not None}
        self.analyse = analyse
        self.kind = kind
        self.fps = float(fps) if fps else None
        self.independent = independent
        name = f" ({swap_model})" if swap_model else ""
        self.models = {"id_similarity": f"ArcFace of the swap model{name}: the network it was trained with, optimistic"}
        for key in ("pose_error", "expression_error", "shape_error"):
            self.models[key] = f"ReconNet (3DMM) of the swap model{name}, on the aligned crops"
        self.skipped: dict[str, str] = {}
        if independent is None:
            self.skipped["id_similarity_independent"] = independent_skipped
        else:
            self.models["id_similarity_independent"] = independent.name
        if kind == "photo":
            self.skipped["flicker"] = "a photo has no frames"
        else:
            self.models["flicker"] = "pixels of the aligned crops (8-bit RGB)"
        self.flicker = FlickerMeter(flicker_floor)
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self._source: Identity | None = None
        self._source_independent: np.ndarray | None = None

    def set_source(self, identity: Identity, images: Sequence[np.ndarray] = (),
                   landmarks: Sequence[np.ndarray] = ()) -> None:
        """The source the outputs are compared with: its identity (several rows are averaged as
        :meth:`Identity.mean`), and the source photos with their 5 landmarks for the independent model."""
        self._source = identity if len(identity) == 1 else identity.mean()
        if self.independent is not None:
            if not images:
                self.independent = None
                self.models.pop("id_similarity_independent", None)
                self.skipped["id_similarity_independent"] = "no source photo to measure (an identity file was given)"
            else:
                vecs = self.independent.embed(list(images), list(landmarks))
                mean = vecs.mean(axis=0)
                self._source_independent = mean / max(float(np.linalg.norm(mean)), 1e-12)

    @torch.no_grad()
    def add(self, frame: int, faces: Sequence[int], targets: np.ndarray, swapped: np.ndarray, alphas: np.ndarray,
            landmarks: np.ndarray | None = None, target_coeffs: np.ndarray | torch.Tensor | None = None,
            sources: Identity | None = None) -> list[dict[str, Any]]:
        """Score the faces of one photo or frame; returns their rows.

        Args:
            frame: frame number (0 for a photo).
            faces: each face's index in the photo, or its track id in a video.
            targets, swapped: N x S x S x 3 uint8 aligned target crops and the swapped crops.
            alphas: N x S x S paste alphas in the crop frame (:meth:`FaceSwapper.blend_faces`).
            landmarks: N x 5 x 2 crop-frame landmarks (for the independent model).
            target_coeffs: the targets' N x 257 coefficients when already computed (pose weighting).
            sources: one identity per face (N rows) when the faces had different sources (pose-matched).
        """
        if self._source is None and sources is None:
            raise ConfigError("set the source (QualityRecorder.set_source) before adding faces")
        outputs = composite(targets, swapped, alphas)
        n = len(outputs)
        if n == 0:
            return []
        batch = torch.from_numpy(np.ascontiguousarray(outputs)).permute(0, 3, 1, 2).float().div(255.0)
        v_out, c_out = (t.detach().double().cpu().numpy() for t in self.analyse(batch))
        if target_coeffs is None:
            tb = torch.from_numpy(np.ascontiguousarray(targets)).permute(0, 3, 1, 2).float().div(255.0)
            c_tgt = self.analyse(tb)[1].detach().double().cpu().numpy()
        else:
            c_tgt = np.asarray(target_coeffs.detach().cpu() if hasattr(target_coeffs, "detach") else target_coeffs,
                               np.float64)
        src = (sources if sources is not None else self._source).expand(n)
        v_src, c_src = src.v_id.detach().double().cpu().numpy(), src.c_id.detach().double().cpu().numpy()
        sim = cosine(v_out, v_src)
        indep = [None] * n
        if self.independent is not None and self._source_independent is not None and landmarks is not None:
            vecs = self.independent.embed(list(outputs), list(np.asarray(landmarks)))
            indep = cosine(vecs, np.broadcast_to(self._source_independent, vecs.shape))
        pose, expr, shape = pose_error(c_out, c_tgt), expression_error(c_out, c_tgt), shape_error(c_out, c_src)
        rows = []
        for k in range(n):
            flick = None
            if self.kind == "video":
                flick = self.flicker.update(faces[k], frame, outputs[k], targets[k], alphas[k])
            row = {"frame": int(frame), "face": int(faces[k]), "id_similarity": _number(sim[k]),
                   "id_similarity_independent": _number(indep[k]), "pose_error": _number(pose[k]),
                   "expression_error": _number(expr[k]), "shape_error": _number(shape[k]), "flicker": _number(flick)}
            rows.append(row)
        self.rows.extend(rows)
        return rows

    def report(self) -> QualityReport:
        return QualityReport(self.kind, list(self.rows), dict(self.models), dict(self.thresholds), dict(self.skipped),
                             list(self.notes), self.fps)


def plot_path(json_path: str | Path) -> Path:
    """Where the plot goes: ``report.json`` -> ``report.png`` (any other name gets ``.png`` appended)."""
    p = Path(json_path)
    return p.with_suffix(".png") if p.suffix.lower() == ".json" else p.with_name(p.name + ".png")


def plot_report(report: QualityReport):
    """A PIL image: each measured quantity against the frame (video) or the face (photo), thresholds dashed and
    faces on their wrong side marked."""
    video = report.kind == "video"
    panels = []
    for key in MEASURES:
        rows = [r for r in report.faces if r.get(key) is not None]
        if not rows:
            continue
        faces = sorted({r["face"] for r in rows})
        for face in faces if video and len(faces) > 1 else [None]:
            mine = [r for r in rows if face is None or r["face"] == face]
            xs = [r["frame"] if video else k for k, r in enumerate(mine)]
            label = key + (f" (face {face})" if face is not None else "")
            panels.append({"name": label, "x": xs, "y": [r[key] for r in mine], "threshold": report.thresholds.get(key),
                           "higher_is_better": HIGHER_IS_BETTER[key]})
    frames, faces = len({r["frame"] for r in report.faces}), len({r["face"] for r in report.faces})
    what = f"{frames} frame{'s' if frames != 1 else ''}, " if video else ""
    return series(panels, f"hififace quality: {what}{faces} face{'s' if faces != 1 else ''}", "frame" if video else "face")


def write_quality_report(path: str | Path, report: QualityReport, plot: bool = True, **meta: Any) -> list[Path]:
    """Write the JSON (atomically) and, with ``plot``, the PNG beside it (:func:`plot_path`); returns the paths."""
    path = Path(path)
    data = report.to_json(**meta)
    atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")
    written = [path]
    if plot:
        png = plot_path(path)
        with atomic_path(png) as tmp:
            plot_report(report).save(tmp, format="PNG")
        written.append(png)
    return written


# ---------------------------------------------------------------------------------------------- one output's report
def recorder_for(swapper: Any, sources: Sequence[Any], identity: Any, kind: str = "photo", fps: float | None = None,
                 swap_model: str = "", aligned: bool | None = None, independent: bool = True) -> QualityRecorder:
    """The recorder of ``--report`` for a :class:`~hififace.inference.pipeline.FaceSwapper` (hand it to the pipeline
    as ``swapper.observer``): the swap engine's ``analyse`` on its device, dlib's descriptor as the independent model
    when the ``eval`` extra and its files are there (else skipped, with the reason), and the source set from
    ``identity`` (an Identity, or pose-kept sources: their mean) and the source photos (``sources``)."""
    analyse = getattr(swapper.engine, "analyse", None)
    if analyse is None:
        raise ConfigError(f"--report needs the swap engine's analyse() (ArcFace + 3DMM of crops), which "
                          f"{type(swapper.engine).__name__} does not have; use a HifiFace model")
    device = swapper.engine.device

    def on_device(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return analyse(batch.to(device))

    model, why = None, "the eval extra is not installed (pip install 'hififace[eval]')"
    if independent:
        try:
            model = DlibIdentity()
        except HifiFaceError as err:
            why = str(err)
    else:
        why = "not asked for"
    rec = QualityRecorder(on_device, swap_model, kind, fps, model, why)
    one = identity.mean() if hasattr(identity, "poses") else identity
    images, points = [], []
    if model is not None:
        lm = template_points(swapper.engine.align, swapper.size)
        for s in sources:
            if isinstance(s, Identity) or (isinstance(s, (str, Path)) and str(s).lower().endswith(".safetensors")):
                continue
            photo = read_photo(s) if isinstance(s, (str, Path)) else s if hasattr(s, "rgb") else photo_from_array(s)
            found, crop = swapper.one_face_crop(photo.rgb, photo.path or "source", aligned)
            if crop is not None:
                images.append(crop)
                points.append(lm)
    rec.set_source(one, images, points)
    return rec


def finish_report(path: str | Path, recorder: QualityRecorder, **meta: Any) -> list[Path]:
    """Write the recorder's report (:func:`write_quality_report`) with the run's ``meta`` (output, target, sources,
    ...), the time it was written and the hififace version; returns the JSON and PNG paths."""
    import datetime

    meta.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    meta.setdefault("hififace_version", __version__)
    return write_quality_report(path, recorder.report(), **meta)
