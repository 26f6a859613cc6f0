"""xuehy/HiFiFace-pytorch's released generators (``standard_model`` / ``with_gaze_and_mouth``,
``generator_<iteration>.pth``) -> our model folder, variant ``xuehy``.

The file is a raw ``Generator.state_dict()`` (no prefix; docs/formats.md#xuehy-generator, manifest
``tests/data/manifests/xuehy_hififace_generator_keys.tsv``, 1425 keys): the trained ``encoder.*`` (44 keys),
``decoder.*`` (70) and ``sff_module.*`` (54), and the frozen identity networks it embeds, ``id_extractor.f_3d.*``
(Deep3DFaceRecon ReconNet, 332 keys, our ``recon3d.safetensors``) and ``id_extractor.f_id.*`` (ArcFace IResNet-100,
925 keys, our ``arcface.safetensors``). So one file gives a complete folder. Both released kinds have the same keys
(the gaze/mouth losses change training only); the kind is recorded from the folder name the file sits in.

Every key is mapped: nothing is dropped (:data:`DROPPED` is empty on purpose), anything else stops the conversion
naming the keys. BatchNorm ``num_batches_tracked`` counters may be absent (very old PyTorch), as for every
converter. The file is read through :func:`hififace.weights.legacy.load_legacy` (nothing executed).
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import HifiFaceConfig
from ..errors import WeightsError
from ..models.frozen.arcface import arcface_arch_from_state_dict
from ..models.hififace import HifiFace, assign_state
from ..weights.io import describe_keys, load_legacy, tensors_only
from .keys import looks_like, strip_module_prefix
from .reference import map_adain_block, map_encoder_decoder, map_layers, map_resblock

log = logging.getLogger(__name__)

XUEHY_WHAT = "xuehy/HiFiFace-pytorch generator_<iteration>.pth"
SOURCE_FORMAT = "xuehy/HiFiFace-pytorch Generator.state_dict (generator_<iteration>.pth)"
F_ID = "id_extractor.f_id."
F_3D = "id_extractor.f_3d."
#: The two released model folders (docs/formats.md#xuehy-generator); both hold generators with the same keys.
MODEL_KINDS = {
    "standard_model": "paper losses",
    "with_gaze_and_mouth": "paper losses + eye and mouth heat-map losses (HRNet)",
}
#: Keys deliberately not kept, and why: none (every tensor of the file is used).
DROPPED: dict[str, str] = {}
_ITERATION = re.compile(r"^generator_(\d+)\.pth$")
_OPTIONAL = ("num_batches_tracked",)


def generator_key_map(generator: torch.nn.Module) -> "OrderedDict[str, str]":
    """Our generator key -> xuehy's key (``Generator.state_dict()`` names), for the xuehy variant.

    Its residual and AdaIN blocks store their layers as the reference's do (``main_path.2``, ``main_path.6|5``,
    ``side_path.0``; ``adainN.std_style_fc``, ``main_path1.1``, ...), so the reference converter's helpers apply.
    """
    cfg = generator.config
    if cfg.variant != "xuehy":
        raise WeightsError(f"only the xuehy variant has xuehy/HiFiFace-pytorch's layout (this is {cfg.variant})")
    m = map_encoder_decoder(generator)
    map_layers(m, "sff", "sff_module", [("mask_low", "low_mask_predict.0")])
    map_adain_block(m, "sff.fuse.0", "sff_module.z_fuse_block_1")
    map_adain_block(m, "sff.fuse.1", "sff_module.z_fuse_block_2")
    map_layers(m, "sff", "sff_module", [("to_low", "i_low_block.1")])
    for i, _ in enumerate(generator.sff.up):
        map_resblock(m, f"sff.up.{i}", f"sff_module.f_up.net.{i}", True)
    map_layers(m, "sff", "sff_module.f_up", [("to_rgb", "i_r_net.1"), ("mask_r", "m_r_net.0")])
    own = set(generator.state_dict())
    if set(m) != own:  # the map must cover the model exactly; a mismatch is a bug here, not in the file
        raise AssertionError(f"xuehy generator key map out of date: {sorted(own ^ set(m))[:5]}")
    return m


# ---------------------------------------------------------------------------------------------- detection
def is_xuehy_state(obj: object) -> bool:
    """True for a dict that looks like xuehy's ``Generator.state_dict()`` (optionally with a ``module.`` prefix)."""
    if not isinstance(obj, Mapping):
        return False
    keys = [k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k for k in obj]
    return "encoder.conv_first.weight" in keys and any(isinstance(k, str) and k.startswith("sff_module.") for k in keys)


def is_xuehy_discriminator(obj: object) -> bool:
    """True for xuehy's ``discriminator_<iteration>.pth`` (a state_dict of ``sequence.*`` layers), given by mistake."""
    return isinstance(obj, Mapping) and "sequence.0.weight" in obj and all(str(k).startswith("sequence.") for k in obj)


def find_generator_file(folder: str | Path, iteration: int | None = None) -> Path:
    """The generator file of a xuehy model folder, as its loader picks it: ``generator_<iteration>.pth``, or
    ``generator.pth`` without an iteration."""
    folder = Path(folder)
    found = sorted((int(m.group(1)) for p in folder.iterdir() if (m := _ITERATION.match(p.name))))
    name = f"generator_{iteration}.pth" if iteration is not None else "generator.pth"
    if (folder / name).is_file():
        return folder / name
    if iteration is None and len(found) == 1:
        log.info("%s: using its only generator file, generator_%d.pth", folder, found[0])
        return folder / f"generator_{found[0]}.pth"
    if found:
        listed = ", ".join(str(n) for n in found[:8]) + (" ..." if len(found) > 8 else "")
        what = f"no {name}" if iteration is not None else "several generator files"
        raise WeightsError(f"{folder}: {what}; give --iteration N with one of {listed}")
    raise WeightsError(f"{folder}: is a folder without generator_<iteration>.pth files; give a checkpoint file "
                       "(.ckpt/.pth), or use 'hififace info' on a model folder")


def model_kind(path: Path) -> str:
    """Which released model a file comes from, by the folder it sits in (the keys are the same for both)."""
    parent = path.resolve().parent.name
    if parent in MODEL_KINDS:
        return f"{parent} ({MODEL_KINDS[parent]})"
    return f"unknown (the file is not inside a folder named {' or '.join(MODEL_KINDS)})"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- converting
def read_xuehy_state(path: str | Path, obj: object = None) -> "OrderedDict[str, torch.Tensor]":
    """The tensors of a xuehy generator file (``obj``: the file already loaded), clear error otherwise."""
    path = Path(path)
    if obj is None:
        obj = load_legacy(path, XUEHY_WHAT)
    if not is_xuehy_state(obj):
        raise WeightsError(f"{path}: not a xuehy/HiFiFace-pytorch generator ({looks_like(obj)}); "
                           f"expected {XUEHY_WHAT} from its standard_model or with_gaze_and_mouth folder")
    return strip_module_prefix(tensors_only(obj, path), path)


def convert_xuehy_generator(path: str | Path, out_dir: str | Path, obj: object = None) -> Path:
    """Convert a xuehy ``generator_<iteration>.pth`` into our model folder (generator, ArcFace, ReconNet, config).

    ``obj`` is the file already loaded by the caller, if any. The config records the variant, the ``frontal``
    alignment the weights were trained with, and where they came from (file name, sha256, model kind, iteration).
    """
    path = Path(path)
    state = read_xuehy_state(path, obj)
    del obj  # finiteness is checked part by part when the tensors are assigned (assign_state)
    f_id = OrderedDict((k[len(F_ID):], v) for k, v in state.items() if k.startswith(F_ID))
    if not f_id:
        raise WeightsError(f"{path}: missing the embedded ArcFace (no {F_ID}* keys); not a complete xuehy generator file")
    try:
        arch = arcface_arch_from_state_dict(f_id, str(path))
    except WeightsError:  # xuehy embeds IResNet-100; the key check below names what is off
        arch = "r100"
    iteration = _ITERATION.match(path.name)
    notes: dict[str, Any] = {"converted_from": path.name, "source_format": SOURCE_FORMAT,
                             "source_model": model_kind(path)}
    if iteration:
        notes["source_iteration"] = int(iteration.group(1))
    config = HifiFaceConfig(image_size=256, variant="xuehy", arcface_arch=arch, align="frontal", notes=notes)
    with torch.device("meta"):
        model = HifiFace(config)

    parts = {  # our module, its key -> the file's key
        "generator": (model.generator, generator_key_map(model.generator)),
        F_ID.rstrip("."): (model.id_extractor.arcface, {k: F_ID + k for k in model.id_extractor.arcface.state_dict()}),
        F_3D.rstrip("."): (model.id_extractor.recon, {k: F_3D + k for k in model.id_extractor.recon.state_dict()}),
    }
    expected = {theirs for _, mapping in parts.values() for theirs in mapping.values()}
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL)]
    if missing:
        raise WeightsError(f"{path}: missing {len(missing)} key(s) of xuehy's Generator: {describe_keys(missing)}")
    unknown = [k for k in state if k not in expected and k not in DROPPED]
    if unknown:
        raise WeightsError(f"{path}: {len(unknown)} key(s) not in xuehy's Generator layout: {describe_keys(unknown)}")

    filled = 0
    for what, (module, mapping) in parts.items():
        tensors = {}
        for ours, theirs in mapping.items():
            if theirs in state:
                tensors[ours] = state[theirs]
            else:  # an optional BatchNorm counter: its value is never used in eval
                tensors[ours] = torch.zeros((), dtype=torch.int64)
                filled += 1
        assign_state(module, tensors, f"{path} ({what})")
    if filled:
        log.info("%s: %d BatchNorm num_batches_tracked counter(s) absent, set to 0", path, filled)
    log.info("xuehy generator %s (%s): %d keys mapped, none dropped", path.name, notes["source_model"], len(state))
    config.notes["source_sha256"] = sha256_file(path)  # the file's identity, once it has converted
    return model.save_pretrained(out_dir)
