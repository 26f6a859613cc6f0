"""Legacy checkpoints of every Lightning generation load without executing anything; pickled code is refused.

Files are built by hand the way each Lightning generation writes them: 1.0-1.4 key ``callbacks`` by the callback's
class, 1.5+ by a string, 2.x add ``loops``, ``hparams_name`` and ``hyper_parameters`` (AttributeDict, omegaconf
DictConfig, argparse.Namespace), native AMP adds its scaler state.
"""
from __future__ import annotations

import argparse
import collections
import io
import os
import pickle
import pickletools
import re
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from fakes import MODEL_CHECKPOINT, foreign_classes, lightning14_callbacks
from hififace.cli.main import main as cli
from hififace.errors import WeightsError
from hififace.weights.io import load_legacy
from hififace.weights.legacy import LegacyLimits, StandIn

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
    from hififace.converters.reference import read_reference_state

    path = _save({"state_dict": {**STATE, "generator.y.weight": [1, 2, 3]}}, tmp_path / "odd.ckpt")
    with pytest.raises(WeightsError, match="not tensors.*generator.y.weight"):
        read_reference_state(path)


# ------------------------------------------------------------------------------------------------ hostile files
def _torch_zip(path: Path, pkl: bytes, deflate: bool = False) -> Path:
    """A zip laid out as torch.save writes it (``<name>/data.pkl``, ``version``, ``byteorder``, ``data/0``) with
    ``pkl`` as its pickle; ``deflate`` compresses the pickle, as torch never does."""
    buf = io.BytesIO()
    torch.save({"a": torch.ones(2)}, buf)
    src = zipfile.ZipFile(buf)
    with zipfile.ZipFile(path, "w") as z:
        for info in src.infolist():
            own = info.filename.endswith("/data.pkl")
            z.writestr(info.filename, pkl if own else src.read(info),
                       compress_type=zipfile.ZIP_DEFLATED if own and deflate else zipfile.ZIP_STORED)
    return path


def _one_line(capsys, name: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], lines
    assert "unexpected" not in lines[0] and "\x1b" not in lines[0]
    return lines[0]


def _plain_pickle() -> bytes:
    buf = io.BytesIO()
    torch.save({"state_dict": STATE}, buf)
    return next(zipfile.ZipFile(buf).read(n) for n in zipfile.ZipFile(buf).namelist() if n.endswith("/data.pkl"))


def test_a_zip_bomb_is_refused_from_its_declared_sizes(tmp_path, capsys):
    # the pickle then 17 MiB of zeros, deflated to ~17 kB (the bomb had 1.5 GiB: 3.3 GB of memory)
    bomb = _torch_zip(tmp_path / "bomb.ckpt", _plain_pickle() + bytes(17 * 2**20), deflate=True)
    assert bomb.stat().st_size < 100_000
    assert cli(["convert", str(bomb), "-o", str(tmp_path / "out")]) == 2
    line = _one_line(capsys, "bomb.ckpt")
    assert "data.pkl inflates to 17.0 MiB (limit 16.0 MiB)" in line, line
    ratio = _torch_zip(tmp_path / "ratio.ckpt", _plain_pickle() + bytes(2**20), deflate=True)  # under the size cap
    with pytest.raises(WeightsError, match=r"data.pkl inflates [\d,]+-fold \(a zip bomb; limit 100-fold\)"):
        load_legacy(ratio)
    assert not (tmp_path / "out").exists()


def test_a_deflated_pickle_of_a_sane_size_and_ratio_still_loads(tmp_path):
    src = zipfile.ZipFile(_save({"state_dict": STATE}, tmp_path / "plain.ckpt"))
    with zipfile.ZipFile(tmp_path / "rezipped.ckpt", "w") as z:  # as `zip -r` would re-pack it: pickle deflated
        for info in src.infolist():
            z.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED
                       if info.filename.endswith(".pkl") else zipfile.ZIP_STORED)
    _assert_weights(load_legacy(tmp_path / "rezipped.ckpt"))


def test_zip_members_are_checked_before_anything_is_read(tmp_path):
    good = _save({"state_dict": STATE}, tmp_path / "good.ckpt")
    src = zipfile.ZipFile(good)
    data_member = next(n for n in src.namelist() if "/data/" in n)
    deflated = tmp_path / "deflated.ckpt"  # torch would read the compressed bytes as weights through its mmap
    with zipfile.ZipFile(deflated, "w") as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED if info.filename == data_member
                       else zipfile.ZIP_STORED)
    with pytest.raises(WeightsError, match=f"tensor record {re.escape(data_member)} is compressed"):
        load_legacy(deflated)
    bzip = tmp_path / "bzip2.ckpt"
    with zipfile.ZipFile(bzip, "w") as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_BZIP2)
    with pytest.raises(WeightsError, match="compression method 12"):
        load_legacy(bzip)
    with pytest.raises(WeightsError, match="3 members \\(limit 2\\)|members \\(limit 2\\)"):
        load_legacy(good, limits=LegacyLimits(max_members=2))
    # two central directory entries pointing at the same bytes: how non-recursive zip bombs multiply a kernel
    raw = bytearray(good.read_bytes())
    cd = raw.rfind(b"PK\x01\x02")  # the last member's central directory entry: point it at the first member
    raw[cd + 42:cd + 46] = struct.pack("<I", 0)
    overlap = tmp_path / "overlap.ckpt"
    overlap.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="overlaps the one before it"):
        load_legacy(overlap)


def test_a_pickle_over_the_size_limit_is_refused_in_both_formats(tmp_path):
    limits = LegacyLimits(max_pickle_bytes=200)
    for zip_format in (True, False):
        path = _save({"state_dict": STATE}, tmp_path / f"big{zip_format}.ckpt", zip_format)
        with pytest.raises(WeightsError, match="limit"):
            load_legacy(path, limits=limits)
    # the window ends exactly after torch's first three pickles: the object's pickle would go to torch unchecked
    raw = (tmp_path / "bigFalse.ckpt").read_bytes()
    at = 0
    for _ in range(3):
        at += [pos for _, _, pos in pickletools.genops(raw[at:])][-1] + 1
    with pytest.raises(WeightsError, match="pickles do not end within the first"):
        load_legacy(tmp_path / "bigFalse.ckpt", limits=LegacyLimits(max_pickle_bytes=at))


NESTED_KEY = b"\x80\x02}" + b"K\x01" + b"\x85" * 300_000 + b"K\x02s."  # {((((1,),),)...): 2}, 300,000 deep


def test_a_deeply_nested_pickle_is_refused_before_torch_crashes_on_it(tmp_path):
    # torch.load(weights_only=True) itself dies of a segmentation fault on these: run them in a child process
    zipped = _torch_zip(tmp_path / "deep.ckpt", NESTED_KEY)
    raw = tmp_path / "deep.pth"
    raw.write_bytes(NESTED_KEY)
    code = ("import sys\nfrom hififace.cli.main import main\n"
            f"rcs = [main(['convert', {str(zipped)!r}, '-o', {str(tmp_path / 'o1')!r}]),\n"
            f"       main(['convert', '--arcface', {str(raw)!r}, '--recon3d', {str(raw)!r}, '-o', {str(tmp_path / 'o2')!r}])]\n"
            "print(rcs)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])  # -11 without the depth check
    assert out.stdout.strip() == "[2, 2]", out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: ") for line in lines), lines
    assert "deep.ckpt" in lines[0] and "deep.pth" in lines[1]
    assert all("containers nested more than 256 deep" in line for line in lines), lines


def test_nesting_depth_of_real_checkpoints_is_far_below_the_limit():
    from hififace.weights.pickles import scan_pickle

    scan = scan_pickle(_plain_pickle())
    assert 2 <= scan.depth <= 16, scan.depth
    assert {name for _, name in scan.globals} == {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                                  "torch.FloatStorage"}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("kind", ["protocol-4 STACK_GLOBAL", "protocol-0 GLOBAL", "protocol-0 INST"])
def test_globals_of_every_opcode_get_the_same_refusal(tmp_path, capsys, zip_format, kind):
    marker = tmp_path / "marker"
    payload = {"state_dict": {}, "x": _WritesMarker(os.system, f"touch {marker}")}
    data = {"protocol-4 STACK_GLOBAL": pickle.dumps(payload, protocol=4),
            "protocol-0 GLOBAL": pickle.dumps(payload, protocol=0),
            "protocol-0 INST": f"(S'touch {marker}'\ni{os.system.__module__}\nsystem\n.".encode()}[kind]
    path = tmp_path / "evil.ckpt"
    _torch_zip(path, data) if zip_format else path.write_bytes(data)
    assert cli(["convert", str(path), "-o", str(tmp_path / "out")]) == 2
    line = _one_line(capsys, "evil.ckpt")
    assert "refused to read" in line and f"calls {os.system.__module__}.system, which is code" in line, line
    assert not marker.exists()


def test_a_weights_only_global_under_stack_global_is_refused_as_unreadable(tmp_path):
    data = pickle.dumps(collections.OrderedDict(a=1), protocol=4)
    with pytest.raises(WeightsError, match="collections.OrderedDict with STACK_GLOBAL.*re-save it with torch.save"):
        load_legacy(_torch_zip(tmp_path / "p4.ckpt", data))


def test_refused_names_are_escaped_and_cut(tmp_path, capsys):
    ansi = b"\x80\x02c\x1b[2J\x1b[1;1HOK evil\nrun\n)R."  # clears the screen and writes "OK" when printed raw
    long = b"\x80\x02c" + b"A" * 1_000_000 + b"\nrun\n)R."
    for name, data in (("ansi.ckpt", ansi), ("long.ckpt", long)):
        path = tmp_path / name
        path.write_bytes(data)
        assert cli(["convert", str(path), "-o", str(tmp_path / "out")]) == 2
        line = _one_line(capsys, name)
        assert len(line) < 600, len(line)
        if name == "ansi.ckpt":
            assert "calls \\x1b[2J\\x1b[1;1HOK evil.run," in line, line
        else:
            assert "calls AAAA" in line and "\u2026" in line


def test_an_old_format_pickle_cannot_declare_more_tensor_bytes_than_the_file_holds(tmp_path):
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(4)}, buf, _use_new_zipfile_serialization=False)
    head, at = buf.getvalue(), 0
    for _ in range(3):  # keep torch's magic number, protocol and sys-info pickles
        at += [pos for _, _, pos in pickletools.genops(head[at:])][-1] + 1
    n = 2**26  # floats, 256 MiB: allocated (lazily) by torch from this number alone
    obj = (b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\n"
           b"FloatStorage\nX\x01\x00\x00\x00kX\x03\x00\x00\x00cpuJ" + struct.pack("<i", n) + b"NtQK\x00J"
           + struct.pack("<i", n) + b"\x85K\x01\x85\x89ccollections\nOrderedDict\n)RtRs.")
    path = tmp_path / "liar.pth"
    path.write_bytes(head[:at] + obj + b"\x80\x02].")  # no storage keys, no data
    with pytest.raises(WeightsError, match=r"tensors declare 256.0 MiB of data in a file of 0.0 MiB"):
        load_legacy(path)


def test_a_pre_1_0_tar_checkpoint_is_refused(tmp_path):
    path = tmp_path / "old.pth"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tar:
        info = tarfile.TarInfo("\x80\x02storages")  # starts like a pickle, as torch <= 0.3 tar files may
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x80\x02N."))
    with pytest.raises(WeightsError, match="tar checkpoint of PyTorch < 0.4"):
        load_legacy(path)
