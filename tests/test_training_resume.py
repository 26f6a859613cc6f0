"""Killing a run after iteration k and resuming it gives the same loss at k+1 as never stopping."""
from __future__ import annotations

import lightning as L
import pytest
import torch

from hififace.training.build import fit
from hififace.training.config import load_config
from trainkit import CONFIG, make_dataset, tiny_overrides

K = 1  # 5 images, batch 2 -> 2 batches per epoch: the checkpoint after iteration 1 is in the middle of an epoch


class Recorder(L.Callback):
    def __init__(self):
        self.terms = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.terms[module.iteration] = dict(module.last_terms)


def _cfg(tmp, images, parsing, name):
    return load_config(CONFIG, tiny_overrides(tmp / name, images, parsing, **{
        "trainer.max_steps": K + 1, "trainer.val_every": 0, "trainer.image_every": 0, "checkpoint.every": K,
        "model.ema_decay": 0.5, "optim.scheduler": "step", "optim.step_size": 1, "optim.gamma": 0.5,
        "data.same_rate": 0.5, "data.pair_mode": "identity"}))


def test_resume_continues_exactly(tmp_path):
    images, parsing = make_dataset(tmp_path / "data", identities=2, per_identity=3, size=32)
    (images / "id1" / "2.png").unlink()  # 5 usable images: the epoch has an odd tail (drop_last)

    straight = Recorder()
    _, mod_a = fit(_cfg(tmp_path, images, parsing, "a"), callbacks_extra=[straight])
    assert sorted(straight.terms) == [K, K + 1]
    killed = tmp_path / "a" / "run" / "checkpoints" / f"iter{K:08d}.ckpt"  # what a run killed after k leaves
    assert killed.exists()

    resumed = Recorder()
    _, mod_b = fit(_cfg(tmp_path, images, parsing, "b"), resume=str(killed), callbacks_extra=[resumed])
    assert mod_b.iteration == K + 1 and list(resumed.terms) == [K + 1]  # only the missing iteration ran
    a, b = straight.terms[K + 1], resumed.terms[K + 1]
    for key in a:
        assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    # model, EMA, discriminator, optimizer moments and the lr schedule all came back: the final states agree
    sa = torch.load(tmp_path / "a" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert sa["hififace"]["iteration"] == sb["hififace"]["iteration"] == K + 1
    assert sa["hififace"]["data"] == sb["hififace"]["data"]
    for k, v in sa["state_dict"].items():
        assert torch.allclose(v.float(), sb["state_dict"][k].float(), rtol=1e-4, atol=1e-6), k
    for opt_a, opt_b in zip(sa["optimizer_states"], sb["optimizer_states"]):
        assert opt_a["param_groups"][0]["lr"] == pytest.approx(opt_b["param_groups"][0]["lr"])
        assert opt_a["param_groups"][0]["lr"] == pytest.approx(1e-4 * 0.5 ** (K + 1))
        for s in opt_a["state"]:
            assert torch.allclose(opt_a["state"][s]["exp_avg_sq"], opt_b["state"][s]["exp_avg_sq"], rtol=1e-4, atol=1e-10)
