"""Training data: parsing palette, index and cache, identity split, pair sampling, bad files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hififace.data import (FACE_CLASSES, FacePairDataset, PairConfig, PairSampler, collate_pairs,
                           colour_parsing_to_mask, label_parsing_to_mask, load_index, scan, split_by_identity)
from hififace.errors import ConfigError
from trainkit import HAIR, make_dataset

NON_FACE = [(0, 0, 0), HAIR, (204, 204, 0), (255, 51, 153), (0, 204, 204), (0, 51, 0), (255, 153, 51), (0, 204, 0)]


def test_palette_decodes_the_eleven_face_classes_only():
    colours = [c for c, _ in FACE_CLASSES.values()] + NON_FACE
    rgb = np.array(colours, dtype=np.uint8)[None]  # 1 x K x 3
    mask = colour_parsing_to_mask(rgb)
    assert mask.dtype == np.float32
    assert mask[0, :11].tolist() == [1.0] * 11 and mask[0, 11:].tolist() == [0.0] * len(NON_FACE)
    # near colours (JPEG-like noise) do not count: the reference matches exactly
    assert colour_parsing_to_mask(np.array([[[203, 0, 0]]], np.uint8))[0, 0] == 0.0


def test_label_maps_use_the_same_classes():
    labels = np.arange(19)[None]
    mask = label_parsing_to_mask(labels)
    assert np.flatnonzero(mask[0]).tolist() == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12]


def test_dataset_reads_colour_and_label_maps(tmp_path):
    images, parsing = make_dataset(tmp_path, identities=2, per_identity=2, size=32)
    # replace one colour map by a label-index map with the face in the top half
    lab = np.zeros((32, 32), np.uint8)
    lab[:16] = 1
    Image.fromarray(lab, mode="L").save(parsing / "id1" / "0.png")
    ds = FacePairDataset(scan(images, parsing), PairConfig(image_size=256, same_rate=1.0, pair_mode="identical"))
    i = [k for k, it in enumerate(ds.index.items) if it[1] == "id1/0.png"][0]
    s = ds[(i, 5)]
    assert s["source"].shape == (3, 256, 256) and s["mask"].shape == (1, 256, 256)
    assert 0.0 <= float(s["source"].min()) and float(s["source"].max()) <= 1.0
    assert float(s["mask"][0, :100].mean()) == 1.0 and float(s["mask"][0, 160:].mean()) == 0.0
    assert s["same"].item() == 1.0 and torch.equal(s["source"], s["target"])


def test_unmatched_and_corrupt_files_are_skipped_and_counted(tmp_path, caplog):
    images, parsing = make_dataset(tmp_path, identities=2, per_identity=3, size=32)
    (parsing / "id0" / "2.png").unlink()  # image without parsing map
    Image.new("RGB", (8, 8)).save(parsing / "id1" / "orphan.png")  # map without image
    (images / "id1" / "1.png").write_bytes(b"not a png at all")  # corrupt image
    index = scan(images, parsing)
    assert len(index) == 5  # the corrupt image is found at load time, not while indexing
    assert index.skipped["image without parsing map"] == 1 and index.skipped["parsing map without image"] == 1
    ds = FacePairDataset(index, PairConfig(same_rate=0.0))
    bad = [k for k, it in enumerate(index.items) if it[1] == "id1/1.png"][0]
    with caplog.at_level("WARNING"):
        s = ds[(bad, 3)]  # no crash: another pair is drawn and the skip counted
    assert s["skipped"].item() >= 1 and "unreadable" in caplog.text
    batch = collate_pairs([ds[(k, k)] for k in range(len(ds))])
    assert batch["source"].shape == (5, 3, 256, 256) and batch["skipped"].sum() >= 1


def test_no_usable_pair_is_one_clear_error(tmp_path):
    images, parsing = make_dataset(tmp_path, identities=1, per_identity=1, size=16)
    with pytest.raises(ConfigError, match="no usable training pair"):
        FacePairDataset(scan(images, parsing), PairConfig())
    with pytest.raises(ConfigError, match="not a folder"):
        scan(tmp_path / "nope", parsing)


def test_index_cache_is_reused_and_invalidated(tmp_path):
    images, parsing = make_dataset(tmp_path, identities=2, per_identity=2, size=16)
    cache = tmp_path / "cache.json"
    first = load_index(images, parsing, cache)
    assert cache.exists() and len(first) == 4
    cached = load_index(images, parsing, cache)
    assert cached.items == first.items
    (images / "id0" / "0.png").rename(images / "id0" / "9.png")  # changes the identity folder
    assert len(load_index(images, parsing, cache)) == 3


def test_split_by_identity_never_shares_an_identity(tmp_path):
    images, parsing = make_dataset(tmp_path, identities=5, per_identity=2, size=16)
    train, val = split_by_identity(scan(images, parsing), 2, seed=3)
    assert len(val.identities) == 2 and not set(train.identities) & set(val.identities)
    assert len(train) + len(val) == 10
    with pytest.raises(ConfigError, match="val_identities"):
        split_by_identity(scan(images, parsing), 5)


def test_same_identity_pairs_at_same_rate(tmp_path):
    images, parsing = make_dataset(tmp_path, identities=4, per_identity=3, size=16)
    ds = FacePairDataset(scan(images, parsing), PairConfig(same_rate=0.5, pair_mode="identity"))
    import random

    draws = [ds.draw(i % len(ds), random.Random(i)) for i in range(2000)]
    same = [s for _, s in draws]
    assert 0.5 <= np.mean(same) <= 0.5 + 0.25 + 0.05  # 0.5 drawn + random hits of the same identity (1/4)
    for k, (j, s) in enumerate(draws):
        assert s == (ds.identity_of[j] == ds.identity_of[k % len(ds)])


def test_sampler_shards_by_rank_and_resumes():
    full = list(PairSampler(10, seed=1))
    ranks = [list(PairSampler(10, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 5
    assert sorted(ranks[0] + ranks[1]) == sorted(full)  # disjoint, complete
    s = PairSampler(10, seed=1)
    s.set_epoch(3)
    epoch3 = list(s)
    assert epoch3 != full
    s.start = 4
    assert list(s) == epoch3[4:]
    assert list(s) == epoch3  # the skip applies to one pass
