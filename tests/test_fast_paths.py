"""GPU fast paths, checked on the CPU: 2x2 pool by slices, fused norm -> affine -> LeakyReLU, HifiFace.compile
(CPU inductor), channels_last end to end, and a training step without host syncs.

Tolerances: the fused norm and compiled graphs reorder float32 sums (statistics over H x W, fused multiply-adds),
so outputs match the eager ones to ~1e-6 relative per op; through a whole tiny network that is ~1e-4 absolute
on images in [0, 1] (well under half a grey level, 2e-3).
"""
from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from hififace import HifiFace
from hififace.nn import blocks, fast
from inferkit import tiny_model, tiny_model_dir

IMAGE_ATOL = 2e-4  # outputs in [0, 1]; a grey level is 1/255 = 3.9e-3


@pytest.fixture
def fused(request):
    """Run a test with the fused norm mode ``request.param`` and restore the previous mode afterwards."""
    before = dict(fast._fused)
    fast.set_fused_norm(getattr(request, "param", "on"))
    yield
    fast._fused.update(before)


def _images(n, size=256, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


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


# ---------------------------------------------------------------------------------------------- HifiFace.compile
class GraphCounter:
    """A torch.compile backend that runs the captured graph as it is and counts the graphs."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def test_compile_puts_identity_prepare_target_and_swap_through_compiled_graphs():
    model = tiny_model(seed=3)
    x = _images(2)
    ref_ident, ref_prep = model.identity(x[:1]), model.prepare_target(x[1:2])
    ref = model.swap(ref_ident, ref_prep)
    keys = list(model.state_dict())

    counter = GraphCounter()
    assert model.compile(backend=counter, fullgraph=True) is model  # fullgraph: no graph breaks anywhere
    ident = model.identity(x[:1])
    assert counter.graphs == 2  # ReconNet and ArcFace
    prep = model.prepare_target(x[1:2])
    assert counter.graphs == 3  # the encoder (ReconNet's graph is reused for the same shape)
    out = model.swap(ident, prep)
    assert counter.graphs == 4  # decoder + SFF: one graph
    model.swap(ident, prep)
    assert counter.graphs == 4  # compiled once, then reused

    torch.testing.assert_close(ident.v_id, ref_ident.v_id, rtol=0, atol=1e-6)
    torch.testing.assert_close(prep.z, ref_prep.z, rtol=1e-4, atol=1e-4 * float(ref_prep.z.abs().max()))
    torch.testing.assert_close(out, ref, rtol=0, atol=IMAGE_ATOL)
    assert list(model.state_dict()) == keys  # no _orig_mod. prefixes: save_pretrained is unaffected

    clone = copy.deepcopy(model)  # a copy compiles its own methods instead of calling the original's graphs
    assert clone.generator.decode.original.__self__ is clone.generator
    model.uncompile()
    assert "decode" not in vars(model.generator) and "forward" not in vars(model.id_extractor.arcface)
    assert torch.equal(model.swap(ref_ident, ref_prep), ref)  # eager again


def test_compile_rejects_unknown_modes():
    with pytest.raises(ValueError, match="reduce-overhead"):
        tiny_model().compile(mode="fastest")


def test_channels_last_model_matches_the_default_layout(tmp_path):
    folder = tiny_model_dir(tmp_path / "m", seed=2)
    plain = HifiFace.from_pretrained(folder)
    nhwc = HifiFace.from_pretrained(folder, channels_last=True)
    convs = [m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs if c.kernel_size != (1, 1))
    x = _images(3, seed=4)
    a, b = plain.identity(x[:1]), nhwc.identity(x[:1])
    torch.testing.assert_close(b.v_id, a.v_id, rtol=0, atol=1e-5)
    torch.testing.assert_close(b.c_id, a.c_id, rtol=1e-4, atol=1e-4 * float(a.c_id.abs().max()))
    torch.testing.assert_close(nhwc.swap(x[:1], x[1:]), plain.swap(x[:1], x[1:]), rtol=0, atol=IMAGE_ATOL)


def test_cli_compile_flag_compiles_the_loaded_model(tmp_path, monkeypatch, capsys):
    from hififace.cli.main import main as cli
    from inferkit import SAMPLES

    calls = []
    monkeypatch.setattr(HifiFace, "compile", lambda self, mode=None, **kw: calls.append(mode) or self)
    folder = tiny_model_dir(tmp_path / "m")
    rc = cli(["swap", "--source", str(SAMPLES / "astronaut.png"), "--target", str(SAMPLES / "cameraman.png"),
              "-o", str(tmp_path / "out.png"), "--weights", str(folder), "--device", "cpu", "--compile"])
    assert rc == 0 and calls == [None] and (tmp_path / "out.png").exists()  # CUDA graphs only on CUDA


# ---------------------------------------------------------------------------------------------- training syncs
class HostSyncs(TorchDispatchMode):
    """Records the ops that make the host wait for the device (reading a value, data-dependent sizes)."""

    SYNCS = {"aten::_local_scalar_dense", "aten::nonzero", "aten::masked_select", "aten::is_nonzero", "aten::unique"}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        if name in self.SYNCS or (name == "aten::index" and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []))):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def _tiny_step_parts():
    from hififace.training.build import build_networks
    from hififace.training.config import load_config
    from hififace.training.data import FaceDataModule
    from hififace.training.module import HifiFaceModule
    from trainkit import CONFIG

    cfg = load_config(CONFIG, {"model.ema_decay": "0"})
    model, disc, lpips, landmarks, _ = build_networks(cfg)
    module = HifiFaceModule(cfg, model, disc, lpips, landmarks).train()
    g = torch.Generator().manual_seed(0)
    batch = {"source": torch.rand(1, 3, 256, 256, generator=g), "target": torch.rand(1, 3, 256, 256, generator=g),
             "mask": (torch.rand(1, 1, 256, 256, generator=g) > 0.5).float(), "same": torch.tensor([1.0])}
    return module, batch, FaceDataModule(cfg)


def test_training_step_needs_no_host_sync_and_runs_every_net_in_bf16(caplog):
    """Under bf16 autocast (as ``bf16-mixed`` runs it), the G and D losses and both backward passes never read a
    value back to the host (which on a GPU stalls the launch queue; the same-pair indices come from the host batch,
    added by the data module), and every convolution (generator, ArcFace, ReconNet, LPIPS, discriminator) runs in
    bf16."""
    from hififace.losses.composite import discriminator_loss
    from hififace.losses.functional import lpips_loss

    caplog.set_level(logging.ERROR)
    module, batch, data = _tiny_step_parts()
    host = data.on_before_batch_transfer(batch, 0)  # the hook Lightning calls before moving a batch
    assert host["same_index"].tolist() == [0]
    nets = {"generator": module.model.generator, "arcface": module.model.id_extractor.arcface,
            "recon": module.model.id_extractor.recon, "lpips": module.lpips, "discriminator": module.discriminator}
    dtypes = {name: set() for name in nets}
    for name, net in nets.items():
        for conv in (m for m in net.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.register_forward_hook(lambda mod, args, out, name=name: dtypes[name].add(out.dtype))

    with HostSyncs() as syncs:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            module.discriminator.requires_grad_(False)
            v_sid, out, i_cycle = module._generate(module.model.generator, host["source"], host["target"])
            g_total, g_terms = module._g_loss(host, v_sid, out, i_cycle)
        g_total.backward()
        module.discriminator.requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            d_total, d_terms = discriminator_loss(module.discriminator, module.loss_cfg, host["target"], out.i_r.detach())
        d_total.backward()
    assert syncs.seen == []
    assert dtypes == {name: {torch.bfloat16} for name in nets}
    terms = {**g_terms, **d_terms}
    assert {"g_total", "d_total", "lpips"} <= set(terms) and not any(t.requires_grad for t in terms.values())
    with HostSyncs() as syncs:  # the detector works: without the host-side indices LPIPS has to look
        lpips_loss(module.lpips, batch["target"], batch["source"], batch["same"])
    assert "aten::nonzero" in syncs.seen


def test_gpu_benchmark_script_knows_its_sections():
    """benchmarks/gpu.py (run on a GPU later, once on this CPU with --quick --device cpu): every section it lists
    exists, a bad --cases is one error line before any work, and the tiny config of its --quick training sections
    loads."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    proc = subprocess.run([sys.executable, str(script), "--device", "cpu", "--cases", "swap,warp"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: unknown case(s) warp; known: pool, swap, train, fit, profile, train32, compile, quality"]
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_bench", script)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    assert all(callable(getattr(gpu, f"section_{name}", None)) for name in gpu.SECTIONS)
    from hififace.training.config import load_config

    assert load_config(gpu.TINY_TRAIN).model.channel_multiplier < 1  # the --quick train/fit config exists
