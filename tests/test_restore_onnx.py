"""ONNX face restorers as other tools distribute them: tiny graphs built here (onnx.helper) with the signatures of
gfpgan_1.4.onnx, gpen_bfr_256/512/1024/2048.onnx, codeformer.onnx (its fidelity `weight` input) and RestoreFormer;
names, sizes and batch handling read from the graph, the [-1, 1] convention, one-line errors for bad files."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from hififace.errors import ConfigError, WeightsError  # noqa: E402
from hififace.restore import FaceRestorer, load_restorer  # noqa: E402
from hififace.restore.onnx_engine import OnnxRestorer  # noqa: E402

F32, F64, F16 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16


def make_graph(path, inputs, output=("output", None), body=None, meta=None, opset=17):
    """A graph with ``inputs`` [(name, elem_type, shape)] whose image output is 0.5 * the first input (times the
    fidelity input when there is one), or what ``body(names)`` builds."""
    ins = [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs]
    out_name, out_shape = output
    nodes, inits = [], [helper.make_tensor("half", F32, [], [0.5])]
    image = inputs[0][0]
    if body is not None:
        nodes = body(image, out_name)
    elif len(inputs) > 1:
        nodes = [helper.make_node("Cast", [inputs[1][0]], ["w32"], to=F32),
                 helper.make_node("Mul", [image, "w32"], [out_name])]
    else:
        nodes = [helper.make_node("Mul", [image, "half"], [out_name])]
    outs = [helper.make_tensor_value_info(out_name, F32, out_shape)]
    model = helper.make_model(helper.make_graph(nodes, "restorer", ins, outs, inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    for k, v in (meta or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def faces(n, size, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def half_in_pm1(x):
    """What a graph computing 0.5 * input does to [0, 1] crops under the [-1, 1] convention."""
    return ((x * 2 - 1) * 0.5 + 1) / 2


def one_line(info, *needles):
    msg = str(info.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert re.search(n, msg), (n, msg)
    return msg


# ---------------------------------------------------------------------------------------- signatures of the tools
@pytest.mark.parametrize("file, in_name, shape, out_name, size, template", [
    ("gfpgan_1.4.onnx", "input", [1, 3, 512, 512], "output", 512, "ffhq5"),
    ("gpen_bfr_256.onnx", "input", [1, 3, 256, 256], "output", 256, "arcface"),
    ("gpen_bfr_512.onnx", "input", [1, 3, 512, 512], "output", 512, "ffhq5"),
    ("gpen_bfr_1024.onnx", "input", [1, 3, 1024, 1024], "output", 1024, "ffhq5"),
    ("gpen_bfr_2048.onnx", "input", [1, 3, 2048, 2048], "output", 2048, "ffhq5"),
    ("restoreformer_plus_plus.onnx", "x", ["batch", 3, 512, 512], "1288", 512, "ffhq5"),
])
def test_signature_read_from_the_graph_and_normalisation(tmp_path, file, in_name, shape, out_name, size, template):
    path = make_graph(tmp_path / file, [(in_name, F32, shape)], (out_name, shape))
    r = load_restorer(path, device="cpu")
    assert isinstance(r, OnnxRestorer) and isinstance(r, FaceRestorer)
    assert (r.input_name, r.output_name, r.size, r.template) == (in_name, out_name, size, template)
    assert r.fixed_batch == (1 if shape[0] == 1 else None) and not r.has_fidelity and r.name == file
    if size > 1024:
        return  # signature only: running 2048 px adds seconds and tests nothing the smaller sizes do not
    x = faces(1 if size == 1024 else 3, size)
    y = r.restore(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    torch.testing.assert_close(y, half_in_pm1(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("weight_type, weight_shape", [(F64, [1]), (F32, []), (F64, ["one"])])
def test_codeformer_fidelity_input_is_fed_with_the_graphs_type(tmp_path, weight_type, weight_shape):
    path = make_graph(tmp_path / "codeformer.onnx", [("input", F32, [1, 3, 512, 512]), ("weight", weight_type, weight_shape)],
                      ("output", [1, 3, 512, 512]))
    r = load_restorer(path, device="cpu", fidelity=0.25)
    assert r.has_fidelity and r.fidelity_input == "weight" and r.fidelity == 0.25
    x = faces(2, 512)
    pm1 = x * 2 - 1
    torch.testing.assert_close(r.restore(x), (pm1 * 0.25 + 1) / 2, rtol=0, atol=1e-6)
    torch.testing.assert_close(r.restore(x, fidelity=1.0), x, rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        r.restore(x, fidelity=2)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        OnnxRestorer(path, device="cpu", fidelity=-0.1)


def test_dynamic_sizes_take_the_size_argument_and_default_to_512(tmp_path):
    path = make_graph(tmp_path / "dyn.onnx", [("image", F32, ["n", 3, "h", "w"])], ("out", ["n", 3, "h", "w"]))
    r = OnnxRestorer(path, device="cpu", size=256, batch_size=2)
    assert r.size == 256 and r.fixed_batch is None and r.template == "arcface"
    x = faces(5, 256)
    torch.testing.assert_close(r.restore(x), half_in_pm1(x), rtol=0, atol=1e-6)
    assert OnnxRestorer(path, device="cpu").size == 512
    fixed = make_graph(tmp_path / "fixed.onnx", [("input", F32, [1, 3, 512, 512])], ("output", [1, 3, 512, 512]))
    with pytest.raises(ConfigError, match="takes 512 x 512 crops, not 256"):
        OnnxRestorer(fixed, device="cpu", size=256)


def test_fixed_batch_larger_than_one_is_padded(tmp_path):
    path = make_graph(tmp_path / "b2.onnx", [("input", F32, [2, 3, 64, 64])], ("output", [2, 3, 64, 64]))
    r = OnnxRestorer(path, device="cpu")
    x = faces(3, 64)
    torch.testing.assert_close(r.restore(x), half_in_pm1(x), rtol=0, atol=1e-6)


def test_metadata_overrides_range_and_template_and_fp16_graphs_run(tmp_path):
    path = make_graph(tmp_path / "zero_one.onnx", [("input", F32, [1, 3, 64, 64])], ("output", [1, 3, 64, 64]),
                      meta={"hififace:input_range": "0,1", "hififace:template": "arcface"})
    r = OnnxRestorer(path, device="cpu")
    assert r.input_range == (0.0, 1.0) and r.template == "arcface"
    x = faces(1, 64)
    torch.testing.assert_close(r.restore(x), x * 0.5, rtol=0, atol=1e-6)

    def fp16_body(image, out):
        return [helper.make_node("Cast", [image], ["x32"], to=F32), helper.make_node("Mul", ["x32", "half"], [out])]

    path16 = make_graph(tmp_path / "fp16.onnx", [("input", F16, [1, 3, 64, 64])], ("output", [1, 3, 64, 64]),
                        body=fp16_body)
    torch.testing.assert_close(OnnxRestorer(path16, device="cpu").restore(x), half_in_pm1(x), rtol=0, atol=2e-3)


# ---------------------------------------------------------------------------------------- bad files, one line each
def _avgpool(image, out):
    return [helper.make_node("AveragePool", [image], [out], kernel_shape=[2, 2], strides=[2, 2])]


@pytest.mark.parametrize("inputs, output, body, needles", [
    ([("a", F32, [1, 3, 64, 64]), ("b", F32, [1, 3, 64, 64])], ("o", None), None, ["one image input", r"a\[1,3,64,64\]"]),
    ([("a", F32, [1, 3, 64])], ("o", None), None, ["not a face restorer graph", "one image input"]),
    ([("a", F32, [1, 1, 64, 64])], ("o", None), None, ["1 channels, not 3"]),
    ([("a", F32, [1, 3, 64, 32])], ("o", None), None, ["not square"]),
    ([("a", F32, [1, 3, 64, 64]), ("weight", F32, [1, 512])], ("o", None), None, ["not a scalar fidelity"]),
    ([("a", TensorProto.INT64, [1, 3, 64, 64])], ("o", None), "cast", ["not a float tensor"]),
])
def test_graphs_that_are_not_restorers_give_one_line(tmp_path, inputs, output, body, needles):
    if body == "cast":
        body = lambda image, out: [helper.make_node("Cast", [image], [out], to=F32)]  # noqa: E731
    elif inputs[-1][0] == "weight":
        body = lambda image, out: [helper.make_node("Identity", [image], [out])]  # noqa: E731
    path = make_graph(tmp_path / "bad.onnx", inputs, output, body=body)
    with pytest.raises(WeightsError) as info:
        load_restorer(path, device="cpu")
    one_line(info, re.escape(str(path)), *needles)


def test_wrong_output_shape_and_garbage_files_give_one_line(tmp_path):
    path = make_graph(tmp_path / "half.onnx", [("input", F32, [1, 3, 64, 64])], ("output", None), body=_avgpool)
    r = OnnxRestorer(path, device="cpu")
    with pytest.raises(WeightsError) as info:
        r.restore(faces(1, 64))
    one_line(info, "1 x 3 x 32 x 32", "expected 1 x 3 x 64 x 64")
    junk = tmp_path / "codeformer.onnx"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(WeightsError) as info:
        load_restorer(junk, device="cpu")
    one_line(info, re.escape(str(junk)), "cannot load it as an ONNX model")
    with pytest.raises(WeightsError) as info:
        load_restorer(path, dtype="bf16")
    one_line(info, "precision it was exported in")


def test_crops_of_the_wrong_size_give_one_line(tmp_path):
    from hififace.errors import InputImageError

    r = OnnxRestorer(make_graph(tmp_path / "g.onnx", [("input", F32, [1, 3, 64, 64])], ("output", None)), device="cpu")
    with pytest.raises(InputImageError) as info:
        r.restore(faces(1, 32))
    one_line(info, "g.onnx", "1 x 3 x 32 x 32", "align the faces at 64 px")
    assert r.restore(faces(0, 64)).shape == (0, 3, 64, 64)
    assert np.isclose(float(r.restore(torch.ones(1, 3, 64, 64)).max()), 0.75)
