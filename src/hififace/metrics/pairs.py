"""The rows to score: ``pairs.csv`` (``source,target`` and optionally ``result``, ``source_id``) and its checks.

- Relative paths in the file are relative to the folder of the CSV file.
- ``result``: the swapped image of the row. With ``--results DIR`` it is looked up in DIR: by the ``result`` column
  when there is one, else by the target's file name. Without ``--results`` a ``result`` column is used as it is;
  without either the results are made by the model (``--weights``).
- ``source_id``: the identity of the source, for ID retrieval (a result counts as retrieved when its most similar
  source face has the same id). Default: the source path, i.e. every distinct source image is its own identity.
- A row whose source and target are the same file is a self-reconstruction row (PSNR, SSIM, LPIPS).
- Rows that ask for the same work (the same source and target files) are computed once and the result is shared
  by all of them (:func:`unique_pairs`); the log says how many unique pairs there are.
- A field longer than :func:`csv.field_size_limit` (131,072 characters) is no path: one error naming the line.

Every missing path is reported in ONE error that lists them (up to 10) with their row numbers. Rows that score
different pairs but would read the same result file (e.g. three rows with the target ``bob.png`` and an empty
``result`` column under ``--results DIR``) are refused in one error naming their lines: each would score the same
image.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, InputImageError

MAX_LISTED = 10


@dataclass
class Row:
    """One pair to score; ``result`` None until the model has made it."""

    index: int
    source: Path
    target: Path
    result: Path | None
    source_id: str
    line: int = 0
    name: str = ""  # file name (no extension) of the result the model makes for this row
    crop: str = ""  # how the model's inputs were taken: aligned, detected or no-face ("" for given results)
    target_crop: Path | None = None  # the aligned crop of a detected target: what the result is scored against
    skipped: str = ""  # why the row is not scored (no face found), else ""

    @property
    def kind(self) -> str:
        return "self" if self.source == self.target else "swap"

    @property
    def scored_target(self) -> Path:
        """The target image the result is compared with: the aligned crop the model swapped, or the target."""
        return self.target_crop if self.target_crop is not None else self.target


def _resolve(value: str, base: Path) -> Path:
    p = Path(value.strip()).expanduser()
    return p if p.is_absolute() else base / p


def read_pairs(csv_path: str | Path, results_dir: str | Path | None = None, need_results: bool = False) -> list[Row]:
    """Rows of ``pairs.csv``; raises one clear error for a bad file, missing columns or missing paths."""
    path = Path(csv_path)
    if not path.is_file():
        raise InputImageError(f"{path}: pairs file not found; give a CSV with the columns source,target[,result]")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise InputImageError(f"{path}: cannot read the pairs file ({err}); save it as UTF-8 CSV") from None
    reader = csv.DictReader(text.splitlines())
    try:
        return _read_rows(path, reader, results_dir, need_results)
    except csv.Error as err:  # e.g. "field larger than field limit (131072)"
        raise ConfigError(f"{path}: line {reader.reader.line_num} is not a pairs row ({str(err)[:100]}); each line holds "
                          "paths: source,target[,result][,source_id]") from None


def _read_rows(path: Path, reader: csv.DictReader, results_dir: str | Path | None, need_results: bool) -> list[Row]:
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing_cols = [c for c in ("source", "target") if c not in fields]
    if missing_cols:
        raise ConfigError(f"{path}: no {' and no '.join(missing_cols)} column; the first line must name the columns "
                          "source,target (optionally result, source_id)")
    base = path.parent
    results = Path(results_dir) if results_dir is not None else None
    if results is not None and not results.is_dir():
        raise InputImageError(f"{results}: results folder not found; pass the folder holding the swapped images")
    rows: list[Row] = []
    by_name: set[int] = set()  # rows whose result is looked up in --results by their target's file name
    for raw in reader:
        line_no = reader.line_num
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not rec.get("source") and not rec.get("target"):
            continue  # blank line
        if not rec.get("source") or not rec.get("target"):
            raise ConfigError(f"{path}: line {line_no} lacks a source or a target path")
        source, target = _resolve(rec["source"], base), _resolve(rec["target"], base)
        result = None
        if results is not None:
            result = results / (rec.get("result") or target.name)
            if not rec.get("result"):
                by_name.add(len(rows))
        elif rec.get("result"):
            result = _resolve(rec["result"], base)
        rows.append(Row(len(rows), source, target, result, rec.get("source_id") or str(source), line_no,
                        f"{len(rows):05d}_{target.stem}"))
    if not rows:
        raise ConfigError(f"{path}: no pairs in the file (only a header?); add lines source,target")
    if need_results and any(r.result is None for r in rows):
        raise ConfigError(f"{path}: no result column and no --results DIR: pass --weights DIR to make the results, "
                          "or --results DIR with the swapped images")
    refuse_shared_results(rows, path, from_target=by_name)
    check_paths(rows, path)
    return rows


def _shown(text: str, limit: int = 60) -> str:
    """A name from a file, safe to print on one line: control characters escaped, at most ``limit`` characters."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return out if len(out) <= limit else out[: limit - 1] + "…"


def _lines(rows: list[Row], limit: int = 5) -> str:
    nums = [str(r.line) for r in rows[:limit]]
    more = f" (+{len(rows) - limit} more)" if len(rows) > limit else ""
    return (f"{', '.join(nums[:-1])} and {nums[-1]}" if len(nums) > 1 else nums[0]) + more


def refuse_shared_results(rows: list[Row], source_file: str | Path, from_target: set[int] = frozenset()) -> None:
    """One error when rows that score different (source, target) pairs would read the same result file: the
    same image would be scored as the result of each (e.g. a swap scored as a self-reconstruction, PSNR 100).
    ``from_target``: indices of rows whose result path came from their target's file name (``--results`` without a
    ``result`` value). Rows repeating the same pair and result are the same work, not a clash."""
    groups: dict[str, list[Row]] = {}
    for r in rows:
        if r.result is not None:
            groups.setdefault(os.path.normcase(os.path.abspath(r.result)), []).append(r)
    for group in groups.values():
        if len({(r.source, r.target) for r in group}) < 2:
            continue
        name = _shown(group[0].result.name)
        if all(r.index in from_target for r in group):
            raise ConfigError(f"{source_file}: lines {_lines(group)} share the target file name {name}, so --results "
                              "cannot tell their results apart; add a result column naming each row's result")
        raise ConfigError(f"{source_file}: lines {_lines(group)} score different pairs but name the same result file "
                          f"{name}; give each row its own result")


def unique_pairs(rows: list[Row]) -> dict[tuple[Path, Path], list[Row]]:
    """Rows grouped by the work they ask for: the same source and target files (resolved paths), in first-seen
    order. Options are the run's, the same for every row, so one result serves the whole group."""
    groups: dict[tuple[Path, Path], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.source.resolve(), r.target.resolve()), []).append(r)
    return groups


def check_paths(rows: list[Row], source_file: str | Path) -> None:
    """One error listing every missing source/target/result file (up to :data:`MAX_LISTED`)."""
    missing = []
    for r in rows:
        for role in ("source", "target", "result"):
            p = getattr(r, role)
            if p is not None and not p.is_file():
                missing.append(f"{'line ' + str(r.line) if r.line else r.name} {role} {p}")
    if missing:
        more = f" (+{len(missing) - MAX_LISTED} more)" if len(missing) > MAX_LISTED else ""
        raise InputImageError(f"{source_file}: {len(missing)} path(s) not found: {'; '.join(missing[:MAX_LISTED])}{more}; "
                              "fix the paths (relative ones are relative to the CSV's folder)")
