"""Build the networks, the LightningModule, the loggers and the Lightning Trainer from a :class:`TrainConfig`."""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import warnings
from pathlib import Path
from typing import Iterator

import torch

from ..converters.bfm import bfm_from_tensors, bfm_to_tensors, load_bfm
from ..errors import ConfigError, WeightsError
from ..losses.lpips import LPIPS
from ..models.discriminators import create_discriminator
from ..models.frozen.bfm import BFMLandmarks
from ..models.hififace import BFM_FILE, DISCRIMINATOR_FILE, LPIPS_FILE, HifiFace
from ..utils.atomic import atomic_write_text
from ..utils.optional import require
from ..weights.io import load_into, load_safetensors
from .config import TrainConfig
from .resume import check_fresh_run_dir, check_resume

log = logging.getLogger(__name__)

FROZEN_DIR = "frozen"


def build_networks(cfg: TrainConfig):
    """(model, discriminator, lpips, landmarks, frozen_from) as the config asks: from ``model.init`` when given."""
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
        lpips = LPIPS.from_safetensors(init / LPIPS_FILE)
    else:
        lpips = LPIPS(width=w.lpips_width)

    if w.bfm:
        landmarks = load_bfm(w.bfm)  # BFM_model_front.mat or bfm_landmarks.safetensors
    elif init is not None and (init / BFM_FILE).exists():
        landmarks = bfm_from_tensors(load_safetensors(init / BFM_FILE, "BFM landmarks"), init / BFM_FILE)
    else:
        log.warning("no BFM (weights.bfm or %s in model.init): random face model, the shape loss means nothing", BFM_FILE)
        landmarks = BFMLandmarks.random(cfg.trainer.seed)
    return model, disc, lpips, landmarks, (str(init.resolve()) if init is not None else None)


def save_frozen(run_dir: Path, model: HifiFace, disc, lpips, landmarks) -> str:
    """Write the frozen nets of a run without ``model.init`` once, so checkpoints can be converted later."""
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


def check_accelerator(cfg: TrainConfig) -> None:
    """An accelerator that is not here is one line before anything is built (Lightning raises deep inside)."""
    name = str(cfg.trainer.accelerator).lower()
    if name in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={cfg.trainer.accelerator}: no CUDA GPU is available here; "
                          "use --trainer.accelerator cpu (or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("trainer.accelerator=mps: MPS is not available here; use --trainer.accelerator cpu (or auto)")


def build_trainer(cfg: TrainConfig, callbacks_extra=(), enable_checkpointing: bool = True):
    import sys

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from lightning.pytorch.utilities.exceptions import MisconfigurationException

    from .callbacks import ExportCallback, IterationCheckpoint, StderrProgressBar

    t, c, lg = cfg.trainer, cfg.checkpoint, cfg.logging
    run_dir = Path(c.dir)
    loggers = []
    name = lg.name or ""
    if lg.tensorboard:
        loggers.append(TensorBoardLogger(str(run_dir), name="tb", version=name or None, default_hp_metric=False))
    if lg.csv:
        loggers.append(CSVLogger(str(run_dir), name="csv", version=name or None))
    if lg.wandb:
        require("wandb", "logging.wandb")
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=lg.wandb_project, name=lg.name, save_dir=str(run_dir)))

    callbacks = list(callbacks_extra)
    if enable_checkpointing:
        # Lightning counts the G and D optimizer steps separately: 2 per iteration. File names hold the iteration
        # and a folder holds one run (fit refuses to mix), so an existing name is this run's own: no '-v1' copies
        # (a resumed run whose folder was moved would otherwise write last-v1.ckpt beside last.ckpt).
        callbacks.append(IterationCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="iter{iteration:08d}",
                                         auto_insert_metric_name=False, every_n_train_steps=2 * c.every or None,
                                         save_last=True, save_top_k=-1 if c.every else 0, enable_version_counter=False))
        if c.top_k and t.val_every:
            callbacks.append(IterationCheckpoint(dirpath=str(run_dir / "checkpoints"), filename="best-iter{iteration:08d}",
                                             monitor="val/g_total", mode="min", save_top_k=c.top_k,
                                             auto_insert_metric_name=False, enable_version_counter=False))
        callbacks.append(ExportCallback(run_dir / "export", c.export_every))
    bar = t.progress_bar and sys.stderr.isatty()  # no bar drawn into a log file
    if bar:
        callbacks.append(StderrProgressBar(refresh_rate=10))
    val_every = t.val_every * cfg.optim.accumulate
    check_accelerator(cfg)
    try:
        return _trainer(L, cfg, loggers, callbacks, enable_checkpointing, bar, val_every, run_dir)
    except (MisconfigurationException, ValueError) as err:  # bad trainer.* values, found by Lightning
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"the trainer settings are not usable here: {first[:300]}; check the trainer.* values") from None


def _trainer(L, cfg: TrainConfig, loggers, callbacks, enable_checkpointing: bool, bar: bool, val_every: int, run_dir: Path):
    t = cfg.trainer
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
        enable_progress_bar=bar,
        enable_model_summary=False,
        deterministic=t.deterministic,
        use_distributed_sampler=False,  # our PairSampler shards by rank itself (and resumes mid-epoch)
        default_root_dir=str(run_dir),
    )


#: Lightning warnings that do not apply to this module (shown with -v anyway).
_EXPECTED_WARNINGS = (
    ".*dataloader is not resumable.*",  # we resume the sampler ourselves
    ".*does not have many workers.*",
    ".*module\\(s\\) in eval mode.*",  # the frozen nets, on purpose
    ".*no pre-optimization state was saved.*",
)


def fit(cfg: TrainConfig, resume: str | None = None, callbacks_extra=()):
    """Train as configured; returns the trainer and the module.

    A fresh run refuses a ``checkpoint.dir`` that already holds a run (unless ``checkpoint.overwrite``); ``resume``
    must be a checkpoint this config can continue (see :mod:`hififace.training.resume`). A run that fails before
    its first checkpoint leaves nothing behind.
    """
    import lightning as L

    from .data import FaceDataModule

    run_dir = Path(cfg.checkpoint.dir)
    check_accelerator(cfg)
    spawned = started_by_a_launcher()  # rank 0 judges and writes the run folder; the other ranks never touch it
    if resume is not None:
        check_resume(cfg, resume)
        old_run: list[str] = []
    elif spawned:
        old_run = []
    else:
        old_run = check_fresh_run_dir(run_dir, cfg.checkpoint.overwrite)
    with warnings.catch_warnings(), lightning_chatter():
        for pattern in _EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        L.seed_everything(cfg.trainer.seed, workers=True, verbose=False)
        dm = FaceDataModule(cfg)
        with removed_on_failure(run_dir):
            dm.setup("fit")  # index and 'no usable pair' errors before any network is built
            if old_run:
                log.warning("checkpoint.overwrite: deleting the previous run in %s (%s)", run_dir, ", ".join(old_run))
                delete_run(run_dir, old_run)
            trainer = build_trainer(cfg, callbacks_extra)
            module = build_module(cfg, save_frozen_to=None if spawned else run_dir)
            if cfg.model.compile:
                module.model.generator = torch.compile(module.model.generator)
            if not spawned:
                _write_config(cfg, run_dir)
            with interrupts_passed_on():
                trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True) if _fit_takes_weights_only() \
                    else trainer.fit(module, datamodule=dm, ckpt_path=resume)
    return trainer, module


@contextlib.contextmanager
def interrupts_passed_on() -> Iterator[None]:
    """Ctrl-C and SIGTERM (:class:`~hififace.utils.signals.Terminated`) come out of ``trainer.fit`` as themselves.

    Lightning catches a :class:`KeyboardInterrupt`, shuts down (its checkpoints are written atomically: the last
    complete one stays), leaves SIGINT ignored and calls ``sys.exit(1)``; the caller would see exit 1 for a Ctrl-C
    and for a SIGTERM alike. The interrupt is raised again instead, so the command says "interrupted" (130) or
    "terminated (SIGTERM)" (143) in one line as every other command does, and SIGINT's handler is put back.
    """
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    except SystemExit as stop:
        if isinstance(stop.__context__, KeyboardInterrupt):
            raise stop.__context__ from None
        raise
    finally:
        if main and sigint is not None:
            signal.signal(signal.SIGINT, sigint)


def started_by_a_launcher() -> bool:
    """True in a process of a distributed run other than the first one: the ranks Lightning's script launcher starts
    by running the same command again (after rank 0 has written config.yaml and frozen/), torchrun's and srun's
    other ranks, and another node's main process. The environment variables are the ones Lightning reads
    (``lightning.fabric.utilities.rank_zero``, LOCAL_RANK before SLURM_PROCID), plus NODE_RANK."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").strip():
            return os.environ[key].strip() != "0" or os.environ.get("NODE_RANK", "0").strip() not in ("", "0")
    return os.environ.get("NODE_RANK", "0").strip() not in ("", "0")


def delete_run(run_dir: Path, entries: list[str]) -> None:
    import shutil

    for name in entries:
        path = run_dir / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


@contextlib.contextmanager
def removed_on_failure(run_dir: Path) -> Iterator[None]:
    """If the block fails before a checkpoint exists, remove what it created under (and up to) ``run_dir``."""
    import shutil

    run_dir = Path(run_dir)
    top = run_dir  # the highest folder this run creates
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    existed = run_dir.exists()
    before = set(os.listdir(run_dir)) if existed else set()
    try:
        yield
    except BaseException:
        if not any((run_dir / "checkpoints").glob("*.ckpt")):
            if not existed:
                shutil.rmtree(run_dir, ignore_errors=True)
                for parent in run_dir.parents:  # the folders created above it, while empty
                    if parent == top.parent:
                        break
                    with contextlib.suppress(OSError):
                        parent.rmdir()
            elif run_dir.is_dir():
                for name in set(os.listdir(run_dir)) - before:
                    path = run_dir / name
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        raise


class _DropChatter(logging.Filter):
    """Lightning's advertisement, its 'fit stopped: max_steps=N' line (N counts optimizer steps, twice our
    iterations; the CLI says where the run finished in iterations) and its 'Detected KeyboardInterrupt' line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return ("litlogger" not in msg and "`Trainer.fit` stopped" not in msg
                and "Detected KeyboardInterrupt" not in msg)  # the command says it: interrupted / terminated


@contextlib.contextmanager
def lightning_chatter() -> Iterator[None]:
    """While training: the lines above are dropped, and when the application has set up logging (handlers on the
    root logger, as the CLI does) Lightning's own console handler is detached so each line is printed once."""
    import lightning  # noqa: F401  (adds its console handler at import)

    drop = _DropChatter()
    sources = [logging.getLogger(n) for n in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")]
    for lg in sources:
        lg.addFilter(drop)
    saved = []
    if logging.getLogger().handlers:
        for lg in (logging.getLogger("lightning"), logging.getLogger("lightning.pytorch"), logging.getLogger("lightning.fabric")):
            own = [h for h in lg.handlers if type(h) is logging.StreamHandler]
            saved.append((lg, own, lg.propagate))
            for h in own:
                lg.removeHandler(h)
            lg.propagate = True
    try:
        yield
    finally:
        for lg in sources:
            lg.removeFilter(drop)
        for lg, own, propagate in saved:
            for h in own:
                lg.addHandler(h)
            lg.propagate = propagate


def _fit_takes_weights_only() -> bool:
    import inspect

    import lightning as L

    return "weights_only" in inspect.signature(L.Trainer.fit).parameters


def _write_config(cfg: TrainConfig, run_dir: Path) -> None:
    import yaml


    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
