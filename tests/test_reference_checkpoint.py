"""The reference Lightning checkpoint: strict conversion to our folder and back, bit-exact."""
from __future__ import annotations

import math

import pytest
import torch

from fakes import read_manifest, reference_state, write_reference_ckpt
from hififace import HifiFace
from hififace.cli.main import main as cli
from hififace.errors import WeightsError
from hififace.converters.convert import convert_checkpoint
from hififace.converters.reference import build_reference_state, convert_reference_checkpoint


@pytest.fixture(scope="module")
def ref_state():
    return reference_state(seed=1)


@pytest.fixture(scope="module")
def ref_ckpt(tmp_path_factory, ref_state):
    return write_reference_ckpt(tmp_path_factory.mktemp("ref") / "hififace_opensouce_299999.ckpt", state=ref_state)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, ref_ckpt):
    out = tmp_path_factory.mktemp("conv") / "hififace-256"
    assert cli(["convert", str(ref_ckpt), "-o", str(out)]) == 0
    return out


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


def _write(tmp_path, state, name="bad.ckpt"):
    return write_reference_ckpt(tmp_path / name, state=state)


def test_unknown_key_is_named(tmp_path, ref_state):
    state = dict(ref_state)
    state["generator.encoder.extra_block.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError, match="generator.encoder.extra_block.weight"):
        convert_checkpoint(_write(tmp_path, state), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_missing_key_is_named(tmp_path, ref_state):
    state = dict(ref_state)
    del state["generator.sff_module.sigma.side_path.0.bias"]
    with pytest.raises(WeightsError, match="sff_module.sigma.side_path.0.bias"):
        convert_reference_checkpoint(_write(tmp_path, state), tmp_path / "out")


def test_shape_mismatch_is_named(tmp_path, ref_state):
    state = dict(ref_state)
    state["generator.encoder.conv_first.weight"] = torch.zeros(32, 3, 3, 3)
    with pytest.raises(WeightsError, match="stem.weight"):
        convert_reference_checkpoint(_write(tmp_path, state), tmp_path / "out")


def test_nan_weights_are_refused(tmp_path, ref_state):
    state = dict(ref_state)
    w = state["generator.decoder.block_list.0.main_path1.1.weight"].clone()
    w[0, 0, 0, 0] = math.nan
    state["generator.decoder.block_list.0.main_path1.1.weight"] = w
    with pytest.raises(WeightsError, match="NaN"):
        convert_reference_checkpoint(_write(tmp_path, state), tmp_path / "out")


def test_truncated_and_wrong_kind_files(tmp_path, ref_ckpt, capsys):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ref_ckpt.read_bytes()[: 1 << 20])
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
