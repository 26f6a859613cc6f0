"""One entry for ``hififace convert``: detects what a file is and writes our model folder atomically."""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..config import HifiFaceConfig
from ..errors import OutputError, WeightsError
from ..models.hififace import BFM_FILE, CONFIG_FILE, HifiFace
from ..utils.atomic import TMP_PREFIX, current_umask, fsync_dir, storage_error
from ..weights.io import load_legacy, save_safetensors
from ..weights.resolve import require_file
from .arcface import load_arcface
from .bfm import bfm_to_tensors, load_bfm
from .deep3d import load_recon
from .reference import GEN, convert_reference_checkpoint, describe_checkpoint
from .training import convert_training_checkpoint, is_training_checkpoint
from .xuehy import convert_xuehy_generator, find_generator_file, is_xuehy_discriminator, is_xuehy_state

log = logging.getLogger(__name__)


@contextmanager
def atomic_folder(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; it replaces ``out_dir`` only when the block succeeds.

    ``overwrite`` replaces an existing model folder (one with ``config.json``); any other non-empty folder is left
    alone. An ``out_dir`` that is a symbolic link to a folder is followed: the folder it points to is replaced (the
    new one is built beside it, so the swap is a rename) and the link stays. Until the new folder is complete the
    old one is untouched; a failure leaves it as it was.
    """
    out = _follow_link(Path(out_dir))
    if out.exists() and not out.is_dir():
        raise WeightsError(f"{out}: exists and is not a folder; choose another -o")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise WeightsError(f"{out}: folder exists and is not empty; pass --overwrite or choose another -o")
        if not (out / CONFIG_FILE).is_file():
            raise WeightsError(f"{out}: is not a model folder (no {CONFIG_FILE}), so --overwrite leaves it alone; "
                               "choose another -o (or empty that folder yourself)")
    if out != Path(out_dir):
        log.info("%s is a link to %s: the model folder is written there (the link stays)", out_dir, out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, suffix=".partial", dir=out.parent))
    except OSError as err:
        _raise_mapped(err, out)
        raise
    old: Path | None = None
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        fsync_dir(tmp)  # each file was synced as it was written; now their names
        if out.exists():
            old = out.parent / f"{TMP_PREFIX}{secrets.token_hex(4)}.old"
            os.rename(out, old)  # kept until the new folder is in place
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not out.exists():
            os.rename(old, out)  # put the previous folder back
            old = None
        cause = err.__cause__ if isinstance(err, OutputError) else err
        if isinstance(cause, OSError):  # name the folder asked for, not our temporary one
            _raise_mapped(cause, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _follow_link(out: Path) -> Path:
    """``out``, or the folder a symbolic link ``out`` points to (a link to nothing or to a file is refused)."""
    if not out.is_symlink():
        return out
    real = Path(os.path.realpath(out))
    if not real.exists():
        raise WeightsError(f"{out}: is a symbolic link to {real}, which does not exist; create that folder or "
                           "choose another -o")
    if not real.is_dir():
        raise WeightsError(f"{out}: is a symbolic link to {real}, which is not a folder; choose another -o")
    return real


def _raise_mapped(err: OSError, out: Path) -> None:
    mapped = storage_error(err, out, out)
    if mapped is not None:
        raise mapped from err


def convert_checkpoint(path: str | Path, out_dir: str | Path, overwrite: bool = False,
                       frozen_from: str | Path | None = None, use_ema: bool = True, iteration: int | None = None,
                       bfm: str | Path | None = None) -> Path:
    """A reference Lightning checkpoint, a xuehy/HiFiFace-pytorch generator or one of our training checkpoints ->
    model folder (the kind is detected from the keys).

    ``frozen_from`` and ``use_ema`` apply to training checkpoints (which do not hold the frozen networks).
    ``path`` may be a xuehy model folder: ``iteration`` then picks its ``generator_<iteration>.pth``. ``bfm``
    (``BFM_model_front.mat`` or ``bfm_landmarks.safetensors``) is written into the folder for the shape loss of
    training, in place of one the checkpoint's run had.
    """
    bfm_tensors = read_bfm(bfm)  # a bad BFM file is one error before the checkpoint is read
    path = require_existing(path)
    if path.is_dir():
        path = find_generator_file(path, iteration)
    elif iteration is not None:
        raise WeightsError(f"{path}: --iteration picks a generator_<iteration>.pth in a xuehy model folder; "
                           "give the folder, or the file without --iteration")
    obj = load_legacy(path, "reference hififace_opensouce_299999.ckpt, xuehy generator_<iteration>.pth or a "
                            "'hififace train' checkpoint (.ckpt)")
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    with atomic_folder(out_dir, overwrite) as tmp:
        if isinstance(state, dict) and any(str(k).startswith(GEN + "id_extractor.") for k in state):
            del state
            convert_reference_checkpoint(path, tmp, obj=obj)
        elif is_xuehy_state(obj):
            del state
            convert_xuehy_generator(path, tmp, obj=obj)
        else:
            if is_training_checkpoint(obj):
                del state
                convert_training_checkpoint(path, tmp, frozen_from=frozen_from, use_ema=use_ema, ckpt=obj)
            elif is_xuehy_discriminator(obj):
                raise WeightsError(f"{path}: a xuehy/HiFiFace-pytorch discriminator (not needed for swapping); give the "
                                   "generator_<iteration>.pth beside it")
            else:
                raise WeightsError(f"{path}: not a HifiFace checkpoint ({describe_checkpoint(obj)}); give the reference "
                                   "hififace_opensouce_299999.ckpt, a xuehy generator_<iteration>.pth or a 'hififace "
                                   "train' checkpoint")
        if bfm_tensors is not None:
            if (tmp / BFM_FILE).exists():
                log.info("%s: the BFM of --bfm replaces the one the checkpoint's run had", bfm)
            save_safetensors(bfm_tensors, tmp / BFM_FILE)
    return Path(out_dir)


def read_bfm(bfm: str | Path | None) -> dict[str, torch.Tensor] | None:
    """The BFM tensors a model folder keeps (``bfm_landmarks.safetensors``) from ``--bfm``, or None."""
    return None if bfm is None else bfm_to_tensors(load_bfm(require_file(bfm, "bfm")))


def require_existing(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise WeightsError(f"{p}: file not found; give the path of the checkpoint to convert")
    return p


def convert_separate_files(
    out_dir: str | Path,
    arcface: str | Path,
    recon3d: str | Path,
    bfm: str | Path | None = None,
    image_size: int = 256,
    variant: str = "reference",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """A fresh model (random generator, seeded) with ArcFace, ReconNet and optionally BFM from their own files."""
    arcface_net = load_arcface(require_file(arcface, "arcface"))
    recon_net = load_recon(require_file(recon3d, "recon3d"))
    bfm_tensors = read_bfm(bfm)
    extra = {} if bfm_tensors is None else {BFM_FILE: bfm_tensors}
    config = HifiFaceConfig(image_size=image_size, variant=variant, arcface_arch=arcface_net.arch,
                            notes={"arcface": Path(arcface).name, "recon3d": Path(recon3d).name,
                                   "generator": f"random initialisation, seed {seed}"})
    torch.manual_seed(seed)
    model = HifiFace(config, arcface=arcface_net, recon=recon_net)
    with atomic_folder(out_dir, overwrite) as tmp:
        model.save_pretrained(tmp, extra_files=extra)
    return Path(out_dir)
