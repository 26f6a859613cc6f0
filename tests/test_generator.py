"""Generator, discriminators and blocks: shapes, parameter counts, gradients, determinism."""
from __future__ import annotations

import pytest
import torch

from hififace import HifiFaceConfig
from hififace.models.discriminators import create_discriminator
from hififace.models.generator import Generator, GeneratorOutput, create_generator

SIZES = (256, 512)
VARIANTS = ("reference", "paper")


def tiny(size: int, variant: str) -> HifiFaceConfig:
    return HifiFaceConfig(image_size=size, variant=variant, channel_multiplier=1 / 16)


def test_reference_parameter_counts_match_the_reference_checkpoint():
    # seed_checkpoint_summary.md: encoder 24,750,464 + decoder 29,320,960 + sff 3,525,014
    with torch.device("meta"):
        g = create_generator(256, "reference")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(g.encoder) == 24_750_464
    assert count(g.decoder) == 29_320_960
    assert count(g.sff) == 3_525_014
    with torch.device("meta"):
        d = create_discriminator(HifiFaceConfig())
    assert count(d) == 8_299_587


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_shapes_and_dtypes(size, variant):
    torch.manual_seed(0)
    g = Generator(tiny(size, variant)).eval()
    target = torch.rand(2, 3, size, size)
    v_sid = torch.randn(2, 769)
    with torch.no_grad():
        out = g(target, v_sid)
    assert isinstance(out, GeneratorOutput)
    assert out.i_r.shape == (2, 3, size, size)
    assert out.i_low.shape == (2, 3, 64, 64)
    assert out.m_r.shape == (2, 1, size, size)
    assert out.m_low.shape == (2, 1, 64, 64)
    for t in out:
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    lo, hi = (-1, 1) if variant == "reference" else (0, 1)  # tanh vs sigmoid masks
    for m in (out.m_r, out.m_low):
        assert m.min() >= lo and m.max() <= hi


@pytest.mark.parametrize("variant", VARIANTS)
def test_mask_blend_keeps_target_where_mask_is_zero(variant):
    """i_r = m_r * rgb + (1 - m_r) * target: forcing m_r to 0 must return the target exactly."""
    torch.manual_seed(0)
    g = Generator(tiny(256, variant)).eval()
    head = g.sff.up[-1].conv2 if variant == "reference" else g.sff.mask_r
    with torch.no_grad():
        if variant == "reference":  # channel 0 of the last block is the mask logit; tanh(0) = 0
            head.weight[0].zero_()
            head.bias[0] = 0.0
            g.sff.up[-1].skip.weight[0].zero_()
            g.sff.up[-1].skip.bias[0] = 0.0
        else:  # sigmoid(-inf) = 0
            head.weight.zero_()
            head.bias.fill_(-1e4)
        target = torch.rand(1, 3, 256, 256)
        out = g(target, torch.randn(1, 769))
    torch.testing.assert_close(out.i_r, target, rtol=0, atol=0)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_parameter_gets_a_gradient_from_i_r_and_i_low(size, variant):
    torch.manual_seed(0)
    g = Generator(tiny(size, variant)).train()
    out = g(torch.rand(1, 3, size, size), torch.randn(1, 769))
    (out.i_r.square().mean() + out.i_low.square().mean()).backward()
    missing = [n for n, p in g.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert not missing, missing


def test_deterministic():
    torch.manual_seed(0)
    g = Generator(tiny(256, "reference")).eval()
    target, v = torch.rand(1, 3, 256, 256), torch.randn(1, 769)
    with torch.no_grad():
        a, b = g(target, v), g(target, v)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_batch_items_are_independent():
    """Instance norm and AdaIN are per sample: a batch of two equals two batches of one."""
    torch.manual_seed(0)
    g = Generator(tiny(256, "paper")).eval()
    t, v = torch.rand(2, 3, 256, 256), torch.randn(2, 769)
    with torch.no_grad():
        both = g(t, v).i_r
        first = g(t[:1], v[:1]).i_r
    torch.testing.assert_close(both[:1], first, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_discriminator_outputs(variant):
    torch.manual_seed(0)
    d = create_discriminator(tiny(256, variant))
    outs = d(torch.rand(2, 3, 256, 256))
    assert isinstance(outs, list) and outs
    if variant == "reference":
        assert [o.shape[-1] for o in outs] == [35, 19, 11]  # full, 1/2 and 1/4 resolution patch maps
    else:
        assert outs[0].shape == (2, 1)
    sum(o.mean() for o in outs).backward()
    assert all(p.grad is not None for p in d.parameters())


def test_config_validation():
    from hififace.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown variant 'bogus'"):
        HifiFaceConfig(variant="bogus")
    with pytest.raises(ConfigError, match="image_size"):
        HifiFaceConfig(image_size=300)
    with pytest.raises(ConfigError, match="unknown field"):
        HifiFaceConfig.from_dict({"image_size": 256, "colour": "red"})
