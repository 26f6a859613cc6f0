"""The report folder: ``metrics.json``, ``per_sample.csv``, ``report.md`` and PNG figures; and ``--compare``.

Every file is written atomically (temporary file, then rename), so an interrupted run never leaves a half file.
Figures: ``hist_<metric>.png`` for each per-sample metric, ``best_<metric>.png`` / ``worst_<metric>.png`` strips
(source | target | result) for the identity similarity, the pose error and, for self-reconstruction, PSNR.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputImageError
from ..media.images import write_image
from ..provenance.label import output_label
from ..provenance.outputs import UNMARKED
from ..utils.atomic import atomic_path, atomic_write_text
from .evaluate import HIGHER_IS_BETTER, METRICS, PER_SAMPLE, UNITS, EvalResult, load_rgb
from .plots import histogram, strip

log = logging.getLogger(__name__)

CSV_COLUMNS = ("index", "kind", "source", "target", "result", "source_id", "crop", "target_crop", "skipped",
               "source_face", "target_face", "result_face", "id_similarity", "id_retrieved", "retrieved_id",
               "pose_error", "expression_error", "shape_error", "psnr", "ssim", "lpips")
TITLES = {"id_similarity": "ID similarity", "id_retrieval": "ID retrieval", "pose_error": "pose error",
          "expression_error": "expression error", "shape_error": "shape error", "fid": "FID", "kid": "KID",
          "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS"}
STRIP_METRICS = ("id_similarity", "pose_error", "psnr")
STRIP_COUNT = 6


def format_value(key: str, value: float | None) -> str:
    if value is None:
        return "—"
    if key == "id_retrieval":
        return f"{100 * value:.2f} %"
    if key == "kid":
        return f"{value:.5f}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _csv_value(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def write_per_sample(path: Path, samples: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for s in samples:
        writer.writerow([_csv_value(s.get(c)) for c in CSV_COLUMNS])
    atomic_write_text(path, buf.getvalue())


def _metric_rows(data: dict[str, Any]) -> list[list[str]]:
    details, models, skipped = data.get("details", {}), data.get("models", {}), data.get("skipped", {})
    rows = []
    for key in METRICS:
        value = data.get(key)
        det = details.get(key, {})
        spread = f"± {det['std']:.4g}" if value is not None and "std" in det and key != "id_retrieval" else ""
        better = "higher" if HIGHER_IS_BETTER[key] else "lower"
        how = models.get(key) if value is not None else f"skipped: {skipped.get(key, '')}"
        rows.append([TITLES[key], format_value(key, value), spread, str(det.get("n", "")), better, how or ""])
    return rows


def render_markdown(data: dict[str, Any], figures: list[str]) -> str:
    out = ["# hififace evaluation\n"]
    meta = [f"- protocol: {data.get('protocol', 'pairs')}", f"- pairs: {data.get('n_pairs')}"
            f" ({data['counts'].get('swap', 0)} swap, {data['counts'].get('self', 0)} self-reconstruction)"]
    crop = data["counts"].get("crop")
    if crop:
        meta.append(f"- model inputs: {crop.get('aligned', 0)} row(s) of aligned crops, {crop.get('detected', 0)} "
                    f"with faces detected and aligned, {crop.get('no-face', 0)} without a face (not scored)")
    for key in ("weights", "results", "faces", "created", "hififace_version"):
        if data.get(key):
            meta.append(f"- {key.replace('_', ' ')}: {data[key]}")
    out.append("\n".join(meta) + "\n")
    out.append("## Metrics\n")
    out.append(markdown_table(["metric", "value", "spread", "n", "better", "measured with"], _metric_rows(data)))
    units = "\n".join(f"- {TITLES[k]}: {UNITS[k]}" for k in METRICS)
    out.append(f"\nUnits:\n\n{units}\n")
    if data.get("notes"):
        out.append("\n## Notes\n\n" + "\n".join(f"- {n}" for n in data["notes"]) + "\n")
    if figures:
        out.append("\n## Figures\n\n" + "\n".join(f"![{Path(f).stem}]({f})" for f in figures) + "\n")
    return "\n".join(out)


def _save_png(path: Path, img) -> None:
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


def _figures(out: Path, result: EvalResult) -> list[str]:
    written = []
    for key in PER_SAMPLE:
        if key == "id_retrieved":
            continue
        vals = [s[key] for s in result.samples if s.get(key) is not None]
        if len(vals) < 2:
            continue
        name = f"hist_{key}.png"
        _save_png(out / name, histogram(vals, TITLES[key], UNITS[key]))
        written.append(name)
    written += _strips(out, result)
    return written


def _strips(out: Path, result: EvalResult) -> list[str]:
    written = []
    for key in STRIP_METRICS:
        scored = [s for s in result.samples if s.get(key) is not None]
        if len(scored) < 2:
            continue
        scored.sort(key=lambda s: s[key], reverse=HIGHER_IS_BETTER[key])
        k = min(STRIP_COUNT, len(scored) // 2)
        for label, chosen in (("best", scored[:k]), ("worst", scored[::-1][:k])):
            examples = []
            for s in chosen:
                target = Path(s["target"])
                caption = f"#{s['index']}  {TITLES[key]}\n{s[key]:.4g}\n{(target.parent.name + '/' + target.name)[-26:]}"
                scored = s.get("target_crop") or s["target"]  # what the result was compared with
                examples.append((caption, [load_rgb(Path(p)) for p in (s["source"], scored, s["result"])]))
            img = strip(examples, ["source", "target", "result"], f"{label} {len(chosen)} by {TITLES[key]}")
            name = f"{label}_{key}.png"
            write_image(out / name, np.asarray(img), meta=output_label("eval"), provenance=UNMARKED)  # as the results
            written.append(name)
    return written


def write_report(out_dir: str | Path, result: EvalResult, figures: bool = True, **meta: Any) -> dict[str, Any]:
    """Write the report files into ``out_dir``; returns the metrics.json content."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = result.to_json(**meta)
    write_per_sample(out / "per_sample.csv", result.samples)
    atomic_write_text(out / "metrics.json", json.dumps(_json_safe(data), indent=2) + "\n")
    names = _figures(out, result) if figures else []
    atomic_write_text(out / "report.md", render_markdown(data, names))
    return data


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj


# ---------------------------------------------------------------------------------------------- compare
def read_metrics(folder: str | Path) -> dict[str, Any]:
    path = Path(folder)
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise InputImageError(f"{path}: not found; give report folders written by 'hififace eval -o DIR' "
                              "(each holds a metrics.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputImageError(f"{path}: not a readable metrics.json ({err}); re-run 'hififace eval'") from None
    if not isinstance(data, dict) or "n_pairs" not in data:
        raise InputImageError(f"{path}: not a hififace metrics.json (no n_pairs); re-run 'hififace eval'")
    return data


def compare(a: str | Path, b: str | Path) -> str:
    """Markdown: every metric of report A and report B, B - A, and which one is better."""
    da, db = read_metrics(a), read_metrics(b)
    rows = []
    for key in METRICS:
        va, vb = da.get(key), db.get(key)
        diff, better = "—", "—"
        if va is not None and vb is not None:
            d = vb - va
            diff = f"{100 * d:+.2f} pp" if key == "id_retrieval" else f"{d:+.4g}"
            if va == vb:
                better = "same"
            else:
                better = "B" if (vb > va) == HIGHER_IS_BETTER[key] else "A"
        rows.append([TITLES[key], format_value(key, va), format_value(key, vb), diff, better])
    rows.append(["pairs", str(da.get("n_pairs")), str(db.get("n_pairs")), f"{(db.get('n_pairs') or 0) - (da.get('n_pairs') or 0):+d}", ""])
    notes = []
    for key in METRICS:
        ma, mb = (da.get("models") or {}).get(key), (db.get("models") or {}).get(key)
        if ma and mb and ma != mb:
            notes.append(f"- {TITLES[key]} measured with different models: A {ma}; B {mb}")
    head = f"A: {a}\nB: {b}\n\n"
    table = markdown_table(["metric", "A", "B", "B - A", "better"], rows)
    return head + table + ("\n" + "\n".join(notes) + "\n" if notes else "")
