"""HifiFace.compile (CPU inductor), channels_last end to end, the CLI's --compile, and a training step without host
syncs (the GPU fast paths, checked on the CPU; the blocks' own fast paths: test_nn_fast.py).

Tolerances: compiled graphs reorder float32 sums, so outputs match the eager ones to ~1e-4 absolute through a whole
tiny network on images in [0, 1] (well under half a grey level, 2e-3).
"""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hififace import HifiFace
from inferkit import tiny_model, tiny_model_dir

IMAGE_ATOL = 2e-4  # outputs in [0, 1]; a grey level is 1/255 = 3.9e-3


def _images(n, size=256, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


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
