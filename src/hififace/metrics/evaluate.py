"""Scoring a set of (source, target, result) rows with every metric whose model is available.

Rows whose source and target are the same file are self-reconstruction rows: they give PSNR, SSIM and LPIPS
(result against target). Identity, 3D and realism metrics are computed over the swap rows (or over all rows
when there are only self-reconstruction rows). A metric whose model is missing is skipped with its reason; an
image without a detectable face is counted and leaves its row out of the identity and 3D metrics.

Rows skipped before scoring (``row.skipped``: the model found no face to swap in their source or target photo)
are listed in the samples with their reason and left out of every metric. A row whose target was detected and
aligned before the swap (``row.target_crop``) is scored against that aligned crop, which is what the model saw.

Each image is read once; its landmarks, embeddings, coefficients and Inception features are cached on disk by
the hash of its bytes (:mod:`hififace.metrics.cache`), so a re-run or an interrupted run only computes what is
missing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..media.images import read_crop
from .cache import FeatureCache, file_hash
from .faces import FaceLocator, FaceSpot
from .identity import IdentityModel, cosine, retrieval
from .image import psnr, ssim
from .pairs import Row
from .realism import fid, kid
from .threedmm import ReconCoefficients, expression_error, pose_error, shape_error

log = logging.getLogger(__name__)

#: Top-level keys of metrics.json, in report order.
METRICS = ("id_similarity", "id_retrieval", "pose_error", "expression_error", "shape_error", "fid", "kid", "psnr",
           "ssim", "lpips")
#: Per-row metrics (columns of per_sample.csv that hold numbers).
PER_SAMPLE = ("id_similarity", "id_retrieved", "pose_error", "expression_error", "shape_error", "psnr", "ssim", "lpips")
HIGHER_IS_BETTER = {"id_similarity": True, "id_retrieval": True, "pose_error": False, "expression_error": False,
                    "shape_error": False, "fid": False, "kid": False, "psnr": True, "ssim": True, "lpips": False}
UNITS = {"id_similarity": "cosine similarity result-source", "id_retrieval": "fraction of results retrieved as their source",
         "pose_error": "degrees, L2 of (pitch, yaw, roll) result-target", "expression_error": "L2 of 64 3DMM expression coefficients result-target",
         "shape_error": "L2 of 80 3DMM identity coefficients result-source", "fid": "FID results vs targets (2048-d Inception pool)",
         "kid": "KID results vs targets (unbiased MMD^2, cubic kernel)", "psnr": "dB, self-reconstruction",
         "ssim": "self-reconstruction", "lpips": "LPIPS-VGG v0.1, self-reconstruction"}
PIXELS = "pixels (8-bit RGB as [0, 1])"
_NO_FACES_SOURCE = "no row with a face found in both result and source"
_NO_FACES_TARGET = "no row with a face found in both result and target"
_NO_SELF = "no self-reconstruction rows (source = target) in the set"
#: Which model measures which metrics.
MODEL_OF = {"identity": ("id_similarity", "id_retrieval"), "3DMM": ("pose_error", "expression_error", "shape_error"),
            "FID Inception": ("fid", "kid"), "LPIPS": ("lpips",)}
#: Why a metric is null when its model was there.
NO_DATA = {"id_similarity": _NO_FACES_SOURCE, "id_retrieval": _NO_FACES_SOURCE, "pose_error": _NO_FACES_TARGET,
           "expression_error": _NO_FACES_TARGET, "shape_error": _NO_FACES_SOURCE, "fid": "not computed",
           "kid": "not computed", "psnr": _NO_SELF, "ssim": _NO_SELF, "lpips": _NO_SELF}
FID_RELIABLE_N = 2048
#: How the model's inputs of a row were taken (``Row.crop``): model-size crops as they are, detected and aligned
#: faces, or no face found (the row is skipped).
CROP_KINDS = ("aligned", "detected", "no-face")


@dataclass
class MetricModels:
    """The networks that measure; None where not available (with the reason in ``skipped``)."""

    identity: IdentityModel | None = None
    recon: ReconCoefficients | None = None
    inception: torch.nn.Module | None = None
    inception_name: str = ""
    inception_key: str = "inception"
    lpips: torch.nn.Module | None = None
    lpips_name: str = ""
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class EvalOptions:
    faces: str = "detect"
    batch_size: int = 16
    cache_dir: Path | None = None
    kid_subsets: int = 100
    kid_subset_size: int = 1000


@dataclass
class EvalResult:
    metrics: dict[str, float | None]
    samples: list[dict[str, Any]]
    details: dict[str, dict[str, float]]
    skipped: dict[str, str]
    models: dict[str, str]
    counts: dict[str, Any]
    notes: list[str]

    def to_json(self, **meta: Any) -> dict[str, Any]:
        out: dict[str, Any] = {k: self.metrics.get(k) for k in METRICS}
        out["n_pairs"] = self.counts["pairs"]
        out.update(skipped=self.skipped, models=self.models, units={k: UNITS[k] for k in METRICS},
                   higher_is_better=HIGHER_IS_BETTER, details=self.details, counts=self.counts, notes=self.notes)
        out.update(meta)
        return out


@dataclass
class _Image:
    path: Path
    roles: set[str]
    hash: str = ""
    face: FaceSpot | None = None
    face_known: bool = False
    identity: np.ndarray | None = None
    coeffs: np.ndarray | None = None
    inception: np.ndarray | None = None


def describe(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, standard deviation, median, min, max and count of a metric's values (``details`` of metrics.json, and
    the summary of the quality report); ``values`` must not be empty."""
    vals = np.asarray(values, dtype=np.float64)
    return {"mean": float(vals.mean()), "std": float(vals.std()), "median": float(np.median(vals)),
            "min": float(vals.min()), "max": float(vals.max()), "n": int(len(vals))}


def load_rgb(path: Path) -> np.ndarray:
    return read_crop(path)


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255.0)


class Evaluator:
    def __init__(self, models: MetricModels, options: EvalOptions | None = None):
        self.models = models
        self.options = options or EvalOptions()
        self.locator = FaceLocator(self.options.faces)
        root = self.options.cache_dir
        loc = self.locator.key
        self.face_cache = FeatureCache(root, f"faces-{loc}")
        self.id_cache = FeatureCache(root, f"{models.identity.key}-{loc}") if models.identity else None
        self.recon_cache = FeatureCache(root, f"{models.recon.key}-{loc}") if models.recon else None
        self.incep_cache = FeatureCache(root, models.inception_key) if models.inception is not None else None

    # ------------------------------------------------------------------ per image
    def _caches(self) -> list[FeatureCache]:
        return [c for c in (self.face_cache, self.id_cache, self.recon_cache, self.incep_cache) if c is not None]

    def _lookup(self, im: _Image) -> bool:
        """Fill ``im`` from the caches; True when nothing is left to compute."""
        row = self.face_cache.get(im.hash)
        if row is not None:
            im.face, im.face_known = FaceLocator.from_row(row), True
        if "id" in im.roles and self.id_cache is not None:
            im.identity = self.id_cache.get(im.hash)
        if "recon" in im.roles and self.recon_cache is not None:
            im.coeffs = self.recon_cache.get(im.hash)
        if "incep" in im.roles and self.incep_cache is not None:
            im.inception = self.incep_cache.get(im.hash)
        return not self._todo(im)

    def _todo(self, im: _Image) -> set[str]:
        todo = set()
        if not im.face_known:
            todo.add("face")
        has_face = im.face is not None or not im.face_known
        if has_face and "id" in im.roles and self.id_cache is not None and im.identity is None:
            todo.add("id")
        if has_face and "recon" in im.roles and self.recon_cache is not None and im.coeffs is None:
            todo.add("recon")
        if "incep" in im.roles and self.incep_cache is not None and im.inception is None:
            todo.add("incep")
        return todo

    def _compute(self, batch: list[_Image]) -> None:
        pixels = {id(im): load_rgb(im.path) for im in batch}
        for im in batch:
            if not im.face_known:
                im.face, im.face_known = self.locator.locate(pixels[id(im)]), True
                self.face_cache.put(im.hash, FaceLocator.to_row(im.face))
        with_face = [im for im in batch if im.face is not None]
        if self.id_cache is not None:
            todo = [im for im in with_face if "id" in im.roles and im.identity is None]
            vecs = self.models.identity.embed([pixels[id(im)] for im in todo], [im.face.landmarks for im in todo])
            for im, v in zip(todo, vecs):
                im.identity = self.id_cache.put(im.hash, v)
        if self.recon_cache is not None:
            todo = [im for im in with_face if "recon" in im.roles and im.coeffs is None]
            coeffs = self.models.recon.coefficients([pixels[id(im)] for im in todo], [im.face.landmarks for im in todo])
            for im, c in zip(todo, coeffs):
                im.coeffs = self.recon_cache.put(im.hash, c)
        if self.incep_cache is not None:
            todo = [im for im in batch if "incep" in im.roles and im.inception is None]
            if todo:
                side = self.models.inception.input_size  # each image resized alone (sizes may differ), as pytorch-fid
                x = torch.cat([F.interpolate(_to_tensor(pixels[id(im)])[None], size=(side, side), mode="bilinear",
                                             align_corners=False) for im in todo])
                with torch.no_grad():
                    feats = self.models.inception.features(x.to(self.models.device)).double().cpu().numpy()
                for im, f in zip(todo, feats):
                    im.inception = self.incep_cache.put(im.hash, f)

    def _analyse(self, images: list[_Image], tick: Callable[[int], None]) -> None:
        pending: list[_Image] = []
        try:
            for im in images:
                im.hash = file_hash(im.path.read_bytes())
                if self._lookup(im):
                    tick(1)
                    continue
                pending.append(im)
                if len(pending) >= self.options.batch_size:
                    self._compute(pending)
                    tick(len(pending))
                    pending = []
            if pending:
                self._compute(pending)
                tick(len(pending))
        finally:
            for cache in self._caches():
                cache.flush()

    # ------------------------------------------------------------------ pixels
    def _pixel_metrics(self, row: Row) -> dict[str, float]:
        result, target = load_rgb(row.result), load_rgb(row.scored_target)
        if result.shape != target.shape:
            from PIL import Image

            log.warning("%s: %dx%d target resized to the result's %dx%d for PSNR/SSIM/LPIPS", row.scored_target,
                        target.shape[1], target.shape[0], result.shape[1], result.shape[0])
            target = np.asarray(Image.fromarray(target).resize((result.shape[1], result.shape[0]), Image.BILINEAR))
        out = {"psnr": psnr(result, target), "ssim": ssim(result, target)}
        if self.models.lpips is not None:
            with torch.no_grad():
                d = self.models.lpips(_to_tensor(result)[None].to(self.models.device),
                                      _to_tensor(target)[None].to(self.models.device))
            out["lpips"] = float(d[0])
        return out

    # ------------------------------------------------------------------ driver
    def run(self, rows: Sequence[Row], progress: Callable[[int, str], Any] | None = None) -> EvalResult:
        if not rows:
            raise ValueError("no rows to evaluate")
        active = [r for r in rows if not r.skipped]
        if not active:
            raise ValueError("every row was skipped: nothing to score")
        if any(r.result is None for r in active):
            raise ValueError("every row needs a result image before scoring")
        swap_rows = [r for r in active if r.kind == "swap"]
        main_rows = swap_rows or active
        self_rows = [r for r in active if r.kind == "self"]
        images: dict[Path, _Image] = {}

        def need(path: Path, *roles: str) -> None:
            images.setdefault(path, _Image(path, set())).roles.update(roles)

        for r in main_rows:
            need(r.source, "source", "id", "recon")
            need(r.scored_target, "target", "recon", "incep")
            need(r.result, "result", "id", "recon", "incep")
        pixel_pairs = {(r.result, r.target) for r in self_rows}  # identical rows are computed once
        work = len({(r.source, r.target, r.result) for r in rows})
        if work < len(rows):
            log.info("%d rows, %d unique (source, target, result): each is computed once, %d image(s) analysed",
                     len(rows), work, len(images))
        bar = progress(len(images) + len(pixel_pairs), "eval") if progress else None
        tick = bar.update if bar is not None else (lambda n: None)
        try:
            self._analyse(list(images.values()), tick)
            pixel, done = {}, {}
            for r in self_rows:
                key = (r.result, r.target)
                if key not in done:
                    done[key] = self._pixel_metrics(r)
                    tick(1)
                pixel[r.index] = dict(done[key])
        finally:
            if bar is not None:
                bar.close()
        return self._summarise(rows, main_rows, self_rows, images, pixel)

    def _summarise(self, rows, main_rows, self_rows, images, pixel) -> EvalResult:
        m = self.models
        samples: list[dict[str, Any]] = []
        for r in rows:
            rec: dict[str, Any] = {"index": r.index, "kind": r.kind, "source": str(r.source), "target": str(r.target),
                                   "result": None if r.result is None else str(r.result), "source_id": r.source_id,
                                   "crop": r.crop or None,
                                   "target_crop": None if r.target_crop is None else str(r.target_crop),
                                   "skipped": r.skipped or None}
            for role in ("source", "target", "result"):
                path = r.scored_target if role == "target" else getattr(r, role)
                im = images.get(path) if path is not None and not r.skipped else None
                rec[f"{role}_face"] = None if im is None or not im.face_known else int(im.face is not None)
            rec.update({k: None for k in PER_SAMPLE})
            rec["retrieved_id"] = None
            samples.append(rec)
        by_index = {s["index"]: s for s in samples}
        main_set = {r.index for r in main_rows}
        for r in main_rows:
            s, t, q, rec = images[r.source], images[r.scored_target], images[r.result], by_index[r.index]
            if s.identity is not None and q.identity is not None:
                rec["id_similarity"] = float(cosine(q.identity[None], s.identity[None])[0])
            if q.coeffs is not None and t.coeffs is not None:
                rec["pose_error"] = float(pose_error(q.coeffs, t.coeffs))
                rec["expression_error"] = float(expression_error(q.coeffs, t.coeffs))
            if q.coeffs is not None and s.coeffs is not None:
                rec["shape_error"] = float(shape_error(q.coeffs, s.coeffs))
        for idx, values in pixel.items():
            by_index[idx].update(values)

        skipped = dict(m.skipped)
        notes: list[str] = []
        # ID retrieval: each result against every distinct source face of the scored rows
        gallery: dict[Path, str] = {}
        for r in main_rows:
            if images[r.source].identity is not None:
                gallery.setdefault(r.source, r.source_id)
        queries = [r for r in main_rows if images[r.result].identity is not None and images[r.source].identity is not None]
        if queries and gallery:
            ok, found = retrieval(np.stack([images[r.result].identity for r in queries]), [r.source_id for r in queries],
                                  np.stack([images[p].identity for p in gallery]), list(gallery.values()))
            for r, hit, f in zip(queries, ok, found):
                by_index[r.index]["id_retrieved"] = int(hit)
                by_index[r.index]["retrieved_id"] = f
            if len(set(gallery.values())) < 2:
                notes.append("ID retrieval with a single source identity is always 100 %: add pairs with other sources")

        metrics: dict[str, float | None] = {k: None for k in METRICS}
        details: dict[str, dict[str, float]] = {}
        for key in PER_SAMPLE:
            vals = np.array([s[key] for s in samples if s[key] is not None], dtype=np.float64)
            name = "id_retrieval" if key == "id_retrieved" else key
            if len(vals):
                metrics[name] = float(vals.mean())
                details[name] = describe(vals)
        self._realism(main_rows, images, metrics, details, skipped, notes)

        no_face = {role: sum(1 for im in images.values() if role in im.roles and im.face_known and im.face is None)
                   for role in ("source", "target", "result")}
        absent = {"identity": m.identity is None, "3DMM": m.recon is None, "FID Inception": m.inception is None,
                  "LPIPS": m.lpips is None}
        if not self_rows:  # the more basic reason for the self-reconstruction metrics
            for key in ("psnr", "ssim", "lpips"):
                skipped[key] = NO_DATA[key]
        for key in METRICS:
            what = next((w for w, keys in MODEL_OF.items() if key in keys), None)
            if metrics[key] is None and what is not None and absent[what]:
                skipped.setdefault(key, f"no {what} model given")
            if metrics[key] is None:
                skipped.setdefault(key, NO_DATA[key])
            else:
                skipped.pop(key, None)
        models = {k: v for k, v in self._model_names().items() if metrics.get(k) is not None}
        if any(no_face.values()):
            notes.append(f"faces not found: {no_face['source']} source, {no_face['target']} target and {no_face['result']} "
                         "result image(s); their rows are left out of the identity and 3D metrics")
        skipped_rows = [r for r in rows if r.skipped]
        if skipped_rows:
            lines = ", ".join(str(r.line or r.name) for r in skipped_rows[:10])
            more = f" (+{len(skipped_rows) - 10} more)" if len(skipped_rows) > 10 else ""
            notes.append(f"{len(skipped_rows)} row(s) not scored: no face found to swap in their source or target "
                         f"photo (see the skipped column of per_sample.csv): {lines}{more}")
        counts = {"pairs": len(rows), "swap": len(rows) - len(self_rows) - len(skipped_rows), "self": len(self_rows),
                  "scored_rows": len(main_set), "skipped_rows": len(skipped_rows), "images": len(images),
                  "no_face": no_face, "n": {k: v["n"] for k, v in details.items()}}
        if any(r.crop for r in rows):
            counts["crop"] = {k: sum(1 for r in rows if r.crop == k) for k in CROP_KINDS}
        return EvalResult(metrics, samples, details, skipped, models, counts, notes)

    def _realism(self, main_rows, images, metrics, details, skipped, notes) -> None:
        if self.incep_cache is None:
            return

        results = {r.result: images[r.result].inception for r in main_rows}
        targets = {r.scored_target: images[r.scored_target].inception for r in main_rows}
        if len(results) < 2 or len(targets) < 2:
            skipped["fid"] = skipped["kid"] = "FID/KID need at least 2 result and 2 target images"
            return
        a, b = np.stack(list(results.values())), np.stack(list(targets.values()))
        metrics["fid"] = fid(a, b)
        k_mean, k_std = kid(a, b, self.options.kid_subsets, self.options.kid_subset_size)
        metrics["kid"] = k_mean
        details["fid"] = {"n": len(results), "n_targets": len(targets)}
        details["kid"] = {"mean": k_mean, "std": k_std, "n": len(results), "n_targets": len(targets), "subsets": self.options.kid_subsets,
                          "subset_size": min(self.options.kid_subset_size, len(results), len(targets))}
        if min(len(results), len(targets)) < FID_RELIABLE_N:
            notes.append(f"FID from {len(results)} results and {len(targets)} targets: with fewer than {FID_RELIABLE_N} "
                         "images FID is biased upwards; compare FIDs only at equal numbers of images (KID is unbiased)")

    def _model_names(self) -> dict[str, str]:
        m = self.models
        names: dict[str, str] = {"psnr": PIXELS, "ssim": PIXELS}
        if m.identity is not None:
            names["id_similarity"] = names["id_retrieval"] = m.identity.name
        if m.recon is not None:
            for k in ("pose_error", "expression_error", "shape_error"):
                names[k] = m.recon.name
        if m.inception is not None:
            names["fid"] = names["kid"] = m.inception_name
        if m.lpips is not None:
            names["lpips"] = m.lpips_name
        return names
