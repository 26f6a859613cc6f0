"""Legacy checkpoints of every Lightning generation load without executing anything; pickled code is refused.

Files are built by hand the way each Lightning generation writes them: 1.0-1.4 key ``callbacks`` by the callback's
class, 1.5+ by a string, 2.x add ``loops``, ``hparams_name`` and ``hyper_parameters`` (AttributeDict, omegaconf
DictConfig, argparse.Namespace), native AMP adds its scaler state.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fakes import MODEL_CHECKPOINT, foreign_classes, lightning14_callbacks
from hififace.cli.main import main as cli
from hififace.errors import WeightsError
from hififace.weights.io import load_legacy
from hififace.weights.legacy import StandIn

STATE = {"generator.encoder.conv_first.weight": torch.arange(6.0).reshape(2, 3), "generator.x.bias": torch.ones(2)}
OPTIM = [{"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)}},
          "param_groups": [{"lr": 1e-4, "betas": (0.0, 0.999), "params": [0]}]}]
AMP = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 7}
CALLBACK_KEY_15 = ("ModelCheckpoint{'monitor': 'validation / g_loss', 'mode': 'min', 'every_n_train_steps': 40000, "
                   "'every_n_epochs': None, 'train_time_interval': None, 'save_on_train_epoch_end': True}")


def _save(obj, path: Path, zip_format: bool = True) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path


def _assert_weights(obj) -> None:
    assert set(obj["state_dict"]) == set(STATE)
    for k, v in STATE.items():
        assert torch.equal(obj["state_dict"][k], v)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy-pickle"])
def test_lightning_14_class_keyed_callbacks(tmp_path, zip_format):
    with foreign_classes(MODEL_CHECKPOINT, "pytorch_lightning.utilities.parsing.AttributeDict") as (mc, attr):
        hp = attr()  # an object of the made-up class: pickled as NEWOBJ + BUILD
        hp.__dict__.update(lr=1e-4)
        ckpt = {"epoch": 3, "global_step": 299999, "pytorch-lightning_version": "1.4.5", "state_dict": STATE,
                "callbacks": lightning14_callbacks(mc), "optimizer_states": OPTIM, "lr_schedulers": [],
                "native_amp_scaling_state": AMP}
        path = _save(ckpt, tmp_path / "pl14.ckpt", zip_format)
    with pytest.raises(Exception, match="ModelCheckpoint"):  # what users of the released file meet today
        torch.load(path, map_location="cpu", weights_only=True)
    obj = load_legacy(path)
    _assert_weights(obj)
    ((key, state),) = obj["callbacks"].items()
    assert issubclass(key, StandIn) and key.stands_for == MODEL_CHECKPOINT
    assert state["monitor"] == "validation / g_loss" and float(state["current_score"]) == pytest.approx(0.745)
    assert obj["native_amp_scaling_state"] == AMP and obj["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-4


def test_lightning_15_string_keyed_callbacks_and_namespace(tmp_path):
    ckpt = {"epoch": 0, "global_step": 10, "pytorch-lightning_version": "1.5.10", "state_dict": STATE,
            "callbacks": {CALLBACK_KEY_15: {"monitor": "validation / g_loss", "best_model_score": torch.tensor(1.0),
                                            "best_k_models": {"/a.ckpt": torch.tensor(1.0)}, "kth_best_model_path": ""}},
            "optimizer_states": OPTIM, "lr_schedulers": [], "hparams_name": "hparams",
            "hyper_parameters": argparse.Namespace(lr=1e-4, gpus=8, name="hififace")}
    obj = load_legacy(_save(ckpt, tmp_path / "pl15.ckpt"))
    _assert_weights(obj)
    hp = obj["hyper_parameters"]
    assert isinstance(hp, StandIn) and hp.stands_for == "argparse.Namespace"
    assert hp.state == {"lr": 1e-4, "gpus": 8, "name": "hififace"}  # kept for inspection, nothing run
    assert obj["callbacks"][CALLBACK_KEY_15]["monitor"] == "validation / g_loss"


def test_lightning_2_attribute_dict_and_dictconfig(tmp_path):
    from lightning.fabric.utilities.data import AttributeDict
    from omegaconf import OmegaConf

    loops = {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 1, "completed": 1}}}}
    cfg = OmegaConf.create({"model": {"lr": 1e-4, "betas": [0.0, 0.999]}, "name": "x", "steps": 300000})
    for name, hp in (("attrdict", AttributeDict(lr=1e-4, model=AttributeDict(size=256))), ("dictconfig", cfg)):
        ckpt = {"epoch": 1, "global_step": 4, "pytorch-lightning_version": "2.6.0", "state_dict": STATE,
                "loops": loops, "callbacks": {CALLBACK_KEY_15: {"best_model_score": None}},
                "optimizer_states": OPTIM, "lr_schedulers": [], "hparams_name": "kwargs", "hyper_parameters": hp,
                "native_amp_scaling_state": AMP}
        obj = load_legacy(_save(ckpt, tmp_path / f"{name}.ckpt"))
        _assert_weights(obj)
        assert obj["loops"] == loops and obj["hparams_name"] == "kwargs"
        if name == "attrdict":  # dict subclasses come back as plain dicts
            assert type(obj["hyper_parameters"]) is dict and obj["hyper_parameters"]["model"] == {"size": 256}
        else:
            assert isinstance(obj["hyper_parameters"], StandIn)
            assert obj["hyper_parameters"].stands_for == "omegaconf.dictconfig.DictConfig"


def test_nothing_of_lightning_or_omegaconf_is_imported(tmp_path):
    from omegaconf import OmegaConf

    with foreign_classes(MODEL_CHECKPOINT) as (mc,):
        path = _save({"state_dict": STATE, "callbacks": lightning14_callbacks(mc),
                      "hyper_parameters": OmegaConf.create({"a": 1})}, tmp_path / "mixed.ckpt")
    code = ("import sys\n"
            "for m in ('lightning', 'pytorch_lightning', 'lightning_fabric', 'omegaconf'): sys.modules[m] = None\n"
            "from hififace.weights.io import load_legacy\n"
            f"obj = load_legacy({str(path)!r})\n"
            "print(sorted(obj['state_dict']))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "generator.x.bias" in out.stdout


class _WritesMarker:
    """Unpickling this object calls ``fn(marker)``: a stand-in for code a hostile checkpoint runs."""

    def __init__(self, fn, marker: Path):
        self.fn, self.marker = fn, marker

    def __reduce__(self):
        return (self.fn, (str(self.marker),))


def _touch(path: str) -> None:
    Path(path).write_text("ran")


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("fn", ["os.system", "builtins.exec", "module function"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, capsys, zip_format, fn):
    marker = tmp_path / "marker"
    named = {"os.system": os.system.__module__ + ".system", "builtins.exec": "builtins.exec",
             "module function": f"{__name__}._touch"}[fn]
    payload = {"os.system": _WritesMarker(os.system, f"touch {marker}"),
               "builtins.exec": _WritesMarker(exec, f"open({str(marker)!r}, 'w').write('ran')"),
               "module function": _WritesMarker(_touch, marker)}[fn]
    path = _save({"state_dict": STATE, "x": payload}, tmp_path / "evil.ckpt", zip_format)
    assert cli(["convert", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "evil.ckpt" in lines[0], err
    message = lines[0].split("evil.ckpt: ", 1)[1]  # (the tmp folder's name holds the test's name)
    assert message.startswith("refused to read") and named in message, message
    assert "\x1b" not in err and "weights_only=False" not in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy-pickle"])
def test_code_under_a_lightning_name_becomes_an_inert_stand_in(tmp_path, zip_format):
    marker = tmp_path / "marker"

    def touch(path: str) -> None:
        _touch(path)

    with foreign_classes("pytorch_lightning.utilities.Unused"):
        touch.__module__, touch.__qualname__ = "pytorch_lightning.utilities", "touch"
        sys.modules["pytorch_lightning.utilities"].touch = touch
        path = _save({"state_dict": STATE, "x": _WritesMarker(touch, marker)}, tmp_path / "sly.ckpt", zip_format)
    obj = load_legacy(path)
    assert isinstance(obj["x"], StandIn) and obj["x"].args == (str(marker),)
    assert not marker.exists()
    touch(str(marker))  # the function itself does write the marker: the load above really ran none of it
    assert marker.exists()


@pytest.mark.parametrize("content, kind", [
    (b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(64), "a JPEG image"),
    (b"hello, this is a text file\n", "a text file"),
])
def test_files_that_are_not_checkpoints_say_what_they_are(tmp_path, capsys, content, kind):
    path = tmp_path / "backbone.pth"
    path.write_bytes(content)
    with pytest.raises(WeightsError, match=re.escape(f"not a checkpoint ({kind}, not a PyTorch")):
        load_legacy(path, "ArcFace backbone.pth")
    assert cli(["convert", "--arcface", str(path), "--recon3d", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and kind in err and "weights_only" not in err


def test_non_tensor_state_dict_entries_are_refused(tmp_path):
    from hififace.weights.reference import read_reference_state

    path = _save({"state_dict": {**STATE, "generator.y.weight": [1, 2, 3]}}, tmp_path / "odd.ckpt")
    with pytest.raises(WeightsError, match="not tensors.*generator.y.weight"):
        read_reference_state(path)
