"""The fast paths of the blocks (hififace.nn.fast), checked against the plain ops on the CPU: memory-lean residual
blocks (the same outputs and gradients, fewer saved activations), the 2x2 pool by slices, the fused norm -> affine ->
LeakyReLU behind its one switch, and the blocks through torch.compile.

Tolerances: the fused norm and compiled graphs reorder float32 sums (statistics over H x W, fused multiply-adds),
so outputs match the eager ones to ~1e-6 relative per op.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from hififace.nn import blocks, fast
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


@pytest.fixture
def fused(request):
    """Run a test with the fused norm mode ``request.param`` and restore the previous mode afterwards."""
    before = dict(fast._fused)
    fast.set_fused_norm(getattr(request, "param", "on"))
    yield
    fast._fused.update(before)


# ---------------------------------------------------------------------------------------------- 2x2 pool
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape", [(2, 8, 16, 16), (1, 3, 7, 9)])
def test_pool_by_slices_is_avg_pool2d_bit_for_bit(dtype, layout, shape):
    x = (torch.randn(*shape, generator=torch.Generator().manual_seed(0)) * 10 + 3).to(dtype)
    x = x.contiguous(memory_format=layout)
    got = fast.avg_pool_2x2_slices(x)
    assert got.dtype == dtype and torch.equal(got, F.avg_pool2d(x, 2))
    assert got.is_contiguous(memory_format=layout)  # stays in its layout (no copy back to NCHW)


# ---------------------------------------------------------------------------------------------- fused norm
def _plain_norm_act(x, std=None, mean=None):
    n = F.instance_norm(x, eps=fast.IN_EPS)
    if std is not None:
        n = std[:, :, None, None] * n + mean[:, :, None, None]
    return F.leaky_relu(n, fast.LRELU_SLOPE)


@pytest.mark.parametrize("affine", [False, True], ids=["in", "adain"])
def test_norm_act_matches_the_plain_ops(affine):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 9, 7, generator=g) * 3 + torch.randn(1, 6, 1, 1, generator=g) * 50  # large channel means
    std, mean = (torch.randn(2, 6, generator=g), torch.randn(2, 6, generator=g)) if affine else (None, None)
    ref = _plain_norm_act(x.double(), *(t.double() if t is not None else None for t in (std, mean)))
    for layout in (torch.contiguous_format, torch.channels_last):
        got = fast.norm_act(x.contiguous(memory_format=layout), std, mean)
        assert got.dtype == torch.float32 and got.is_contiguous(memory_format=layout)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
    # bf16 input: statistics in float32, one rounding at the end (bf16 statistics would be off by ~0.2 here)
    xb = x.bfloat16()
    got = fast.norm_act(xb, std, mean)
    ref = _plain_norm_act(xb.double(), *(t.double() if t is not None else None for t in (std, mean)))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double(), ref, rtol=2**-8, atol=1e-2)


def test_eager_cpu_default_is_the_plain_path():
    """'auto' keeps eager CPU on the reference's ops (the parity with the reference checkpoint depends on it)."""
    assert fast._fused["mode"] == "auto"
    assert not fast._fused_wanted(torch.zeros(1, 2, 4, 4))


def _block_grads(block, x, v):
    leaves = [x, v, *block.parameters()]
    out = block(x, v)
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), leaves)
    return [out.detach(), *grads]


def test_fused_blocks_through_the_compiled_kernel_match_the_plain_path(fused):
    """Mode 'on' (what 'auto' does on CUDA with Triton): the compiled norm_act in eager blocks, forward and backward
    (its recompute included) within float rounding of the plain path."""
    torch.manual_seed(0)
    block = blocks.AdaINResBlock(8, 6, style_dim=5, upsample=True)
    x, v = torch.randn(2, 8, 16, 16, requires_grad=True), torch.randn(2, 5, requires_grad=True)
    got = _block_grads(block, x, v)
    assert fast._adain_act in fast._fused["fn"] and not fast._fused["failed"]  # really compiled, no silent fallback
    fast.set_fused_norm("off")
    ref = _block_grads(block, x, v)
    # sums of ~1e3 terms; the conv biases before an instance norm get only rounding noise as gradient, so the
    # tolerance follows the scale of all the gradients, not each tensor's own (portable kernels: 5e-4 on ~1e-5)
    scale = max(float(c.abs().max()) for c in ref)
    for a, c in zip(got, ref):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=max(1e-4, 1e-5 * scale))


def test_fused_kernel_failure_falls_back_to_the_plain_path_once(fused, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no compiler here")

    monkeypatch.setitem(fast._fused, "fn", {fast._in_act: broken})
    torch.manual_seed(0)
    block = blocks.ResBlock(4, 4, "down")
    x = torch.randn(1, 4, 8, 8)
    with caplog.at_level(logging.WARNING, logger="hififace.nn.fast"):
        first = block(x)
        second = block(x)
    assert fast._fused["failed"] and len([r for r in caplog.records if "fused instance norm" in r.message]) == 1
    fast.set_fused_norm("off")
    torch.testing.assert_close(first, block(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(second, block(x))  # after the failure: the plain path itself


def test_set_fused_norm_refuses_unknown_modes():
    with pytest.raises(ValueError, match="auto, on, off"):
        fast.set_fused_norm("fast")


def test_inductor_compiled_blocks_match_eager():
    """torch.compile (inductor's CPU backend) of a down and an up block, as HifiFace.compile runs them: norm_act
    and the slice pool inside one graph, channels_last, no grad. (Their backward is autograd's of plain ops; the
    eager fused kernel's backward is checked above.)"""
    torch.manual_seed(0)
    down, up = blocks.ResBlock(6, 8, "down"), blocks.AdaINResBlock(8, 6, style_dim=5, upsample=True)
    down, up = (m.to(memory_format=torch.channels_last) for m in (down, up))

    def fn(x, v):
        return up(down(x), v)

    x = torch.randn(2, 6, 16, 16).contiguous(memory_format=torch.channels_last)
    v = torch.randn(2, 5)
    with torch.no_grad():
        got, ref = torch.compile(fn, fullgraph=True)(x, v), fn(x, v)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()))
