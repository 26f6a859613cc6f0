"""Our Lightning callbacks: periodic export of inference folders (``hififace swap --weights DIR`` can use them
directly), checkpoint names in iterations, and a progress bar on stderr."""
from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from ..converters.bfm import bfm_to_tensors
from ..models.hififace import BFM_FILE, DISCRIMINATOR_FILE, LPIPS_FILE

log = logging.getLogger(__name__)


class ExportCallback(L.Callback):
    """Every ``every`` iterations (and at the end of training) write ``<dir>/step-N/`` on rank 0 (EMA if enabled)."""

    def __init__(self, directory: str | Path, every: int = 0):
        self.directory = Path(directory)
        self.every = int(every)
        self._last = -1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        it = pl_module.iteration
        if self.every and it > 0 and it % self.every == 0 and it != self._last:
            self._export(trainer, pl_module, it)

    def on_train_end(self, trainer, pl_module) -> None:
        it = pl_module.iteration
        if it != self._last:
            self._export(trainer, pl_module, it)

    def _export(self, trainer, pl_module, it: int) -> None:
        self._last = it
        if trainer.is_global_zero:
            out = export_inference_folder(pl_module, self.directory / f"step-{it:08d}")
            log.info("exported inference folder %s", out)
        trainer.strategy.barrier("hififace-export")


def export_inference_folder(pl_module, out: str | Path) -> Path:
    """Write the module's generator (its EMA when kept) with the frozen nets as a model folder."""
    model = pl_module.model
    gen = pl_module.eval_generator()
    gen = getattr(gen, "_orig_mod", gen)  # torch.compile wrapper
    extra = {DISCRIMINATOR_FILE: pl_module.discriminator.state_dict(), LPIPS_FILE: pl_module.lpips.state_dict(),
             BFM_FILE: bfm_to_tensors(pl_module.landmarks)}
    saved = model.generator
    try:
        model._modules["generator"] = gen  # save_pretrained writes model.generator
        return model.save_pretrained(out, extra_files=extra)
    finally:
        model._modules["generator"] = saved


class IterationCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose file names can use ``{iteration}`` (G+D iterations, half of Lightning's global_step)."""

    def _monitor_candidates(self, trainer) -> dict[str, torch.Tensor]:
        out = super()._monitor_candidates(trainer)
        out["iteration"] = torch.tensor(trainer.global_step // 2)
        return out


class StderrProgressBar(TQDMProgressBar):
    """Lightning's tqdm bars on stderr, like every other progress bar of ours (Lightning draws them on stdout)."""

    @staticmethod
    def _on_stderr(make):
        with contextlib.redirect_stdout(sys.stderr):  # Lightning passes file=sys.stdout when it creates a bar
            return make()

    def init_train_tqdm(self):
        return self._on_stderr(super().init_train_tqdm)

    def init_validation_tqdm(self):
        return self._on_stderr(super().init_validation_tqdm)

    def init_sanity_tqdm(self):
        return self._on_stderr(super().init_sanity_tqdm)
