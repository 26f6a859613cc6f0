"""Strict loaders for the files users hold: insightface backbone.pth, Deep3DFaceRecon epoch_20.pth,
BFM_model_front.mat; every manifest key consumed, wrong or damaged files refused with the path named."""
from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.io
import torch

from fakes import read_manifest, write_arcface, write_bfm_mat, write_deep3d
from hififace.errors import WeightsError
from hififace.models.frozen.arcface import IResNet
from hififace.models.frozen.bfm import BFMLandmarks, load_bfm_mat
from hififace.models.frozen.recon import ReconNet
from hififace.converters.arcface import load_arcface, load_arcface_state
from hififace.converters.keys import build_uninitialised
from hififace.converters.bfm import bfm_from_tensors, bfm_to_tensors, load_bfm
from hififace.converters.deep3d import load_recon, load_recon_state
from hififace.weights.io import save_safetensors


def _assert_all_keys_loaded(model, state, manifest):
    own = model.state_dict()
    keys = [k for k, _, _ in read_manifest(manifest)]
    assert list(own) == keys
    for k in keys:
        assert torch.equal(own[k], state[k]), k


def _cheap_state(factory):
    """Full-size state_dict of finite placeholder values, without the cost of random initialisation."""
    state = build_uninitialised(factory).state_dict()
    for k, v in state.items():
        v.fill_(1 if k.endswith("running_var") else 0)
    return state


def _raises_with_path(path, fn, *patterns):
    with pytest.raises(WeightsError) as info:
        fn(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    for p in patterns:
        assert re.search(p, msg), (p, msg)
    return msg


# ----------------------------------------------------------------------------------------- ArcFace
def test_arcface_r100_every_key_loaded_and_runs(tmp_path):
    path = write_arcface(tmp_path / "backbone.pth", "r100", seed=1)
    model = load_arcface(path)
    assert isinstance(model, IResNet) and model.arch == "r100"
    _assert_all_keys_loaded(model, torch.load(path, weights_only=True, mmap=True), "arcface_iresnet100_keys.tsv")
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_arcface_r50_detected_and_every_key_consumed(tmp_path):
    path = write_arcface(tmp_path / "ms1mv3_arcface_r50_fp16_backbone.pth", "r50", seed=2)
    arch, state = load_arcface_state(path)
    assert arch == "r50"
    expected = torch.load(path, weights_only=True, mmap=True)
    assert list(expected) == [k for k, _, _ in read_manifest("arcface_iresnet50_keys.tsv")]
    assert list(state) == list(expected) and all(torch.equal(state[k], expected[k]) for k in expected)


def test_arcface_module_prefix_and_training_checkpoint_accepted(tmp_path):
    state = IResNet("r18", width=0.0625).state_dict()
    p1 = tmp_path / "dp.pth"
    torch.save({"module." + k: v for k, v in state.items()}, p1)
    arch, got = load_arcface_state(p1)
    assert arch == "r18" and list(got) == list(state)
    p2 = tmp_path / "checkpoint_gpu_0.pt"
    torch.save({"epoch": 3, "global_step": 10, "state_dict_backbone": state, "state_dict_softmax_fc": {}}, p2)
    arch, got = load_arcface_state(p2)
    assert arch == "r18" and all(torch.equal(got[k], state[k]) for k in state)
    p3 = tmp_path / "arcface.safetensors"
    save_safetensors(state, p3)
    assert load_arcface_state(p3)[0] == "r18"


def test_recon_file_given_as_arcface(tmp_path):
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": ReconNet(width=0.0625).state_dict(), "epoch": 20}, path)
    _raises_with_path(path, load_arcface, "Deep3DFaceRecon", "backbone.pth", "ms1mv3_arcface_r100")
    raw = tmp_path / "recon_raw.pth"
    torch.save(ReconNet(width=0.0625).state_dict(), raw)
    _raises_with_path(raw, load_arcface, "ReconNet", "backbone.pth")


def test_lightning_checkpoint_given_as_arcface(tmp_path):
    path = tmp_path / "hififace_opensouce_299999.ckpt"
    torch.save({"epoch": 0, "state_dict": {"generator.encoder.0.weight": torch.zeros(2)}, "callbacks": {}}, path)
    _raises_with_path(path, load_arcface, "Lightning", "backbone.pth", "state_dict_backbone")


def test_arcface_unknown_depth_and_shape_mismatch(tmp_path):
    state = IResNet("r18", width=0.0625).state_dict()
    odd = {k: v for k, v in state.items() if not k.startswith("layer2.1.")}
    path = tmp_path / "odd.pth"
    torch.save(odd, path)
    _raises_with_path(path, load_arcface, r"blocks per stage \[2, 1, 2, 2\]")
    small = tmp_path / "small.pth"
    torch.save(state, small)  # right depth (r18) but a width-0.0625 model: shapes differ from the real one
    _raises_with_path(small, load_arcface, "shape mismatch")


def test_counters_absent_from_old_files_are_zero(tmp_path):
    state = {k: v for k, v in _cheap_state(lambda: IResNet("r18")).items() if not k.endswith("num_batches_tracked")}
    state["fc.bias"] = torch.linspace(-1, 1, 512)
    path = tmp_path / "old.pth"
    torch.save(state, path)
    model = load_arcface(path)
    counters = [v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")]
    assert counters and all(int(c) == 0 for c in counters)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_arcface_missing_key_named(tmp_path):
    state = _cheap_state(lambda: IResNet("r18"))
    del state["layer3.0.prelu.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    _raises_with_path(path, load_arcface, r"missing 1 key.*layer3\.0\.prelu\.weight")


def test_arcface_nan_truncated_missing(tmp_path):
    state = _cheap_state(lambda: IResNet("r18"))
    state["fc.weight"][0, 0] = float("nan")
    nan = tmp_path / "nan.pth"
    torch.save(state, nan)
    _raises_with_path(nan, load_arcface, "non-finite", "fc.weight")
    good = tmp_path / "good.pth"
    torch.save(_cheap_state(lambda: IResNet("r18")), good)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _raises_with_path(cut, load_arcface, "truncated")
    _raises_with_path(tmp_path / "nope.pth", load_arcface, "not found")


# ----------------------------------------------------------------------------------------- ReconNet
def test_recon_every_key_loaded_from_epoch_20(tmp_path):
    path = write_deep3d(tmp_path / "epoch_20.pth", seed=4)
    model = load_recon(path)
    assert isinstance(model, ReconNet)
    _assert_all_keys_loaded(model, torch.load(path, weights_only=True)["net_recon"], "deep3d_reconnet_r50_keys.tsv")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    out = model(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, 257) and torch.isfinite(out).all()


def test_recon_raw_state_dict_and_module_prefix(tmp_path):
    state = ReconNet(width=0.0625).state_dict()
    path = tmp_path / "raw.pth"
    torch.save({"module." + k: v for k, v in state.items()}, path)
    got = load_recon_state(path)
    assert list(got) == list(state)


def test_arcface_file_given_as_recon(tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save(IResNet("r18", width=0.0625).state_dict(), path)
    _raises_with_path(path, load_recon, "ArcFace", "epoch_20.pth", "net_recon")
    other = tmp_path / "other.pth"
    torch.save({"epoch": 20, "opt_00": {}}, other)
    _raises_with_path(other, load_recon, "epoch_20.pth")


def test_recon_nan_truncated_missing(tmp_path):
    state = _cheap_state(ReconNet)
    state["final_layers.3.bias"][1] = float("inf")
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": state}, path)
    _raises_with_path(path, load_recon, "non-finite", "final_layers.3.bias")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[:4096])
    _raises_with_path(cut, load_recon, "truncated")
    _raises_with_path(tmp_path / "missing" / "epoch_20.pth", load_recon, "not found")


# ----------------------------------------------------------------------------------------- BFM
def test_bfm_safetensors_round_trip(tmp_path):
    mat = write_bfm_mat(tmp_path / "BFM_model_front.mat", n_vertices=300, seed=1)
    bfm = load_bfm(mat)
    tensors = bfm_to_tensors(bfm)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {"mean_shape": (68, 3), "id_base": (204, 80), "exp_base": (204, 64)}
    out = tmp_path / "bfm_landmarks.safetensors"
    save_safetensors(tensors, out)
    again = load_bfm(out)
    c = 0.3 * torch.randn(3, 257)
    assert torch.equal(again(c), bfm(c))
    assert torch.equal(bfm_from_tensors(tensors).id_base, bfm.id_base)


def test_bfm_from_tensors_checks(tmp_path):
    tensors = bfm_to_tensors(BFMLandmarks.random(0))
    with pytest.raises(WeightsError, match="exp_base"):
        bfm_from_tensors({k: v for k, v in tensors.items() if k != "exp_base"}, "x.safetensors")
    bad = dict(tensors, id_base=tensors["id_base"][:, :40])
    with pytest.raises(WeightsError, match="shapes"):
        bfm_from_tensors(bad, "x.safetensors")
    nan = dict(tensors, mean_shape=tensors["mean_shape"].clone().fill_(float("nan")))
    with pytest.raises(WeightsError, match="non-finite"):
        bfm_from_tensors(nan, "x.safetensors")


def test_bfm_missing_unreadable_incomplete(tmp_path):
    _raises_with_path(tmp_path / "BFM_model_front.mat", load_bfm, "not found", "BFM_model_front.mat", "Basel")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all" * 10)
    _raises_with_path(junk, load_bfm, "cannot read", "BFM_model_front.mat")
    partial = tmp_path / "partial.mat"
    scipy.io.savemat(str(partial), {"meanshape": np.zeros((1, 30)), "idBase": np.zeros((30, 80))})
    _raises_with_path(partial, load_bfm, "exBase", "keypoints")
    wrong = tmp_path / "wrong.mat"
    scipy.io.savemat(str(wrong), {"meanshape": np.zeros((1, 30)), "idBase": np.zeros((30, 80)),
                                  "exBase": np.zeros((30, 64)), "keypoints": np.arange(1, 69).reshape(1, -1)})
    _raises_with_path(wrong, load_bfm, "keypoints outside 1..10")
    _raises_with_path(tmp_path, load_bfm_mat, "folder")


def test_convert_checkpoint_writes_the_bfm_it_is_given(tmp_path, monkeypatch, capsys):
    """'hififace convert CHECKPOINT --bfm FILE': the folder holds that BFM (it used to be dropped without a word), the
    same tensors the separate-files path writes; a bad --bfm is one error line before the checkpoint is read."""
    from hififace.cli.main import main as cli
    from hififace.converters import convert as conv
    from hififace.converters import reference
    from hififace.weights.io import load_safetensors
    from inferkit import tiny_model

    mat = write_bfm_mat(tmp_path / "BFM_model_front.mat", n_vertices=300, seed=1)
    (tmp_path / "ref.ckpt").write_bytes(b"stand-in")
    read = []
    monkeypatch.setattr(conv, "load_legacy", lambda path, what: read.append(path) or {
        "state_dict": {reference.GEN + "id_extractor.x": 0}})
    monkeypatch.setattr(conv, "convert_reference_checkpoint", lambda path, out, obj=None: tiny_model().save_pretrained(out))
    assert cli(["convert", str(tmp_path / "ref.ckpt"), "--bfm", str(mat), "-o", str(tmp_path / "out")]) == 0
    got = load_safetensors(tmp_path / "out" / "bfm_landmarks.safetensors")
    want = bfm_to_tensors(load_bfm(mat))
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    (tmp_path / "bad.mat").write_bytes(b"not a mat file")
    read.clear()
    capsys.readouterr()
    assert cli(["convert", str(tmp_path / "ref.ckpt"), "--bfm", str(tmp_path / "bad.mat"), "-o", str(tmp_path / "o2")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "bad.mat" in err[0]
    assert read == [] and not (tmp_path / "o2").exists()
