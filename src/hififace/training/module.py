"""The HifiFace LightningModule: G step then D step on the same batch (manual optimisation).

Frozen networks (ArcFace, ReconNet inside ``model.id_extractor``, LPIPS-VGG, BFM landmarks) are single shared
instances: in eval mode forever, without gradients, outside the optimizers and outside checkpoints.
One *iteration* = one G step + one D step = two of Lightning's optimizer steps (``global_step`` counts both).
"""
from __future__ import annotations

import copy
import logging
import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from ..config import N_ID_COEFFS
from ..losses.composite import LossNets, _fp16_autocast, discriminator_loss, generator_loss, with_gradient
from ..losses.functional import cycle_loss
from ..models.hififace import HifiFace
from ..models.identity import Identity
from ..utils.memory import release_free_heap
from .config import TrainConfig

log = logging.getLogger(__name__)

CKPT_FORMAT = "hififace-training"
CKPT_VERSION = 1
#: state_dict prefixes of the frozen networks: dropped from checkpoints, restored from their own files.
FROZEN_PREFIXES = ("model.id_extractor.", "lpips.", "landmarks.")


class HifiFaceModule(L.LightningModule):
    """Training wrapper around a :class:`~hififace.HifiFace` model, its discriminator and the frozen loss nets."""

    def __init__(self, cfg: TrainConfig, model: HifiFace, discriminator: nn.Module, lpips: nn.Module,
                 landmarks: nn.Module, frozen_from: str | None = None):
        super().__init__()
        self.cfg = cfg
        self.loss_cfg = cfg.loss_config()
        self.model = model
        self.discriminator = discriminator
        self.lpips = lpips
        self.landmarks = landmarks
        self.frozen_from = frozen_from
        self.generator_ema: nn.Module | None = None
        if cfg.model.ema_decay > 0:
            self.generator_ema = copy.deepcopy(model.generator).requires_grad_(False).eval()
        self.automatic_optimization = False
        self._batches_in_epoch = 0
        self._accum = 0
        self._cycle = None  # (I_r, its detached copy fed to the cycle pass, generator) between _generate and _g_loss
        self._last_terms: dict[str, torch.Tensor] = {}
        if cfg.model.channels_last:  # every conv net, the frozen ones too: activations stay in one layout
            for net in (self.model.generator, self.discriminator, self.model.id_extractor, self.lpips):
                net.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ helpers
    @property
    def nets(self) -> LossNets:
        return LossNets(self.model.id_extractor, self.landmarks, self.lpips)

    @property
    def last_terms(self) -> dict[str, float]:
        """The loss terms of the last training step as floats. Read on demand: converting them waits for the
        device, so the step itself only keeps the (detached) tensors."""
        return {k: float(v) for k, v in self._last_terms.items()}

    @property
    def iteration(self) -> int:
        """Completed G+D iterations (Lightning's global_step counts the two optimizer steps separately)."""
        return self.global_step // 2

    def train(self, mode: bool = True):
        super().train(mode)
        if self.generator_ema is not None:
            self.generator_ema.eval()  # the EMA copy is only ever evaluated
        return self

    def eval_generator(self) -> nn.Module:
        return self.generator_ema if self.generator_ema is not None else self.model.generator

    def frozen_modules(self) -> list[nn.Module]:
        return [self.model.id_extractor.arcface, self.model.id_extractor.recon, self.lpips, self.landmarks]

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        o = self.cfg.optim
        betas = tuple(float(b) for b in o.betas)
        make = torch.optim.AdamW if o.optimizer == "adamw" else torch.optim.Adam
        kw = {"weight_decay": o.weight_decay} if o.optimizer == "adamw" else {}
        opt_g = make(self.model.generator.parameters(), lr=o.g_lr, betas=betas, **kw)
        opt_d = make(self.discriminator.parameters(), lr=o.d_lr, betas=betas, **kw)
        if o.scheduler == "none":
            return [opt_g, opt_d]
        # Each scheduler is bound to its own optimizer (the reference built D's on G's optimizer).
        return [opt_g, opt_d], [self._scheduler(opt_g), self._scheduler(opt_d)]

    def _scheduler(self, opt):
        o = self.cfg.optim
        if o.scheduler == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=o.step_size, gamma=o.gamma)
        total = max(1, self.cfg.trainer.max_steps)
        floor = o.min_lr_ratio
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda it: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(it, total) / total)))

    def _clip(self, opt, module: nn.Module) -> None:
        if self.cfg.optim.grad_clip > 0:
            self.clip_gradients(opt, gradient_clip_val=self.cfg.optim.grad_clip, gradient_clip_algorithm="norm")

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        decay = self.cfg.model.ema_decay
        for e, p in zip(self.generator_ema.parameters(), self.model.generator.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1.0 - decay)
        for e, b in zip(self.generator_ema.buffers(), self.model.generator.buffers()):
            e.copy_(b)

    # ------------------------------------------------------------------ the step
    def _generate(self, generator: nn.Module, source, target):
        ext = self.model.id_extractor
        # Frozen nets without grad, as the reference. Source and target go through each net in one call, and the
        # cycle's source (I_t) reuses the target's coefficients and embedding instead of computing them again.
        with torch.no_grad():
            c_s, c_t = (c.float() for c in ext.coefficients_many(source, target))
            v_s, v_t = (v.float() for v in ext.embed_many(source, target))
        v_sid = ext.fuse(Identity(c_s[:, :N_ID_COEFFS], v_s), c_t)
        out = generator(target, v_sid.to(target.dtype))
        with torch.no_grad():
            c_r = ext.coefficients(out.i_r).float()
        v_cyc = ext.fuse(Identity(c_t[:, :N_ID_COEFFS], v_t), c_r)  # cycle: source = I_t, target = I_r
        i_r_in, self._cycle = out.i_r, None
        if torch.is_grad_enabled() and out.i_r.requires_grad and not _fp16_autocast():
            # The cycle pass starts from a detached copy of I_r so that _g_loss can back-propagate L_cyc at once
            # (freeing the cycle's activations) and hand the gradient on to I_r (see early_backward).
            i_r_in = out.i_r.detach().requires_grad_()
            self._cycle = (out.i_r, i_r_in, generator)
        i_cycle = generator(i_r_in, v_cyc.to(target.dtype)).i_r
        if self.cfg.trainer.release_cpu_memory and target.device.type == "cpu" and torch.is_grad_enabled():
            release_free_heap()  # the cycle's backward, next, is the step's peak: keep old heap holes out of it
        return v_sid, out, i_cycle

    def _cycle_term(self, target, out, i_cycle):
        """L_cyc with its gradients (generator weights, I_r) computed now; None when _generate kept the graph whole."""
        ctx, self._cycle = self._cycle, None
        if ctx is None or ctx[0] is not out.i_r or not torch.is_grad_enabled():
            return None
        i_r, i_r_in, generator = ctx
        params = [p for p in generator.parameters() if p.requires_grad]
        l_cyc = cycle_loss(target.float(), i_cycle.float())
        grads = torch.autograd.grad(l_cyc, [i_r_in, *params], allow_unused=True)
        return with_gradient(l_cyc, zip([i_r, *params], grads))

    def _g_loss(self, batch, v_sid, out, i_cycle):
        cycle_term = self._cycle_term(batch["target"], out, i_cycle)
        return generator_loss(
            self.nets, self.loss_cfg, source=batch["source"], target=batch["target"], m_tar=batch["mask"],
            same=batch["same"], v_sid=v_sid, i_r=out.i_r, i_low=out.i_low, m_r=out.m_r, m_low=out.m_low,
            i_cycle=i_cycle, discriminator=self.discriminator, cycle_term=cycle_term, same_index=batch.get("same_index"))

    def _prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.cfg.model.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in batch.items()}
        return batch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        batch = self._prepare(batch)
        opt_g, opt_d = self.optimizers()
        scheds = self.lr_schedulers()
        acc = self.cfg.optim.accumulate
        self._accum += 1
        do_step = self._accum >= acc

        # --- generator (D's parameters need no gradient here: only I_r flows through it)
        self.discriminator.requires_grad_(False)
        v_sid, out, i_cycle = self._generate(self.model.generator, batch["source"], batch["target"])
        g_total, g_terms = self._g_loss(batch, v_sid, out, i_cycle)
        self.manual_backward(g_total / acc)
        self.discriminator.requires_grad_(True)
        if do_step:
            self._clip(opt_g, self.model.generator)
            opt_g.step()
            opt_g.zero_grad(set_to_none=True)
            self._update_ema()

        # --- discriminator on the same batch
        d_total, d_terms = discriminator_loss(self.discriminator, self.loss_cfg, batch["target"], out.i_r.detach())
        self.manual_backward(d_total / acc)
        if do_step:
            self._clip(opt_d, self.discriminator)
            opt_d.step()
            opt_d.zero_grad(set_to_none=True)
            if scheds:
                for s in scheds if isinstance(scheds, list) else [scheds]:
                    s.step()
            self._accum = 0
        self._batches_in_epoch = batch_idx + 1

        # --- logging
        stats = {f"train/{k}": v for k, v in {**g_terms, **d_terms}.items()}
        stats["train/mask_r_mean"] = out.m_r.detach().float().mean()
        stats["train/mask_low_mean"] = out.m_low.detach().float().mean()
        stats["train/mask_tar_mean"] = batch["mask"].float().mean()
        stats["train/same_rate"] = batch["same"].float().mean()
        stats["train/lr_g"] = torch.tensor(opt_g.param_groups[0]["lr"])
        stats["train/lr_d"] = torch.tensor(opt_d.param_groups[0]["lr"])
        if "skipped" in batch:
            stats["data/skipped"] = batch["skipped"].float().sum()
        self.log_dict(stats, on_step=True, on_epoch=False, prog_bar=False, sync_dist=False,
                      batch_size=batch["target"].shape[0])
        self.log("g", g_terms["g_total"], prog_bar=True, logger=False, batch_size=batch["target"].shape[0])
        self.log("d", d_terms["d_total"], prog_bar=True, logger=False, batch_size=batch["target"].shape[0])
        self._last_terms = {**g_terms, **d_terms}  # tensors: no host sync here (see last_terms)
        every = self.cfg.trainer.image_every
        if every and do_step and self.iteration % every == 0:
            self._log_images("train", batch, out, i_cycle)
        return None

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int):
        batch = self._prepare(batch)
        v_sid, out, i_cycle = self._generate(self.eval_generator(), batch["source"], batch["target"])
        _, terms = self._g_loss(batch, v_sid, out, i_cycle)
        n = batch["target"].shape[0]
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, on_step=False, on_epoch=True, sync_dist=True,
                      batch_size=n)
        if batch_idx == 0:
            self._log_images("val", batch, out, i_cycle)

    # ------------------------------------------------------------------ images
    def _log_images(self, tag: str, batch, out, i_cycle) -> None:
        if self.trainer is None or not self.trainer.is_global_zero:
            return
        grid = image_grid(batch, out, i_cycle)
        for logger in self.loggers:
            exp = getattr(logger, "experiment", None)
            if hasattr(exp, "add_image"):  # TensorBoard
                exp.add_image(f"{tag}/grid", grid, self.iteration)
            elif hasattr(exp, "log") and type(logger).__name__ == "WandbLogger":
                import wandb  # only reached when wandb is installed and asked for

                exp.log({f"{tag}/grid": wandb.Image(grid.permute(1, 2, 0).numpy())}, step=self.iteration)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith(FROZEN_PREFIXES)]:
            del state[key]
        checkpoint["hififace"] = {
            "format": CKPT_FORMAT,
            "version": CKPT_VERSION,
            "model_config": self.model.config.to_dict(),
            "train_config": self.cfg.to_dict(),
            "frozen_from": self.frozen_from,
            "iteration": self.iteration,
            "data": {"epoch": self.current_epoch, "batches": self._batches_in_epoch},
            "accum": self._accum,
            "rng": {
                "torch": torch.get_rng_state(),
                "numpy": _numpy_state_to_tensors(np.random.get_state()),
                "python": list(random.getstate()[1]),
            },
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("hififace", {})
        # Frozen nets are not in the file: put their current weights back so that the strict load passes.
        state = checkpoint["state_dict"]
        for key, value in self.state_dict().items():
            if key.startswith(FROZEN_PREFIXES):
                state[key] = value
        self._accum = int(meta.get("accum", 0))
        data = meta.get("data")
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if data and dm is not None and hasattr(dm, "resume_position"):
            dm.resume_position = (int(data["epoch"]), int(data["batches"]))
        rng = meta.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            np.random.set_state(_numpy_state_from_tensors(rng["numpy"]))
            random.setstate((3, tuple(int(x) for x in rng["python"]), None))


def _numpy_state_to_tensors(state) -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = state
    return {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}


def _numpy_state_from_tensors(d: dict[str, Any]):
    return ("MT19937", d["keys"].numpy().astype(np.uint32), d["pos"], d["has_gauss"], d["cached"])


def image_grid(batch: dict[str, torch.Tensor], out, i_cycle: torch.Tensor, rows: int = 4) -> torch.Tensor:
    """One row per sample: source | target | I_r | I_low | M_tar | m_r | m_low | cycle (3 x H x W, in [0, 1])."""
    import torch.nn.functional as F

    n = min(rows, batch["target"].shape[0])
    size = batch["target"].shape[-1]

    def img(t):
        t = t[:n].detach().float()
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        if t.shape[-1] != size:
            t = F.interpolate(t, size=(size, size), mode="nearest")
        return t.clamp(0, 1).cpu()

    cols = [batch["source"], batch["target"], out.i_r, out.i_low, batch["mask"], out.m_r, out.m_low, i_cycle]
    cols = [img(c) for c in cols]
    rows_ = [torch.cat([c[i] for c in cols], dim=-1) for i in range(n)]
    return torch.cat(rows_, dim=-2)
