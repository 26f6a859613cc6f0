"""Build the networks, the LightningModule, the loggers and the Lightning Trainer from a :class:`TrainConfig`."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from ..errors import ConfigError, WeightsError
from ..models.discriminators import create_discriminator
from ..models.hififace import BFM_FILE, DISCRIMINATOR_FILE, LPIPS_FILE, HifiFace
from .config import TrainConfig

log = logging.getLogger(__name__)

FROZEN_DIR = "frozen"


def build_networks(cfg: TrainConfig):
    """(model, discriminator, lpips, landmarks, frozen_from) as the config asks: from ``model.init`` when given."""
    from ..losses.lpips import LPIPS
    from ..models.frozen.bfm import BFMLandmarks
    from ..weights.io import load_into, load_safetensors

    m = cfg.model
    init = Path(m.init) if m.init else None
    if init is not None:
        model = HifiFace.from_pretrained(init)
        want = m.model_config()
        got = model.config
        diffs = [f"{k}: config {getattr(want, k)!r} vs folder {getattr(got, k)!r}"
                 for k in ("image_size", "variant", "arcface_arch", "channel_multiplier", "frozen_width")
                 if getattr(want, k) != getattr(got, k)]
        if diffs:
            raise ConfigError(f"model.init {init}: the folder's config.json differs from the training config "
                              f"({'; '.join(diffs)}); fix the model section or pick another folder")
        if want.recon_input_size != got.recon_input_size:
            log.info("model.recon_input_size %s overrides the folder's %s", want.recon_input_size, got.recon_input_size)
            model.config.recon_input_size = want.recon_input_size
        if want.align != got.align:  # the data of this run decides how photos are aligned for the trained weights
            log.info("model.align %s (the training crops') replaces the folder's %s", want.align, got.align)
            model.config.align = want.align
        model.train()
    else:
        model = HifiFace(m.model_config())
        log.warning("no model.init folder: ArcFace and ReconNet are random, so the identity losses mean nothing "
                    "(smoke runs only); make one with 'hififace convert --arcface ... --recon3d ... --bfm ... -o DIR'")

    disc = create_discriminator(model.config)
    if init is not None and (init / DISCRIMINATOR_FILE).exists():
        try:
            load_into(disc, load_safetensors(init / DISCRIMINATOR_FILE, "discriminator weights"), init / DISCRIMINATOR_FILE)
            log.info("discriminator from %s", init / DISCRIMINATOR_FILE)
        except WeightsError as err:
            log.warning("discriminator weights not used (%s); starting it from scratch", err)

    w = cfg.weights
    if w.lpips_vgg or w.lpips_lin:
        lpips = LPIPS(w.lpips_vgg, w.lpips_lin, width=w.lpips_width)
    elif init is not None and (init / LPIPS_FILE).exists() and w.lpips_width == 1.0:
        with warnings.catch_warnings(), _quiet("hififace.losses.lpips"):
            lpips = LPIPS(width=1.0)
        lpips.load_lpips_state(load_safetensors(init / LPIPS_FILE, "LPIPS weights"), init / LPIPS_FILE)
    else:
        lpips = LPIPS(width=w.lpips_width)

    if w.bfm:
        from ..weights.bfm import load_bfm

        landmarks = load_bfm(w.bfm)  # BFM_model_front.mat or bfm_landmarks.safetensors
    elif init is not None and (init / BFM_FILE).exists():
        from ..weights.bfm import bfm_from_tensors

        landmarks = bfm_from_tensors(load_safetensors(init / BFM_FILE, "BFM landmarks"), init / BFM_FILE)
    else:
        log.warning("no BFM (weights.bfm or %s in model.init): random face model, the shape loss means nothing", BFM_FILE)
        landmarks = BFMLandmarks.random(cfg.trainer.seed)
    return model, disc, lpips, landmarks, (str(init.resolve()) if init is not None else None)


class _quiet:
    """Silence one logger for a moment (the random-LPIPS warning before real weights are loaded)."""

    def __init__(self, name: str):
        self.logger = logging.getLogger(name)

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def save_frozen(run_dir: Path, model: HifiFace, disc, lpips, landmarks) -> str:
    """Write the frozen nets of a run without ``model.init`` once, so checkpoints can be converted later."""
    from ..weights.bfm import bfm_to_tensors

    folder = run_dir / FROZEN_DIR
    model.save_pretrained(folder, extra_files={LPIPS_FILE: lpips.state_dict(), BFM_FILE: bfm_to_tensors(landmarks)})
    return str(folder.resolve())


def build_module(cfg: TrainConfig, save_frozen_to: Path | None = None):
    from .module import HifiFaceModule

    model, disc, lpips, landmarks, frozen_from = build_networks(cfg)
    if frozen_from is None and save_frozen_to is not None:
        frozen_from = save_frozen(save_frozen_to, model, disc, lpips, landmarks)
    return HifiFaceModule(cfg, model, disc, lpips, landmarks, frozen_from=frozen_from)


def _strategy(cfg: TrainConfig):
    from lightning.pytorch.strategies import DDPStrategy

    t = cfg.trainer
    name = t.strategy
    devices = t.devices
    many = t.num_nodes > 1 or (isinstance(devices, int) and devices > 1) or (isinstance(devices, (list, tuple)) and len(devices) > 1)
    if name in ("ddp", "ddp_spawn") or (name == "auto" and many):
        # G and D take separate backward passes: each one leaves the other network's parameters unused.
        return DDPStrategy(start_method="spawn" if name == "ddp_spawn" else "popen", find_unused_parameters=True)
    return name


def build_trainer(cfg: TrainConfig, callbacks_extra=(), enable_checkpointing: bool = True):
    import lightning as L
    from lightning.pytorch.callbacks import TQDMProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from .callbacks import ExportCallback, IterationCheckpoint

    t, c, lg = cfg.trainer, cfg.checkpoint, cfg.logging
    run_dir = Path(c.dir)
    loggers = []
    name = lg.name or ""
    if lg.tensorboard:
        loggers.append(TensorBoardLogger(str(run_dir), name="tb", version=name or None, default_hp_metric=False))
    if lg.csv:
        loggers.append(CSVLogger(str(run_dir), name="csv", version=name or None))
    if lg.wandb:
        try:
            import wandb  # noqa: F401
        except ImportError:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("wandb", "train", "logging.wandb") from None
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=lg.wandb_project, name=lg.name, save_dir=str(run_dir)))

    callbacks = list(callbacks_extra)
    if enable_checkpointing:
        # Lightning counts the G and D optimizer steps separately: 2 per iteration.
        callbacks.append(IterationCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="iter{iteration:08d}",
                                         auto_insert_metric_name=False, every_n_train_steps=2 * c.every or None,
                                         save_last=True, save_top_k=-1 if c.every else 0))
        if c.top_k and t.val_every:
            callbacks.append(IterationCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="best-iter{iteration:08d}",
                                             monitor="val/g_total", mode="min", save_top_k=c.top_k,
                                             auto_insert_metric_name=False))
        callbacks.append(ExportCallback(run_dir / "export", c.export_every))
    if t.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=10))
    val_every = t.val_every * cfg.optim.accumulate
    return L.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=_strategy(cfg),
        precision=t.precision,
        max_steps=2 * t.max_steps,
        max_epochs=-1,
        val_check_interval=val_every if val_every else None,
        check_val_every_n_epoch=None if val_every else 1,
        limit_val_batches=t.val_batches if val_every else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, t.log_every),
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=enable_checkpointing,
        enable_progress_bar=t.progress_bar,
        enable_model_summary=False,
        deterministic=t.deterministic,
        use_distributed_sampler=False,  # our PairSampler shards by rank itself (and resumes mid-epoch)
        default_root_dir=str(run_dir),
    )


def fit(cfg: TrainConfig, resume: str | None = None, callbacks_extra=()):
    """Train as configured; returns the trainer and the module."""
    import lightning as L

    from .data import FaceDataModule

    warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")  # we resume the sampler ourselves
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the frozen nets, on purpose
    warnings.filterwarnings("ignore", message=".*no pre-optimization state was saved.*")
    L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
    run_dir = Path(cfg.checkpoint.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if resume is not None and not Path(resume).is_file():
        raise ConfigError(f"--resume {resume}: checkpoint not found (look in {run_dir / 'checkpoints'})")
    dm = FaceDataModule(cfg)
    dm.setup("fit")  # index and 'no usable pair' errors before any network is built
    module = build_module(cfg, save_frozen_to=run_dir)
    if cfg.model.compile:
        module.model.generator = torch.compile(module.model.generator)
    _write_config(cfg, run_dir)
    trainer = build_trainer(cfg, callbacks_extra)
    trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True) if _fit_takes_weights_only() else \
        trainer.fit(module, datamodule=dm, ckpt_path=resume)
    return trainer, module


def _fit_takes_weights_only() -> bool:
    import inspect

    import lightning as L

    return "weights_only" in inspect.signature(L.Trainer.fit).parameters


def _write_config(cfg: TrainConfig, run_dir: Path) -> None:
    import yaml

    from ..utils.atomic import atomic_write_text

    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
