"""hififace.weights.io: the one safetensors reader (at least as strict as the format), and the checks every load of
weights into a network goes through (keys, shapes, dtypes, finite values). Hostile files are built here from bytes."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from hififace.errors import WeightsError
from hififace.weights.io import MAX_HEADER, load_into, load_safetensors, read_safetensors, read_safetensors_header


def _st(header, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file: 8-byte little-endian header length, the JSON header (or raw bytes), the data."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def _f32(shape, begin, end) -> dict:
    return {"dtype": "F32", "shape": shape, "data_offsets": [begin, end]}


def test_a_valid_file_reads_bit_exact_into_aligned_tensors(tmp_path):
    tensors = {"w": torch.randn(3, 5, generator=torch.Generator().manual_seed(0)), "b": torch.arange(7.0).double(),
               "n": torch.tensor(12, dtype=torch.int64), "empty": torch.zeros(0, 4), "h": torch.ones(9).half()}
    path = tmp_path / "ok.safetensors"
    save_file(tensors, str(path), metadata={"format": "x"})
    got, meta = read_safetensors(path)
    ref = load_file(str(path))
    assert meta == {"format": "x"} and set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v) and torch.equal(got[k], ref[k]), k
        if got[k].numel():
            assert got[k].data_ptr() % 64 == 0, k  # fresh allocations: oneDNN picks the reference's kernels
    header = read_safetensors_header(path)
    assert header.tensors["w"].shape == (3, 5) and header.tensors["w"].numel == 15


@pytest.mark.parametrize("content, reason", [
    (_st({"a": _f32([2], 0, 8), "b": _f32([2], 4, 12)}, bytes(12)), "overlaps the one before"),
    (_st({"a": _f32([2], 0, 8), "b": _f32([2], 12, 20)}, bytes(20)), "leaves a gap before it"),
    (_st({"a": _f32([2], 0, 8)}, bytes(16)), "cover 8 bytes of a 16-byte data buffer"),
    (_st({"a": _f32([4], 0, 16)}, bytes(8)), "cover 16 bytes of a 8-byte data buffer"),
    (_st({"a": _f32([2], -8, 0)}, bytes(8)), "data_offsets [-8, 0]"),  # would point into the header
    (_st({"a": _f32([2], 8, 0)}, bytes(8)), "0 <= begin <= end"),
    (_st({"a": _f32([-1], 0, 4)}, bytes(4)), "shape [-1]"),
    (_st({"a": _f32([True], 0, 4)}, bytes(4)), "not a list of non-negative integers"),
    (_st({"a": _f32([3], 0, 8)}, bytes(8)), "spans 8 bytes, its shape [3] and dtype F32 need 12"),
    (_st({"a": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}, bytes(1)), "unknown dtype Q7"),
    (_st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}}, bytes(4)), "not described by"),
    (_st([1, 2]), "not a JSON object"),
    (_st({"__metadata__": {"a": 1}}), "__metadata__ is not a map of strings to strings"),
    (_st(b'{"a": ' + json.dumps(_f32([1], 0, 4)).encode() + b', "a": ' + json.dumps(_f32([1], 0, 4)).encode() + b"}",
         bytes(4)), "names a key twice"),
    (_st(b'{"a": ' + b"[" * 100_000), "not valid JSON"),
    (_st({"a": _f32([1], 0, 4)}, bytes(4), length=10**6), "header length 1,000,000 out of range"),
    (struct.pack("<Q", MAX_HEADER + 1) + b"{" + bytes(MAX_HEADER + 8), "out of range"),
    (b"\x01\x00", "shorter than a safetensors header"),
    (_st({"a\x1b[2J": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)), "tensor a\\x1b[2J has"),
])
def test_hostile_headers_are_one_line_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "generator.safetensors"
    path.write_bytes(content)
    with pytest.raises(WeightsError) as info:
        load_safetensors(path, "generator weights")
    text = str(info.value)
    assert text.startswith(f"{path}: not a valid safetensors file (") and reason in text, text
    assert "re-create it" in text and "\n" not in text and "\x1b" not in text and len(text) < 400
    with pytest.raises(WeightsError, match="not a valid safetensors file"):
        read_safetensors_header(path)


def test_zero_size_tensors_may_share_an_offset(tmp_path):
    path = tmp_path / "z.safetensors"
    path.write_bytes(_st({"a": _f32([0], 0, 0), "b": _f32([0, 3], 0, 0), "c": _f32([1], 0, 4)}, bytes(4)))
    got = load_safetensors(path)
    assert got["a"].shape == (0,) and got["b"].shape == (0, 3) and got["c"].shape == (1,)


def test_weights_of_an_unexpected_dtype_or_non_finite_are_refused(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    load_into(net, state, "ok.safetensors")
    with pytest.raises(WeightsError, match=r"w.safetensors: 1 tensor\(s\) of an unexpected dtype \(0.weight is int32, "
                                           r"expected float32\)"):
        load_into(net, {**state, "0.weight": state["0.weight"].int()}, "w.safetensors")
    with pytest.raises(WeightsError, match=r"1.num_batches_tracked is float32, expected int64"):
        load_into(net, {**state, "1.num_batches_tracked": torch.tensor(1.0)}, "w.safetensors")
    with pytest.raises(WeightsError, match="non-finite values .* in 0.bias"):
        load_into(net, {**state, "0.bias": torch.tensor([0.0, float("inf"), 1.0])}, "w.safetensors")
    load_into(net, {**state, "0.weight": state["0.weight"].half()}, "half.safetensors")  # float for float: fine
    assert net[0].weight.dtype == torch.float32


def test_keys_quoted_in_messages_are_escaped_and_cut():
    net = torch.nn.Linear(2, 3)
    state = {**net.state_dict(), "\x1b[2J" + "k" * 10_000: torch.zeros(1)}
    with pytest.raises(WeightsError) as info:
        load_into(net, state, "w.safetensors")
    text = str(info.value)
    assert "unexpected 1 key(s): \\x1b[2Jkkk" in text and "\u2026" in text and len(text) < 300, text


def test_a_model_folder_with_int_weights_is_one_line(tmp_path):
    from hififace import HifiFace
    from inferkit import tiny_model_dir

    folder = tiny_model_dir(tmp_path / "m")
    state = load_file(str(folder / "generator.safetensors"))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].to(torch.int32)
    save_file(state, str(folder / "generator.safetensors"))
    with pytest.raises(WeightsError, match=f"generator.safetensors: 1 tensor.*{key} is int32, expected float32"):
        HifiFace.from_pretrained(folder)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_check_finite_finds_one_bad_value_in_any_float_dtype(dtype, bad):
    from hififace.errors import WeightsError
    from hififace.weights.io import check_finite

    good = {"a": torch.randn(3, 5).to(dtype), "empty": torch.zeros(0, 4, dtype=dtype), "n": torch.zeros(2, dtype=torch.int64)}
    check_finite(good, "x.safetensors")
    w = torch.randn(7, 9).to(dtype)
    w[4, 2] = bad
    with pytest.raises(WeightsError, match=r"x.safetensors: non-finite values \(NaN/inf\) in w;"):
        check_finite({**good, "w": w}, "x.safetensors")
