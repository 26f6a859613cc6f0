"""Two CPU processes (gloo, ddp_spawn) train a few iterations on different shards and stay in agreement."""
from __future__ import annotations

import lightning as L
import torch

from hififace.training.build import fit
from hififace.training.config import load_config
from trainkit import CONFIG, make_dataset, tiny_overrides


class RankReport(L.Callback):
    def __init__(self, folder):
        self.folder = str(folder)
        self.sources = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.sources.append(batch["source"].sum().item())

    def on_train_end(self, trainer, module):
        torch.set_num_threads(1)
        state = {k: v.detach().clone() for k, v in module.model.generator.state_dict().items()}
        torch.save({"rank": trainer.global_rank, "world": trainer.world_size, "generator": state,
                    "disc": {k: v.detach().clone() for k, v in module.discriminator.named_parameters()},
                    "sources": self.sources, "iteration": module.iteration},
                   f"{self.folder}/rank{trainer.global_rank}.pt")


def test_ddp_spawn_two_processes_agree(tmp_path):
    images, parsing = make_dataset(tmp_path / "data", identities=2, per_identity=2, size=32)
    cfg = load_config(CONFIG, tiny_overrides(tmp_path, images, parsing, **{
        "trainer.max_steps": 2, "trainer.devices": 2, "trainer.strategy": "ddp_spawn", "trainer.val_every": 0,
        "trainer.image_every": 0, "checkpoint.every": 0, "data.batch_size": 1}))
    fit(cfg, callbacks_extra=[RankReport(tmp_path)])
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert (r0["world"], r1["world"], r0["iteration"], r1["iteration"]) == (2, 2, 2, 2)
    assert r0["sources"] != r1["sources"]  # each rank saw its own shard
    for key, v in r0["generator"].items():
        assert torch.allclose(v, r1["generator"][key], atol=1e-6), key  # gradients were averaged
    # (BatchNorm running statistics are per rank until DDP broadcasts them at the next forward; weights agree)
    for key, v in r0["disc"].items():
        assert torch.allclose(v, r1["disc"][key], atol=1e-6), key
