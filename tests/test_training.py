"""End-to-end training on a fixed tiny batch: the loss falls, only trainable weights move, checkpoints are lean."""
from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from hififace import HifiFace
from hififace.training.build import fit
from hififace.training.config import load_config
from hififace.training.module import FROZEN_PREFIXES
from hififace.weights.io import load_legacy
from hififace.converters.training import convert_training_checkpoint, is_training_checkpoint
from trainkit import CONFIG, make_dataset, tiny_overrides

STEPS = 10


class Recorder(L.Callback):
    def __init__(self):
        self.losses, self.start, self.frozen_modes = [], None, []

    def on_train_start(self, trainer, module):
        self.start = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.opt_params = [{id(p) for g in o.param_groups for p in g["params"]} for o in trainer.optimizers]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(module.last_terms["g_total"])
        self.frozen_modes.append(any(m.training for f in module.frozen_modules() for m in f.modules()))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    images, parsing = make_dataset(tmp / "data", identities=1, per_identity=2, size=32)
    # A fixed batch: both images, each paired with itself (identical pairs, same_rate 1).
    cfg = load_config(CONFIG, tiny_overrides(tmp, images, parsing, **{
        "trainer.max_steps": STEPS, "trainer.val_every": 0, "trainer.image_every": 0, "checkpoint.every": STEPS,
        "data.same_rate": 1.0, "data.pair_mode": "identical", "optim.g_lr": 5e-4, "optim.d_lr": 5e-4,
        "model.ema_decay": 0.5}))
    rec = Recorder()
    torch.manual_seed(0)
    trainer, module = fit(cfg, callbacks_extra=[rec])
    return cfg, trainer, module, rec


def test_total_loss_falls(run):
    _, _, module, rec = run
    assert module.iteration == STEPS and len(rec.losses) == STEPS
    first, last = sum(rec.losses[:3]) / 3, sum(rec.losses[-3:]) / 3
    assert last < 0.8 * first, rec.losses


def test_trainable_weights_change_and_frozen_ones_do_not(run):
    _, trainer, module, rec = run
    now = module.state_dict()
    for key, before in rec.start.items():
        if key.startswith(FROZEN_PREFIXES):
            assert torch.equal(now[key], before), f"frozen {key} changed"
    moved = [k for k, p in module.model.generator.named_parameters() if not torch.equal(p, rec.start[f"model.generator.{k}"])]
    assert len(moved) == len(list(module.model.generator.parameters()))
    d_moved = [k for k, p in module.discriminator.named_parameters() if not torch.equal(p, rec.start[f"discriminator.{k}"])]
    assert len(d_moved) == len(list(module.discriminator.parameters()))
    # frozen nets: eval mode throughout, no grad, not in any optimizer
    assert not any(rec.frozen_modes)
    frozen_ids = {id(p) for f in module.frozen_modules() for p in f.parameters()}
    assert frozen_ids and not any(p.requires_grad for f in module.frozen_modules() for p in f.parameters())
    assert not (frozen_ids & (rec.opt_params[0] | rec.opt_params[1]))
    assert rec.opt_params[0] == {id(p) for p in module.model.generator.parameters()}
    # single shared instances: the loss nets are the model's own
    assert module.nets.id_extractor is module.model.id_extractor


def test_checkpoint_is_lean_and_converts_to_an_inference_folder(run, tmp_path):
    cfg, _, module, _ = run
    ckpt_path = f"{cfg.checkpoint.dir}/checkpoints/last.ckpt"
    ckpt = load_legacy(ckpt_path, "checkpoint")  # weights_only=True works: no pickled objects
    assert is_training_checkpoint(ckpt) and not is_training_checkpoint({"state_dict": {}})
    keys = list(ckpt["state_dict"])
    assert not any(k.startswith(FROZEN_PREFIXES) for k in keys)
    assert any(k.startswith("generator_ema.") for k in keys) and any(k.startswith("discriminator.") for k in keys)
    assert ckpt["hififace"]["iteration"] == STEPS
    out = convert_training_checkpoint(ckpt_path, tmp_path / "model")
    loaded = HifiFace.from_pretrained(out)
    ema = {k[len("generator_ema."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("generator_ema.")}
    assert all(torch.equal(loaded.generator.state_dict()[k], v) for k, v in ema.items())
    assert torch.equal(loaded.id_extractor.arcface.conv1.weight, module.model.id_extractor.arcface.conv1.weight)
    assert json.loads((out / "config.json").read_text())["notes"]["generator"] == "ema"
    assert (out / "lpips.safetensors").exists() and (out / "bfm_landmarks.safetensors").exists()
    # the same through the command line, which detects the checkpoint kind; --no-ema takes the raw generator
    from hififace.cli.main import main as cli

    assert cli(["convert", ckpt_path, "-o", str(tmp_path / "model_cli"), "--no-ema"]) == 0
    assert json.loads((tmp_path / "model_cli" / "config.json").read_text())["notes"]["generator"] == "raw"
    with torch.no_grad():
        y = loaded(torch.rand(1, 3, 256, 256), torch.rand(1, 3, 256, 256)).i_r
    assert y.shape == (1, 3, 256, 256) and bool(torch.isfinite(y).all())
    # periodic export wrote a loadable folder as well
    exported = sorted((module.trainer.default_root_dir and __import__("pathlib").Path(cfg.checkpoint.dir) / "export").glob("step-*"))
    assert exported and HifiFace.from_pretrained(exported[-1]).config.image_size == 256
    # the run's logs hold every loss term
    csv = next(__import__("pathlib").Path(cfg.checkpoint.dir, "csv").rglob("metrics.csv")).read_text().splitlines()[0]
    for term in ("train/id", "train/shape", "train/seg", "train/rec", "train/cyc", "train/lpips", "train/adv_g",
                 "train/d_total", "train/mask_r_mean", "train/lr_g"):
        assert term in csv
