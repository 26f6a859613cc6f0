"""GFPGAN v1.3/v1.4: our architecture against the key manifest of the released file, the strict converter (real
container, every key mapped or dropped with a reason, one-line errors), determinism, bit-exact save/load, the
restorer interface, and the FFHQ 512 five-point template."""
from __future__ import annotations

import json
import math
import pickle
import re
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import read_manifest
from hififace.errors import ConfigError, HifiFaceError, InputImageError, WeightsError
from hififace.models.restorers import GFPGAN, GFPGANConfig
from hififace.models.restorers.gfpgan import ModulatedConv2d
from hififace.restore import FaceRestorer, load_restorer
from hififace.converters.gfpgan import DROPPED, convert_gfpgan, load_gfpgan, random_release_state
from hififace.weights.io import load_safetensors
from inferkit import SAMPLES, assert_one_error, run_cli, tiny_model_dir

MANIFEST = "gfpgan_v1.4_clean_keys.tsv"
DATA = Path(__file__).parent / "data"
#: A reduced-width model: 64 px, four levels, 16/8 channels (milliseconds per forward).
TINY = GFPGANConfig(out_size=64, narrow=1 / 32)


def _release_state(config: GFPGANConfig, seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """What GFPGANv1Clean's state_dict holds for ``config`` (our keys plus the dropped heads), random values."""
    torch.manual_seed(seed)
    state = OrderedDict(GFPGAN(config).state_dict())
    d = config.num_style_feat
    for i, res in enumerate(config.levels):
        state[f"toRGB.{i}.weight"] = torch.randn(3, config.unet_channels(res), 1, 1) * 0.1
        state[f"toRGB.{i}.bias"] = torch.zeros(3)
    for i in range(1, 17, 2):
        state[f"stylegan_decoder.style_mlp.{i}.weight"] = torch.randn(d, d) / math.sqrt(d)
        state[f"stylegan_decoder.style_mlp.{i}.bias"] = torch.zeros(d)
    return state


def _write(path, state, container="params_ema"):
    torch.save({container: state} if container else state, path)
    return path


def _one_line(exc_info, *needles):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert re.search(n, msg), (n, msg)
    return msg


def _faces(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ architecture
def test_full_size_model_has_every_kept_manifest_key_in_order_with_its_shape():
    rows = read_manifest(MANIFEST)
    assert len(rows) == 285 and sum(math.prod(s) for _, s, _ in rows) == 87_143_276  # docs/formats.md#gfpgan-restorer
    with torch.device("meta"):
        model = GFPGAN()
    own = model.state_dict()
    kept = [(k, s) for k, s, _ in rows if not k.startswith(tuple(DROPPED))]
    assert [k for k, _ in kept] == list(own)
    assert all(tuple(own[k].shape) == s for k, s in kept)
    dropped = [k for k, _, _ in rows if k.startswith(tuple(DROPPED))]
    assert len(dropped) == 30 and {k.split(".")[0] for k in dropped} == {"toRGB", "stylegan_decoder"}
    noises = [k for k in own if ".noises." in k]
    assert len(noises) == 15 and all(k not in dict(model.named_parameters()) for k in noises)  # buffers


def test_config_rejects_widths_without_a_half_for_sft():
    with pytest.raises(ConfigError, match="twice the U-Net"):
        GFPGANConfig(out_size=64, narrow=1 / 512)
    with pytest.raises(ConfigError, match="power of two"):
        GFPGANConfig(out_size=500)


def test_modulated_conv_equals_the_per_sample_weight_form():
    """StyleGAN2's definition (docs/formats.md#gfpgan-restorer / upstream): weight * style per sample, demodulated,
    grouped conv after the bilinear upsampling; ours scales the activations instead."""
    torch.manual_seed(0)
    for upsample, demod in ((True, True), (False, True), (False, False)):
        conv = ModulatedConv2d(6, 5, 3 if demod else 1, 8, demodulate=demod, upsample=upsample)
        x, w = torch.randn(2, 6, 7, 7), torch.randn(2, 8)
        style = conv.modulation(w)
        weight = conv.weight * style[:, None, :, None, None]
        if demod:
            weight = weight * torch.rsqrt(weight.pow(2).sum((2, 3, 4)) + 1e-8)[:, :, None, None, None]
        xi = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False) if upsample else x
        k = weight.shape[-1]
        expected = torch.nn.functional.conv2d(xi.reshape(1, -1, *xi.shape[2:]), weight.reshape(-1, 6, k, k),
                                              padding=k // 2, groups=2).reshape(2, 5, *xi.shape[2:])
        torch.testing.assert_close(conv(x, w), expected, rtol=1e-5, atol=1e-5)


def test_matches_the_upstream_network_on_its_reference_values(tmp_path):
    """tests/data/gfpgan_tiny_golden.json holds the output of TencentARC's own GFPGANv1Clean at a reduced width on
    random_release_state weights (written by scripts/parity_gfpgan.py --golden); the same file, converted, must give
    the same numbers here. The full-size 512 comparison is the script's (max |delta| 3.8e-6, <= 1 grey level)."""
    golden = json.loads((DATA / "gfpgan_tiny_golden.json").read_text())
    config = GFPGANConfig(out_size=golden["out_size"], narrow=golden["narrow"])
    src = _write(tmp_path / "tiny.pth", random_release_state(config, seed=golden["weights_seed"]))
    model = load_gfpgan(src)
    size = golden["out_size"]
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(golden["input_seed"])) * 2 - 1
    with torch.no_grad():
        y = model(x)
    stride = golden["stride"]
    got = y[0, :, ::stride, ::stride].flatten()
    expected = torch.tensor(golden["values"])
    assert got.shape == expected.shape
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * scale)
    assert abs(float(y.mean()) - golden["mean"]) < 1e-4 * scale


def test_forward_shape_range_and_determinism():
    model = GFPGAN.random(TINY, seed=1)
    x = _faces(2, 64) * 2 - 1
    with torch.no_grad():
        for conv in model.stylegan_decoder.style_convs:
            conv.weight.fill_(0.1)  # noise strengths start at 0
        a, b = model(x), model(x)
        single = model(x[1:])
        noisy1, noisy2 = model(x, randomize_noise=True), model(x, randomize_noise=True)
    assert a.shape == (2, 3, 64, 64) and torch.isfinite(a).all()
    assert torch.equal(a, b)  # stored noise: the same input gives the same output
    torch.testing.assert_close(single, a[1:], rtol=1e-5, atol=1e-5)  # batching does not mix faces
    assert not torch.equal(noisy1, noisy2)  # upstream's randomize_noise=True draws fresh noise
    assert not torch.allclose(a[0], a[1])  # the output depends on the face


def test_channels_last_gives_the_same_output(tmp_path):
    folder = GFPGAN.random(TINY, seed=4).save_pretrained(tmp_path / "r")
    plain = load_restorer(folder, device="cpu")
    fast = load_restorer(folder, device="cpu", channels_last=True)
    conv = fast.model.stylegan_decoder.style_convs[0].modulated_conv.weight
    assert conv.ndim == 5 and conv[0].is_contiguous(memory_format=torch.channels_last)
    faces = _faces(2, 64)
    torch.testing.assert_close(fast.restore(faces), plain.restore(faces), rtol=0, atol=1e-5)
    saved = fast.model.save_pretrained(tmp_path / "again")  # the layout does not leak into the files
    assert torch.equal(load_safetensors(saved / "gfpgan.safetensors")["final_conv.weight"],
                       plain.model.final_conv.weight)


def test_the_stored_noise_maps_are_used():
    model = GFPGAN.random(TINY, seed=1)
    x = _faces(1, 64) * 2 - 1
    with torch.no_grad():
        before = model(x)
        model.stylegan_decoder.style_convs[-1].weight.fill_(0.5)
        mid = model(x)
        model.stylegan_decoder.noises.noise8.add_(1.0)
        after = model(x)
    assert not torch.equal(before, mid) and not torch.equal(mid, after)


def test_save_and_load_are_bit_exact(tmp_path):
    model = GFPGAN.random(TINY, seed=2)
    model.save_pretrained(tmp_path / "r")
    loaded = GFPGAN.from_pretrained(tmp_path / "r")
    assert loaded.config == model.config and loaded.is_random
    own, back = model.state_dict(), loaded.state_dict()
    assert list(own) == list(back) and all(torch.equal(own[k], back[k]) for k in own)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x = _faces(1, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_an_edited_config_gives_one_line(tmp_path):
    folder = GFPGAN.random(TINY).save_pretrained(tmp_path / "r")
    text = (folder / "config.json").read_text().replace('"out_size": 64', '"out_size": 128')
    (folder / "config.json").write_text(text)
    with pytest.raises(WeightsError) as info:
        GFPGAN.from_pretrained(folder)
    _one_line(info, "gfpgan.safetensors", "config.json edited")


# ------------------------------------------------------------------------------------------ converter
def test_full_size_release_file_converts_with_every_key_mapped_or_dropped(tmp_path, capsys, monkeypatch):
    """The real container at full size ({'params_ema': 285 tensors}), built from the manifest; no forward pass."""
    t0 = time.perf_counter()
    state = random_release_state()  # the keys, order and shapes of the manifest
    assert [(k, tuple(v.shape)) for k, v in state.items()] == [(k, s) for k, s, _ in read_manifest(MANIFEST)]
    src = _write(tmp_path / "GFPGANv1.4.pth", state)
    rc, out, _ = run_cli(["convert", "--gfpgan", src, "-o", tmp_path / "gfpgan"], capsys)
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "gfpgan").iterdir()) == ["config.json", "gfpgan.safetensors"]
    config = GFPGANConfig.load(tmp_path / "gfpgan" / "config.json")
    assert (config.out_size, config.num_style_feat, config.channel_multiplier, config.narrow) == (512, 512, 2, 1)
    assert config.sft_half and config.different_w
    assert config.notes["source"] == "GFPGANv1.4.pth" and config.notes["container"] == "params_ema"
    assert "toRGB.* (14)" in config.notes["dropped"] and "style_mlp.* (16)" in config.notes["dropped"]
    written = load_safetensors(tmp_path / "gfpgan" / "gfpgan.safetensors")
    kept = [k for k in state if not k.startswith(tuple(DROPPED))]
    assert sorted(written) == sorted(kept) and len(kept) == 255
    assert all(torch.equal(written[k], state[k]) for k in kept)  # bit-exact
    monkeypatch.setenv("HIFIFACE_HOME", str(tmp_path))
    rc, out, _ = run_cli(["info", "gfpgan"], capsys)  # found under $HIFIFACE_HOME, as model folders are
    assert rc == 0 and "face restorer" in out and "out_size=512" in out and "gfpgan.safetensors" in out
    assert "85,038,263 elements" in out
    assert time.perf_counter() - t0 < 120  # a guard against a pathological slowdown, not a benchmark


def test_params_container_and_preference_for_params_ema(tmp_path):
    ema, raw = _release_state(TINY, seed=1), _release_state(TINY, seed=2)
    path = tmp_path / "both.pth"
    torch.save({"params": raw, "params_ema": ema}, path)
    model = load_gfpgan(path)
    assert model.config.notes["container"] == "params_ema"
    assert torch.equal(model.final_linear.weight, ema["final_linear.weight"])
    model = load_gfpgan(_write(tmp_path / "params.pth", raw, "params"))
    assert model.config.notes["container"] == "params"
    assert torch.equal(model.final_linear.weight, raw["final_linear.weight"])
    assert model.config == GFPGANConfig(out_size=64, narrow=1 / 32, notes=model.config.notes)


def test_converted_tiny_model_restores_like_the_source_state(tmp_path):
    state = _release_state(TINY, seed=3)
    convert_gfpgan(_write(tmp_path / "g.pth", state), tmp_path / "out")
    restorer = load_restorer(tmp_path / "out", device="cpu")
    assert isinstance(restorer, FaceRestorer)
    assert (restorer.size, restorer.template, restorer.is_random) == (64, "ffhq5", False)
    assert restorer.name == "GFPGAN (g.pth)"
    reference = GFPGAN(TINY)
    reference.load_state_dict({k: v for k, v in state.items() if not k.startswith(tuple(DROPPED))})
    faces = _faces(3, 64)
    restorer.batch_size = 2  # two calls: 2 + 1 faces
    got = restorer.restore(faces)
    with torch.no_grad():
        expected = (reference.eval()(faces * 2 - 1).clamp(-1, 1) + 1) / 2
    assert got.shape == faces.shape and got.dtype == torch.float32 and 0 <= got.min() and got.max() <= 1
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(restorer.restore(faces[:1]), restorer.restore(faces[:1]))
    assert restorer.restore(faces[:0]).shape == (0, 3, 64, 64)


@pytest.mark.parametrize("edit, needles", [
    (lambda s: s.pop("final_conv.bias"), ["missing 1 key", "final_conv.bias"]),
    (lambda s: s.__setitem__("extra.layer.weight", torch.zeros(2)), ["unexpected 1 key", "extra.layer.weight"]),
    (lambda s: s.__setitem__("final_conv.bias", torch.zeros(3)), ["shape mismatch", r"final_conv.bias \(3,\)"]),
    (lambda s: s.__setitem__("final_conv.bias", torch.full((8,), float("nan"))), ["non-finite", "final_conv.bias"]),
    (lambda s: s.__setitem__("stylegan_decoder.style_conv1.activate.bias", torch.zeros(16)),
     ["original GFPGANv1 architecture", "GFPGANv1.4.pth"]),
    (lambda s: s.pop("final_linear.weight"), ["not GFPGAN v1 'clean' weights", "final_linear.weight"]),
])
def test_a_mismatching_state_stops_with_one_line_naming_the_keys(tmp_path, edit, needles):
    state = _release_state(TINY)
    edit(state)
    path = _write(tmp_path / "bad.pth", state)
    with pytest.raises(WeightsError) as info:
        convert_gfpgan(path, tmp_path / "out")
    _one_line(info, re.escape(str(path)), *needles)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [path]  # no half-written folder


def test_half_precision_files_are_converted_to_float32(tmp_path):
    state = _release_state(TINY, seed=5)
    model = load_gfpgan(_write(tmp_path / "half.pth", OrderedDict((k, v.half()) for k, v in state.items())))
    assert all(v.dtype == torch.float32 for v in model.state_dict().values())
    assert torch.equal(model.final_conv.weight, state["final_conv.weight"].half().float())


def test_dropped_keys_may_be_absent_but_nothing_else(tmp_path):
    state = OrderedDict((k, v) for k, v in _release_state(TINY).items() if not k.startswith(tuple(DROPPED)))
    model = load_gfpgan(_write(tmp_path / "lean.pth", state))
    assert model.config.notes["dropped"] == "none"


def _hostile_pickle(path):
    class Boom:
        def __reduce__(self):
            return (print, ("pwned",))

    path.write_bytes(pickle.dumps({"params_ema": Boom()}, protocol=2))
    return path


@pytest.mark.parametrize("make, needles", [
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64), ["not a checkpoint", "PNG image"]),
    (lambda p: p.write_bytes(b""), ["empty file"]),
    (lambda p: p.write_text("hello, I am text\n"), ["text file"]),
    (lambda p: torch.save({"model": {"w": torch.zeros(1)}}, p), ["not a GFPGAN weight file", "top-level keys model"]),
    (lambda p: torch.save({"params_ema": {"a\nb": torch.zeros(1)}}, p), ["not layer names"]),
    (lambda p: torch.save({"params_ema": {"w": [1, 2]}}, p), ["not tensors"]),
    (lambda p: torch.save({"params_ema": {}}, p), ["is empty"]),
    (_hostile_pickle, ["refused", "never runs code"]),
])
def test_bad_files_give_one_line(tmp_path, make, needles):
    path = tmp_path / "GFPGANv1.4.pth"
    make(path)
    with pytest.raises(WeightsError) as info:
        convert_gfpgan(path, tmp_path / "out")
    _one_line(info, re.escape(str(path)), *needles)


def test_truncated_release_file_gives_one_line(tmp_path):
    path = _write(tmp_path / "GFPGANv1.4.pth", _release_state(TINY))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError) as info:
        convert_gfpgan(path, tmp_path / "out")
    _one_line(info, re.escape(str(path)), "download it again|damaged|truncated")


# ------------------------------------------------------------------------------------------ CLI and loading
def test_cli_convert_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "face.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    rc, _, err = run_cli(["convert", "--gfpgan", "face.png", "-o", "out"], capsys)
    assert_one_error(rc, err, "face.png", "PNG image")
    rc, _, err = run_cli(["convert", "--gfpgan", "missing.pth", "-o", "out"], capsys)
    assert_one_error(rc, err, "missing.pth", "not found")
    rc, _, err = run_cli(["convert", "x.ckpt", "--gfpgan", "face.png", "-o", "out"], capsys)
    assert_one_error(rc, err, "--gfpgan", "on its own")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png"]


def test_cli_convert_refuses_a_non_empty_output_without_overwrite(tmp_path, capsys):
    src = _write(tmp_path / "g.pth", _release_state(TINY))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    rc, _, err = run_cli(["convert", "--gfpgan", src, "-o", tmp_path / "out"], capsys)
    assert_one_error(rc, err, "not empty", "--overwrite")
    rc, _, err = run_cli(["convert", "--gfpgan", src, "-o", tmp_path / "out", "--overwrite"], capsys)
    assert_one_error(rc, err, "not a model folder", "leaves it alone")  # --overwrite replaces model folders only
    (tmp_path / "out" / "keep.txt").unlink()
    assert run_cli(["convert", "--gfpgan", src, "-o", tmp_path / "out"], capsys)[0] == 0
    rc, _, _ = run_cli(["convert", "--gfpgan", src, "-o", tmp_path / "out", "--overwrite"], capsys)
    assert rc == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "gfpgan.safetensors"]


def test_a_restorer_folder_is_not_taken_for_a_swap_model(tmp_path, capsys):
    folder = GFPGAN.random(TINY).save_pretrained(tmp_path / "gfpgan")
    src, dst = SAMPLES / "astronaut.png", SAMPLES / "grace_hopper.png"
    rc, _, err = run_cli(["swap", "-s", src, "-t", dst, "-o", tmp_path / "c.png", "--weights", folder], capsys)
    assert_one_error(rc, err, "GFPGANConfig", "not a HifiFace model")


def _touch(path):
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize("make, needles", [
    (lambda d: d / "nothing", ["not found", "hififace convert --gfpgan"]),
    (lambda d: tiny_model_dir(d / "swapmodel"), ["not a face-restorer folder"]),
    (lambda d: (d / "empty").mkdir() or d / "empty", ["no config.json"]),
    (lambda d: _write(d / "GFPGANv1.4.pth", {}), ["converted first", "hififace convert --gfpgan"]),
    (lambda d: _touch(d / "w.safetensors"), ["folder that holds it"]),
    (lambda d: _touch(d / "face.png"), ["not a face restorer"]),
])
def test_load_restorer_says_what_to_give(tmp_path, make, needles):
    with pytest.raises(WeightsError) as info:
        load_restorer(make(tmp_path))
    _one_line(info, *needles)


def test_restore_checks_its_input_with_one_line(tmp_path):
    restorer = load_restorer(GFPGAN.random(TINY).save_pretrained(tmp_path / "r"), device="cpu")
    assert restorer.is_random and restorer.name == "GFPGAN (random weights)"
    for bad, needle in ((_faces(1, 32), "1 x 3 x 32 x 32"), ((_faces(1, 64) * 255).byte(), "uint8"),
                        (np.zeros((64, 64, 3)), "ndarray")):
        with pytest.raises(InputImageError) as info:
            restorer.restore(bad)
        _one_line(info, needle)
        assert isinstance(info.value, HifiFaceError)


# ------------------------------------------------------------------------------------------ alignment template
def test_ffhq5_template_is_facexlibs_face_template_scaled():
    from hififace.face.align import FFHQ5_512, estimate_transform, template_points, transform_points

    assert np.allclose(template_points("ffhq5", 512)[0], [192.98138, 239.94708])
    assert np.allclose(template_points("ffhq5", 1024), FFHQ5_512 * 2)
    # landmarks of a face at twice the scale, rotated and shifted, map back onto the template
    theta = np.deg2rad(20)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    landmarks = FFHQ5_512 @ (2 * rot).T + [100.0, 50.0]
    m = estimate_transform(landmarks, "ffhq5", 512)
    assert np.allclose(transform_points(landmarks, m), FFHQ5_512, atol=1e-6)
    with pytest.raises(ConfigError, match="ffhq5"):
        template_points("nope", 512)
    from hififace import HifiFaceConfig

    with pytest.raises(ConfigError):  # a restorer template, not a training-crop alignment
        HifiFaceConfig(align="ffhq5")
