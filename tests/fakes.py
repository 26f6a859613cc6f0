"""Random-weight files in the exact formats users hold, built from the key manifests in tests/data/manifests.

Values are random but well-behaved (BatchNorm running_var positive, small conv weights) so forward passes stay
finite; keys, shapes, dtypes and containers are those of the real files.
"""
from __future__ import annotations

import math
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

MANIFESTS = Path(__file__).parent / "data" / "manifests"


def read_manifest(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in (MANIFESTS / name).read_text().splitlines():
        if not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        dims = tuple(int(d) for d in shape.split(",")) if shape else ()
        rows.append((key, dims, dtype))
    return rows


def fake_tensor(key: str, shape: tuple[int, ...], dtype: str, gen: torch.Generator) -> torch.Tensor:
    if dtype == "int64":
        return torch.zeros(shape, dtype=torch.int64)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=gen)
    if leaf == "running_mean":
        return 0.1 * torch.randn(shape, generator=gen)
    if len(shape) <= 1:  # biases, norm affine, PReLU slopes, LPIPS buffers
        if "prelu" in key or leaf == "weight":
            return 0.75 + 0.5 * torch.rand(shape, generator=gen)
        return 0.02 * torch.randn(shape, generator=gen)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=gen) * (0.5 / math.sqrt(fan_in))


def fake_state(name: str, seed: int = 0, prefix: str = "", strip: str = "") -> "OrderedDict[str, torch.Tensor]":
    """State dict of manifest ``name`` restricted to keys starting with ``prefix``; ``strip`` is removed from names."""
    gen = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape, dtype in read_manifest(name):
        if not key.startswith(prefix):
            continue
        new_key = key[len(strip):] if strip and key.startswith(strip) else key
        out[new_key] = fake_tensor(key, shape, dtype, gen)
    return out


def write_arcface(path: Path, arch: str = "r100", seed: int = 0) -> Path:
    """insightface ``backbone.pth``: a raw state_dict, no prefix."""
    manifest = {"r100": "arcface_iresnet100_keys.tsv", "r50": "arcface_iresnet50_keys.tsv"}[arch]
    torch.save(fake_state(manifest, seed), path)
    return path


def write_deep3d(path: Path, seed: int = 0) -> Path:
    """Deep3DFaceRecon ``epoch_20.pth``: {'net_recon': state_dict, 'opt_00': ..., 'epoch': 20}."""
    state = fake_state("deep3d_reconnet_r50_keys.tsv", seed)
    torch.save({"net_recon": state, "opt_00": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}, "epoch": 20}, path)
    return path


def write_xuehy_generator(path: Path, seed: int = 0, state: dict | None = None) -> Path:
    """xuehy/HiFiFace-pytorch ``generator_<iteration>.pth``: a raw ``Generator.state_dict()``, no prefix, with the
    frozen ArcFace (``id_extractor.f_id.*``) and ReconNet (``id_extractor.f_3d.*``) embedded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fake_state("xuehy_hififace_generator_keys.tsv", seed) if state is None else state, path)
    return path


def reference_state(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """The full 2791-key state_dict of the reference LightningModule (generator, discriminator, loss copies)."""
    state = fake_state("seed_lightning_checkpoint_keys.tsv", seed)
    # The reference loads its loss-side ArcFace/ReconNet copies from the same files as the generator's.
    for key in list(state):
        for dup, orig in (("g_loss.f_3d.", "generator.id_extractor.f_3d."), ("g_loss.f_id.", "generator.id_extractor.f_id.")):
            if key.startswith(dup):
                state[key] = state[orig + key[len(dup):]].clone()
    # LPIPS stores its linear heads twice (lin0-4 and lins.0-4 are the same tensors).
    for i in range(5):
        a = f"g_loss.realism_loss.loss_fn_vgg.lin{i}.model.1.weight"
        b = f"g_loss.realism_loss.loss_fn_vgg.lins.{i}.model.1.weight"
        if a in state and b in state:
            state[b] = state[a]
    return state


@contextmanager
def foreign_classes(*names: str) -> Iterator[list[type]]:
    """Classes importable under ``names`` (``pkg.mod.Class``) for as long as the block runs, so that a pickle
    names them exactly as a file written with that package installed does (pytorch-lightning 1.4 is not
    installable next to torch 2.x). Made-up modules are removed again afterwards."""
    added, classes = [], []
    try:
        for name in names:
            module, _, cls_name = name.rpartition(".")
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                mod = ".".join(parts[:i])
                if mod not in sys.modules:
                    sys.modules[mod] = types.ModuleType(mod)
                    added.append(mod)
                    if i > 1:
                        setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1], sys.modules[mod])
            cls = type(cls_name, (), {"__module__": module, "__qualname__": cls_name})
            setattr(sys.modules[module], cls_name, cls)
            classes.append(cls)
        yield classes
    finally:
        for mod in reversed(added):
            del sys.modules[mod]


MODEL_CHECKPOINT = "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint"


def lightning14_callbacks(model_checkpoint: type) -> dict:
    """``callbacks`` as pytorch-lightning <= 1.4 writes it: keyed by the callback's class (the released file)."""
    return {model_checkpoint: {"monitor": "validation / g_loss", "best_model_score": torch.tensor(0.731),
                               "best_model_path": "/ckpt/hififace/epoch=0-step=279999.ckpt",
                               "current_score": torch.tensor(0.745), "dirpath": "/ckpt/hififace"}}


def write_reference_ckpt(path: Path, seed: int = 0, state: dict | None = None) -> Path:
    """A checkpoint as the reference trainer (pytorch-lightning 1.4.5) writes it, ModelCheckpoint class key included."""
    with foreign_classes(MODEL_CHECKPOINT) as (model_checkpoint,):
        torch.save(
            {
                "epoch": 0,
                "global_step": 299999,
                "pytorch-lightning_version": "1.4.5",
                "state_dict": reference_state(seed) if state is None else state,
                "callbacks": lightning14_callbacks(model_checkpoint),
                "optimizer_states": [],
                "lr_schedulers": [],
            },
            path,
        )
    return path


def write_bfm_mat(path: Path, n_vertices: int = 500, seed: int = 0, n_tri: int = 900) -> Path:
    """Deep3DFaceRecon ``BFM_model_front.mat`` with the real array names and layout, random small values.

    meanshape 1x3N (decimetre scale, deliberately off-centre), idBase 3Nx80, exBase 3Nx64, meantex 1x3N,
    texBase 3Nx80, tri Fx3 and point_buf Nx8 and keypoints 1x68 (all 1-based), plus the training-only arrays.
    """
    import numpy as np
    import scipy.io

    rng = np.random.default_rng(seed)
    mean = rng.uniform([-0.8, -1.0, -0.3], [0.8, 1.0, 0.6], size=(n_vertices, 3)) + np.array([0.05, -0.1, 0.2])
    keypoints = rng.choice(n_vertices, size=68, replace=False) + 1
    scipy.io.savemat(
        str(path),
        {
            "meanshape": mean.reshape(1, -1),
            "idBase": rng.normal(0.0, 0.01, size=(3 * n_vertices, 80)),
            "exBase": rng.normal(0.0, 0.005, size=(3 * n_vertices, 64)),
            "meantex": rng.uniform(0, 255, size=(1, 3 * n_vertices)),
            "texBase": rng.normal(0.0, 1.0, size=(3 * n_vertices, 80)),
            "tri": rng.integers(1, n_vertices + 1, size=(n_tri, 3)).astype(np.float64),
            "point_buf": rng.integers(1, n_tri + 2, size=(n_vertices, 8)).astype(np.float64),
            "keypoints": keypoints.reshape(1, -1).astype(np.float64),
            "frontmask2_idx": np.arange(1, n_vertices // 2 + 1, dtype=np.float64).reshape(-1, 1),
            "tri_mask2": rng.integers(1, n_vertices + 1, size=(n_tri // 2, 3)).astype(np.float64),
            "skinmask": (rng.uniform(size=(1, n_vertices)) > 0.5).astype(np.float64),
        },
    )
    return path


def write_fid_inception(path: Path, seed: int = 0) -> Path:
    """pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``: a raw state_dict (torchvision Inception3 keys)."""
    torch.save(fake_state("fid_inception_keys.tsv", seed), path)
    return path
