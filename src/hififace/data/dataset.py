"""Source/target pairs for HifiFace training: images in [0, 1], the target's face mask and the same-identity flag.

Pairs are drawn from a per-sample seed handed out by :class:`PairSampler`, so a pair depends only on
(seed, epoch, position): identical across data-loader workers, ranks and resumed runs.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from ..errors import ConfigError
from ..media.images import to_rgb
from .index import FaceIndex
from .parsing import mask_from_parsing_image

log = logging.getLogger(__name__)

PAIR_MODES = ("identity", "identical")
MAX_RETRIES = 16


@dataclass
class PairConfig:
    """``same_rate``: probability of a same-identity pair. ``pair_mode``: ``identity`` draws another image of the
    same identity folder (paper); ``identical`` pairs an image with itself (the reference's default dataset)."""

    image_size: int = 256
    same_rate: float = 0.5
    pair_mode: str = "identity"

    def __post_init__(self) -> None:
        if not (0.0 <= float(self.same_rate) <= 1.0):
            raise ConfigError(f"data.same_rate must be in [0, 1], got {self.same_rate!r}")
        if self.pair_mode not in PAIR_MODES:
            raise ConfigError(f"data.pair_mode must be one of {', '.join(PAIR_MODES)}, got {self.pair_mode!r}")


class UnreadableSample(Exception):
    pass



def _read(path: Path, convert: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    """A training file decoded by PIL and converted; a damaged one is an :class:`UnreadableSample` (skipped)."""
    try:
        with Image.open(path) as img:
            img.load()
            return convert(img)
    except Exception as err:  # PIL raises many kinds on damaged files
        raise UnreadableSample(f"{path}: {err}") from None

class FacePairDataset(Dataset):
    """Index ``(i, seed)`` -> dict(source, target, mask, same, skipped) for source image ``i``.

    A corrupt image or parsing map is replaced by another draw (same seed stream) and counted in ``skipped``,
    which the trainer sums and logs; the epoch never stops for a bad file.
    """

    def __init__(self, index: FaceIndex, config: PairConfig):
        if len(index) < 2:
            raise ConfigError(
                f"no usable training pair in {index.images} / {index.parsing}: found {len(index)} image(s) with a "
                "matching parsing map (need at least 2); check data.images and data.parsing"
            )
        self.index = index
        self.config = config
        by_ident: dict[str, list[int]] = {}
        for i, (ident, _, _) in enumerate(index.items):
            by_ident.setdefault(ident, []).append(i)
        self.by_identity = by_ident
        self.identity_of = [ident for ident, _, _ in index.items]

    def __len__(self) -> int:
        return len(self.index)

    # ------------------------------------------------------------------ pairing
    def draw(self, i: int, rng: random.Random) -> tuple[int, bool]:
        """Target index and same-identity flag for source ``i``."""
        cfg = self.config
        if rng.random() < cfg.same_rate:
            if cfg.pair_mode == "identical":
                return i, True
            group = self.by_identity[self.identity_of[i]]
            others = [j for j in group if j != i] or group
            return others[rng.randrange(len(others))], True
        j = rng.randrange(len(self))
        if cfg.pair_mode == "identical":
            return j, j == i  # the reference flags only the identical image as "same"
        return j, self.identity_of[j] == self.identity_of[i]

    # ------------------------------------------------------------------ loading
    def _image(self, rel: str) -> torch.Tensor:
        arr = _read(self.index.images / rel, to_rgb)
        size = self.config.image_size
        if arr.shape[:2] != (size, size):
            arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BILINEAR))
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)

    def _mask(self, rel: str) -> torch.Tensor:
        mask = _read(self.index.parsing / rel, mask_from_parsing_image)
        size = self.config.image_size
        if mask.shape != (size, size):
            # Soft edges as the reference (bilinear resize of the 0/1 mask).
            mask = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((size, size), Image.BILINEAR))
        return torch.from_numpy(np.array(mask, dtype=np.float32))[None]

    def load_pair(self, i: int, j: int, same: bool) -> dict[str, torch.Tensor]:
        _, src_rel, _ = self.index.items[i]
        _, tgt_rel, tgt_parsing = self.index.items[j]
        return {
            "source": self._image(src_rel),
            "target": self._image(tgt_rel),
            "mask": self._mask(tgt_parsing),
            "same": torch.tensor(float(same)),
        }

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        i, seed = key if isinstance(key, tuple) else (int(key), int(key))
        rng = random.Random(seed)
        skipped = 0
        for _ in range(MAX_RETRIES):
            j, same = self.draw(i, rng)
            try:
                sample = self.load_pair(i, j, same)
                sample["skipped"] = torch.tensor(skipped)
                return sample
            except UnreadableSample as err:
                skipped += 1
                log.warning("data: skipping unreadable file (%s)", err)
                i = rng.randrange(len(self))  # a different source too: the bad file may be the source
        raise ConfigError(f"data: {MAX_RETRIES} unreadable files in a row around {self.index.images}; the data set "
                          "looks damaged (check the files named in the warnings above)")


class PairSampler(Sampler):
    """Shuffled indices sharded by rank, each with a pair seed; resumable from a position within an epoch.

    Every rank gets ``ceil(n / world_size)`` items (padded by wrapping) so that ranks step in lock-step.
    ``set_epoch`` is called by Lightning at each epoch start; ``start`` skips items already consumed (resume).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.shuffle = n, int(seed), shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        # The full epoch length even when resuming: the trainer's batch counter continues from where it stopped.
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))
        per_rank = math.ceil(self.n / self.world_size)
        total = per_rank * self.world_size
        order = (order * (total // max(1, len(order)) + 1))[:total]
        positions = range(self.rank, total, self.world_size)
        start, self.start = self.start, 0  # the skip applies to one pass only
        for k, pos in enumerate(positions):
            if k < start:
                continue
            # The pair seed depends on (seed, epoch, global position) only, never on the rank count's accidents.
            yield order[pos], (self.seed * 7_919 + self.epoch) * 10_000_019 + pos


def collate_pairs(samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}
