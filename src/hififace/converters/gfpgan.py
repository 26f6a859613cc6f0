"""Strict converter for TencentARC's GFPGAN v1.3 / v1.4 weights (``GFPGANv1.4.pth``) -> our restorer folder.

The released file is a plain ``torch.save`` dict ``{'params_ema': state_dict}`` (upstream takes ``params_ema`` when
present, otherwise ``params``) of ``GFPGANv1Clean`` (docs/formats.md#gfpgan-restorer, manifest
``tests/data/manifests/gfpgan_v1.4_clean_keys.tsv``: 285 tensors). It is read through
:func:`~hififace.weights.legacy.load_legacy` (nothing in it is executed). Every key is either loaded into
:class:`~hififace.models.restorers.GFPGAN` (same names and shapes) or on :data:`DROPPED` with its reason; any other
key, a missing key or a shape mismatch stops the conversion with one line naming them.
"""
from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import ConfigError, WeightsError
from ..models.restorers.gfpgan import GFPGAN, GFPGANConfig
from ..weights.io import check_state, describe_keys, load_legacy, tensors_only
from .convert import atomic_folder, require_existing

log = logging.getLogger(__name__)

GFPGAN_WHAT = "GFPGAN weights (GFPGANv1.4.pth)"
EXPECTED = "expected TencentARC's GFPGANv1.3.pth or GFPGANv1.4.pth (a dict {'params_ema': state_dict} of GFPGANv1Clean)"
CONTAINERS = ("params_ema", "params")

#: Keys of the released files that inference never reads, by prefix -> why they are dropped.
DROPPED = {
    "toRGB.": "the U-Net's intermediate RGB heads: only GFPGAN's training losses read them (inference runs "
              "forward(return_rgb=False))",
    "stylegan_decoder.style_mlp.": "StyleGAN2's mapping network: unused, the released models run the decoder with "
                                   "input_is_latent=True (the U-Net's style code is already in W space)",
}

#: Keys that only the original GFPGANv1 architecture (compiled StyleGAN2 ops, GFPGANv1.pth) has.
_ORIGINAL_ARCH = re.compile(r"\.activate\.bias$|\.noise\.weight$|\.blur\.kernel$")
_NEEDED = ("conv_body_first.weight", "final_linear.weight", "stylegan_decoder.constant_input.weight",
           "stylegan_decoder.style_conv1.modulated_conv.modulation.weight", "condition_scale.0.0.weight",
           "condition_scale.0.2.weight")


def clean_name(text: object, limit: int = 80) -> str:
    """A name quoted from a file, safe for a one-line message: non-printable characters replaced, truncated."""
    s = "".join(c if c.isprintable() else "?" for c in str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _describe(obj: Any) -> str:
    if not isinstance(obj, Mapping):
        return f"it holds a {type(obj).__name__}, not a dict"
    keys = [clean_name(k, 40) for k in obj]
    if not keys:
        return "it is an empty dict"
    if "state_dict" in obj:
        return "it looks like a Lightning/training checkpoint, not a GFPGAN release file"
    if "net_recon" in obj:
        return "it looks like a Deep3DFaceRecon epoch_20.pth"
    return f"top-level keys {describe_keys(keys, 4)}"


def read_gfpgan_state(path: str | Path) -> tuple["OrderedDict[str, torch.Tensor]", str]:
    """(state_dict, container name) of a GFPGAN release file; one-line :class:`WeightsError` for anything else."""
    path = Path(path)
    obj = load_legacy(path, GFPGAN_WHAT)
    container = next((c for c in CONTAINERS if isinstance(obj, Mapping) and isinstance(obj.get(c), Mapping)), None)
    if container is None:
        raise WeightsError(f"{path}: not a GFPGAN weight file ({_describe(obj)}); {EXPECTED}")
    inner = obj[container]
    bad = [k for k in inner if not isinstance(k, str) or len(k) > 200 or not k.isprintable()]
    if bad:
        raise WeightsError(f"{path}: '{container}' holds keys that are not layer names ({clean_name(repr(bad[0]), 60)}); "
                           f"this is not a GFPGAN weight file: {EXPECTED}")
    state = OrderedDict(tensors_only(inner, path))
    if not state:
        raise WeightsError(f"{path}: '{container}' is empty; {EXPECTED}")
    return state, container


def infer_config(state: Mapping[str, torch.Tensor], path: str | Path, notes: dict[str, Any] | None = None):
    """The :class:`~hififace.models.restorers.GFPGANConfig` a GFPGAN state dict was built with, from its shapes."""
    original = sorted(k for k in state if _ORIGINAL_ARCH.search(k))
    if original:
        raise WeightsError(f"{path}: weights of the original GFPGANv1 architecture (e.g. {clean_name(original[0])}), "
                           "which needs compiled CUDA ops and is not supported; use GFPGANv1.3.pth or GFPGANv1.4.pth")
    missing = [k for k in _NEEDED if k not in state]
    if missing:
        raise WeightsError(f"{path}: not GFPGAN v1 'clean' weights (no {', '.join(missing[:2])}; it has "
                           f"{describe_keys(list(state), 3)}); {EXPECTED}")
    try:
        levels = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("conv_body_up.") and k.split(".")[1].isdigit())
        out_size = 2 ** (levels + 2)
        narrow = state["stylegan_decoder.constant_input.weight"].shape[1] / 512
        num_style_feat = int(state["stylegan_decoder.style_conv1.modulated_conv.modulation.weight"].shape[1])
        unet_first = int(state["conv_body_first.weight"].shape[0])
        base = 512 if out_size <= 32 else 16384 / out_size  # StyleGAN2's width at out_size, per unit multiplier
        multiplier = unet_first * 2 / (base * narrow) if out_size > 32 else 2
        multiplier = int(round(multiplier)) if abs(multiplier - round(multiplier)) < 1e-6 else multiplier
        sft_half = state["condition_scale.0.2.weight"].shape[0] == state["condition_scale.0.0.weight"].shape[0]
        different_w = int(state["final_linear.weight"].shape[0]) != num_style_feat
        narrow = int(narrow) if narrow == 1 else narrow
        return GFPGANConfig(out_size=out_size, num_style_feat=num_style_feat, channel_multiplier=multiplier,
                            narrow=narrow, sft_half=sft_half, different_w=different_w, notes=notes or {})
    except (ValueError, IndexError, ConfigError) as err:
        raise WeightsError(f"{path}: GFPGAN weights of shapes hififace does not know ({clean_name(err, 160)}); "
                           f"{EXPECTED}") from None


def load_gfpgan(path: str | Path, notes: dict[str, Any] | None = None):
    """A :class:`~hififace.models.restorers.GFPGAN` (eval, no grad, float32) with the weights of a release file."""
    path = Path(path)
    state, container = read_gfpgan_state(path)
    dropped = {prefix: [k for k in state if k.startswith(prefix)] for prefix in DROPPED}
    kept = OrderedDict((k, v) for k, v in state.items() if not k.startswith(tuple(DROPPED)))
    info = {"source": clean_name(path.name), "container": container,
            "dropped": ", ".join(f"{p}* ({len(ks)})" for p, ks in dropped.items() if ks) or "none"}
    config = infer_config(kept, path, {**info, **(notes or {})})
    with torch.device("meta"):
        model = GFPGAN(config)
    check_state(model, kept, path, hint=f"; {EXPECTED}")
    non_fp32 = sorted({str(v.dtype) for v in kept.values() if v.dtype != torch.float32})
    if non_fp32:
        log.info("%s: converting %s tensors to float32", path, ", ".join(non_fp32))
    model.load_state_dict(OrderedDict((k, v.float()) for k, v in kept.items()), strict=True, assign=True)
    for prefix, keys in dropped.items():
        if keys:
            log.debug("%s: dropped %d %s* tensors: %s", path, len(keys), prefix, DROPPED[prefix])
    return model.eval().requires_grad_(False)


def random_release_state(config=None, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """A state dict in the released files' layout (every key of ``GFPGANv1Clean`` for ``config``, in its order, the
    dropped heads included) with random values scaled so that outputs stay mostly inside [-1, 1].

    For tests, parity checks and benchmarks: ``torch.save({'params_ema': random_release_state()}, path)`` is a
    stand-in for ``GFPGANv1.4.pth``. Values come from one seeded CPU generator, key by key, so they are the same on
    every machine.
    """
    config = config or GFPGANConfig()
    with torch.device("meta"):
        shapes = OrderedDict((k, tuple(v.shape)) for k, v in GFPGAN(config).state_dict().items())
    d = config.num_style_feat
    layout: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    for key, shape in shapes.items():
        if key == "final_linear.weight":  # upstream registers the U-Net's RGB heads before final_linear
            for i, res in enumerate(config.levels):
                layout[f"toRGB.{i}.weight"], layout[f"toRGB.{i}.bias"] = (3, config.unet_channels(res), 1, 1), (3,)
        if key == "stylegan_decoder.constant_input.weight":  # and the mapping network first in the decoder
            for i in range(1, 17, 2):
                layout[f"stylegan_decoder.style_mlp.{i}.weight"] = (d, d)
                layout[f"stylegan_decoder.style_mlp.{i}.bias"] = (d,)
        layout[key] = shape
    gen = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in layout.items():
        leaf = key.rsplit(".", 1)[-1]
        value = torch.randn(shape, generator=gen)
        if ".noises." in key or "constant_input" in key:
            pass
        elif leaf == "bias" and ".modulation." in key:  # 1 at upstream's init: the style scales sit around 1
            value = 1.0 + 0.1 * value
        elif leaf == "bias":
            value = 0.02 * value
        elif len(shape) == 1:  # the noise strengths
            value = 0.1 * value
        else:  # fan-in scaled; the RGB skips add up over the levels without demodulation
            fan_in = math.prod(shape[2:] if len(shape) == 5 else shape[1:])
            value = value * ((1 / 32 if "to_rgb" in key else 1.0) / math.sqrt(fan_in))
        state[key] = value
    return state


def convert_gfpgan(path: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """``GFPGANv1.4.pth`` -> restorer folder (``config.json`` + ``gfpgan.safetensors``), written atomically."""
    path = require_existing(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; give the GFPGAN weight file (GFPGANv1.4.pth)")
    with atomic_folder(out_dir, overwrite) as tmp:  # checks the output folder before the long read
        model = load_gfpgan(path)
        model.save_pretrained(tmp)
    log.info("GFPGAN %d px restorer from %s ('%s'; dropped as unused at inference: %s)", model.config.out_size, path,
             model.config.notes["container"], model.config.notes["dropped"])
    return Path(out_dir)
