"""Model configuration: a dataclass saved as ``config.json`` beside the weights.

The config is the model's constructor arguments and nothing else (diffusers style). Validation
happens once, here, with one clear error naming the field and the allowed values.
"""
from __future__ import annotations

import dataclasses
import json
import numbers
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .utils.atomic import atomic_write_text
from .utils.files import open_regular
from .utils.text import printable, printable_list

VARIANTS = ("reference", "paper", "xuehy")
#: Variants that exist only as converted weights (no discriminator or losses of their own here): ``hififace train``
#: refuses them.
INFERENCE_ONLY_VARIANTS = ("xuehy",)
IMAGE_SIZES = (256, 512)
ARCFACE_ARCHS = ("r18", "r34", "r50", "r100")
#: Face alignment templates (see :mod:`hififace.face.align`): how the training crops were cut from photos.
ALIGN_TEMPLATES = ("arcface", "ffhq", "frontal")

#: 3DMM coefficient layout of Deep3DFaceRecon (docs/formats.md#reconnet-and-the-3dmm): id, exp, tex, angles, gamma,
#: trans.
COEFF_DIMS = {"id": 80, "exp": 64, "tex": 80, "angle": 3, "gamma": 27, "trans": 3}
N_COEFFS = sum(COEFF_DIMS.values())  # 257
N_ID_COEFFS = COEFF_DIMS["id"]  # 80
ARCFACE_DIM = 512
#: Longest config.json read (ours are < 1 kB; notes included).
MAX_CONFIG_BYTES = 2**20


@dataclass
class HifiFaceConfig:
    """Everything needed to build a :class:`~hififace.HifiFace`.

    Attributes:
        image_size: side of the square face crop the model works on (256 or 512).
        variant: ``"reference"`` reproduces mindslab-ai/hififace layer for layer (its checkpoint loads and
            gives the same outputs); ``"paper"`` follows the paper authors' clarifications (sigmoid masks,
            conv I_low head, two AdaIN blocks after the blend, StarGAN-v2 discriminator); ``"xuehy"`` is
            xuehy/HiFiFace-pytorch's generator (256 only, its released ``generator_<iter>.pth`` files convert to it;
            its ArcFace input is resized bicubic, see :attr:`arcface_resize`). Inference only.
        arcface_arch: depth of the insightface IResNet identity network.
        recon_input_size: side the image is resized to before ReconNet. ``None`` feeds the crop as it is,
            which is what the reference does (ReconNet was trained at 224; adaptive pooling lets it run).
        arcface_input_size: side of the ArcFace input (112 for every insightface backbone).
        base_channels: width of the encoder stem; the rest of the network follows the reference widths.
        channel_multiplier: scales every generator width (1.0 = reference); tiny configs for tests use < 1.
        frozen_width: scales the widths of the frozen ArcFace and ReconNet. Every real weight file needs 1.0;
            smaller values exist only for tests and smoke runs (their files do not load into full-width nets).
        align: the alignment template the training crops were made with (``hififace preprocess --align``); photos
            and videos are aligned the same way before the swap. ``arcface`` is the reference's (SimSwap's
            VGGFace2 crops). Not a constructor argument of any network: it describes the data the weights expect.
    """

    image_size: int = 256
    variant: str = "reference"
    arcface_arch: str = "r100"
    recon_input_size: int | None = None
    arcface_input_size: int = 112
    channel_multiplier: float = 1.0
    frozen_width: float = 1.0
    align: str = "arcface"
    # Free-form notes kept with the weights (where they came from); not used to build the model.
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ derived
    @property
    def id_dim(self) -> int:
        """Length of the shape-aware identity vector v_sid (257 3DMM coefficients + 512 ArcFace)."""
        return N_COEFFS + ARCFACE_DIM

    @property
    def arcface_resize(self) -> str:
        """Interpolation of the crop -> 112 resize before ArcFace (no antialias): ``bicubic`` for xuehy (its
        ``ShapeAwareIdentityExtractor``), ``bilinear`` for the reference and paper variants."""
        return "bicubic" if self.variant == "xuehy" else "bilinear"

    @property
    def low_size(self) -> int:
        """Side of I_low and m_low (the SFF works at 64 px for both image sizes)."""
        return 64

    def width(self, channels: int) -> int:
        """A reference channel count scaled by ``channel_multiplier`` (at least 4)."""
        if self.channel_multiplier == 1.0:
            return channels
        return max(4, int(round(channels * self.channel_multiplier)))

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        check_field_types(self)
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant {_quote(self.variant)}: use one of {', '.join(VARIANTS)}")
        if self.image_size not in IMAGE_SIZES:
            raise ConfigError(f"image_size {self.image_size!r} is not supported: use 256 or 512")
        if self.variant == "xuehy" and self.image_size != 256:
            raise ConfigError(f"image_size {self.image_size!r} with variant xuehy: xuehy/HiFiFace-pytorch's generator "
                              "exists at 256 only")
        if self.arcface_arch not in ARCFACE_ARCHS:
            raise ConfigError(f"unknown arcface_arch {_quote(self.arcface_arch)}: use one of {', '.join(ARCFACE_ARCHS)}")
        if self.recon_input_size is not None and not (64 <= int(self.recon_input_size) <= 1024):
            raise ConfigError(f"recon_input_size {self.recon_input_size!r} must be null or between 64 and 1024")
        if not (0.0 < float(self.channel_multiplier) <= 1.0):
            raise ConfigError(f"channel_multiplier {self.channel_multiplier!r} must be in (0, 1]")
        if not (0.0 < float(self.frozen_width) <= 1.0):
            raise ConfigError(f"frozen_width {self.frozen_width!r} must be in (0, 1]")
        if self.align not in ALIGN_TEMPLATES:
            raise ConfigError(f"unknown align template {_quote(self.align)}: use one of {', '.join(ALIGN_TEMPLATES)}")
        if int(self.arcface_input_size) != 112:
            raise ConfigError("arcface_input_size must be 112 (the insightface fc layer hard-codes 7x7 features)")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "HifiFaceConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("_class", cls.__name__) != cls.__name__:  # e.g. a face-restorer folder (GFPGANConfig)
            kind = str(data.get("_class"))[:40]
            raise ConfigError(f"{source}: describes a {kind}, not a HifiFace model (a face-restorer folder is not a "
                              "swap model); give a HifiFace model folder")
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if not k.startswith("_")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {printable_list(unknown, 3)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        except TypeError as err:
            raise ConfigError(f"{source}: {err}") from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps({"_class": "HifiFaceConfig", **self.to_dict()}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "HifiFaceConfig":
        path = Path(path)
        try:
            with open_regular(path, "config.json", ConfigError) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 2**20} MiB, not a hififace config.json; "
                                  "re-create it with 'hififace convert'")
            data = json.loads(raw.decode("utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found (a model folder holds config.json beside its weights)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ConfigError(f"{path}: not a readable JSON config ({printable(err, 120)}); re-create it with "
                              "'hififace convert'") from None
        return cls.from_dict(data, source=str(path))


# ---------------------------------------------------------------------------------------------- field types
def _matches(value: Any, hint: Any) -> bool:
    """``value`` is of annotation ``hint`` (ints are not bools, floats accept ints, JSON-shaped containers)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if origin is dict:
        return isinstance(value, dict) and all(_matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items())
    if origin in (list, tuple):
        return isinstance(value, origin) and all(_matches(v, args[0]) for v in value)
    return isinstance(value, origin or hint)


_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null",
          dict: "a JSON object", list: "a list"}


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    return _NAMES.get(typing.get_origin(hint) or hint, getattr(hint, "__name__", str(hint)))


def _got(value: Any) -> str:
    kind = next((name for t, name in (
        (bool, "a boolean"), (numbers.Integral, "an integer"), (numbers.Real, "a number"), (str, "a string"),
        (dict, "an object"), (list, "a list")) if isinstance(value, t)), type(value).__name__)
    return "null" if value is None else f"{kind} {_quote(value)}"


def _quote(value: Any, limit: int = 40) -> str:
    """A value from a config file, as Python would write it, made safe for one line."""
    return printable(repr(value), limit)


def unit_interval(value: Any, what: str, hint: str = "use a number from 0 to 1") -> float:
    """``value`` as a float from 0 to 1 (a strength, a blend, a fidelity weight), or one :class:`ConfigError` line
    ``"<what> <value>: <hint>"``; NaN and what is not a number are refused too."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 <= v <= 1.0:  # NaN fails too
        shown = f"{v:g}" if v == v else printable(str(value), 40)  # a number as the user wrote it, else the text
        raise ConfigError(f"{what} {shown}: {hint}")
    return v


def check_field_types(config: Any) -> None:
    """Refuse a dataclass config whose fields do not have their annotated types (one line naming the field, the
    expected type and what it got: ``"0.5"`` for a number, ``"64"`` for an integer, ``112.7`` for an integer)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(f"{f.name} must be {_describe(hints[f.name])}, got {_got(value)}")
