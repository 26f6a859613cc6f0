"""The reference Lightning checkpoint: strict conversion to our folder and back, bit-exact.

One full-size random checkpoint (2791 keys, ~1 GB) is written and converted once per module; only its first MiB is
kept after that, and the module's files are removed when it ends. The broken variants are the same checkpoint as
the loader returns it with one thing changed, handed to the converter without writing a file each.
"""
from __future__ import annotations

import math
import shutil

import pytest
import torch

from fakes import read_manifest, reference_state, write_reference_ckpt
from hififace import HifiFace
from hififace.cli.main import main as cli
from hififace.errors import WeightsError
from hififace.converters import convert as conv
from hififace.converters.convert import convert_checkpoint
from hififace.converters.reference import build_reference_state, convert_reference_checkpoint

CKPT = "hififace_opensouce_299999.ckpt"


@pytest.fixture(scope="module")
def ref_state():
    return reference_state(seed=1)


@pytest.fixture(scope="module")
def released(tmp_path_factory, ref_state):
    """(the converted folder, the checkpoint's first MiB): the checkpoint itself is gone once converted."""
    folder = tmp_path_factory.mktemp("ref")
    ckpt = write_reference_ckpt(folder / CKPT, state=ref_state)
    with open(ckpt, "rb") as f:
        head = f.read(1 << 20)
    out = folder / "hififace-256"
    assert cli(["convert", str(ckpt), "-o", str(out)]) == 0
    ckpt.unlink()
    yield out, head
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def converted(released):
    return released[0]


def test_folder_layout_and_config(converted):
    names = sorted(p.name for p in converted.iterdir())
    assert names == ["arcface.safetensors", "config.json", "discriminator.safetensors", "generator.safetensors",
                     "lpips.safetensors", "recon3d.safetensors"]
    model = HifiFace.from_pretrained(converted)
    assert model.config.variant == "reference" and model.config.image_size == 256 and model.config.arcface_arch == "r100"
    # inference subset of the reference: 1421 keys, 146,787,223 parameters (seed_checkpoint_summary.md)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 146_787_223
    assert not model.training
    assert all(not p.requires_grad for p in model.id_extractor.parameters())


def test_round_trip_gives_identical_tensors_for_every_manifest_key(converted, ref_state):
    back = build_reference_state(converted)
    manifest = [k for k, _, _ in read_manifest("seed_lightning_checkpoint_keys.tsv")]
    assert list(back) == manifest  # same keys, same state_dict order as the reference module
    for key in manifest:
        a, b = ref_state[key], back[key]
        assert a.dtype == b.dtype and a.shape == b.shape, key
        assert torch.equal(a, b), key


def test_export_command_writes_a_loadable_lightning_checkpoint(converted, tmp_path):
    out = tmp_path / "back.ckpt"
    assert cli(["convert", str(converted), "--to", "reference", "-o", str(out)]) == 0
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"epoch", "global_step", "pytorch-lightning_version", "state_dict", "callbacks",
                         "optimizer_states", "lr_schedulers"}
    assert len(ckpt["state_dict"]) == 2791


def test_converted_weights_drive_the_model(converted, ref_state):
    model = HifiFace.from_pretrained(converted)
    assert torch.equal(model.generator.encoder.stem.weight, ref_state["generator.encoder.conv_first.weight"])
    assert torch.equal(model.generator.sff.up[1].conv2.bias, ref_state["generator.sff_module.f_up.net.1.main_path.6.bias"])
    assert torch.equal(model.generator.decoder.blocks[4].adain2.std.weight,
                       ref_state["generator.decoder.block_list.4.adain2.std_style_fc.weight"])
    assert torch.equal(model.id_extractor.arcface.features.running_var,
                       ref_state["generator.id_extractor.f_id.features.running_var"])


def _loaded(state):
    """The checkpoint as :func:`load_legacy` returns it (the callbacks' class key is a stand-in the converter never
    reads), holding ``state``."""
    return {"epoch": 0, "global_step": 299999, "pytorch-lightning_version": "1.4.5", "state_dict": state,
            "optimizer_states": [], "lr_schedulers": []}


def test_unknown_key_is_named(tmp_path, ref_state, monkeypatch):
    state = dict(ref_state)
    state["generator.encoder.extra_block.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"stand-in: the loader below returns the checkpoint")
    monkeypatch.setattr(conv, "load_legacy", lambda path, what: _loaded(state))
    with pytest.raises(WeightsError, match="generator.encoder.extra_block.weight"):
        convert_checkpoint(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_missing_key_is_named(tmp_path, ref_state):
    state = dict(ref_state)
    del state["generator.sff_module.sigma.side_path.0.bias"]
    with pytest.raises(WeightsError, match="sff_module.sigma.side_path.0.bias"):
        convert_reference_checkpoint(tmp_path / "bad.ckpt", tmp_path / "out", obj=_loaded(state))


def test_shape_mismatch_is_named(tmp_path, ref_state):
    state = dict(ref_state)
    state["generator.encoder.conv_first.weight"] = torch.zeros(32, 3, 3, 3)
    with pytest.raises(WeightsError, match="stem.weight"):
        convert_reference_checkpoint(tmp_path / "bad.ckpt", tmp_path / "out", obj=_loaded(state))


def test_nan_weights_are_refused(tmp_path, ref_state):
    state = dict(ref_state)
    w = state["generator.decoder.block_list.0.main_path1.1.weight"].clone()
    w[0, 0, 0, 0] = math.nan
    state["generator.decoder.block_list.0.main_path1.1.weight"] = w
    with pytest.raises(WeightsError, match="NaN"):
        convert_reference_checkpoint(tmp_path / "bad.ckpt", tmp_path / "out", obj=_loaded(state))


def test_truncated_and_wrong_kind_files(tmp_path, released, capsys):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(released[1])
    assert cli(["convert", str(truncated), "-o", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "truncated.ckpt" in err[0]

    deep3d = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}}, deep3d)
    assert cli(["convert", str(deep3d), "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "Deep3DFaceRecon" in err and "--recon3d" in err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_pickled_code_is_refused(tmp_path, capsys):
    import collections

    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": collections.Counter(a=1)}, evil)  # not a plain tensor container
    assert cli(["convert", str(evil), "-o", str(tmp_path / "o")]) == 2
    assert "error:" in capsys.readouterr().err
