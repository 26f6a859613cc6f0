"""Memory-lean residual blocks: the same outputs and gradients as the plain ops, with fewer saved activations."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hififace.nn import fast
from hififace.nn.blocks import AdaINResBlock, ResBlock
from hififace.nn.fast import avg_pool_2x2


def _plain_resblock(b: ResBlock, x):
    """The reference's op order with plain autograd ops (out-of-place LeakyReLU, F.avg_pool2d)."""
    pool = {"down": lambda t: F.avg_pool2d(t, 2), "up": lambda t: F.interpolate(t, scale_factor=2.0, mode="bilinear"),
            "none": lambda t: t}[b.resample]
    h = b.conv1(F.leaky_relu(F.instance_norm(x), 0.2))
    h = b.conv2(F.leaky_relu(F.instance_norm(pool(h)), 0.2))
    return h + pool(b.skip(x))


def _plain_adain_block(b: AdaINResBlock, x, v):
    def adain(m, t):
        return m.std(v)[:, :, None, None] * F.instance_norm(t) + m.mean(v)[:, :, None, None]
    up = (lambda t: F.interpolate(t, scale_factor=2.0, mode="bilinear")) if b.resample == "up" else (lambda t: t)
    h = b.conv1(F.leaky_relu(adain(b.adain1, x), 0.2))
    h = b.conv2(F.leaky_relu(adain(b.adain2, up(h)), 0.2))
    return h + up(b.skip(x))


def _grads(fn, inputs, params):
    out = fn()
    w = torch.linspace(-1, 1, out.numel()).view_as(out)
    return [out.detach()] + list(torch.autograd.grad((out * w).sum(), inputs + params))


def _saved_bytes(fn) -> int:
    storages = {}

    def pack(t):
        if not isinstance(t, torch.nn.Parameter):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("resample", ["down", "up", "none"])
def test_resblock_matches_plain_ops_bit_for_bit_and_saves_less(resample):
    torch.manual_seed(0)
    b = ResBlock(8, 6, resample)
    x = torch.randn(2, 8, 16, 16, requires_grad=True)
    params = list(b.parameters())
    lean = _grads(lambda: b(x), [x], params)
    plain = _grads(lambda: _plain_resblock(b, x), [x], params)
    assert all(torch.equal(a, c) for a, c in zip(lean, plain))
    assert _saved_bytes(lambda: b(x)) < 0.6 * _saved_bytes(lambda: _plain_resblock(b, x))


@pytest.mark.parametrize("upsample", [False, True])
def test_adain_block_matches_plain_ops_bit_for_bit(upsample):
    torch.manual_seed(1)
    b = AdaINResBlock(6, 4, style_dim=5, upsample=upsample)
    x = torch.randn(2, 6, 8, 8, requires_grad=True)
    v = torch.randn(2, 5, requires_grad=True)
    params = list(b.parameters())
    lean = _grads(lambda: b(x, v), [x, v], params)
    plain = _grads(lambda: _plain_adain_block(b, x, v), [x, v], params)
    assert all(torch.equal(a, c) for a, c in zip(lean, plain))
    assert _saved_bytes(lambda: b(x, v)) < _saved_bytes(lambda: _plain_adain_block(b, x, v))


def test_recomputed_activation_survives_a_retained_graph():
    torch.manual_seed(2)
    b = ResBlock(4, 4)
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    out = b(x).square().sum()
    (g1,) = torch.autograd.grad(out, x, retain_graph=True)
    (g2,) = torch.autograd.grad(out, x)  # the recipe recomputes again after its first round freed the cache
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("shape", [(1, 2, 8, 8), (2, 3, 7, 9)])
def test_avg_pool_gradient_is_autograds(shape):
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    g = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2, dtype=torch.float64)
    (mine,) = torch.autograd.grad(avg_pool_2x2(x), x, g)
    (ref,) = torch.autograd.grad(F.avg_pool2d(x, 2), x, g)
    assert torch.equal(mine, ref)
    assert torch.autograd.gradcheck(avg_pool_2x2, (x[:1, :1, :4, :5].detach().requires_grad_(),))


def test_no_grad_path_uses_plain_ops():
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        assert torch.equal(avg_pool_2x2(x), F.avg_pool2d(x, 2))
    assert fast.norm_act_conv(lambda t: t * 2, x).grad_fn is None


def test_release_free_heap_works_on_glibc():
    import platform

    from hififace.utils.memory import release_free_heap

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    junk = [torch.empty(1 << 18) for _ in range(64)]  # 64 MiB of 1 MiB blocks on the heap
    del junk
    assert release_free_heap() is True


def _grads_under_autocast(fn, leaves, dtype, backward_inside: bool):
    for t in leaves:
        t.grad = None
    with torch.autocast("cpu", dtype=dtype):
        out = fn()
        assert out.dtype == dtype  # the convolutions really ran in low precision
        loss = (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum()
        if backward_inside:
            loss.backward()
    if not backward_inside:  # PyTorch's documented AMP pattern: backward after leaving the autocast block
        loss.backward()
    return [t.grad.clone() for t in leaves]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("block", ["resblock", "adain"])
def test_backward_outside_autocast_gives_the_gradients_of_backward_inside(dtype, block):
    """The recompute re-enters the forward's autocast state (it used to run in fp32 and crash the conv)."""
    torch.manual_seed(3)
    if block == "adain":
        b = AdaINResBlock(6, 4, style_dim=5, upsample=True)
        x, v = torch.randn(2, 6, 8, 8, requires_grad=True), torch.randn(2, 5, requires_grad=True)
        fn, leaves = (lambda: b(x, v)), [x, v, *b.parameters()]
    else:
        b = ResBlock(6, 4, "down")
        x = torch.randn(2, 6, 8, 8, requires_grad=True)
        fn, leaves = (lambda: b(x)), [x, *b.parameters()]
    inside = _grads_under_autocast(fn, leaves, dtype, backward_inside=True)
    outside = _grads_under_autocast(fn, leaves, dtype, backward_inside=False)
    for a, c in zip(inside, outside):
        assert a.dtype == c.dtype and torch.isfinite(a).all()
        # same ops on the same inputs; only where the backward runs differs: equal up to fp32 rounding
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-6 * float(a.abs().max()) + 1e-12)


def test_recompute_refuses_a_tensor_unlike_the_saved_one():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    y = fast._apply_recomputing(lambda t: t.square(), x * 2, lambda: (x.detach() * 2).double())  # wrong dtype on purpose
    with pytest.raises(RuntimeError, match="recomputed activation is torch.float64"):
        y.sum().backward()
