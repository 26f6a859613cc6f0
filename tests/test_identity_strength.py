"""Identity and 3D-shape strength (Identity.toward): bit-exact ends, monotone in between, separate parts; and
HifiFace.analyse, which gives the target's own identity and the coefficients the pose and report need."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hififace import Identity
from inferkit import tiny_model


def _identities(n_target: int = 1, seed: int = 0) -> tuple[Identity, Identity]:
    g = torch.Generator().manual_seed(seed)
    src = Identity(torch.randn(1, 80, generator=g), F.normalize(torch.randn(1, 512, generator=g), dim=1))
    tgt = Identity(torch.randn(n_target, 80, generator=g), F.normalize(torch.randn(n_target, 512, generator=g), dim=1))
    return src, tgt


def _bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.view(torch.int32), b.view(torch.int32))


def test_full_strength_is_the_source_and_zero_is_the_target_bit_for_bit():
    src, tgt = _identities()
    one = src.toward(tgt, identity=1.0, shape=1.0)
    assert _bits(one.c_id, src.c_id) and _bits(one.v_id, src.v_id)
    zero = src.toward(tgt, identity=0.0, shape=0.0)
    assert _bits(zero.c_id, tgt.c_id) and _bits(zero.v_id, tgt.v_id)
    # the parts are separate: each strength moves its own part only
    shape_only = src.toward(tgt, identity=1.0, shape=0.0)
    assert _bits(shape_only.v_id, src.v_id) and _bits(shape_only.c_id, tgt.c_id)
    id_only = src.toward(tgt, identity=0.0, shape=1.0)
    assert _bits(id_only.v_id, tgt.v_id) and _bits(id_only.c_id, src.c_id)


def test_in_between_is_monotone_renormalised_and_as_mix():
    src, tgt = _identities()
    rates = np.linspace(0.0, 1.0, 11)
    mixed = [src.toward(tgt, identity=float(r), shape=float(r)) for r in rates]
    to_src = [float(m.v_id @ src.v_id.T) for m in mixed]
    to_tgt = [float(m.v_id @ tgt.v_id.T) for m in mixed]
    shape_gap = [float((m.c_id - src.c_id).norm()) for m in mixed]
    assert all(a < b for a, b in zip(to_src, to_src[1:]))  # ever closer to the source's ArcFace vector
    assert all(a > b for a, b in zip(to_tgt, to_tgt[1:]))
    assert all(a > b for a, b in zip(shape_gap, shape_gap[1:]))
    for m in mixed:
        torch.testing.assert_close(m.v_id.norm(dim=1), torch.ones(1))  # re-normalised, as Identity.mix
    half = src.toward(tgt, identity=0.5, shape=0.5)
    ref = src.mix(tgt, 0.5, "all")
    torch.testing.assert_close(half.c_id, ref.c_id, rtol=0, atol=0)
    torch.testing.assert_close(half.v_id, ref.v_id, rtol=0, atol=0)


def test_one_source_serves_a_batch_of_targets_and_bad_strengths_are_refused():
    src, tgt = _identities(n_target=3)
    out = src.toward(tgt, identity=0.3, shape=1.0)
    assert len(out) == 3 and out.c_id.shape == (3, 80) and out.v_id.shape == (3, 512)
    np.testing.assert_array_equal(out.c_id.numpy(), src.c_id.expand(3, -1).numpy())
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="strength must be in"):
            src.toward(tgt, identity=bad)
        with pytest.raises(ValueError, match="strength must be in"):
            src.toward(tgt, shape=bad)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_model_zero_strength_is_the_targets_self_reconstruction(model):
    g = torch.Generator().manual_seed(1)
    source, target = torch.rand(1, 3, 256, 256, generator=g), torch.rand(2, 3, 256, 256, generator=g)
    src, tgt = model.identity(source), model.identity(target)
    assert torch.equal(model.swap(src.toward(tgt, 0.0, 0.0), target), model.swap(tgt, target))
    assert torch.equal(model.swap(src.toward(tgt, 1.0, 1.0), target), model.swap(src, target))
    half = model.swap(src.toward(tgt, 0.5, 0.5), target)
    assert not torch.equal(half, model.swap(src, target))


def test_analyse_is_what_identity_and_prepare_target_compute(model):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(3, 3, 256, 256, generator=g)
    v_id, coeffs = model.analyse(x)
    assert v_id.shape == (3, 512) and coeffs.shape == (3, 257)
    assert v_id.dtype == coeffs.dtype == torch.float32
    ident = model.identity(x)
    assert torch.equal(v_id, ident.v_id) and torch.equal(coeffs[:, :80], ident.c_id)
    assert torch.equal(coeffs, model.prepare_target(x).coeffs)
    from hififace.inference.engine import ModelEngine

    v2, c2 = ModelEngine(model).analyse(x)
    assert torch.equal(v2, v_id) and torch.equal(c2, coeffs)
