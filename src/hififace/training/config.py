"""Training configuration: YAML file + ``--section.key value`` overrides -> validated dataclasses.

Every bad value stops the run before anything is built, with one line naming the key and what is allowed.
Numbers written as ``1e-4`` (a string for YAML 1.1) and integer betas are accepted as floats.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import INFERENCE_ONLY_VARIANTS, HifiFaceConfig
from ..errors import ConfigError
from ..losses.config import LossConfig
from ..utils.files import open_regular
from ..utils.text import printable, printable_list
from ..weights.resolve import find_model_dir

#: Configs shipped inside the package (``--config hififace_256_reference`` names one).
SHIPPED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true")
OPTIMIZERS = ("adamw", "adam")
SCHEDULERS = ("none", "cosine", "step")


@dataclass
class ModelSection:
    """The model (fields of :class:`~hififace.HifiFaceConfig`) and how it starts."""

    image_size: int = 256
    variant: str = "reference"
    arcface_arch: str = "r100"
    recon_input_size: int | None = None
    channel_multiplier: float = 1.0
    frozen_width: float = 1.0
    #: alignment template of the training crops (``hififace preprocess --align``), recorded in the exported config
    align: str = "arcface"
    #: model folder to start from (``hififace convert`` output): generator, frozen nets, and when present the
    #: discriminator, LPIPS and BFM files. Without it every network is random (smoke runs only).
    init: str | None = None
    #: decay of the generator's exponential moving average (0 = off); the EMA is used for validation and export.
    ema_decay: float = 0.0
    compile: bool = False
    channels_last: bool = False

    def model_config(self) -> HifiFaceConfig:
        return HifiFaceConfig(image_size=self.image_size, variant=self.variant, arcface_arch=self.arcface_arch,
                              recon_input_size=self.recon_input_size, channel_multiplier=self.channel_multiplier,
                              frozen_width=self.frozen_width, align=self.align)


@dataclass
class WeightsSection:
    """Files for the frozen training-only networks when ``model.init`` does not hold them."""

    lpips_vgg: str | None = None  # torchvision vgg16-397923af.pth
    lpips_lin: str | None = None  # lpips weights/v0.1/vgg.pth
    bfm: str | None = None  # Deep3DFaceRecon BFM_model_front.mat
    lpips_width: float = 1.0  # < 1 only for tiny test configs (random VGG)


@dataclass
class DataSection:
    root: str | None = None  # a 'hififace preprocess' output folder (images/ and parsing/ inside)
    images: str | None = None
    parsing: str | None = None
    same_rate: float = 0.5
    pair_mode: str = "identity"
    val_identities: float = 0.0  # count (>= 1) or fraction (< 1) of identities held out for validation
    batch_size: int = 16
    val_batch_size: int = 4
    num_workers: int = 4
    pin_memory: bool = True
    index_cache: str | None = None  # default: <checkpoint.dir>/data_index.json
    seed: int = 0

    def folders(self) -> tuple[Path, Path]:
        images = self.images or (str(Path(self.root) / "images") if self.root else None)
        parsing = self.parsing or (str(Path(self.root) / "parsing") if self.root else None)
        if bool(images) != bool(parsing):  # one of the pair given: name the missing one
            given, missing = ("images", "parsing") if images else ("parsing", "images")
            raise ConfigError(f"--data.{given} is given but not --data.{missing}: training needs both folders (the "
                              f"{missing} one is written by 'hififace preprocess' beside the other), or --data.root")
        if not images:
            raise ConfigError("no training data: give --data.root OUT_DIR (from 'hififace preprocess') or "
                              "--data.images DIR --data.parsing DIR")
        return Path(images), Path(parsing)


@dataclass
class OptimSection:
    optimizer: str = "adamw"
    g_lr: float = 1e-4
    d_lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.0, 0.999])
    weight_decay: float = 0.01  # torch AdamW's default, which the reference used
    scheduler: str = "none"
    step_size: int = 100000  # 'step' scheduler: iterations between decays
    gamma: float = 0.5
    min_lr_ratio: float = 0.0  # 'cosine' scheduler: final lr / initial lr
    grad_clip: float = 0.0  # max gradient norm of each network (0 = off)
    accumulate: int = 1  # batches per optimizer step


@dataclass
class TrainerSection:
    max_steps: int = 300000  # iterations (one G step + one D step each)
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # 'auto' = ddp when several devices; 'ddp_spawn' for CPU tests
    precision: str = "32-true"
    val_every: int = 10000  # iterations between validations (0 = never)
    val_batches: int = 8
    log_every: int = 50
    image_every: int = 1000  # iterations between image grids (0 = never)
    seed: int = 0
    deterministic: bool = False
    progress_bar: bool = True
    #: CPU runs on Linux/glibc: return freed heap pages to the OS once per step, just before the memory peak
    #: (the cycle pass's backward). Lowers the peak RSS by ~0.05 GB at 256 (heap holes), costs ~0.6 s per step
    #: in re-faulted pages on a 2-core VM.
    release_cpu_memory: bool = False


@dataclass
class CheckpointSection:
    dir: str = "runs/hififace"
    every: int = 5000  # iterations between checkpoints (last.ckpt always refreshed)
    top_k: int = 3  # best by validation g_total (needs validation)
    export_every: int = 0  # iterations between inference-folder exports (0 = at the end only)
    #: a fresh run into a folder that already holds a run is refused unless this is true; then the old run's
    #: files (checkpoints/, export/, frozen/, tb/, csv/, config.yaml, data_index.json) are deleted first.
    overwrite: bool = False


@dataclass
class LoggingSection:
    tensorboard: bool = True
    csv: bool = True
    wandb: bool = False
    wandb_project: str = "hififace"
    name: str | None = None


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    weights: WeightsSection = field(default_factory=WeightsSection)
    data: DataSection = field(default_factory=DataSection)
    losses: dict[str, Any] = field(default_factory=dict)  # LossConfig fields; defaults depend on the variant
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    logging: LoggingSection = field(default_factory=LoggingSection)

    def loss_config(self) -> LossConfig:
        return LossConfig.for_variant(self.model.variant, **self.losses)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        self.model.model_config()  # HifiFaceConfig checks its own fields
        if self.model.variant in INFERENCE_ONLY_VARIANTS:
            raise ConfigError(f"model.variant={self.model.variant!r}: {not_trainable(self.model.variant)}")
        init_variant = _folder_variant(self.model.init)
        if init_variant in INFERENCE_ONLY_VARIANTS:  # said before any data is indexed or weights are read
            raise ConfigError(f"model.init {self.model.init}: {not_trainable(init_variant)}")
        known = {f.name for f in dataclasses.fields(LossConfig)}
        unknown = sorted(str(k) for k in self.losses if k not in known)
        if unknown:
            raise ConfigError(f"unknown key(s) {printable_list(['losses.' + u for u in unknown])}; known: "
                              f"{', '.join(sorted(known))}")
        self.loss_config()
        m, d, o, t, c = self.model, self.data, self.optim, self.trainer, self.checkpoint
        _check(0.0 <= m.ema_decay < 1.0, "model.ema_decay", m.ema_decay, "in [0, 1)")
        _check(0.0 <= d.same_rate <= 1.0, "data.same_rate", d.same_rate, "in [0, 1]")
        _check(d.pair_mode in ("identity", "identical"), "data.pair_mode", d.pair_mode, "identity or identical")
        _check(d.batch_size >= 1, "data.batch_size", d.batch_size, ">= 1")
        _check(d.val_batch_size >= 1, "data.val_batch_size", d.val_batch_size, ">= 1")
        _check(d.num_workers >= 0, "data.num_workers", d.num_workers, ">= 0")
        _check(d.val_identities >= 0, "data.val_identities", d.val_identities, ">= 0")
        _check(o.optimizer in OPTIMIZERS, "optim.optimizer", o.optimizer, " or ".join(OPTIMIZERS))
        _check(o.scheduler in SCHEDULERS, "optim.scheduler", o.scheduler, ", ".join(SCHEDULERS))
        _check(o.g_lr > 0 and o.d_lr > 0, "optim.g_lr/d_lr", (o.g_lr, o.d_lr), "> 0")
        _check(len(o.betas) == 2 and all(0.0 <= b < 1.0 for b in o.betas), "optim.betas", o.betas, "two numbers in [0, 1)")
        _check(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, ">= 0")
        _check(o.grad_clip >= 0, "optim.grad_clip", o.grad_clip, ">= 0")
        _check(o.accumulate >= 1, "optim.accumulate", o.accumulate, ">= 1")
        _check(o.step_size >= 1, "optim.step_size", o.step_size, ">= 1")
        _check(t.max_steps >= 1, "trainer.max_steps", t.max_steps, ">= 1")
        _check(t.precision in PRECISIONS, "trainer.precision", t.precision, ", ".join(PRECISIONS))
        _check(t.num_nodes >= 1, "trainer.num_nodes", t.num_nodes, ">= 1")
        for name in ("val_every", "log_every", "image_every", "val_batches"):
            _check(getattr(t, name) >= 0, f"trainer.{name}", getattr(t, name), ">= 0")
        _check(c.every >= 0 and c.export_every >= 0, "checkpoint.every/export_every", (c.every, c.export_every), ">= 0")
        _check(c.top_k >= -1, "checkpoint.top_k", c.top_k, ">= -1")
        _check(0 < self.weights.lpips_width <= 1, "weights.lpips_width", self.weights.lpips_width, "in (0, 1]")
        return self


def _folder_variant(init: str | None) -> str | None:
    """The ``variant`` in a model folder's config.json, or None (no folder, or unreadable: later checks say why)."""
    import json

    folder = find_model_dir(init) if init else None
    if folder is None:
        return None
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data.get("variant") if isinstance(data, dict) else None


def not_trainable(variant: str) -> str:
    """Why ``hififace train`` refuses an inference-only variant (the end of a one-line error)."""
    return (f"the {variant} variant is for inference only: hififace train has neither its discriminator nor its losses "
            "(docs/xuehy.md says how they differ); train or fine-tune a reference or paper model instead")


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={_got(value)} is invalid: must be {allowed}")


# ---------------------------------------------------------------------- building from dicts
#: Largest training config file read (the shipped ones are under 2 KB).
MAX_CONFIG_BYTES = 1 << 20


def _got(value: Any) -> str:
    """A value found in a config, for a one-line message: its repr, escaped and cut short."""
    return printable(repr(value), 60)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and type(None) in args and len(args) == 2) or str(origin) == "<class 'types.UnionType'>":
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {_got(value)}")
        return [_coerce(v, args[0] if args else Any, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {_got(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key} must be true or false, got {_got(value)}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {_got(value)}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be an integer, got {_got(value)}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, got {_got(value)}")
        try:
            return float(value)  # "1e-4" from YAML 1.1 and integer betas both become floats
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {_got(value)}") from None
    if tp is str:
        if value is None or isinstance(value, (bool, dict, list)):  # null would become 'None', yes 'True'
            raise ConfigError(f"{key} must be a string, got {_got(value)}")
        return str(value)
    return value


def _build(cls, data: dict[str, Any], prefix: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping (section), got {_got(data)}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in known)  # YAML keys may be numbers, dates, ...
    if unknown:
        raise ConfigError(f"unknown key(s) {printable_list([prefix + u for u in unknown])}; known: "
                          f"{', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, tp, prefix + name)
    if cls is TrainConfig and "losses" in kwargs:
        kwargs["losses"] = {k: v for k, v in kwargs["losses"].items()}
    return cls(**kwargs)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--{key}: {p} is not a section")
    node[parts[-1]] = value


def _parse_override(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _fix_loss_types(losses: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(LossConfig)
    out = {}
    for k, v in losses.items():
        out[k] = _coerce(v, hints[k], f"losses.{k}") if isinstance(k, str) and k in hints else v
    return out


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (``hififace_256_reference``, ...)."""
    return sorted(p.stem for p in SHIPPED_CONFIGS.glob("*.yaml"))


def config_path(name: str | Path) -> Path:
    """A config file: ``name`` itself when it is a file, else the shipped config of that name (``.yaml`` optional)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.parent == Path(".") and path.suffix in ("", ".yaml"):
        shipped = SHIPPED_CONFIGS / f"{path.stem}.yaml"
        if shipped.is_file():
            return shipped
    raise ConfigError(f"{name}: config file not found; give a YAML file or a shipped config "
                      f"({', '.join(shipped_configs())})")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config (a file, or the name of a shipped one) and apply ``{"data.images": "DIR", ...}``
    overrides (strings are YAML-parsed). ``base`` (a saved :meth:`TrainConfig.to_dict`) stands in for the file."""
    import copy

    import yaml

    data: dict[str, Any] = copy.deepcopy(base) if base is not None else {}
    if path is not None:
        path = config_path(path)
        try:
            with open_regular(path, "training config", ConfigError) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: over {MAX_CONFIG_BYTES // 2**20} MiB; not a training config (a few KB)")
            data = yaml.safe_load(raw.decode("utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{path}: not a readable YAML file ({printable(first, 160)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model, data, ...), got {type(data).__name__}")
        try:  # the file's own keys and types first, so that the line names the file
            _fix_loss_types(_build(TrainConfig, copy.deepcopy(data), "").losses)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, _parse_override(value) if isinstance(value, str) else value)
    cfg = _build(TrainConfig, data, "")
    cfg.losses = _fix_loss_types(cfg.losses)
    return cfg.validate()


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved with :meth:`TrainConfig.to_dict` (in checkpoints)."""
    cfg = _build(TrainConfig, data, "")
    cfg.losses = _fix_loss_types(cfg.losses)
    return cfg.validate()


def override_keys() -> dict[str, tuple[str, Any]]:
    """Every ``section.key`` that can be given on the command line -> (type name, built-in default)."""
    keys: dict[str, tuple[str, Any]] = {}
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        tp = hints[f.name]
        section = tp if dataclasses.is_dataclass(tp) else LossConfig
        section_hints = typing.get_type_hints(section)
        for g in dataclasses.fields(section):
            default = g.default_factory() if g.default_factory is not dataclasses.MISSING else g.default
            keys[f"{f.name}.{g.name}"] = (_type_name(section_hints[g.name]), default)
    return keys


def _type_name(tp: Any) -> str:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is list:
        return "list"
    if args and len(args) < len(typing.get_args(tp)):  # Optional[X]
        return f"{_type_name(args[0])} or null"
    return getattr(tp, "__name__", "value") if tp is not Any else "value"
