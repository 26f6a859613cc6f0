"""onnxruntime execution providers: ``--provider`` names in order of preference, their options (TensorRT fp16 and
engine cache, the GPU number), the one warning line when this onnxruntime lacks some, ``hififace info
--providers``, and the options refused where they would be ignored."""
from __future__ import annotations

import json
import logging

import pytest

from hififace.errors import HifiFaceError
from hififace.export.providers import PROVIDERS, ProviderOptions, parse_providers, provider_list
from inferkit import assert_one_error, run_cli

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_names_are_parsed_in_order_and_unknown_ones_refused():
    assert parse_providers("CUDA, tensorrt,cpu,cuda") == ("cuda", "tensorrt", "cpu")
    assert parse_providers(["openvino"]) == ("openvino",)
    with pytest.raises(HifiFaceError, match="--provider cudaa: unknown execution provider; choose from tensorrt, "):
        parse_providers("cudaa,cpu")
    with pytest.raises(HifiFaceError, match="give one or more"):
        parse_providers(" , ")
    assert set(PROVIDERS) >= {"tensorrt", "cuda", "coreml", "openvino", "directml", "cpu"}


def test_the_providers_get_their_options_in_the_order_asked():
    available = [TRT, CUDA, "CoreMLExecutionProvider", CPU]
    opts = ProviderOptions(device_id=1, trt_fp16=True, trt_cache="/tmp/engines")
    got, missing = provider_list(("cuda", "tensorrt", "coreml", "cpu"), available, opts)
    assert missing == []
    assert got == [(CUDA, {"device_id": 1}),
                   (TRT, {"device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                          "trt_engine_cache_path": "/tmp/engines"}),
                   "CoreMLExecutionProvider", CPU]
    got, _ = provider_list(("cpu",), available)
    assert got == [CPU]  # the CPU alone; and always last


def test_missing_providers_fall_back_with_one_warning_line(monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from hififace.export.engine import select_providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["AzureExecutionProvider", CPU])
    with caplog.at_level(logging.WARNING, logger="hififace"):
        got = select_providers("auto", "tensorrt,cuda,cpu", trt_fp16=True)
    assert got == [CPU]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("onnxruntime has no tensorrt, cuda provider here (it offers azure, cpu); running on cpu "
                               "instead (tensorrt: onnxruntime-gpu and NVIDIA's TensorRT libraries; cuda: "
                               "onnxruntime-gpu"), lines[0]


def test_device_gives_the_gpu_number_and_cpu_contradicts_a_gpu_provider(monkeypatch, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from hififace.export.engine import select_providers

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    got = select_providers("cuda:2", ["tensorrt", "cuda"], trt_cache=tmp_path)
    assert got[0] == (TRT, {"device_id": 2, "trt_fp16_enable": False, "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(tmp_path)})
    assert got[1:] == [(CUDA, {"device_id": 2}), CPU]
    with pytest.raises(HifiFaceError, match="--device cpu and --provider cuda contradict"):
        select_providers("cpu", "cuda")
    assert select_providers("cpu", "cpu") == [CPU]
    auto = select_providers("auto", trt_fp16=True)  # without --provider: TensorRT and CUDA when there, as before
    assert [p[0] if isinstance(p, tuple) else p for p in auto] == [TRT, CUDA, CPU] and auto[0][1]["trt_fp16_enable"]


def test_provider_options_without_the_onnx_engine_are_refused(capsys, tmp_path):
    rc, _, err = run_cli(["swap", "--source", "a.png", "--target", "b.png", "-o", tmp_path / "o.png", "--provider",
                          "cuda"], capsys)
    assert_one_error(rc, err, "--provider applies to --engine onnx")
    rc, _, err = run_cli(["video", "--source", "a.png", "--target", "b.mp4", "-o", tmp_path / "o.mp4", "--trt-fp16"],
                         capsys)
    assert_one_error(rc, err, "--trt-fp16 applies to --engine onnx")
    rc, _, err = run_cli(["live", "--source", "a.png", "--provider", "cpu"], capsys)
    assert_one_error(rc, err, "--provider applies to --engine onnx")
    with pytest.raises(SystemExit) as stop:  # a usage error, from argparse
        run_cli(["swap", "--engine", "onnx", "--provider", "gpu", "--source", "a.png"], capsys)
    assert stop.value.code == 2
    assert "argument --provider: gpu: unknown execution provider" in capsys.readouterr().err.splitlines()[-1]


def test_info_lists_the_providers_of_this_onnxruntime(capsys):
    ort = pytest.importorskip("onnxruntime")
    rc, out, err = run_cli(["info", "--providers"], capsys)
    assert rc == 0 and not err
    assert out.startswith(f"onnxruntime {ort.__version__}: execution providers on this machine")
    assert "  cpu        CPUExecutionProvider" in out
    for name in PROVIDERS:
        assert f"  {name} " in out  # each known one: offered here, or what brings it
    rc, out, _ = run_cli(["info", "--providers", "--json"], capsys)
    data = json.loads(out)
    assert rc == 0 and {"name": "cpu", "provider": CPU, "usable": True} in data["available"]
    assert data["default"][-1] == "cpu"
    rc, _, err = run_cli(["info", "--providers", "some/folder"], capsys)
    assert_one_error(rc, err, "--providers lists onnxruntime's providers")
