"""The reference implementation's Lightning checkpoint (mindslab-ai/hififace, ``hififace_opensouce_299999.ckpt``).

Both ways: :func:`convert_reference_checkpoint` turns it into our folder, :func:`export_reference_checkpoint`
writes our folder back as a checkpoint the reference code loads with a strict ``load_state_dict``.

Every key of the checkpoint is either mapped (generator, its frozen ArcFace/ReconNet, discriminator, LPIPS) or on
the explicit drop list below; anything else stops the conversion naming the keys. The container:
docs/formats.md#reference-checkpoint; key names and shapes: ``tests/data/manifests/seed_lightning_checkpoint_keys.tsv``
(2791 keys).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import torch

from ..config import HifiFaceConfig
from ..errors import WeightsError
from ..losses.lpips import LPIPS as LPIPSNet
from ..models.discriminators import create_discriminator
from ..models.frozen.arcface import arcface_arch_from_state_dict
from ..models.hififace import DISCRIMINATOR_FILE, LPIPS_FILE, HifiFace, assign_state
from ..utils.atomic import atomic_path
from ..utils.text import printable
from ..weights.io import check_finite, describe_keys, load_into, load_legacy, load_safetensors, tensors_only

log = logging.getLogger(__name__)

GEN = "generator."
F_ID = "generator.id_extractor.f_id."
F_3D = "generator.id_extractor.f_3d."
DISC = "discriminator."
LOSS_F_ID = "g_loss.f_id."
LOSS_F_3D = "g_loss.f_3d."
LPIPS = "g_loss.realism_loss.loss_fn_vgg."
LPIPS_ALIAS = LPIPS + "lins."  # lins.i.model.1.weight is the same tensor as lin{i}.model.1.weight

#: Prefixes of keys that are deliberately not kept, and why.
DROPPED = {
    LOSS_F_ID: "second copy of the ArcFace network held by the loss module (the generator's copy is kept)",
    LOSS_F_3D: "second copy of ReconNet held by the loss module (the generator's copy is kept)",
    LPIPS_ALIAS: "alias of the LPIPS linear heads lin0-4 (same tensors)",
}

# ---------------------------------------------------------------------------------------------- key maps
def map_layers(m: dict, ours: str, ref: str, pairs: list[tuple[str, str]]) -> None:
    for our_layer, ref_layer in pairs:  # weight then bias of each layer: the reference's state_dict order
        for p in ("weight", "bias"):
            m[f"{ours}.{our_layer}.{p}"] = f"{ref}.{ref_layer}.{p}"


def map_resblock(m: dict, ours: str, ref: str, resampling: bool) -> None:
    # main_path = [IN, LReLU, conv, (pool|up), IN, LReLU, conv]: the 2nd conv sits at 6 or at 5
    map_layers(m, ours, ref, [("conv1", "main_path.2"), ("conv2", f"main_path.{6 if resampling else 5}"), ("skip", "side_path.0")])


def map_adain_block(m: dict, ours: str, ref: str) -> None:
    map_layers(m, ours, ref, [("adain1.std", "adain1.std_style_fc"), ("adain1.mean", "adain1.mean_style_fc"),
                           ("adain2.std", "adain2.std_style_fc"), ("adain2.mean", "adain2.mean_style_fc"),
                           ("conv1", "main_path1.1"), ("conv2", "main_path2.1"), ("skip", "side_path.0")])


def map_encoder_decoder(generator: torch.nn.Module) -> "OrderedDict[str, str]":
    """The keys of the encoder and decoder and of the SFF's sigma block, which the reference and xuehy's generator
    name alike (their SFF heads differ)."""
    m: OrderedDict[str, str] = OrderedDict()
    map_layers(m, "encoder", "encoder", [("stem", "conv_first")])
    for i, blk in enumerate(generator.encoder.blocks):
        map_resblock(m, f"encoder.blocks.{i}", f"encoder.block_list.{i}", blk.resample != "none")
    for i, _ in enumerate(generator.decoder.blocks):
        map_adain_block(m, f"decoder.blocks.{i}", f"decoder.block_list.{i}")
    map_resblock(m, "sff.sigma", "sff_module.sigma", False)
    return m


def generator_key_map(generator: torch.nn.Module) -> "OrderedDict[str, str]":
    """Our generator key -> the reference's key (without the ``generator.`` prefix), for the reference variant."""
    cfg = generator.config
    if cfg.variant != "reference" or cfg.image_size != 256:
        raise WeightsError(f"only the 256 reference variant has a reference checkpoint layout (this is {cfg.image_size} {cfg.variant})")
    m = map_encoder_decoder(generator)
    sff = generator.sff
    map_resblock(m, "sff.mask_low", "sff_module.low_mask_predict", False)
    map_adain_block(m, "sff.fuse", "sff_module.z_fuse_block")
    for i, blk in enumerate(sff.up):
        map_resblock(m, f"sff.up.{i}", f"sff_module.f_up.net.{i}", blk.resample != "none")
    own = set(generator.state_dict())
    if set(m) != own:  # the map must cover the model exactly; a mismatch is a bug here, not in the file
        raise AssertionError(f"generator key map out of date: {sorted(own ^ set(m))[:5]}")
    return m


_PATCH_LAYERS = {"conv0": 0, "conv1": 2, "norm1": 3, "conv2": 5, "norm2": 6, "conv3": 8, "norm3": 9, "out": 11}


def discriminator_key_map(discriminator: torch.nn.Module) -> "OrderedDict[str, str]":
    """Our multiscale discriminator key -> the reference's (``layer2`` sees full resolution = our ``scales.0``)."""
    m: OrderedDict[str, str] = OrderedDict()
    n = len(discriminator.scales)
    for key in discriminator.state_dict():
        _, k, layer, leaf = key.split(".", 3)
        m[key] = f"layer{n - 1 - int(k)}.{_PATCH_LAYERS[layer]}.{leaf}"
    return m


# ---------------------------------------------------------------------------------------------- reading
def read_reference_state(path: str | Path, obj: object = None) -> "OrderedDict[str, torch.Tensor]":
    """The ``state_dict`` of a reference checkpoint (``obj``: the file already loaded), clear error otherwise."""
    path = Path(path)
    if obj is None:
        obj = load_legacy(path, "reference HifiFace checkpoint (hififace_opensouce_299999.ckpt)")
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        state = obj["state_dict"]
        if any(str(k).startswith(GEN) for k in state):
            return OrderedDict(tensors_only(state, path))  # only tensors are taken; callbacks etc. are ignored
    raise WeightsError(f"{path}: not a reference HifiFace checkpoint ({describe_checkpoint(obj)}); "
                       "expected the Lightning checkpoint of mindslab-ai/hififace (hififace_opensouce_299999.ckpt)")


def describe_checkpoint(obj: object) -> str:
    """A few words on what a loaded checkpoint looks like, for error messages."""
    if not isinstance(obj, Mapping):
        return f"it holds a {printable(type(obj).__name__)}"
    keys = list(obj)
    if "net_recon" in obj:
        return "it looks like a Deep3DFaceRecon epoch_20.pth: pass it with --recon3d"
    if any(str(k).startswith("layer1.") for k in keys) and "fc.weight" in obj and "features.weight" in obj:
        return "it looks like an insightface ArcFace backbone.pth: pass it with --arcface"
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        inner = list(obj["state_dict"])
        return f"a Lightning checkpoint whose state_dict starts with {describe_keys([str(k) for k in inner], 3)}"
    return f"top-level keys {describe_keys([str(k) for k in keys], 4)}"


def _take(state: Mapping[str, torch.Tensor], prefix: str) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k[len(prefix):], v) for k, v in state.items() if k.startswith(prefix))


#: Top-level entry our narrow exports (tests, smoke runs) add, so they convert back at their widths.
WIDTHS_KEY = "hififace_widths"


def _narrow_widths(obj: object) -> dict[str, float]:
    """Widths recorded by :func:`export_reference_checkpoint` for a narrow model; empty for the released file."""
    widths = obj.get(WIDTHS_KEY) if isinstance(obj, Mapping) else None
    if not isinstance(widths, Mapping):
        return {}
    return {k: float(widths[k]) for k in ("channel_multiplier", "frozen_width") if k in widths}


def convert_reference_checkpoint(path: str | Path, out_dir: str | Path, keep_training: bool = True, obj: object = None) -> Path:
    """Convert the reference Lightning checkpoint into our model folder.

    ``keep_training`` also writes the discriminator and LPIPS weights (for fine-tuning and for the way back);
    ``obj`` is the checkpoint already loaded by the caller, if any.
    """
    path = Path(path)
    if obj is None:
        obj = load_legacy(path, "reference HifiFace checkpoint (hififace_opensouce_299999.ckpt)")
    state = read_reference_state(path, obj)
    widths = _narrow_widths(obj)
    del obj
    check_finite(state, path)

    f_id = _take(state, F_ID)
    arch = arcface_arch_from_state_dict(f_id)
    config = HifiFaceConfig(image_size=256, variant="reference", arcface_arch=arch, **widths,
                            notes={"converted_from": path.name, "source_format": "mindslab-ai/hififace Lightning checkpoint"})
    with torch.device("meta"):
        model = HifiFace(config)
        disc = create_discriminator(config)
    gmap = generator_key_map(model.generator)
    dmap = discriminator_key_map(disc)

    used: set[str] = set()

    def pick(mapping: Mapping[str, str], prefix: str) -> "OrderedDict[str, torch.Tensor]":
        out = OrderedDict()
        missing = [prefix + ref for ref in mapping.values() if prefix + ref not in state]
        if missing:
            raise WeightsError(f"{path}: missing {len(missing)} key(s) of the reference model: {describe_keys(missing)}")
        for ours, ref in mapping.items():
            out[ours] = state[prefix + ref]
            used.add(prefix + ref)
        return out

    generator_state = pick(gmap, GEN)
    arcface_state = pick({k: k for k in model.id_extractor.arcface.state_dict()}, F_ID)
    recon_state = pick({k: k for k in model.id_extractor.recon.state_dict()}, F_3D)
    disc_state = pick(dmap, DISC) if keep_training and any(k.startswith(DISC) for k in state) else None
    lpips_state = OrderedDict((k, v) for k, v in _take(state, LPIPS).items() if not k.startswith("lins."))
    used.update(LPIPS + k for k in lpips_state)

    for i in range(5):  # the alias must really be an alias before it is dropped
        a, b = LPIPS + f"lin{i}.model.1.weight", LPIPS_ALIAS + f"{i}.model.1.weight"
        if b in state and (a not in state or not torch.equal(state[a], state[b])):
            raise WeightsError(f"{path}: {b} differs from {a}; this is not the reference's LPIPS layout")
    for prefix, twin in ((LOSS_F_ID, F_ID), (LOSS_F_3D, F_3D)):
        differ = [k for k in state if k.startswith(prefix) and not torch.equal(state[k], state.get(twin + k[len(prefix):], torch.empty(0)))]
        if differ:
            log.info("%d key(s) of the loss module's copy %s differ from the generator's (BatchNorm statistics drift in "
                     "the reference trainer); the generator's copy is kept", len(differ), prefix.rstrip("."))
    dropped = {k for k in state if any(k.startswith(p) for p in DROPPED)}
    unknown = sorted(set(state) - used - dropped)
    if unknown:
        raise WeightsError(f"{path}: {len(unknown)} key(s) not in the reference layout: {describe_keys(unknown)}")

    def fill(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], what: str) -> None:
        assign_state(module, dict(tensors), f"{path} ({what})")

    fill(model.generator, generator_state, "generator")
    fill(model.id_extractor.arcface, arcface_state, "generator.id_extractor.f_id")
    fill(model.id_extractor.recon, recon_state, "generator.id_extractor.f_3d")
    extra = {}
    if disc_state is not None:
        fill(disc, disc_state, "discriminator")
        extra[DISCRIMINATOR_FILE] = disc.state_dict()
    if keep_training and lpips_state:
        extra[LPIPS_FILE] = lpips_state
    log.info("reference checkpoint: %d keys mapped, %d dropped (%s)", len(used), len(dropped), ", ".join(sorted(DROPPED)))
    return model.save_pretrained(out_dir, extra_files=extra)


# ---------------------------------------------------------------------------------------------- writing
def build_reference_state(folder: str | Path, allow_missing_training: bool = False) -> "OrderedDict[str, torch.Tensor]":
    """The 2791-key reference state_dict of one of our folders (256, reference variant)."""
    folder = Path(folder)
    model = HifiFace.from_pretrained(folder)
    if model.config.variant != "reference" or model.config.image_size != 256:
        raise WeightsError(f"{folder}: only a 256 reference-variant model can be written as a reference checkpoint")
    gmap = generator_key_map(model.generator)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    gstate = model.generator.state_dict()
    arcface = model.id_extractor.arcface.state_dict()
    recon = model.id_extractor.recon.state_dict()
    # state_dict order of the reference module: generator.id_extractor.f_3d, f_id, encoder, decoder, sff_module
    for k, v in recon.items():
        out[F_3D + k] = v
    for k, v in arcface.items():
        out[F_ID + k] = v
    for ours, ref in gmap.items():
        out[GEN + ref] = gstate[ours]

    cfg = model.config
    if cfg.channel_multiplier != 1.0 or cfg.frozen_width != 1.0:
        log.warning("%s: channel_multiplier %s, frozen_width %s: the checkpoint has the reference's keys but smaller "
                    "shapes; the reference code builds full-width networks and will not load it", folder,
                    cfg.channel_multiplier, cfg.frozen_width)
    disc = create_discriminator(cfg)  # the widths of the folder's config (a tiny model has a tiny discriminator)
    dfile = folder / DISCRIMINATOR_FILE
    if dfile.exists():
        load_into(disc, load_safetensors(dfile, "discriminator weights"), dfile)
    elif not allow_missing_training:
        raise WeightsError(f"{dfile}: missing; the reference checkpoint needs discriminator weights "
                           "(pass --allow-random-training-parts to write freshly initialised ones)")
    dmap = discriminator_key_map(disc)
    dstate = disc.state_dict()
    for ref_layer in range(len(disc.scales)):  # reference order: layer0, layer1, layer2
        for ours, ref in dmap.items():
            if ref.startswith(f"layer{ref_layer}."):
                out[DISC + ref] = dstate[ours]

    for k, v in recon.items():
        out[LOSS_F_3D + k] = v
    for k, v in arcface.items():
        out[LOSS_F_ID + k] = v
    lfile = folder / LPIPS_FILE
    if lfile.exists():
        lpips = load_safetensors(lfile, "LPIPS weights")
    elif allow_missing_training:
        lpips = LPIPSNet().state_dict()
    else:
        raise WeightsError(f"{lfile}: missing; the reference checkpoint needs LPIPS weights "
                           "(pass --allow-random-training-parts to write random ones)")
    for k in sorted(lpips, key=_lpips_order):
        out[LPIPS + k] = lpips[k]
    for i in range(5):
        out[LPIPS_ALIAS + f"{i}.model.1.weight"] = out[LPIPS + f"lin{i}.model.1.weight"]
    return out


def _lpips_order(key: str) -> tuple:
    """The lpips package's state_dict order: scaling_layer, net.slice1..5 by layer index, lin0..4."""
    parts = key.split(".")
    group = {"scaling_layer": 0, "net": 1}.get(parts[0], 2)
    nums = tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in parts[1:3])
    leaf = {"shift": 0, "weight": 0, "scale": 1, "bias": 1}.get(parts[-1], 2)
    return (group, nums, leaf, key)


def export_reference_checkpoint(folder: str | Path, out_path: str | Path, allow_missing_training: bool = False) -> Path:
    """Write one of our folders as a reference Lightning checkpoint (loads strictly in mindslab-ai/hififace)."""
    state = build_reference_state(folder, allow_missing_training)
    ckpt = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.4.2", "state_dict": state,
            "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}
    config = HifiFaceConfig.load(Path(folder) / "config.json")
    if config.channel_multiplier != 1.0 or config.frozen_width != 1.0:  # a narrow model: say so for the way back
        ckpt[WIDTHS_KEY] = {"channel_multiplier": config.channel_multiplier, "frozen_width": config.frozen_width}
    with atomic_path(out_path) as tmp:
        torch.save(ckpt, tmp)
    return Path(out_path)
