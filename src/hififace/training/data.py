"""Lightning data module: index (cached), identity split, rank-sharded resumable pair sampling."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from ..data import FacePairDataset, PairConfig, PairSampler, collate_pairs, load_index, split_by_identity
from ..losses.functional import same_pairs
from .config import TrainConfig

log = logging.getLogger(__name__)


def with_same_index(batch):
    """``batch`` with ``same_index`` (:func:`~hififace.losses.functional.same_pairs` of ``batch["same"]``) added."""
    if isinstance(batch, dict) and "same" in batch and "same_index" not in batch:
        batch = {**batch, "same_index": same_pairs(batch["same"])}
    return batch


class FaceDataModule(L.LightningDataModule):
    """Train/validation pair loaders. ``resume_batches`` (set from a checkpoint) skips what an epoch already used."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.train_set: FacePairDataset | None = None
        self.val_set: FacePairDataset | None = None
        self.resume_position: tuple[int, int] | None = None  # (epoch, batches done in it)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        d = self.cfg.data
        images, parsing = d.folders()
        cache = d.index_cache or str(Path(self.cfg.checkpoint.dir) / "data_index.json")
        index = load_index(images, parsing, cache)
        train, val = split_by_identity(index, d.val_identities, seed=d.seed)
        pair = PairConfig(self.cfg.model.image_size, d.same_rate, d.pair_mode)
        self.train_set = FacePairDataset(train, pair)
        self.val_set = FacePairDataset(val, pair) if len(val) >= 2 else None
        log.info("data: %d training images (%d identities), %d validation images", len(train),
                 len(train.identities), len(val))

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Adds ``same_index``, the same-identity pairs' indices, found on the host: the LPIPS term needs them, and
        finding them on the GPU would make every step wait for the device."""
        return with_same_index(batch)

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        d = self.cfg.data
        rank, world = self._rank()
        sampler = PairSampler(len(self.train_set), seed=d.seed, shuffle=True, rank=rank, world_size=world)
        if self.resume_position is not None:
            epoch, batches = self.resume_position
            sampler.set_epoch(epoch)
            sampler.start = batches * d.batch_size
            self.resume_position = None
        return DataLoader(self.train_set, batch_size=d.batch_size, sampler=sampler, drop_last=True,
                          num_workers=d.num_workers, pin_memory=d.pin_memory, collate_fn=collate_pairs,
                          persistent_workers=d.num_workers > 0)

    def val_dataloader(self):
        if self.val_set is None:
            return []
        d = self.cfg.data
        rank, world = self._rank()
        # Fixed pairs (same seeds every validation) so that curves compare like with like.
        sampler = PairSampler(len(self.val_set), seed=d.seed + 1, shuffle=False, rank=rank, world_size=world)
        return DataLoader(self.val_set, batch_size=d.val_batch_size, sampler=sampler, drop_last=False,
                          num_workers=min(d.num_workers, 2), collate_fn=collate_pairs)
