"""Loss terms, the composite objectives and LPIPS-VGG (tiny widths, random weights, CPU)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hififace import HifiFace, HifiFaceConfig
from hififace.errors import ConfigError, WeightsError
from hififace.losses import (LossConfig, LossNets, cycle_loss, discriminator_loss, generator_loss, hinge_d_loss,
                             hinge_g_loss, identity_loss, lpips_loss, nonsaturating_d_loss, r1_penalty,
                             reconstruction_loss, segmentation_loss, shape_loss)
from hififace.losses.lpips import LPIPS
from hififace.models.discriminators import create_discriminator
from hififace.models.frozen.bfm import BFMLandmarks

MANIFEST = Path(__file__).parent / "data" / "manifests" / "seed_lightning_checkpoint_keys.tsv"
LPIPS_PREFIX = "g_loss.realism_loss.loss_fn_vgg."


def tiny_config(variant="reference") -> HifiFaceConfig:
    return HifiFaceConfig(variant=variant, channel_multiplier=1 / 16, frozen_width=0.125, arcface_arch="r18",
                          recon_input_size=64)


# ---------------------------------------------------------------------- pure terms
def test_identity_loss_is_zero_for_equal_and_two_for_orthogonal():
    v = F.normalize(torch.randn(4, 512), dim=-1)
    assert identity_loss(v, v, v).item() == pytest.approx(0.0, abs=1e-6)
    e0, e1 = torch.zeros(1, 512), torch.zeros(1, 512)
    e0[0, 0], e1[0, 1] = 1, 1
    assert identity_loss(e0, e1, e1).item() == pytest.approx(2.0)


def test_segmentation_matches_reference_formula_at_256():
    m_tar = (torch.rand(2, 1, 256, 256) > 0.5).float()
    m_r, m_low = torch.rand(2, 1, 256, 256), torch.rand(2, 1, 64, 64)
    ref = F.l1_loss(F.interpolate(m_tar, scale_factor=0.25, mode="bilinear"), m_low) + F.l1_loss(m_tar, m_r)
    assert segmentation_loss(m_tar, m_r, m_low).item() == pytest.approx(ref.item(), rel=1e-6)
    assert segmentation_loss(m_tar, m_tar, F.interpolate(m_tar, size=64, mode="bilinear")).item() == pytest.approx(0, abs=1e-7)


def test_reconstruction_is_gated_by_same_identity():
    i_t, i_r, i_low = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256), torch.rand(2, 3, 64, 64)
    assert reconstruction_loss(i_r, i_low, i_t, torch.zeros(2)).item() == 0.0
    full = reconstruction_loss(i_r, i_low, i_t, torch.ones(2))
    ref = F.l1_loss(i_r, i_t) + F.l1_loss(i_low, F.interpolate(i_t, scale_factor=0.25, mode="bilinear"))
    assert full.item() == pytest.approx(ref.item(), rel=1e-6)
    half = reconstruction_loss(i_r, i_low, i_t, torch.tensor([1.0, 0.0]))
    assert 0 < half.item() < full.item()


def test_cycle_and_shape_are_l1():
    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert cycle_loss(a, b).item() == pytest.approx((a - b).abs().mean().item())
    q = torch.randn(2, 68, 2)
    assert shape_loss(q, q + 1, q - 2).item() == pytest.approx(3.0)


def test_hinge_and_nonsaturating_values():
    ones = [torch.ones(2, 1, 5, 5), torch.ones(2, 1, 3, 3)]
    assert hinge_g_loss(ones).item() == pytest.approx(-1.0)
    real, fake = hinge_d_loss([2 * o for o in ones], [-2 * o for o in ones])
    assert real.item() == 0.0 and fake.item() == 0.0  # beyond the margins
    real, fake = hinge_d_loss([torch.zeros(2, 1)], [torch.zeros(2, 1)])
    assert real.item() == 1.0 and fake.item() == 1.0
    real, fake = nonsaturating_d_loss([torch.zeros(2, 1)], [torch.zeros(2, 1)])
    assert real.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_r1_of_a_linear_discriminator():
    w = torch.randn(3 * 4 * 4)
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    d_out = [(x.flatten(1) @ w)[:, None]]
    assert r1_penalty(d_out, x).item() == pytest.approx(0.5 * w.pow(2).sum().item(), rel=1e-5)


# ---------------------------------------------------------------------- LPIPS
def test_lpips_keys_match_the_reference_checkpoint():
    rows = [line.split("\t") for line in MANIFEST.read_text().splitlines() if line.startswith(LPIPS_PREFIX)]
    want = {r[0][len(LPIPS_PREFIX):]: tuple(int(s) for s in r[1].split(",")) for r in rows
            if not r[0][len(LPIPS_PREFIX):].startswith("lins.")}
    net = LPIPS()
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert got == want
    assert list(got) == list(want)  # the lpips package's order too


def test_lpips_distance_properties_and_input_scaling():
    torch.manual_seed(0)
    net = LPIPS(width=0.125)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training  # FrozenModule: stays in eval
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    d = net(x, y)
    assert d.shape == (2,) and bool((d > 0).all())
    assert net(x, x).abs().max().item() < 1e-6
    assert torch.allclose(net(x, y), net(y, x), atol=1e-6)
    # [0, 1] inputs are scaled to [-1, 1] inside: the raw features of 2x-1 reproduce the distance.
    fx, fy = net.net(net.scaling_layer(2 * x - 1)), net.net(net.scaling_layer(2 * y - 1))
    manual = sum(getattr(net, f"lin{i}")((a / (a.norm(dim=1, keepdim=True) + 1e-10) - b / (b.norm(dim=1, keepdim=True) + 1e-10)) ** 2)
                 .mean(dim=(1, 2, 3)) for i, (a, b) in enumerate(zip(fx, fy)))
    assert torch.allclose(d, manual, atol=1e-6)


def test_lpips_loads_torchvision_and_lpips_files(tmp_path):
    torch.manual_seed(1)
    ref = LPIPS()
    vgg = {f"features.{k.split('.', 1)[1]}": v.clone() for k, v in ref.net.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # present in the torchvision file, ignored
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(ref.net.channels)}
    torch.save(vgg, tmp_path / "vgg16-397923af.pth")
    torch.save(lin, tmp_path / "vgg.pth")
    net = LPIPS(tmp_path / "vgg16-397923af.pth", tmp_path / "vgg.pth")
    assert net.pretrained
    assert torch.equal(net.net.slice5._modules["28"].weight, ref.net.slice5._modules["28"].weight)
    assert torch.equal(net.lin3.model[1].weight, lin["lin3.model.1.weight"])
    with pytest.raises(WeightsError, match="vgg.pth"):
        LPIPS(tmp_path / "vgg16-397923af.pth", None)
    torch.save({"features.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="missing"):
        LPIPS(tmp_path / "bad.pth", tmp_path / "vgg.pth")


def test_lpips_loss_counts_only_same_identity_pairs():
    torch.manual_seed(0)
    net = LPIPS(width=0.125)
    a, b = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    got = lpips_loss(net, a, b, torch.tensor([1.0, 0.0]))
    assert got.item() == pytest.approx(net(a[:1], b[:1]).item() / 2, rel=1e-5)
    assert lpips_loss(net, a, b, torch.zeros(2)).item() == 0.0


# ---------------------------------------------------------------------- composite
@pytest.fixture(scope="module")
def tiny_nets():
    torch.manual_seed(0)
    model = HifiFace(tiny_config())
    return model, LossNets(model.id_extractor, BFMLandmarks.random(0), LPIPS(width=0.125))


def _inputs(model, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    src, tgt = torch.rand(n, 3, 256, 256, generator=g), torch.rand(n, 3, 256, 256, generator=g)
    mask = (torch.rand(n, 1, 256, 256, generator=g) > 0.5).float()
    v_sid = model.id_extractor(src, tgt)
    out = model.generator(tgt, v_sid)
    cyc = model.generator(out.i_r, model.id_extractor(tgt, out.i_r)).i_r
    return dict(source=src, target=tgt, m_tar=mask, same=torch.tensor([1.0, 0.0]), v_sid=v_sid, i_r=out.i_r,
                i_low=out.i_low, m_r=out.m_r, m_low=out.m_low, i_cycle=cyc)


def test_generator_loss_is_the_weighted_sum_and_trains_only_the_generator(tiny_nets):
    model, nets = tiny_nets
    disc = create_discriminator(model.config)
    inp = _inputs(model)
    cfg = LossConfig.for_variant("reference", recon_size=96)
    total, t = generator_loss(nets, cfg, d_fake=disc(inp["i_r"]), **inp)
    expect = 5 * t["id"] + 0.5 * t["shape"] + t["adv_g"] + 100 * t["seg"] + 20 * t["rec"] + t["cyc"] + 5 * t["lpips"]
    assert total.item() == pytest.approx(expect.item(), rel=1e-5)
    assert all(torch.isfinite(v) for v in t.values())
    model.generator.zero_grad()
    total.backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    frozen = [model.id_extractor.arcface, model.id_extractor.recon, nets.lpips, nets.landmarks]
    assert all(p.grad is None for m in frozen for p in m.parameters())
    # every term reacts to the weights
    zero = LossConfig(id=0, shape=0, adv=0, seg=0, rec=0, cyc=0, lpips=0, recon_size=96)
    total0, _ = generator_loss(nets, zero, d_fake=[o.detach() for o in disc(inp["i_r"])], **{k: v.detach() for k, v in inp.items()})
    assert total0.item() == 0.0


def test_generator_loss_applies_a_given_discriminator_like_its_outputs(tiny_nets):
    model, nets = tiny_nets
    disc = create_discriminator(model.config).requires_grad_(False)  # as in the G step
    cfg = LossConfig.for_variant("reference", recon_size=96)
    params = list(model.generator.parameters())
    results = []
    for kw in ("d_fake", "discriminator"):
        inp = _inputs(model)
        extra = {"d_fake": disc(inp["i_r"])} if kw == "d_fake" else {"discriminator": disc}
        total, terms = generator_loss(nets, cfg, **extra, **inp)
        results.append((total.detach(), terms["adv_g"], torch.autograd.grad(total, params)))
    (t1, a1, g1), (t2, a2, g2) = results
    assert a1.item() == a2.item()
    assert t2.item() == pytest.approx(t1.item(), rel=1e-6)
    # same gradients up to float summation order (conv biases before an instance norm get only rounding noise)
    scale = max(g.abs().max().item() for g in g1)
    assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-5 * scale) for x, y in zip(g1, g2))
    with pytest.raises(ValueError, match="exactly one"):
        generator_loss(nets, cfg, **_inputs(model))


def test_shape_loss_reuses_cfuse_when_sizes_agree(tiny_nets):
    model, nets = tiny_nets
    inp = {k: v.detach() for k, v in _inputs(model, seed=1).items()}
    d = [torch.zeros(2, 1)]
    _, same_size = generator_loss(nets, LossConfig(recon_size=None), d_fake=d, **inp)
    _, explicit = generator_loss(nets, LossConfig(recon_size=64), d_fake=d, **inp)  # model's recon_input_size
    assert same_size["shape"].item() == pytest.approx(explicit["shape"].item(), rel=1e-4)


def test_discriminator_loss_paper_has_r1_and_reference_has_none(tiny_nets):
    model, _ = tiny_nets
    real, fake = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256)
    paper = create_discriminator(tiny_config("paper"))
    total, t = discriminator_loss(paper, LossConfig.for_variant("paper"), real, fake)
    assert "r1" in t and t["r1"].item() > 0
    total.backward()
    assert all(p.grad is not None for p in paper.parameters())
    ref = create_discriminator(tiny_config())
    _, t = discriminator_loss(ref, LossConfig.for_variant("reference"), real, fake)
    assert "r1" not in t and t["d_total"].item() == pytest.approx((t["d_real"] + t["d_fake"]).item())


@pytest.mark.parametrize("bad", [dict(id=-1), dict(seg="x"), dict(adversarial="wgan"), dict(recon_size=10)])
def test_bad_loss_config_is_one_clear_error(bad):
    with pytest.raises(ConfigError, match="losses."):
        LossConfig(**bad)
