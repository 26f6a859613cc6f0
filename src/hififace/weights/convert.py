"""One entry for ``hififace convert``: detects what a file is and writes our model folder atomically."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from ..config import HifiFaceConfig
from ..errors import WeightsError
from ..utils.atomic import current_umask
from .resolve import require_file

log = logging.getLogger(__name__)


@contextmanager
def atomic_folder(out_dir: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; it replaces ``out_dir`` only when the block succeeds."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise WeightsError(f"{out}: exists and is not a folder; choose another -o")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise WeightsError(f"{out}: folder exists and is not empty; pass --overwrite or choose another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700 folders
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert_checkpoint(path: str | Path, out_dir: str | Path, overwrite: bool = False,
                       frozen_from: str | Path | None = None, use_ema: bool = True) -> Path:
    """A reference Lightning checkpoint or one of our training checkpoints -> model folder.

    ``frozen_from`` and ``use_ema`` apply to training checkpoints (which do not hold the frozen networks).
    """
    from .io import load_legacy
    from .reference import GEN, convert_reference_checkpoint, describe_checkpoint

    path = require_existing(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; give a checkpoint file (.ckpt/.pth), or use 'hififace info' on a model folder")
    check_pytorch_file(path, "give the reference hififace_opensouce_299999.ckpt or a 'hififace train' checkpoint (.ckpt)")
    obj = load_legacy(path, "checkpoint")
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    with atomic_folder(out_dir, overwrite) as tmp:
        if isinstance(state, dict) and any(str(k).startswith(GEN + "id_extractor.") for k in state):
            del state
            convert_reference_checkpoint(path, tmp, obj=obj)
        else:
            try:
                from .training import convert_training_checkpoint, is_training_checkpoint
            except ImportError:  # training support not installed
                is_training_checkpoint = None  # type: ignore[assignment]
            if is_training_checkpoint is not None and is_training_checkpoint(obj):
                del state
                convert_training_checkpoint(path, tmp, frozen_from=frozen_from, use_ema=use_ema, ckpt=obj)
            else:
                raise WeightsError(f"{path}: not a HifiFace checkpoint ({describe_checkpoint(obj)}); "
                                   "give the reference hififace_opensouce_299999.ckpt or a 'hififace train' checkpoint")
    return Path(out_dir)


#: Start of files people pass by mistake -> what they are.
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
               (b"RIFF", "a RIFF file (WebP, WAV, AVI)"), (b"%PDF", "a PDF document"), (b"MATLAB", "a MATLAB .mat file"),
               (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-Zip archive"))


def check_pytorch_file(path: str | Path, expected: str) -> None:
    """Refuse a file that cannot be a PyTorch checkpoint (a zip archive, or a pickle for files older than
    torch 1.6) before ``torch.load`` sees it, saying what it is instead; ``expected`` tells what to give."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if not head or head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return  # empty files get their own message from the loader
    what = next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)
    if what is None:
        printable = all(32 <= c < 127 or c in (9, 10, 13) for c in head)
        what = "a text file" if printable else "data of another kind"
    raise WeightsError(f"{path}: not a checkpoint ({what}, not a PyTorch .pth/.ckpt file); {expected}")


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
    from ..models.hififace import BFM_FILE, HifiFace
    from .arcface import load_arcface
    from .deep3d import load_recon

    from .arcface import ARCFACE_EXPECTED
    from .deep3d import RECON_EXPECTED

    files = {"arcface": (require_file(arcface, "arcface"), ARCFACE_EXPECTED),
             "recon3d": (require_file(recon3d, "recon3d"), RECON_EXPECTED)}
    for file, expected in files.values():
        if file.suffix != ".safetensors":
            check_pytorch_file(file, expected)
    arcface_net = load_arcface(files["arcface"][0])
    recon_net = load_recon(files["recon3d"][0])
    extra = {}
    if bfm is not None:
        from .bfm import bfm_to_tensors, load_bfm

        extra[BFM_FILE] = bfm_to_tensors(load_bfm(require_file(bfm, "bfm")))
    config = HifiFaceConfig(image_size=image_size, variant=variant, arcface_arch=arcface_net.arch,
                            notes={"arcface": Path(arcface).name, "recon3d": Path(recon3d).name,
                                   "generator": f"random initialisation, seed {seed}"})
    torch.manual_seed(seed)
    model = HifiFace(config, arcface=arcface_net, recon=recon_net)
    with atomic_folder(out_dir, overwrite) as tmp:
        model.save_pretrained(tmp, extra_files=extra)
    return Path(out_dir)
