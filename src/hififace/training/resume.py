"""Resuming a run: the checkpoint's own config, and the checks that keep two runs from mixing.

A ``hififace train`` checkpoint holds the config it was trained with (``ckpt["hififace"]["train_config"]``) and
the model's constructor arguments (``model_config``). ``--resume`` without ``--config`` trains on with that config
(command-line overrides still apply); with ``--config`` the keys that shape the saved state must agree, otherwise
the run stops with one line naming them (instead of Lightning's size-mismatch traceback).
No Lightning import here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..converters.training import is_training_checkpoint
from ..errors import ConfigError
from ..weights.io import load_legacy
from .config import TrainConfig, load_config

#: Model keys whose value fixes the shapes of the saved weights (compared with the checkpoint's model_config).
MODEL_KEYS = ("image_size", "variant", "arcface_arch", "channel_multiplier", "frozen_width")
#: Run folder entries that mean "a run lives here".
RUN_ENTRIES = ("config.yaml", "checkpoints", "export", "frozen", "tb", "csv", "wandb")


def read_training_meta(path: str | Path) -> dict[str, Any]:
    """The ``hififace`` entry of a training checkpoint (tensors are memory-mapped, not read)."""
    p = Path(path)
    if not p.is_file():
        where = " (runs keep theirs in <checkpoint.dir>/checkpoints/)" if not p.exists() else ""
        raise ConfigError(f"--resume {p}: checkpoint not found{where}")
    ckpt = load_legacy(p, "hififace training checkpoint")
    if not is_training_checkpoint(ckpt):
        raise ConfigError(f"--resume {p}: not a 'hififace train' checkpoint; to start from converted weights "
                          "use --init DIR (a folder made by 'hififace convert')")
    return dict(ckpt["hififace"])


def resume_config(path: str | Path, config: str | Path | None = None,
                  overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config to resume ``path`` with: the checkpoint's own (plus ``overrides``) when ``config`` is None,
    else ``config`` (plus ``overrides``) after :func:`check_resume`. Unless ``checkpoint.dir`` is overridden, the
    run goes on in the folder the checkpoint lies in (``<dir>/checkpoints/X.ckpt`` beside ``<dir>/config.yaml``)."""
    meta = read_training_meta(path)
    own = run_folder(path)
    if own is not None and "checkpoint.dir" not in (overrides or {}):  # continue in the run's own folder, not in
        overrides = {**(overrides or {}), "checkpoint.dir": str(own)}  # the config's (another run's, or a moved one)
    if config is None:
        saved = meta.get("train_config")
        if not isinstance(saved, dict):
            raise ConfigError(f"--resume {path}: the checkpoint holds no training config; pass the run's --config")
        cfg = load_config(None, overrides, base=saved)
    else:
        cfg = load_config(config, overrides)
    check_resume(cfg, path, meta)
    return cfg


def run_folder(path: str | Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<dir>`` of ``<dir>/checkpoints/X.ckpt``), else None."""
    p = Path(path)
    return p.parent.parent if p.parent.name == "checkpoints" and (p.parent.parent / "config.yaml").is_file() else None


def check_resume(cfg: TrainConfig, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Stop with one line when ``cfg`` cannot continue the checkpoint: other shapes, or nothing left to train."""
    meta = read_training_meta(path) if meta is None else meta
    saved_model = meta.get("model_config") or {}
    want = cfg.model.model_config().to_dict()
    diffs = [(f"model.{k}", saved_model[k], want[k]) for k in MODEL_KEYS if k in saved_model and saved_model[k] != want[k]]
    saved = meta.get("train_config") or {}
    saved_ema = float((saved.get("model") or {}).get("ema_decay", cfg.model.ema_decay))
    if (saved_ema > 0) != (cfg.model.ema_decay > 0):  # the EMA copy is in the state or not
        diffs.append(("model.ema_decay", saved_ema, cfg.model.ema_decay))
    saved_sched = (saved.get("optim") or {}).get("scheduler", cfg.optim.scheduler)
    if (saved_sched == "none") != (cfg.optim.scheduler == "none"):  # scheduler states are in the checkpoint or not
        diffs.append(("optim.scheduler", saved_sched, cfg.optim.scheduler))
    if diffs:
        was = ", ".join(f"{k}={a!r}" for k, a, _ in diffs)
        now = ", ".join(f"{k}={b!r}" for k, _, b in diffs)
        raise ConfigError(f"--resume {path}: the checkpoint was trained with {was} but the config has {now}; "
                          "resume without --config (the checkpoint's own config is used) or fix these keys")
    done = int(meta.get("iteration", 0))
    if done >= cfg.trainer.max_steps:
        raise ConfigError(f"--resume {path}: the run already reached iteration {done} (trainer.max_steps="
                          f"{cfg.trainer.max_steps}): nothing to train; pass a larger --trainer.max_steps to go on")


def existing_run(run_dir: Path) -> list[str]:
    """The entries of ``run_dir`` that belong to a run (empty when none)."""
    return [name for name in RUN_ENTRIES if (run_dir / name).exists()]


def check_fresh_run_dir(run_dir: Path, overwrite: bool) -> list[str]:
    """Refuse a fresh run into a folder that holds a run (unless ``overwrite``); return what would be replaced."""
    found = existing_run(run_dir)
    if found and not overwrite:
        last = run_dir / "checkpoints" / "last.ckpt"
        how = f"resume it with --resume {last}" if last.is_file() else "resume it with --resume CKPT"
        raise ConfigError(f"{run_dir}: already holds a run ({', '.join(found)}); {how}, or pass "
                          "--checkpoint.overwrite (deletes that run) or another --checkpoint.dir")
    return found
