"""Where weight files are found: ``--weights`` first, then ``$HIFIFACE_HOME``, then ``~/.cache/hififace``.

Nothing is ever downloaded. A missing file gives one line naming the file, its original name and what it is.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightsError

ENV_HOME = "HIFIFACE_HOME"
DEFAULT_MODEL = "hififace-256"


@dataclass(frozen=True)
class KnownFile:
    """A weight file users bring, with the name it is distributed under."""

    key: str
    original_name: str
    what: str
    where: str


KNOWN_FILES = {
    f.key: f
    for f in (
        KnownFile("reference", "hififace_opensouce_299999.ckpt", "the reference HifiFace Lightning checkpoint (256, 300K steps on VGGFace2)",
                  "mindslab-ai/hififace release; convert it with 'hififace convert FILE -o weights/hififace-256'"),
        KnownFile("arcface", "backbone.pth", "insightface ArcFace IResNet-100 identity network",
                  "insightface arcface_torch model zoo, e.g. ms1mv3_arcface_r100_fp16/backbone.pth"),
        KnownFile("recon3d", "epoch_20.pth", "Deep3DFaceRecon ReconNet (3DMM coefficient regressor)",
                  "Deep3DFaceRecon_pytorch checkpoints/face_recon/epoch_20.pth"),
        KnownFile("bfm", "BFM_model_front.mat", "Basel Face Model, front part (for the shape loss)",
                  "built by Deep3DFaceRecon_pytorch from BFM09 (registration at the University of Basel)"),
    )
}


def search_roots() -> list[Path]:
    roots = []
    if os.environ.get(ENV_HOME):
        roots.append(Path(os.environ[ENV_HOME]).expanduser())
    roots.append(Path("~/.cache/hififace").expanduser())
    return roots


def is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def find_model_dir(path: str | Path | None = None) -> Path | None:
    """The model folder to use, or None when nothing is found (no error)."""
    if path is not None:
        p = Path(path).expanduser()
        if is_model_dir(p):
            return p
        if not p.is_absolute() and not p.exists():
            for root in search_roots():
                if is_model_dir(root / p):
                    return root / p
        return None
    for root in search_roots():
        for cand in (root, root / DEFAULT_MODEL):
            if is_model_dir(cand):
                return cand
    return None


def searched_places() -> str:
    """Where :func:`find_model_dir` looks without a path, in words (for messages)."""
    places = []
    for root in search_roots():
        name = f"$HIFIFACE_HOME={root}" if os.environ.get(ENV_HOME) and root == Path(os.environ[ENV_HOME]).expanduser() else str(root)
        places.append(f"{name} (and its {DEFAULT_MODEL}/)")
    return ", ".join(places)


def resolve_model_dir(path: str | Path | None = None, how: str = "pass --weights DIR") -> Path:
    """Like :func:`find_model_dir` but raises one clear :class:`WeightsError` when nothing is found; ``how`` says
    how the command takes a folder."""
    found = find_model_dir(path)
    if found is not None:
        return found
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            raise WeightsError(
                f"{p}: is a file, not a hififace model folder; convert it first: hififace convert {p} -o weights/hififace-256"
            )
        if p.is_dir():
            raise WeightsError(f"{p}: no config.json in this folder; it is not a hififace model folder (make one with 'hififace convert')")
        raise WeightsError(f"{p}: model folder not found; make one with 'hififace convert hififace_opensouce_299999.ckpt -o {p}'")
    ref = KNOWN_FILES["reference"]
    raise WeightsError(
        f"no model folder found in {searched_places()}: {how}, or convert {ref.original_name} ({ref.what}) "
        f"with 'hififace convert {ref.original_name} -o {search_roots()[0] / DEFAULT_MODEL}'"
    )


def require_file(path: str | Path | None, key: str) -> Path:
    """Check that a foreign weight file given by the user exists; the error names its original name."""
    info = KNOWN_FILES[key]
    if path is None:
        raise WeightsError(f"{info.original_name} ({info.what}) is needed: pass its path; it comes from {info.where}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"{p}: file not found; expected {info.original_name}, the {info.what} ({info.where})")
    return p


def tensorrt_cache() -> Path:
    """Where TensorRT engines are kept (they take minutes to build): ``tensorrt/`` in the last search root."""
    return search_roots()[-1] / "tensorrt"
