"""ONNX export and the onnxruntime engine: parity with PyTorch, dynamic batch, metadata, failures, CLI.

Exports are the slow part (torch.export + decompositions, ~10 s per graph on 2 cores whatever the width), so the
256 model is exported once through the CLI (all three graphs) and the 512 model once through the API (the
generator: the only graph whose architecture changes with the size; ArcFace and ReconNet only see another input
resize). Parity is measured on identical inputs graph by graph: max |onnxruntime - torch| <= 1e-4 * scale, the
scale being max(1, max |output|) over the graph's outputs. The generator's four outputs share one scale: m_r is the
tanh of a channel of the same last layer i_r comes from, so its float32 rounding follows that layer's magnitude
(random-weight generators output values up to ~5-9; measured differences are 1e-5 to 7e-5 absolute).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # the dev extra installs onnx, onnxscript and onnxruntime: CI runs all of this
pytest.importorskip("onnxruntime")

from hififace import HifiFace, HifiFaceConfig, Identity, PreparedTarget  # noqa: E402
from hififace.errors import HifiFaceError, WeightsError  # noqa: E402
from hififace.export import OnnxHifiFace, export_onnx  # noqa: E402
from hififace.export.graphs import ARCFACE, GENERATOR, GRAPHS, NOTICE, OPSET, RECON  # noqa: E402
from hififace.media.images import read_crop  # noqa: E402
from hififace.media.labels import read_label  # noqa: E402
from hififace.models.generator import GeneratorOutput  # noqa: E402
from inferkit import SAMPLES, TINY, assert_one_error, leftovers, run_cli, sample  # noqa: E402

TOL = 1e-4


def assert_close(got, want, what: str, tol: float = TOL, scale: float | None = None) -> None:
    got, want = torch.as_tensor(np.asarray(got)), torch.as_tensor(np.asarray(want))
    assert got.shape == want.shape and got.dtype == want.dtype == torch.float32, (what, got.shape, want.shape)
    scale = max(1.0, float(want.abs().max())) if scale is None else scale
    diff = float((got - want).abs().max())
    assert diff <= tol * scale, f"{what}: max |onnxruntime - torch| = {diff:.3g} > {tol} * {scale:.3g}"


def output_scale(outputs) -> float:
    return max(1.0, max(float(o.abs().max()) for o in outputs))


def batch(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def no_user_weights(monkeypatch, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HIFIFACE_HOME", str(home / "hififace_home"))


@pytest.fixture(scope="module")
def folder256(tmp_path_factory) -> Path:
    return HifiFace.random(HifiFaceConfig(**TINY), seed=5).save_pretrained(tmp_path_factory.mktemp("w") / "tiny256")


@pytest.fixture(scope="module")
def exported256(folder256) -> Path:
    """``hififace export onnx --weights DIR``: exit 0, files in DIR/onnx, our log lines only."""
    from hififace.cli.main import main as cli

    assert cli(["export", "onnx", "--weights", str(folder256)]) == 0
    return folder256 / "onnx"


@pytest.fixture(scope="module")
def torch256(folder256) -> HifiFace:
    return HifiFace.from_pretrained(folder256)


@pytest.fixture(scope="module")
def engine256(exported256) -> OnnxHifiFace:
    return OnnxHifiFace.from_pretrained(exported256.parent, device="cpu")


@pytest.fixture(scope="module")
def torch_pair(torch256) -> np.ndarray:
    """PyTorch's astronaut -> grace_hopper (uint8 in, uint8 out)."""
    return torch256.swap(sample("astronaut"), sample("grace_hopper"))


@pytest.fixture(scope="module")
def model512(tmp_path_factory) -> tuple[HifiFace, Path]:
    """The 512 architecture (paper variant, so both SFF heads are exported): its generator graph."""
    model = HifiFace.random(HifiFaceConfig(image_size=512, variant="paper", **TINY), seed=6)
    out = tmp_path_factory.mktemp("onnx512")
    written = export_onnx(model, out, graphs=["generator"], check=False)  # the tests below compare
    assert [r.spec for r in written] == [GENERATOR] and written[0].max_abs_diff is None
    return model, out / GENERATOR.file


# ---------------------------------------------------------------------------------------------- the files
def test_export_writes_three_graphs_with_metadata(exported256, torch256):
    assert sorted(p.name for p in exported256.iterdir()) == ["arcface.onnx", "config.json", "generator.onnx", "recon3d.onnx"]
    assert HifiFaceConfig.load(exported256 / "config.json") == torch256.config
    for spec in GRAPHS:
        proto = onnx.load(str(exported256 / spec.file))
        onnx.checker.check_model(proto)
        assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == OPSET
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["hififace:graph"] == spec.name and meta["hififace:format"] == "hififace-onnx/1"
        assert meta["hififace:variant"] == "reference" and meta["hififace:image_size"] == "256"
        assert meta["hififace:alignment"] == "arcface" and meta["hififace:notice"] == NOTICE
        assert "synthetic" in meta["hififace:notice"].lower() and "consent" in meta["hififace:notice"].lower()
        assert HifiFaceConfig.from_dict(json.loads(meta["hififace:config"])) == torch256.config
        assert list(json.loads(meta["hififace:source"])) == [spec.weights]
        # the batch axis is symbolic on every input and output, the rest is fixed
        for value in list(proto.graph.input) + list(proto.graph.output):
            dims = value.type.tensor_type.shape.dim
            assert dims[0].dim_param and not dims[0].dim_value, (spec.file, value.name)
            assert all(d.dim_value > 0 for d in dims[1:]), (spec.file, value.name)
        assert [i.name for i in proto.graph.input] == list(spec.inputs)
        assert [o.name for o in proto.graph.output] == list(spec.outputs)


# ---------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("n", [1, 3])
def test_generator_256_matches_torch(engine256, torch256, n):
    target = batch(n, 256, seed=n)
    with torch.no_grad():
        v_sid = torch256.id_extractor(batch(n, 256, seed=10 + n), target)
        want = torch256.generator(target, v_sid)
    got = engine256.run_graph(GENERATOR, target, v_sid)
    for name, g, w in zip(GENERATOR.outputs, got, want):
        assert_close(g, w, f"{name} (batch {n})", scale=output_scale(want))


@pytest.mark.parametrize("n", [1, 3])
def test_arcface_and_recon_256_match_torch(engine256, torch256, n):
    x = batch(n, 256, seed=20 + n)
    with torch.no_grad():
        v_id, coeffs = torch256.id_extractor.embed(x), torch256.id_extractor.coefficients(x)
    assert_close(engine256.run_graph(ARCFACE, x)[0], v_id, f"v_id (batch {n})")
    assert_close(engine256.run_graph(RECON, x)[0], coeffs, f"coeffs (batch {n})")
    assert coeffs.shape == (n, 257) and v_id.shape == (n, 512)


@pytest.mark.parametrize("n", [1, 3])
def test_generator_512_matches_torch(model512, n):
    import onnxruntime as ort

    model, path = model512
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    target = batch(n, 512, seed=30 + n)
    with torch.no_grad():
        v_sid = model.id_extractor(batch(n, 512, seed=40 + n), target)
        want = model.generator(target, v_sid)
    got = session.run(None, {"target": target.numpy(), "v_sid": v_sid.numpy()})
    assert [o.shape for o in got] == [(n, 3, 512, 512), (n, 3, 64, 64), (n, 1, 512, 512), (n, 1, 64, 64)]
    for name, g, w in zip(GENERATOR.outputs, got, want):
        assert_close(g, w, f"{name} at 512 (batch {n})", scale=output_scale(want))
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["hififace:image_size"] == "512" and meta["hififace:variant"] == "paper"
    assert json.loads(meta["hififace:source"]) == {}  # exported from a model in memory


# ---------------------------------------------------------------------------------------------- the engine
def test_engine_offers_the_models_interface(engine256, torch256, torch_pair):
    assert engine256.config == torch256.config and engine256.providers == ["CPUExecutionProvider"]
    assert engine256.metadata["hififace:notice"] == NOTICE
    src, tgt = sample("astronaut"), sample("grace_hopper")
    # uint8 in, uint8 out; within one grey level of PyTorch (rounding at 8 bits of outputs 1e-5 apart)
    out = engine256.swap(src, tgt)
    assert out.dtype == np.uint8 and out.shape == (256, 256, 3)
    assert np.abs(out.astype(int) - torch_pair.astype(int)).max() <= 1
    # a cached identity and a prepared target, one source for a batch of three targets
    targets = batch(3, 256, seed=50)
    ident, prep = engine256.identity(src), engine256.prepare_target(targets)
    assert isinstance(ident, Identity) and ident.c_id.shape == (1, 80) and ident.v_id.shape == (1, 512)
    assert isinstance(prep, PreparedTarget) and len(prep) == 3
    raw = engine256.swap(ident, prep, return_all=True)
    assert isinstance(raw, GeneratorOutput) and [t.shape[1:] for t in raw] == [(3, 256, 256), (3, 64, 64), (1, 256, 256), (1, 64, 64)]
    want = torch256.swap(torch256.identity(src), targets, return_all=True)
    for name, g, w in zip(GENERATOR.outputs, raw, want):
        # end to end, the identity's own ~1e-6 differences pass through every AdaIN of the decoder as well
        assert_close(g, w, f"{name} end to end", tol=1e-3, scale=output_scale(want))
    assert torch.equal(engine256.swap(ident, prep), raw.i_r.clamp(0, 1))  # tensor in, tensor out, clamped as HifiFace.swap
    pair = engine256.swap([src, tgt], [tgt, src])
    assert isinstance(pair, list) and len(pair) == 2 and np.array_equal(pair[0], out)
    # interpolation: rate 1 is the first source (its embedding renormalised: equal within a grey level)
    assert np.abs(engine256.interpolate(src, tgt, tgt, 1.0, "all").astype(int) - out.astype(int)).max() <= 1
    assert not np.array_equal(engine256.interpolate(src, tgt, tgt, 0.5, "identity"), out)


def test_engine_analyse_is_its_identity_and_target_coefficients(engine256):
    """What pose-matched sources, identity strength and the quality report read: the same graphs' outputs."""
    crops = batch(2, 256, seed=51)
    v_id, coeffs = engine256.analyse(crops)
    ident = engine256.identity(crops)
    assert v_id.shape == (2, 512) and coeffs.shape == (2, 257)
    assert torch.equal(v_id, ident.v_id) and torch.equal(coeffs[:, :80], ident.c_id)
    assert torch.equal(coeffs, engine256.prepare_target(crops).coeffs)


def test_engine_reads_an_onnx_folder_written_elsewhere(exported256, tmp_path):
    shutil.copytree(exported256, tmp_path / "elsewhere")
    engine = OnnxHifiFace.from_pretrained(tmp_path / "elsewhere", device="cpu")
    assert engine.config.image_size == 256


def test_engine_missing_or_foreign_files_fail_clearly(exported256, folder256, tmp_path):
    with pytest.raises(WeightsError, match="no ONNX export of this model folder.*hififace export onnx"):
        OnnxHifiFace.from_pretrained(HifiFace.random(HifiFaceConfig(**TINY)).save_pretrained(tmp_path / "bare"))
    broken = shutil.copytree(exported256, tmp_path / "broken")
    (broken / "arcface.onnx").unlink()
    with pytest.raises(WeightsError, match=r"arcface\.onnx: missing ONNX arcface graph"):
        OnnxHifiFace.from_pretrained(broken)
    (broken / "arcface.onnx").write_bytes(b"not onnx")
    with pytest.raises(WeightsError, match=r"arcface\.onnx: onnxruntime cannot load it"):
        OnnxHifiFace.from_pretrained(broken)
    shutil.copy(broken / "recon3d.onnx", broken / "arcface.onnx")  # a valid graph in the wrong place
    with pytest.raises(WeightsError, match=r"arcface\.onnx: not the arcface graph"):
        OnnxHifiFace.from_pretrained(broken)
    # graphs of differently configured models do not mix
    shutil.copy(exported256 / "arcface.onnx", broken / "arcface.onnx")
    proto = onnx.load(str(broken / "recon3d.onnx"))
    meta = next(p for p in proto.metadata_props if p.key == "hififace:config")
    meta.value = json.dumps({**json.loads(meta.value), "recon_input_size": 128})
    onnx.save(proto, str(broken / "recon3d.onnx"))
    with pytest.raises(WeightsError, match="different configurations"):
        OnnxHifiFace.from_pretrained(broken)


def test_engine_warns_when_the_weights_changed_since_the_export(exported256, folder256, tmp_path, caplog):
    folder = shutil.copytree(folder256, tmp_path / "retrained")
    HifiFace.random(HifiFaceConfig(**TINY), seed=99).save_pretrained(tmp_path / "other")
    shutil.copy(tmp_path / "other" / "generator.safetensors", folder / "generator.safetensors")
    with caplog.at_level("WARNING"):
        OnnxHifiFace.from_pretrained(folder, device="cpu")
    stale = [r.getMessage() for r in caplog.records if "exported from another" in r.getMessage()]
    assert len(stale) == 1 and "generator.onnx" in stale[0] and "hififace export onnx" in stale[0], stale
    caplog.clear()
    with caplog.at_level("WARNING"):
        OnnxHifiFace.from_pretrained(folder256, device="cpu")  # the folder it was exported from: silent
    assert not [r for r in caplog.records if "exported from another" in r.getMessage()]


def test_a_gpu_provider_that_cannot_start_falls_back_to_the_cpu(exported256, monkeypatch, caplog):
    import onnxruntime as ort

    from hififace.export import engine

    real = ort.InferenceSession

    def session(path, options=None, providers=None):
        if providers != ["CPUExecutionProvider"]:
            raise RuntimeError("CUDA driver version is insufficient\nmore lines")
        return real(path, options, providers=providers)

    monkeypatch.setattr(ort, "InferenceSession", session)
    monkeypatch.setattr(engine, "select_providers", lambda device: [("CUDAExecutionProvider", {"device_id": 0}),
                                                                    "CPUExecutionProvider"])
    with caplog.at_level("WARNING"):
        model = OnnxHifiFace.from_pretrained(exported256)
    assert model.providers == ["CPUExecutionProvider"]
    assert any("could not start CUDAExecutionProvider" in r.getMessage() for r in caplog.records)


def test_providers():
    import onnxruntime as ort

    from hififace.export import select_providers

    assert select_providers("cpu") == ["CPUExecutionProvider"]
    auto = select_providers("auto")
    assert auto[-1] == "CPUExecutionProvider" and len(auto) == 1 + sum(
        p in ort.get_available_providers() for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    with pytest.raises(HifiFaceError, match="unsupported device"):
        select_providers("mps")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(HifiFaceError, match="no CUDA provider.*onnxruntime-gpu"):
            select_providers("cuda:0")


# ---------------------------------------------------------------------------------------------- export failures
def test_export_of_an_incomplete_folder_fails_in_one_line(folder256, tmp_path, capsys):
    broken = shutil.copytree(folder256, tmp_path / "incomplete", ignore=shutil.ignore_patterns("onnx"))
    (broken / "recon3d.safetensors").unlink()
    rc, _, err = run_cli(["export", "onnx", "--weights", broken], capsys)
    assert rc == 2
    assert_one_error(rc, err, str(broken / "recon3d.safetensors"), "missing", "hififace convert")
    assert not (broken / "onnx").exists()
    rc, _, err = run_cli(["export", "onnx", "--weights", tmp_path / "nowhere"], capsys)
    assert_one_error(rc, err, "model folder not found")
    (tmp_path / "file").write_text("x")
    rc, _, err = run_cli(["export", "onnx", "--weights", folder256, "-o", tmp_path / "file"], capsys)
    assert_one_error(rc, err, "is a file")
    rc, _, err = run_cli(["export", "onnx", "--weights", folder256, "-o", tmp_path / "file" / "onnx"], capsys)
    assert_one_error(rc, err, str(tmp_path / "file" / "onnx"), "is a file, not a folder", "-o DIR")


def test_export_to_a_read_only_place_fails_in_one_line(folder256, tmp_path, monkeypatch, capsys):
    """Refused before the model loads where the permission shows; a write refused later (root on a folder it may
    not write, a full disk) is the same one line, and nothing is left behind."""
    import os
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and real_access(p, mode, **kw))
    rc, _, err = run_cli(["export", "onnx", "--weights", folder256, "-o", locked / "onnx"], capsys)
    assert_one_error(rc, err, str(locked / "onnx"), f"{locked} is not writable", "-o DIR")
    monkeypatch.setattr(os, "access", real_access)

    def refuse(*args, dir=None, **kw):
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    rc, _, err = run_cli(["export", "onnx", "--weights", folder256, "-o", locked / "onnx", "--no-check"], capsys)
    progress = [line for line in err if line.startswith("hififace.export.exporter: exporting ")]
    assert_one_error(rc, [line for line in err if line not in progress],
                     f"{locked / 'onnx'}: cannot write the ONNX files (Permission denied)", "-o DIR")
    assert list(locked.iterdir()) == []


def test_export_without_the_extra_says_what_to_install(folder256, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    rc, _, err = run_cli(["export", "onnx", "--weights", folder256], capsys)
    assert_one_error(rc, err, "onnxscript", "pip install 'hififace[onnx]'")


def test_a_failed_export_keeps_the_previous_files_and_leaves_no_temporaries(tmp_path, monkeypatch):
    """The whole set is renamed into place at the end: a failure on the second graph changes nothing."""
    from hififace.export import exporter

    out = tmp_path / "onnx"
    out.mkdir()
    for spec in GRAPHS:
        (out / spec.file).write_bytes(f"previous {spec.name}".encode())
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class FakeProgram:
        class model:
            metadata_props: dict = {}
            doc_string = ""

        def save(self, path, external_data=False):
            Path(path).write_bytes(b"new")

    calls = []

    def fake_export(module, args, spec, opset):
        calls.append(spec.name)
        if len(calls) == 2:
            raise exporter.ExportError(f"{spec.file}: torch.onnx export failed (simulated)")
        return FakeProgram()

    monkeypatch.setattr(exporter, "_export_graph", fake_export)
    with pytest.raises(exporter.ExportError, match="simulated"):
        exporter.export_onnx(HifiFace.random(HifiFaceConfig(**TINY)), out, check=False)
    assert calls == ["generator", "arcface"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and leftovers(out) == []
    calls.clear()
    with pytest.raises(exporter.ExportError, match="simulated"):  # into a new folder: not left behind, empty
        exporter.export_onnx(HifiFace.random(HifiFaceConfig(**TINY)), tmp_path / "new" / "onnx", check=False)
    assert not (tmp_path / "new" / "onnx").exists()


# ---------------------------------------------------------------------------------------------- swap --engine onnx
def test_cli_swap_with_the_onnx_engine(exported256, folder256, torch_pair, tmp_path, capsys):
    args = ["swap", "-s", SAMPLES / "astronaut.png", "-t", SAMPLES / "grace_hopper.png", "--weights", folder256]
    # the unmarked output, compared with torch's (the invisible watermark is tested in test_provenance_outputs)
    rc, _, err = run_cli(args + ["-o", tmp_path / "onnx.png", "--engine", "onnx", "--device", "cpu",
                                 "--no-invisible-watermark"], capsys)
    err = [line for line in err if "--no-invisible-watermark" not in line and "local signing key" not in line]
    assert rc == 0 and err[-1] == f"hififace: wrote {tmp_path / 'onnx.png'} (aligned crop)", err
    got = read_crop(tmp_path / "onnx.png")
    assert got.shape == (256, 256, 3) and np.abs(got.astype(int) - torch_pair.astype(int)).max() <= 1
    # folder256 holds HifiFace.random weights: said and labelled as with --engine torch
    assert len(err) == 2 and "RANDOM weights" in err[0]
    label = read_label(tmp_path / "onnx.png")
    assert label["AI-Generated"] == "true" and label["hififace:weights"].startswith("random")
    # the ONNX folder itself works as --weights (it holds config.json)
    rc, _, err = run_cli(args[:-1] + [exported256, "-o", tmp_path / "o2.png", "--engine", "onnx"], capsys)
    assert rc == 0, err


def test_photo_swap_and_identity_files_work_across_engines(exported256, folder256, engine256, torch256, tmp_path,
                                                          capsys):
    """The photo pipeline runs on onnxruntime too, and an identity saved with one engine is accepted by the other
    (the export records the PyTorch model's identity fingerprint)."""
    pytest.importorskip("cv2")
    from hififace.inference.pipeline import FaceSwapper

    photo = Path(__file__).parent / "data" / "photos" / "grace_hopper.jpg"
    ident = tmp_path / "me.safetensors"
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "--save-identity", ident, "--weights", folder256,
                          "--engine", "onnx"], capsys)
    assert rc == 0, err
    # a random network's m_r means nothing (it may be ~0 everywhere): blend with the face region alone
    results = [FaceSwapper(m, model_mask=False).swap(ident, photo) for m in (torch256, engine256)]
    a, b = (r.image.astype(int) for r in results)
    original = read_crop(photo).astype(int)
    assert results[0].swapped == results[1].swapped == [0]
    assert (a != original).any() and np.abs(a - b).max() <= 2  # the same swap and paste-back, within rounding
    rc, _, err = run_cli(["swap", "-s", ident, "-t", photo, "-o", tmp_path / "o.png", "--weights", folder256,
                          "--engine", "onnx", "--device", "cpu"], capsys)
    assert rc == 0 and err[-1].endswith("(1 of 1 face(s) swapped)"), err


def test_cli_grid_and_interpolate_run_on_the_onnx_engine(exported256, folder256, tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    for name in ("astronaut", "grace_hopper"):
        shutil.copy(SAMPLES / f"{name}.png", faces)
    rc, _, err = run_cli(["grid", faces, "-o", tmp_path / "grid.png", "--weights", folder256, "--engine", "onnx"], capsys)
    assert rc == 0, err
    assert read_crop(tmp_path / "grid.png").shape[0] > 256
    rc, _, err = run_cli(["interpolate", "--source", faces / "astronaut.png", "--target", faces / "grace_hopper.png",
                          "--frames", 3, "-o", tmp_path / "i.gif", "--weights", folder256, "--engine", "onnx"], capsys)
    assert rc == 0, err
    assert read_label(tmp_path / "i.gif")


def test_cli_swap_onnx_errors(folder256, exported256, tmp_path, capsys):
    args = ["swap", "-s", SAMPLES / "astronaut.png", "-t", SAMPLES / "grace_hopper.png", "-o", tmp_path / "o.png",
            "--engine", "onnx"]
    bare = HifiFace.random(HifiFaceConfig(**TINY)).save_pretrained(tmp_path / "bare")
    rc, _, err = run_cli(args + ["--weights", bare], capsys)
    assert_one_error(rc, err, "no ONNX export", f"hififace export onnx --weights {bare}")
    rc, _, err = run_cli(args + ["--weights", folder256, "--dtype", "bf16"], capsys)
    assert_one_error(rc, err, "--dtype bf16", "float32")
    rc, _, err = run_cli(args + ["--weights", folder256, "--device", "mps"], capsys)
    assert_one_error(rc, err, "unsupported device")
    assert leftovers(tmp_path) == [] and not (tmp_path / "o.png").exists()


def test_cli_help_and_usage(capsys):
    from hififace.cli.main import main as cli

    with pytest.raises(SystemExit) as exc:
        cli(["export", "onnx", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--weights", "--output", "--no-check", "opset 18", "consent"):
        assert needle in text
    with pytest.raises(SystemExit) as exc:
        cli(["export"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli(["swap", "--help"])
    assert "--engine {torch,onnx}" in capsys.readouterr().out


def test_cli_video_runs_on_the_onnx_engine(exported256, folder256, tmp_path, monkeypatch, capsys):
    """`hififace video --engine onnx`: every frame's face goes through onnxruntime's generator graph."""
    pytest.importorskip("cv2")
    pytest.importorskip("imageio_ffmpeg")
    from videokit import face_frames, make_clip

    clip = make_clip(tmp_path / "clip.mp4", face_frames(3), audio=False)
    generated = []
    real = OnnxHifiFace.run_graph

    def spy(self, spec, *inputs):
        if spec is GENERATOR:
            generated.append(inputs[0].shape[0])
        return real(self, spec, *inputs)

    monkeypatch.setattr(OnnxHifiFace, "run_graph", spy)
    out = tmp_path / "out.mp4"
    rc, _, err = run_cli(["video", "-s", SAMPLES / "astronaut.png", "-t", clip, "-o", out, "--weights", folder256,
                          "--engine", "onnx", "--preset", "ultrafast"], capsys)
    assert rc == 0, err
    assert sum(generated) == 3 and "AI-Generated=true" in " ".join(f"{k}={v}" for k, v in read_label(out).items())


def test_demo_and_app_run_on_the_onnx_engine(exported256, folder256, tmp_path, monkeypatch, capsys):
    """`demo` and `app` load through load_model_or_random, which asks the model whether it is random."""
    rc, _, err = run_cli(["demo", "--weights", folder256, "--engine", "onnx", "-o", tmp_path / "demo.png"], capsys)
    assert rc == 0, err
    assert "hififace:weights" in read_label(tmp_path / "demo_random_weights.png")
    gr = pytest.importorskip("gradio")
    from hififace.app import service

    engines = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: setattr(self, "share_url", None))
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    monkeypatch.setattr(service.SwapService, "close", lambda self: engines.append((self.engine.model, self.random)))
    rc, out, err = run_cli(["app", "--weights", folder256, "--engine", "onnx"], capsys)
    assert rc == 0, err
    assert len(engines) == 1 and isinstance(engines[0][0], OnnxHifiFace) and engines[0][1] is True
