"""The ``xuehy`` variant: xuehy/HiFiFace-pytorch's released generators converted strictly (both model kinds, every key
mapped, bad files one line), its architecture (SFF heads, bicubic ArcFace input), bit-exact save/load, the frontal
alignment taken from the folder's config, ONNX parity, `hififace info`, and `hififace train` refusing it.

The converter runs on one random-weight file in the released layout (the 1425 keys of
``tests/data/manifests/xuehy_hififace_generator_keys.tsv``, 151 M elements: ~600 MB written and converted once per
module, then removed; the converted folder goes when the module ends). Its variants (no BatchNorm counters, an
extra key) are the same state handed to the converter as the loader would return it, without writing a file each;
everything else uses a tiny xuehy model (narrow widths).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from face_helpers import PHOTOS
from fakes import fake_state, read_manifest, write_xuehy_generator
from hififace import HifiFace, HifiFaceConfig
from hififace.errors import ConfigError, WeightsError
from hififace.models.generator import Generator
from hififace.weights.io import load_safetensors
from hififace.converters.xuehy import F_3D, F_ID, convert_xuehy_generator, generator_key_map
from inferkit import SAMPLES, TINY, assert_one_error, leftovers, run_cli, sample

MANIFEST = "xuehy_hififace_generator_keys.tsv"
TINY_XUEHY = dict(TINY, variant="xuehy", align="frontal")


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HIFIFACE_HOME", str(home / "hififace_home"))


# ---------------------------------------------------------------------------------------------- converter
@pytest.fixture(scope="module")
def state():
    return fake_state(MANIFEST, seed=3)


@pytest.fixture(scope="module")
def release(tmp_path_factory, state):
    """``standard_model/generator_320000.pth`` as the release holds it, converted: (the folder, the file's sha256).
    The 600 MB file is removed once converted; the folder when the module ends."""
    from hififace.cli.main import main as cli

    root = tmp_path_factory.mktemp("xuehy")
    released = write_xuehy_generator(root / "standard_model" / "generator_320000.pth", state=state)
    sha = hashlib.sha256()
    with open(released, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    out = root / "xuehy-standard"
    assert cli(["convert", str(released), "-o", str(out)]) == 0
    released.unlink()
    yield out, sha.hexdigest()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def converted(release) -> Path:
    return release[0]


def stand_in_file(path: Path, monkeypatch, state: dict) -> Path:
    """A small file at ``path`` that `hififace convert` reads as ``state`` (its loader is replaced): the file's name
    and place matter to the command, its bytes are the module's released file already read once for real."""
    from hififace.converters import convert as conv

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"stand-in")
    monkeypatch.setattr(conv, "load_legacy", lambda p, what: dict(state))
    return path


def test_manifest_is_the_released_layout():
    rows = read_manifest(MANIFEST)
    keys = [k for k, _, _ in rows]
    assert len(keys) == 1425 and len(set(keys)) == 1425
    trained = [k for k in keys if not k.startswith("id_extractor.")]
    assert [sum(k.startswith(p) for k in trained) for p in ("encoder.", "decoder.", "sff_module.")] == [44, 70, 54]
    assert sum(np.prod(s, dtype=np.int64) for k, s, _ in rows if not k.startswith("id_extractor.")) == 61_896_584
    assert sum(k.startswith(F_ID) for k in keys) == 925 and sum(k.startswith(F_3D) for k in keys) == 332


def test_one_file_gives_a_complete_folder_with_its_origin(converted, release):
    assert sorted(p.name for p in converted.iterdir()) == ["arcface.safetensors", "config.json", "generator.safetensors",
                                                          "recon3d.safetensors"]
    model = HifiFace.from_pretrained(converted)
    cfg = model.config
    assert (cfg.variant, cfg.image_size, cfg.align, cfg.arcface_arch, cfg.recon_input_size) == ("xuehy", 256, "frontal", "r100", None)
    assert cfg.arcface_resize == "bicubic"
    assert sum(p.numel() for p in model.generator.parameters()) == 61_896_584
    assert not model.is_random and not model.training
    assert all(not p.requires_grad for p in model.id_extractor.parameters())
    notes = cfg.notes
    assert notes["converted_from"] == "generator_320000.pth" and notes["source_iteration"] == 320000
    assert notes["source_model"].startswith("standard_model")
    assert notes["source_sha256"] == release[1]


def test_every_key_lands_bit_exact(converted, state):
    folder = {name: load_safetensors(converted / f"{name}.safetensors") for name in ("generator", "arcface", "recon3d")}
    with torch.device("meta"):
        gmap = generator_key_map(Generator(HifiFaceConfig(variant="xuehy")))
    theirs_to_ours = {theirs: ("generator", ours) for ours, theirs in gmap.items()}
    for key, _, _ in read_manifest(MANIFEST):
        if key.startswith(F_ID):
            file, ours = "arcface", key[len(F_ID):]
        elif key.startswith(F_3D):
            file, ours = "recon3d", key[len(F_3D):]
        else:
            file, ours = theirs_to_ours[key]
        got = folder[file][ours]
        assert got.dtype == state[key].dtype and torch.equal(got, state[key]), key
    assert sum(len(t) for t in folder.values()) == 1425  # nothing added, nothing dropped


def test_gaze_and_mouth_folder_with_iteration(converted, state, tmp_path, capsys, monkeypatch):
    """The other released kind has the same keys; given as folder + --iteration as xuehy's own loader takes it. This
    copy also lacks the BatchNorm counters (files from old PyTorch), which are optional."""
    folder = tmp_path / "with_gaze_and_mouth"
    stand_in_file(folder / "generator_190000.pth", monkeypatch,
                  {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")})
    (folder / "discriminator_190000.pth").write_bytes(b"never read")
    out = tmp_path / "xuehy-gaze-mouth"
    rc, _, err = run_cli(["convert", folder, "--iteration", "190000", "-o", out], capsys)
    assert rc == 0, err
    cfg = HifiFaceConfig.load(out / "config.json")
    assert cfg.notes["source_model"].startswith("with_gaze_and_mouth") and cfg.notes["source_iteration"] == 190000
    for name in ("generator", "arcface", "recon3d"):
        a, b = load_safetensors(out / f"{name}.safetensors"), load_safetensors(converted / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_extra_key_is_one_line_naming_it(state, tmp_path, capsys, monkeypatch):
    bad = stand_in_file(tmp_path / "generator_1.pth", monkeypatch, {**state, "sff_module.extra_head.weight": torch.zeros(3)})
    rc, _, err = run_cli(["convert", bad, "-o", tmp_path / "out"], capsys)
    assert_one_error(rc, err, "generator_1.pth", "sff_module.extra_head.weight", "not in xuehy's Generator layout")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_missing_key_is_named(state, tmp_path):
    bad = {k: v for k, v in state.items() if k != "sff_module.f_up.m_r_net.0.bias"}
    with pytest.raises(WeightsError, match=r"missing 1 key\(s\) of xuehy's Generator: sff_module.f_up.m_r_net.0.bias"):
        convert_xuehy_generator(tmp_path / "generator_2.pth", tmp_path / "out", obj=bad)
    bad = {k: v for k, v in state.items() if k != "id_extractor.f_id.features.running_var"}
    with pytest.raises(WeightsError, match="id_extractor.f_id.features.running_var"):
        convert_xuehy_generator(tmp_path / "generator_2.pth", tmp_path / "out", obj=bad)
    assert not (tmp_path / "out").exists()


def test_wrong_shape_and_nan_are_refused(state, tmp_path):
    bad = dict(state, **{"sff_module.i_low_block.1.weight": torch.zeros(3, 128, 3, 3)})
    with pytest.raises(WeightsError, match="to_low.weight"):
        convert_xuehy_generator(tmp_path / "g.pth", tmp_path / "out", obj=bad)
    w = state["decoder.block_list.0.main_path1.1.weight"].clone()
    w[0, 0, 0, 0] = float("nan")
    with pytest.raises(WeightsError, match="NaN"):
        convert_xuehy_generator(tmp_path / "g.pth", tmp_path / "out", obj=dict(state, **{"decoder.block_list.0.main_path1.1.weight": w}))


def test_folder_and_file_mistakes_are_one_line(tmp_path, capsys):
    folder = tmp_path / "standard_model"
    folder.mkdir()
    for n in (40000, 80000):
        (folder / f"generator_{n}.pth").write_bytes(b"x")
    rc, _, err = run_cli(["convert", folder, "-o", tmp_path / "o"], capsys)
    assert_one_error(rc, err, "several generator files", "--iteration N", "40000, 80000")
    rc, _, err = run_cli(["convert", folder, "--iteration", "5", "-o", tmp_path / "o"], capsys)
    assert_one_error(rc, err, "no generator_5.pth", "40000, 80000")
    rc, _, err = run_cli(["convert", folder / "generator_40000.pth", "--iteration", "5", "-o", tmp_path / "o"], capsys)
    assert_one_error(rc, err, "--iteration", "give the folder")
    single = tmp_path / "single"
    single.mkdir()
    (single / "generator_7.pth").write_bytes(b"not a pickle")
    rc, _, err = run_cli(["convert", single, "-o", tmp_path / "o"], capsys)  # its only generator file is taken
    assert "using its only generator file, generator_7.pth" in err[0]
    assert_one_error(rc, err[1:], "generator_7.pth", "not a checkpoint")
    rc, _, err = run_cli(["convert", "--arcface", "a.pth", "--recon3d", "b.pth", "--iteration", "5", "-o", tmp_path / "o"],
                         capsys)
    assert_one_error(rc, err, "--iteration", "xuehy model folder")
    disc = tmp_path / "discriminator_80000.pth"
    torch.save({"sequence.0.weight": torch.zeros(64, 3, 3, 3), "sequence.0.bias": torch.zeros(64)}, disc)
    rc, _, err = run_cli(["convert", disc, "-o", tmp_path / "o"], capsys)
    assert_one_error(rc, err, "discriminator_80000.pth", "xuehy", "generator_<iteration>.pth")
    assert not (tmp_path / "o").exists()


def test_info_names_the_variant_and_the_source(release, capsys):
    converted, sha = release
    rc, out, err = run_cli(["info", converted], capsys)
    assert rc == 0, err
    assert "xuehy variant: xuehy/HiFiFace-pytorch's generator (inference only)" in out
    assert "frontal template" in out
    assert "weights: converted from generator_320000.pth (xuehy/HiFiFace-pytorch" in out and sha in out


# ---------------------------------------------------------------------------------------------- architecture
@pytest.fixture(scope="module")
def tiny() -> HifiFace:
    return HifiFace.random(HifiFaceConfig(**TINY_XUEHY), seed=4)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny) -> Path:
    folder = tiny.save_pretrained(tmp_path_factory.mktemp("w") / "xuehy-tiny")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["notes"].pop("weights")  # stands in for converted weights: outputs not labelled random
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def batch(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 256, 256, generator=torch.Generator().manual_seed(seed))


def test_config_rules():
    assert HifiFaceConfig(variant="xuehy").arcface_resize == "bicubic"
    assert HifiFaceConfig(variant="reference").arcface_resize == "bilinear"
    with pytest.raises(ConfigError, match="256 only"):
        HifiFaceConfig(variant="xuehy", image_size=512)


def test_full_size_generator_has_the_released_parameter_count():
    with torch.device("meta"):
        g = Generator(HifiFaceConfig(variant="xuehy"))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # docs/formats.md#xuehy-generator: encoder 44 + decoder 70 + sff_module 54 keys, 61,896,584 elements, no buffers
    assert (count(g.encoder), count(g.decoder), count(g)) == (24_750_464, 29_320_960, 61_896_584)
    assert len(g.state_dict()) == 168


def test_mask_zero_returns_the_target(tiny):
    """i_r = m_r * rgb + (1 - m_r) * target (upstream's last line): a mask head forced to 0 gives the target."""
    g = Generator(HifiFaceConfig(**TINY_XUEHY)).eval()
    g.load_state_dict(tiny.generator.state_dict())
    with torch.no_grad():
        g.sff.mask_r.weight.zero_()
        g.sff.mask_r.bias.fill_(-1e4)  # sigmoid -> 0
        target = batch(1, 9)
        out = g(target, torch.randn(1, 769, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(out.i_r, target, rtol=0, atol=0)


def test_forward_shapes_ranges_and_determinism(tiny):
    src, tgt = batch(2, 1), batch(2, 2)
    with torch.no_grad():
        out = tiny(src, tgt)
        again = tiny(src, tgt)
    assert [tuple(t.shape) for t in out] == [(2, 3, 256, 256), (2, 3, 64, 64), (2, 1, 256, 256), (2, 1, 64, 64)]
    assert all(torch.equal(a, b) for a, b in zip(out, again))
    for m in (out.m_r, out.m_low):  # sigmoid masks
        assert float(m.min()) >= 0.0 and float(m.max()) <= 1.0
    # the result is the blend of the raw image head and the target by m_r (upstream's last line)
    assert torch.isfinite(out.i_r).all() and not torch.equal(out.i_r, tgt)


def test_sff_heads_see_the_activated_tensors_as_upstream(tiny):
    """xuehy's in-place LeakyReLUs: F_up gets LeakyReLU(z_fuse) and the mask head LeakyReLU(features)."""
    sff = tiny.generator.sff
    seen = {}
    hooks = [sff.fuse[1].register_forward_hook(lambda m, i, o: seen.__setitem__("z_fuse", o)),
             sff.up[0].register_forward_hook(lambda m, i, o: seen.__setitem__("up_in", i[0])),
             sff.up[1].register_forward_hook(lambda m, i, o: seen.__setitem__("feat", o)),
             sff.mask_r.register_forward_hook(lambda m, i, o: seen.__setitem__("mask_in", i[0])),
             sff.to_low.register_forward_hook(lambda m, i, o: seen.__setitem__("low_in", i[0]))]
    try:
        with torch.no_grad():
            tiny(batch(1, 3), batch(1, 4))
    finally:
        for h in hooks:
            h.remove()
    assert float(seen["z_fuse"].min()) < 0  # there is something for the activation to change
    assert torch.equal(seen["up_in"], F.leaky_relu(seen["z_fuse"], 0.2))
    assert torch.equal(seen["low_in"], seen["up_in"])
    assert torch.equal(seen["mask_in"], F.leaky_relu(seen["feat"], 0.2))


def test_identity_uses_bicubic_arcface_input_and_source_id_coefficients(tiny):
    src, tgt = batch(1, 5), batch(1, 6)
    ext = tiny.id_extractor
    with torch.no_grad():
        v_sid = ext(src, tgt)
        c_s, c_t = ext.coefficients(src), ext.coefficients(tgt)  # (a converted folder feeds the raw 256 crop)
        v_id = F.normalize(ext.arcface(F.interpolate((src - 0.5) / 0.5, size=112, mode="bicubic")), dim=-1)
        bilinear = F.normalize(ext.arcface(F.interpolate((src - 0.5) / 0.5, size=112, mode="bilinear")), dim=-1)
    assert torch.equal(v_sid, torch.cat([c_s[:, :80], c_t[:, 80:], v_id], dim=1))
    assert not torch.equal(v_id, bilinear)


def test_save_load_round_trip_is_bit_exact(tiny, tiny_folder):
    back = HifiFace.from_pretrained(tiny_folder)
    assert back.config.variant == "xuehy" and back.config.align == "frontal"
    a, b = tiny.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    src, tgt = sample("astronaut"), sample("grace_hopper")
    np.testing.assert_array_equal(tiny.swap(src, tgt), back.swap(src, tgt))
    raw = back.swap(src, tgt, return_all=True).i_r[0].clamp(0, 1).mul(255).to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(back.swap(src, tgt), raw)  # 8 bits by truncation, as xuehy's own code


# ---------------------------------------------------------------------------------------------- the pipelines
def test_pipeline_aligns_with_the_frontal_template_of_the_folder(tiny_folder):
    from hififace.face.align import estimate_transform, template_points, transform_points
    from hififace.media.images import read_crop
    from hififace.inference.pipeline import FaceSwapper

    sw = FaceSwapper.from_pretrained(tiny_folder, parsing="landmarks", align_passes=0)
    assert sw.engine.align == "frontal"
    image = read_crop(PHOTOS / "astronaut.png")  # the 512x512 photo (the samples are 256 crops already)
    face = sw.detect(image)[0]
    _, m = sw.align(image, [face.landmarks])
    np.testing.assert_allclose(m[0], estimate_transform(face.landmarks, "frontal", 256))
    assert np.linalg.norm(transform_points(face.landmarks, m[0]) - template_points("frontal", 256), axis=1).mean() < 8
    assert not np.allclose(m[0], estimate_transform(face.landmarks, "arcface", 256))
    result = sw.swap(sw.identity(SAMPLES / "grace_hopper.png"), image)
    assert result.swapped == [0] and not result.aligned
    np.testing.assert_allclose(result.matrices[0], m[0])


def test_commands_run_with_a_xuehy_folder(tiny_folder, tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("astronaut", "cameraman"):
        (faces / f"{name}.png").write_bytes((SAMPLES / f"{name}.png").read_bytes())
    w = ["--weights", tiny_folder]
    runs = {
        "swap": ["swap", "--source", SAMPLES / "grace_hopper.png", "--target", PHOTOS / "astronaut.png",
                 "-o", tmp_path / "swap.png", *w],
        "grid": ["grid", faces, "-o", tmp_path / "grid.png", *w],
        "interpolate": ["interpolate", "--source", SAMPLES / "astronaut.png", "--target", SAMPLES / "cameraman.png",
                        "-o", tmp_path / "interp.gif", "--frames", "3", *w],
    }
    for name, argv in runs.items():
        rc, _, err = run_cli(argv, capsys)
        assert rc == 0, (name, err)
    from hififace.media.labels import read_label

    assert read_label(tmp_path / "swap.png")["hififace:model"] == "xuehy-256"


def test_video_and_app_with_a_xuehy_folder(tiny_folder, tmp_path, capsys):
    pytest.importorskip("imageio_ffmpeg")
    from videokit import face_frames, make_clip

    clip = make_clip(tmp_path / "clip.mp4", face_frames(2))
    rc, _, err = run_cli(["video", "--source", SAMPLES / "astronaut.png", "--target", clip, "-o", tmp_path / "out.mp4",
                          "--weights", tiny_folder, "--preset", "ultrafast"], capsys)
    assert rc == 0, err
    from hififace.app.service import SwapService

    service = SwapService(HifiFace.from_pretrained(tiny_folder), workdir=tmp_path / "app")
    out = service.run([str(SAMPLES / "astronaut.png")], str(PHOTOS / "grace_hopper.jpg"), "all")
    assert out.kind == "image" and out.message == "1 of 1 face(s) swapped"


def test_eval_with_a_xuehy_folder(tiny_folder, tmp_path, capsys):
    for name in ("astronaut", "grace_hopper"):
        (tmp_path / f"{name}.png").write_bytes((SAMPLES / f"{name}.png").read_bytes())
    (tmp_path / "pairs.csv").write_text("source,target\nastronaut.png,grace_hopper.png\n")
    rc, out, err = run_cli(["eval", "--weights", tiny_folder, "--pairs", tmp_path / "pairs.csv", "-o", tmp_path / "r",
                            "--faces", "template", "--no-figures", "--id-model", "none"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["n_pairs"] == 1


# ---------------------------------------------------------------------------------------------- training
def test_train_refuses_the_variant_and_a_xuehy_folder(tiny_folder, tmp_path, capsys):
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--model.variant", "xuehy", "--print-config"], capsys)
    assert_one_error(rc, err, "model.variant='xuehy'", "inference only", "docs/xuehy.md")
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--init", tiny_folder, "--data.images", tmp_path,
                          "--data.parsing", tmp_path, "--checkpoint.dir", tmp_path / "run"], capsys)
    assert_one_error(rc, err, "xuehy-tiny", "inference only")
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------- ONNX
def test_onnx_export_parity(tiny, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from hififace.export import export_onnx
    from hififace.export.graphs import ARCFACE, GENERATOR

    export_onnx(tiny, tmp_path, graphs=["generator", "arcface"], check=False)
    import onnxruntime as ort

    def run(spec, *inputs):
        sess = ort.InferenceSession(str(tmp_path / spec.file), providers=["CPUExecutionProvider"])
        return sess.run(None, {name: x.numpy() for name, x in zip(spec.inputs, inputs)})

    src, tgt = batch(2, 7), batch(2, 8)
    with torch.no_grad():
        v_sid = tiny.id_extractor(src, tgt)
        want = tiny.generator(tgt, v_sid)
        v_id = tiny.id_extractor.embed(src)
    got = run(GENERATOR, tgt, v_sid)
    scale = max(1.0, max(float(t.abs().max()) for t in want))
    for name, g, w in zip(GENERATOR.outputs, got, want):
        assert float(np.abs(g - w.numpy()).max()) <= 1e-4 * scale, name
    # the bicubic 256 -> 112 resize inside the ArcFace graph
    assert float(np.abs(run(ARCFACE, src)[0] - v_id.numpy()).max()) <= 1e-4
