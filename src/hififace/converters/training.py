"""Turn a ``hififace train`` checkpoint (``last.ckpt``) into an inference model folder.

Training checkpoints hold the generator (and its EMA), the discriminator and optimizer states, but not the
frozen networks: those are read from the folder the run started from (recorded in the checkpoint as
``frozen_from``; runs without ``model.init`` write theirs to ``<run>/frozen/``).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ..config import HifiFaceConfig
from ..errors import WeightsError
from ..models.hififace import (
    ARCFACE_FILE, BFM_FILE, CONFIG_FILE, DISCRIMINATOR_FILE, LPIPS_FILE, RECON_FILE, HifiFace, assign_state,
)
from ..utils.atomic import atomic_path
from ..weights.io import load_legacy, load_safetensors, tensors_only

log = logging.getLogger(__name__)

CKPT_FORMAT = "hififace-training"
GEN_PREFIX = "model.generator."
EMA_PREFIX = "generator_ema."
DISC_PREFIX = "discriminator."


def is_training_checkpoint(obj: Any) -> bool:
    """True for a loaded object written by ``hififace train`` (a Lightning checkpoint with our metadata)."""
    return isinstance(obj, dict) and isinstance(obj.get("hififace"), dict) and obj["hififace"].get("format") == CKPT_FORMAT


def convert_training_checkpoint(path: str | Path, out_dir: str | Path, frozen_from: str | Path | None = None,
                                use_ema: bool = True, overwrite: bool = False, ckpt: Any = None) -> Path:
    """Write ``out_dir`` (config.json + safetensors) from a training checkpoint; returns the folder.

    ``frozen_from`` overrides the recorded folder holding ``arcface.safetensors``/``recon3d.safetensors``
    (and optionally LPIPS/BFM). The EMA generator is used when the run kept one and ``use_ema`` is true.
    ``ckpt`` is the checkpoint already loaded by the caller, if any (it is then not read again).
    """
    import torch

    path, out_dir = Path(path), Path(out_dir)
    if ckpt is None:
        ckpt = load_legacy(path, "hififace training checkpoint")
    if not is_training_checkpoint(ckpt):
        raise WeightsError(f"{path}: not a 'hififace train' checkpoint (no hififace metadata); for the reference's "
                           "checkpoint use 'hififace convert' without training options")
    meta = ckpt["hififace"]
    if (out_dir / CONFIG_FILE).exists() and not overwrite:
        raise WeightsError(f"{out_dir}: already holds a model folder; choose another -o or pass --overwrite")
    config = HifiFaceConfig.from_dict(dict(meta["model_config"]), source=f"{path} (model_config)")
    state = tensors_only(ckpt.get("state_dict", {}), path)
    prefix = EMA_PREFIX if use_ema and any(k.startswith(EMA_PREFIX) for k in state) else GEN_PREFIX
    gen_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not gen_state:
        raise WeightsError(f"{path}: no generator weights ({GEN_PREFIX}*) in the checkpoint; the file is incomplete")
    disc_state = {k[len(DISC_PREFIX):]: v for k, v in state.items() if k.startswith(DISC_PREFIX)}

    source = Path(frozen_from) if frozen_from is not None else (Path(meta["frozen_from"]) if meta.get("frozen_from") else None)
    if source is None or not (source / ARCFACE_FILE).exists() or not (source / RECON_FILE).exists():
        where = source if source is not None else "(not recorded)"
        raise WeightsError(f"{path}: the frozen ArcFace/ReconNet weights are not in training checkpoints and their "
                           f"folder {where} is missing; pass the model folder the run started from (--frozen-from DIR)")

    with torch.device("meta"):
        model = HifiFace(config)
    assign_state(model.generator, gen_state, f"{path} ({prefix}*)")
    assign_state(model.id_extractor.arcface, load_safetensors(source / ARCFACE_FILE, "ArcFace weights"), source / ARCFACE_FILE)
    assign_state(model.id_extractor.recon, load_safetensors(source / RECON_FILE, "ReconNet weights"), source / RECON_FILE)
    model.config.notes = {**model.config.notes, "converted_from": str(path), "iteration": int(meta.get("iteration", -1)),
                          "generator": "ema" if prefix == EMA_PREFIX else "raw"}
    extra = {DISCRIMINATOR_FILE: disc_state} if disc_state else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (LPIPS_FILE, BFM_FILE):  # training-only companions travel with the folder when known
        if (source / name).exists() and source.resolve() != out_dir.resolve():
            with atomic_path(out_dir / name) as tmp:
                shutil.copyfile(source / name, tmp)
    model.save_pretrained(out_dir, extra_files=extra)  # config.json last: the folder is complete once it exists
    # out_dir may be the converter's temporary folder: the caller names the final one
    log.info("converted %s (iteration %s, %s generator)", path, meta.get("iteration"), "EMA" if prefix == EMA_PREFIX else "raw")
    return out_dir
