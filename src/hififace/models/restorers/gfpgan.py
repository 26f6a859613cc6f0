"""GFPGAN v1.3 / v1.4 (the "clean" architecture), written from its published facts.

GFP-GAN (Wang et al., CVPR 2021) restores a face aligned to the FFHQ 512 five-point template: a U-Net encodes the
degraded face into a style code (one 512-d W vector per StyleGAN2 layer) and, on its way back up, into per-level
scale/shift maps; a StyleGAN2 decoder renders the face from the style codes while the maps modulate half of its
features at every resolution (SFT, spatial feature transform).

Facts used (TencentARC/GFPGAN 7552a77, ``gfpgan/archs/gfpganv1_clean_arch.py`` and ``stylegan2_clean_arch.py``, read
for op order, constants and shapes; no code taken), also summarised in docs/formats.md#gfpgan-restorer:

- widths: StyleGAN2's table (512 up to 32 px, then 16384 * channel_multiplier / resolution), times ``narrow``; the
  U-Net uses half of each (``narrow * 0.5``);
- U-Net: 1x1 conv + LeakyReLU(0.2); ``log2(size) - 2`` residual blocks down to 4 px; 3x3 conv + LeakyReLU; the
  flattened 4x4 map -> Linear -> the style codes; back up with one residual block per level after adding the
  encoder's feature of that level; each level's feature -> two conv-LeakyReLU-conv heads, SFT scale and shift;
- residual block: conv3x3 -> LeakyReLU -> bilinear resample (x2 or x0.5, align_corners=False) -> conv3x3 ->
  LeakyReLU, plus a 1x1 conv (no bias) of the resampled input;
- StyleGAN2 decoder: modulated 3x3 convs (per-input-channel style scale, demodulation with eps 1e-8, bilinear x2
  upsampling before the conv of each level's first layer), output times sqrt(2), plus noise times a learned
  strength, plus bias, LeakyReLU(0.2); to-RGB 1x1 modulated convs without demodulation, added to the bilinearly
  upsampled RGB of the level below; after each level's first conv, ``sft_half`` modulates the second half of the
  channels: ``x * scale + shift``;
- noise: one map per decoder layer (4, 8, 8, 16, 16, ... px), stored in the weights as buffers. Upstream inference
  draws fresh noise on every call (``randomize_noise=True``), so its outputs vary; here the stored maps are used
  by default and the outputs are deterministic.

Deliberately left out (the released models do not use them at inference; the converter lists them as dropped):
the U-Net's intermediate to-RGB heads (training losses only) and StyleGAN2's mapping network (the models run with
``input_is_latent=True``: the U-Net's style code is already in W space).

The modulated conv scales the *activations* by the style and the output by the demodulation factor instead of
building a weight per sample (StyleGAN2's "non-fused" form): the same function, one shared weight for a whole batch.
Parameter and buffer names follow the upstream state dict, so the converter maps keys one to one.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, WeightsError
from ...utils.atomic import atomic_write_text
from ...weights.io import check_state, load_safetensors, save_safetensors

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "gfpgan.safetensors"
CONFIG_CLASS = "GFPGANConfig"
FORMAT = "hififace-restorer/1"
RANDOM_NOTE_KEY = "weights"
RANDOM_NOTE = "random (GFPGAN.random)"
_SQRT2 = math.sqrt(2.0)
_DEMOD_EPS = 1e-8


@dataclass
class GFPGANConfig:
    """Everything needed to build a :class:`GFPGAN` (saved as ``config.json`` beside the weights).

    The defaults are the released v1.3 / v1.4 models (GFPGANer(arch='clean', channel_multiplier=2)); smaller values
    of ``narrow`` and ``out_size`` exist for tests.

    Attributes:
        out_size: side of the (square) input and output crop.
        num_style_feat: length of each W style vector.
        channel_multiplier: StyleGAN2 width multiplier above 32 px.
        narrow: scales every width (the U-Net uses half of the decoder's width at each resolution).
        sft_half: SFT modulates half of the decoder's channels (True) or all of them.
        different_w: one style vector per decoder layer (True) or one shared by all layers.
        notes: free-form notes kept with the weights (where they came from); not used to build the model.
    """

    out_size: int = 512
    num_style_feat: int = 512
    channel_multiplier: int = 2
    narrow: float = 1.0
    sft_half: bool = True
    different_w: bool = True
    notes: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def log_size(self) -> int:
        return int(math.log2(self.out_size))

    @property
    def num_latent(self) -> int:
        """Style vectors the decoder reads: two per level above 4 px, plus two at 4 px."""
        return 2 * self.log_size - 2

    @property
    def num_noises(self) -> int:
        """Noise maps (one per decoder conv layer)."""
        return 2 * (self.log_size - 2) + 1

    @property
    def levels(self) -> list[int]:
        """Resolutions of the decoder levels above 4 px: 8, 16, ..., out_size."""
        return [2**i for i in range(3, self.log_size + 1)]

    def decoder_channels(self, res: int) -> int:
        base = 512 if res <= 32 else 16384 * self.channel_multiplier / res
        return int(base * self.narrow)

    def unet_channels(self, res: int) -> int:
        base = 512 if res <= 32 else 16384 * self.channel_multiplier / res
        return int(base * self.narrow * 0.5)

    def validate(self) -> None:
        size = self.out_size
        if not isinstance(size, int) or size < 16 or size > 1024 or size & (size - 1):
            raise ConfigError(f"out_size {size!r} must be a power of two between 16 and 1024")
        if int(self.num_style_feat) < 1:
            raise ConfigError(f"num_style_feat {self.num_style_feat!r} must be positive")
        if not (float(self.channel_multiplier) > 0 and 0 < float(self.narrow) <= 1):
            raise ConfigError(f"channel_multiplier {self.channel_multiplier!r} must be > 0 and narrow {self.narrow!r} in (0, 1]")
        for res in [4, *self.levels]:
            dec, unet = self.decoder_channels(res), self.unet_channels(res)
            if unet < 1 or dec != 2 * unet:
                raise ConfigError(f"narrow={self.narrow} and channel_multiplier={self.channel_multiplier} give "
                                  f"{dec} decoder / {unet} U-Net channels at {res} px; the decoder needs twice the "
                                  "U-Net's width at every resolution")

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> "GFPGANConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if not str(k).startswith("_")}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)[:200]}; known: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except (ConfigError, TypeError, ValueError) as err:
            raise ConfigError(f"{source}: {err}") from None

    def save(self, path: str | Path) -> None:
        body = {"_class": CONFIG_CLASS, "_format": FORMAT, **self.to_dict()}
        atomic_write_text(Path(path), json.dumps(body, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "GFPGANConfig":
        path = Path(path)
        data = read_config_json(path)
        if data.get("_class") != CONFIG_CLASS:
            raise ConfigError(f"{path}: not a GFPGAN restorer config (_class is {str(data.get('_class'))[:40]!r}); "
                              "make one with 'hififace convert --gfpgan GFPGANv1.4.pth -o DIR'")
        return cls.from_dict(data, source=str(path))


def read_config_json(path: Path) -> dict[str, Any]:
    """A folder's config.json as a dict (one-line errors for a missing or unreadable file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (a model folder holds config.json beside its weights)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: not a readable JSON config ({str(err)[:120]}); re-create the folder with "
                          "'hififace convert'") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def is_restorer_folder(path: str | Path) -> bool:
    """True for a folder whose config.json describes a GFPGAN restorer (no error for anything else)."""
    cfg = Path(path) / CONFIG_FILE
    try:
        return cfg.is_file() and json.loads(cfg.read_text(encoding="utf-8")).get("_class") == CONFIG_CLASS
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return False


# ---------------------------------------------------------------------------------------------------- layers
def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2, inplace=True)


def _resample(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class ResBlock(nn.Module):
    """U-Net residual block that halves (``factor`` 0.5) or doubles (2) the resolution."""

    def __init__(self, cin: int, cout: int, factor: float):
        super().__init__()
        self.factor = factor
        self.conv1 = nn.Conv2d(cin, cin, 3, 1, 1)
        self.conv2 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _lrelu(self.conv2(_resample(_lrelu(self.conv1(x)), self.factor)))
        return out + self.skip(_resample(x, self.factor))


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution; ``weight`` is stored as 1 x out x in x k x k (the upstream layout)."""

    def __init__(self, cin: int, cout: int, kernel: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, gain: float = 1.0):
        super().__init__()
        self.demodulate, self.upsample, self.gain, self.padding = demodulate, upsample, gain, kernel // 2
        self.modulation = nn.Linear(style_dim, cin)
        self.weight = nn.Parameter(torch.randn(1, cout, cin, kernel, kernel) / math.sqrt(cin * kernel * kernel))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.modulation(w)  # b x in
        weight = self.weight[0]
        x = x * style[:, :, None, None]  # before the upsampling: a per-channel scale commutes with it, on 4x fewer pixels
        if self.upsample:
            x = _resample(x, 2.0)
        out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:  # 1 / |weight * style| per output channel and sample
            demod = torch.rsqrt(style.square() @ weight.square().sum((2, 3)).t() + _DEMOD_EPS)
            out = out * (demod * self.gain)[:, :, None, None]
        elif self.gain != 1.0:
            out = out * self.gain
        return out


class StyleConv(nn.Module):
    """Modulated conv (x sqrt(2)) + noise x strength (``weight``) + ``bias`` -> LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, style_dim: int, upsample: bool = False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(cin, cout, 3, style_dim, demodulate=True, upsample=upsample, gain=_SQRT2)
        self.weight = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        out = self.modulated_conv(x, w)
        if noise is None:  # fresh noise, as upstream's randomize_noise=True
            noise = torch.randn(out.shape[0], 1, *out.shape[2:], device=out.device, dtype=out.dtype)
        return _lrelu(out + (self.weight * noise + self.bias))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation) + bias, added to the upsampled RGB of the level below."""

    def __init__(self, cin: int, style_dim: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.modulated_conv(x, w) + self.bias
        if skip is not None:
            out = out + (_resample(skip, 2.0) if self.upsample else skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, channels, size, size))


class StyleGAN2Decoder(nn.Module):
    """StyleGAN2 synthesis network whose features are modulated by the U-Net's SFT maps (no mapping network)."""

    def __init__(self, config: GFPGANConfig):
        super().__init__()
        c = config
        d = c.num_style_feat
        self.sft_half = c.sft_half
        self.constant_input = ConstantInput(c.decoder_channels(4))
        self.style_conv1 = StyleConv(c.decoder_channels(4), c.decoder_channels(4), d)
        self.to_rgb1 = ToRGB(c.decoder_channels(4), d, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        cin = c.decoder_channels(4)
        for res in c.levels:
            cout = c.decoder_channels(res)
            self.style_convs.append(StyleConv(cin, cout, d, upsample=True))
            self.style_convs.append(StyleConv(cout, cout, d))
            self.to_rgbs.append(ToRGB(cout, d))
            cin = cout
        self.noises = nn.Module()
        for i in range(c.num_noises):
            res = 2 ** ((i + 5) // 2)  # 4, 8, 8, 16, 16, ...
            self.noises.register_buffer(f"noise{i}", torch.randn(1, 1, res, res))

    def stored_noise(self) -> list[torch.Tensor]:
        return [getattr(self.noises, f"noise{i}") for i in range(len(self.style_convs) + 1)]

    def forward(self, latent: torch.Tensor, conditions: list[tuple[torch.Tensor, torch.Tensor]],
                randomize_noise: bool = False) -> torch.Tensor:
        """``latent``: b x num_latent x num_style_feat; ``conditions``: (scale, shift) per level above 4 px."""
        noise: list[torch.Tensor | None] = [None] * (len(self.style_convs) + 1) if randomize_noise else self.stored_noise()
        out = self.constant_input.weight.expand(latent.shape[0], -1, -1, -1)
        out = self.style_conv1(out, latent[:, 0], noise[0])
        rgb = self.to_rgb1(out, latent[:, 1])
        for level, (scale, shift) in enumerate(conditions):
            i = 2 * level + 1
            out = self.style_convs[2 * level](out, latent[:, i], noise[i])
            if self.sft_half:
                half = out.shape[1] // 2
                out = torch.cat([out[:, :half], torch.addcmul(shift, out[:, half:], scale)], dim=1)
            else:
                out = torch.addcmul(shift, out, scale)
            out = self.style_convs[2 * level + 1](out, latent[:, i + 1], noise[i + 1])
            rgb = self.to_rgbs[level](out, latent[:, i + 2], rgb)
        return rgb


def _sft_head(channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(channels, out_channels, 3, 1, 1))


class GFPGAN(nn.Module):
    """GFPGAN v1 "clean": aligned face in [-1, 1] (b x 3 x out_size x out_size, RGB) -> restored face, same range.

    The output is not clamped (upstream clamps to [-1, 1] when converting to an image; the engines in
    :mod:`hififace.restore` do the same). ``randomize_noise=True`` draws fresh StyleGAN2 noise as upstream
    inference does; the default uses the stored noise maps, so the same input always gives the same output.
    """

    def __init__(self, config: GFPGANConfig | None = None):
        super().__init__()
        self.config = c = config or GFPGANConfig()
        size = c.out_size
        self.conv_body_first = nn.Conv2d(3, c.unet_channels(size), 1)
        self.conv_body_down = nn.ModuleList()
        cin = c.unet_channels(size)
        for res in reversed(c.levels):  # out_size -> out_size / 2, ..., 8 -> 4
            self.conv_body_down.append(ResBlock(cin, c.unet_channels(res // 2), 0.5))
            cin = c.unet_channels(res // 2)
        self.final_conv = nn.Conv2d(cin, c.unet_channels(4), 3, 1, 1)
        self.conv_body_up = nn.ModuleList()
        cin = c.unet_channels(4)
        for res in c.levels:
            self.conv_body_up.append(ResBlock(cin, c.unet_channels(res), 2.0))
            cin = c.unet_channels(res)
        n_styles = c.num_latent if c.different_w else 1
        self.final_linear = nn.Linear(c.unet_channels(4) * 16, n_styles * c.num_style_feat)
        self.stylegan_decoder = StyleGAN2Decoder(c)
        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for res in c.levels:
            ch = c.unet_channels(res)
            sft_out = ch if c.sft_half else 2 * ch
            self.condition_scale.append(_sft_head(ch, sft_out))
            self.condition_shift.append(_sft_head(ch, sft_out))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The U-Net: style codes (b x num_latent x num_style_feat) and the SFT (scale, shift) of every level."""
        c = self.config
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != c.out_size or x.shape[3] != c.out_size:
            raise ValueError(f"GFPGAN expects b x 3 x {c.out_size} x {c.out_size} crops, got {tuple(x.shape)}")
        feat = _lrelu(self.conv_body_first(x))
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.append(feat)
        feat = _lrelu(self.final_conv(feat))
        style = self.final_linear(feat.flatten(1))
        latent = (style.view(style.shape[0], c.num_latent, c.num_style_feat) if c.different_w
                  else style[:, None].expand(-1, c.num_latent, -1))
        conditions = []
        for up, scale, shift, skip in zip(self.conv_body_up, self.condition_scale, self.condition_shift, reversed(skips)):
            feat = up(feat + skip)
            conditions.append((scale(feat), shift(feat)))
        return latent, conditions

    def forward(self, x: torch.Tensor, randomize_noise: bool = False) -> torch.Tensor:
        latent, conditions = self.encode(x)
        return self.stylegan_decoder(latent, conditions, randomize_noise=randomize_noise)

    def to_channels_last(self) -> "GFPGAN":
        """Store every convolution weight channels_last (activations then stay in that layout: 1.2x faster on a CPU
        with oneDNN, and the usual layout on GPUs); outputs equal the default layout's within float rounding.

        ``model.to(memory_format=torch.channels_last)`` cannot do it: the modulated weights are 5-D
        (1 x out x in x k x k, the released files' layout); here their 4-D view is made channels_last.
        """
        cl = torch.channels_last
        with torch.no_grad():
            for p in self.parameters():
                if p.ndim == 4:
                    p.data = p.data.contiguous(memory_format=cl)
                elif p.ndim == 5:
                    p.data = p.data[0].contiguous(memory_format=cl).unsqueeze(0)
        return self

    # ------------------------------------------------------------------ weights
    @property
    def is_random(self) -> bool:
        """True for a model made by :meth:`random` (or loaded from a folder saved from one)."""
        return str(self.config.notes.get(RANDOM_NOTE_KEY, "")).startswith(RANDOM_NOTE)

    @classmethod
    def random(cls, config: GFPGANConfig | None = None, seed: int = 0) -> "GFPGAN":
        """A model with random weights (tests, benchmarks); its outputs mean nothing and its config says so."""
        config = config or GFPGANConfig()
        config = dataclasses.replace(config, notes={**config.notes, RANDOM_NOTE_KEY: f"{RANDOM_NOTE}, seed {seed}"})
        torch.manual_seed(seed)
        return cls(config).eval()

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``gfpgan.safetensors`` and ``config.json`` (last: a folder with config.json is complete)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_safetensors(self.state_dict(), path / WEIGHTS_FILE, {"format": FORMAT})
        self.config.save(path / CONFIG_FILE)
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "GFPGAN":
        """Load a restorer folder written by :meth:`save_pretrained` / ``hififace convert --gfpgan``; eval mode,
        no gradients."""
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise WeightsError(f"{folder}: restorer folder not found; make one with "
                               "'hififace convert --gfpgan GFPGANv1.4.pth -o DIR'")
        config = GFPGANConfig.load(folder / CONFIG_FILE)
        file = folder / WEIGHTS_FILE
        if not file.is_file():
            raise WeightsError(f"{file}: missing GFPGAN weights; the folder is incomplete, re-create it with "
                               "'hififace convert --gfpgan GFPGANv1.4.pth -o DIR'")
        with torch.device("meta"):
            model = cls(config)
        state = load_safetensors(file, "GFPGAN weights")
        check_state(model, state, file, hint="; was config.json edited?")
        model.load_state_dict(state, strict=True, assign=True)
        model.eval().requires_grad_(False)
        return model.to(device=device, dtype=dtype)


def read_restorer_info(folder: str | Path) -> dict[str, Any]:
    """Format, config and tensor counts of a restorer folder, without building the model (``hififace info``)."""
    from safetensors import safe_open

    folder = Path(folder)
    config = GFPGANConfig.load(folder / CONFIG_FILE)
    files = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            keys = list(f.keys())
            n = sum(math.prod(f.get_slice(k).get_shape()) for k in keys)
            files[file.name] = {"tensors": len(keys), "elements": n, "bytes": file.stat().st_size, "metadata": f.metadata()}
    missing = [WEIGHTS_FILE] if WEIGHTS_FILE not in files else []
    return {"folder": str(folder), "format": f"{FORMAT} (face restorer: GFPGAN v1 clean)", "config": config.to_dict(),
            "files": files, "missing": missing}
