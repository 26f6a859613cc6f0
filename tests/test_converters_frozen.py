"""Strict loaders for the files users hold: insightface backbone.pth, Deep3DFaceRecon epoch_20.pth,
BFM_model_front.mat; every manifest key consumed, wrong or damaged files refused with the path named."""
from __future__ import annotations

import re
import struct
import zlib

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


# MAT v5 built from bytes (MathWorks "MAT-File Format": 128-byte header; elements are a uint32 type and byte count,
# data padded to 8 bytes; a matrix holds array flags, int32 dimensions, an int8 name, then its data)
def _element(mtype: int, data: bytes, pad: bool = True) -> bytes:
    return struct.pack("<II", mtype, len(data)) + data + (b"\0" * (-len(data) % 8) if pad else b"")


def _matrix(name: str, dims, data: bytes = b"", cls: int = 6, dtype: int = 9, nbytes: int | None = None) -> bytes:
    """A miMATRIX element; ``nbytes`` overrides the data element's declared byte count."""
    body = (_element(6, struct.pack("<II", cls, 0)) + _element(5, struct.pack(f"<{len(dims)}i", *dims))
            + _element(1, name.encode()))
    if cls != 1:  # a cell array's cells would follow; none here
        body += struct.pack("<II", dtype, len(data) if nbytes is None else nbytes) + data + b"\0" * (-len(data) % 8)
    return _element(14, body)


def _mat_file(*elements: bytes, version: bytes = b"\x00\x01IM") -> bytes:
    text = b"MATLAB 5.0 MAT-file, written by hand for a test".ljust(116, b" ")
    return text + b"\0" * 8 + version + b"".join(elements)


def _bfm_variables(n: int = 100, keypoints: bytes | None = None) -> list[bytes]:
    """The four arrays the loader reads, real and small (double, uncompressed)."""
    kp = np.arange(1, 69, dtype="<f8").tobytes() if keypoints is None else keypoints
    return [_matrix("meanshape", (1, 3 * n), bytes(8 * 3 * n)), _matrix("idBase", (3 * n, 80), bytes(8 * 3 * n * 80)),
            _matrix("exBase", (3 * n, 64), bytes(8 * 3 * n * 64)), _matrix("keypoints", (1, 68), kp)]


def _zero_bomb(n_mib: int, head: bytes = b"") -> bytes:
    """A zlib stream of ``head`` then ``n_mib`` MiB of zeros (~1 KB per MiB), built without compressing them all:
    after a full flush every MiB of zeros deflates to the same bytes; the trailer is the Adler-32 of it all (zeros
    leave its sum A as it is and add A to B once per byte)."""
    c = zlib.compressobj(9)
    start = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    mib = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    adler = zlib.adler32(head)
    a, b = adler & 0xFFFF, ((adler >> 16) + (n_mib << 20) * (adler & 0xFFFF)) % 65521
    return start + mib * n_mib + b"\x03\x00" + struct.pack(">I", b << 16 | a)


def test_bfm_mat_built_from_bytes_is_read():
    """The writer below is MAT v5 as scipy reads it: the hostile files that follow differ from a good one in one way."""
    import io

    good = _mat_file(*_bfm_variables())
    mat = scipy.io.loadmat(io.BytesIO(good))
    assert mat["idBase"].shape == (300, 80) and mat["keypoints"][0, -1] == 68
    bomb = _zero_bomb(3, b"head")
    assert zlib.decompress(bomb) == b"head" + bytes(3 << 20) and len(bomb) < 8192


@pytest.mark.parametrize("case, needles", [
    ("huge dims", ("keypoints", "declares 1073741824 x 1073741824")),
    ("huge cell", ("idBase", "cell array")),
    ("text dims", ("keypoints", "does not hold the data")),
    ("past the end", ("past the end of the file",)),
    ("v7.3", ("v7.3 (HDF5)", "-v7")),
    ("v4", ("cannot read as a MATLAB 5 .mat file",)),
    ("truncated zlib", ("compressed",)),
    ("text keypoints", ("keypoints is text", "expected real numbers")),
    ("complex idBase", ("idBase is complex",)),
    ("NaN keypoints", ("keypoints outside 1..100 or not whole numbers",)),
    ("struct", ("'extra' is a struct",)),
])
def test_hostile_bfm_mat_is_one_line(tmp_path, case, needles):
    good = _bfm_variables()
    files = {
        "huge dims": _mat_file(*good[:3], _matrix("keypoints", (2**30, 2**30), bytes(8))),
        "huge cell": _mat_file(good[0], _matrix("idBase", (2**30, 64), cls=1), *good[2:]),
        "text dims": _mat_file(*good[:3], _matrix("keypoints", (1, 2**26), bytes(136), cls=4, dtype=4)),
        "past the end": _mat_file(*good)[:-8],
        "v7.3": _mat_file(*good, version=b"\x00\x02IM"),
        "v4": struct.pack("<5i", 0, 1, 1, 0, 2) + b"a\0" + bytes(8),
        "truncated zlib": _mat_file(*good[:3], _element(15, zlib.compress(good[3])[:-10], pad=False)),
        "text keypoints": _mat_file(*good[:3], _matrix("keypoints", (1, 68), b"k\0" * 68, cls=4, dtype=4)),
        "complex idBase": None,
        "NaN keypoints": _mat_file(*_bfm_variables(keypoints=np.full(68, np.nan).tobytes())),
        "struct": None,
    }
    path = tmp_path / "BFM_model_front.mat"
    if files[case] is None:  # through scipy itself: types a MATLAB user could save by mistake
        extra = {"complex idBase": {"idBase": np.ones((300, 80)) * 1j}, "struct": {"extra": {"a": 1.0}}}[case]
        scipy.io.savemat(str(path), {"meanshape": np.zeros((1, 300)), "idBase": np.zeros((300, 80)),
                                     "exBase": np.zeros((300, 64)), "keypoints": np.arange(1.0, 69.0)[None], **extra},
                         do_compression=True)
    else:
        path.write_bytes(files[case])
    _raises_with_path(path, load_bfm, *(re.escape(n) for n in needles))


def test_bfm_zlib_bomb_is_refused_with_bounded_memory(tmp_path, capsys):
    """288 MiB of zeros in 300 KB: the compressed keypoints are refused after inflating at most the cap, a MiB at a
    time (scipy alone inflates all of it); `hififace convert --bfm` refuses a hostile file in one line."""
    import tracemalloc

    from hififace.cli.main import main as cli

    n_mib = 288
    inner = (_element(6, struct.pack("<II", 6, 0)) + _element(5, struct.pack("<2i", n_mib << 17, 1))
             + _element(1, b"keypoints") + struct.pack("<II", 9, n_mib << 20))  # then the zeros
    body = _zero_bomb(n_mib, struct.pack("<II", 14, len(inner) + (n_mib << 20)) + inner)
    path = tmp_path / "BFM_model_front.mat"
    path.write_bytes(_mat_file(*_bfm_variables()[:3], _element(15, body, pad=False)))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        _raises_with_path(path, load_bfm, "inflates to more than 256 MiB")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MiB"
    (tmp_path / "ref.ckpt").write_bytes(b"stand-in")
    path.write_bytes(_mat_file(*_bfm_variables()[:3], _matrix("keypoints", (2**30, 2**30), bytes(8))))
    capsys.readouterr()
    assert cli(["convert", str(tmp_path / "ref.ckpt"), "--bfm", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "BFM_model_front.mat" in err[0], err
    assert not (tmp_path / "out").exists()


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
