#!/usr/bin/env python
"""Every GPU case of the speed issue (ours only) in one run, one JSON line per measurement, then a kernel profile.

    python benchmarks/gpu.py                               # CUDA, full size: meant to finish in < 4 minutes
    python benchmarks/gpu.py --quick --device cpu          # tiny model, a few calls: the CPU smoke run
    python benchmarks/gpu.py --cases swap,quality          # only some sections

Sections, in the order they run (a section that would start after ``--budget`` seconds is skipped, with a line
saying so; compiling goes last because its time is the least predictable):

``pool``      the 2x2 pool by slices equals ``F.avg_pool2d`` on the device (fp32/bf16, NCHW/NHWC), and the time of
              both in channels_last; the fused norm's largest difference from the plain one.
``swap``      ``model.swap`` eager: batch 1 with the identity computed (``cold``) and cached, batch 64 (``--big``)
              cached; fp32 NCHW, bf16 channels_last with the fused norm (the CUDA default) and without it.
              ``first_call`` is the first swap's time (the fused kernels compile there).
``train``     the bare training step (``train_step.run_case``: G with cycle, all losses, backward, both optimizer
              steps, D step), batch 16 fp32 and bf16 autocast, with peak GPU memory.
``fit``       ``hififace train``'s own loop (``training.build.fit``: Lightning, loader workers, logging,
              checkpoint at the end) on a synthetic face set, batch 16, bf16-mixed then 32-true: seconds per
              iteration against the bare step; and the data loader alone (seconds per batch with its workers).
``profile``   torch.profiler on the cached batch-``--big`` bf16 channels_last swap: the top kernels by self device
              time and the share of convolutions, copies, norms, pooling, elementwise ops and upsampling.
``train32``   the bare training step at batch 32, bf16 and fp32.
``compile``   ``model.compile(mode="reduce-overhead")`` (CUDA graphs) on bf16 channels_last: the swap cases
              again; ``first_call`` (batch 1) and ``first_call_big`` hold the two compiles (batch 1 is always a
              graph of its own: torch specialises size-1 dimensions).
``quality``   bf16 (eager and compiled) outputs vs fp32 on the bundled sample photos (every one on every one), in
              8-bit grey levels (mean, p99, max |diff|).

Random weights of the full 256 reference model (written to a temporary folder and loaded through
``from_pretrained``, as real weights are); timings do not depend on the values (grey-level differences on random
weights only bound what trained weights give). Medians of ``--repeats`` calls after ``--warmup`` calls, with
``torch.cuda.synchronize`` around each. cuDNN autotuning (``torch.backends.cudnn.benchmark``) is on unless
``--no-cudnn-benchmark``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import emit, machine, median_time  # noqa: E402

BENCH = "gpu"
SECTIONS = ("pool", "swap", "train", "fit", "profile", "train32", "compile", "quality")
TINY = dict(channel_multiplier=1 / 16, frozen_width=0.125, arcface_arch="r18", recon_input_size=64)
TINY_TRAIN = "hififace_tiny"  # the shipped tiny training config (inside the package since the configs moved)

#: kernel name -> category, for the profile's shares (first match wins)
CATEGORIES = [
    ("convolution", r"conv|cudnn|implicit_gemm|wgrad|dgrad|sm\d+_xmma|cutlass|gemm|winograd"),
    ("copy", r"copy|contiguous|to_copy|cast|convert"),
    ("norm", r"batch_norm|instance_norm|welford|_norm|var_mean|reduction|red_fused|per_fused"),
    ("pool", r"avg_pool|max_pool|pool"),
    ("upsample", r"upsample|interpolate|bilinear"),
    ("elementwise", r"elementwise|vectorized|leaky|add|mul|tanh|sigmoid|pointwise|poi_fused|triton_"),
]


class Run:
    """Shared state: device, sizes, timing helpers, the time budget."""

    def __init__(self, args):
        import torch

        self.args = args
        self.device = args.device
        self.cuda = args.device.startswith("cuda")
        self.quick = args.quick
        self.t0 = time.perf_counter()
        self.repeats = 2 if args.quick else args.repeats
        self.warmup = 1 if args.quick else args.warmup
        self.big = 2 if args.quick else args.big
        self.size = 256
        self.sync = torch.cuda.synchronize if self.cuda else None
        self.tmp = Path(tempfile.mkdtemp(prefix="hififace-gpu-bench-"))
        self._model_dir = None
        self.outputs: dict[str, object] = {}  # case -> batch-`big` output, for the quality section

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def emit(self, case: str, value, **fields) -> None:
        import torch

        rec = dict(case=case, size=self.size, device=self.device, value=value, **fields)
        if self.cuda:
            rec.setdefault("peak_gpu_mib", round(torch.cuda.max_memory_allocated() / 2**20, 1))
        emit(BENCH, **rec)

    def note(self, **fields) -> None:
        print(json.dumps({"bench": BENCH, "device": self.device, **fields}), flush=True)

    def time(self, fn) -> float:
        return round(median_time(fn, self.repeats, warmup=self.warmup, sync=self.sync), 5)

    def model_dir(self) -> Path:
        if self._model_dir is None:
            from hififace import HifiFace, HifiFaceConfig

            cfg = HifiFaceConfig(**TINY) if self.quick else HifiFaceConfig()
            self._model_dir = HifiFace.random(cfg, seed=0).save_pretrained(self.tmp / "model")
        return self._model_dir

    def load(self, dtype: str, channels_last: bool):
        from hififace import HifiFace

        return HifiFace.from_pretrained(self.model_dir(), device=self.device, dtype=dtype, channels_last=channels_last)

    def images(self, n: int, seed: int):
        import torch

        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 3, self.size, self.size, generator=g).to(self.device)

    def sample_faces(self):
        """The bundled sample photos (N x 3 x size x size): realistic inputs for the quality check."""
        import numpy as np
        import torch
        from PIL import Image

        files = sorted((HERE.parent / "src" / "hififace" / "assets" / "samples").glob("*.png"))
        x = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB").resize((self.size, self.size)),
                                                     dtype=np.float32) / 255.0).permute(2, 0, 1) for f in files])
        return x.to(self.device)

    def reset_peak(self) -> None:
        import torch

        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


# ---------------------------------------------------------------------------------------------- sections
def section_pool(r: Run) -> None:
    import torch
    import torch.nn.functional as F

    from hififace.nn import fast as B

    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for dtype in (torch.float32, torch.bfloat16):
        for layout in (torch.contiguous_format, torch.channels_last):
            x = (torch.randn(4, 64, 66, 70, generator=g) * 5).to(r.device, dtype).contiguous(memory_format=layout)
            worst = max(worst, float((B.avg_pool_2x2_slices(x).float() - F.avg_pool2d(x, 2).float()).abs().max()))
    r.emit("pool_slices_vs_avg_pool2d_max_abs", worst, unit="abs", dtype="fp32,bf16")
    n, c, h = (2, 16, 32) if r.quick else (64, 128, 128)
    x = torch.randn(n, c, h, h, generator=g).to(r.device, torch.bfloat16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        r.emit("pool_avg_pool2d_nhwc", r.time(lambda: F.avg_pool2d(x, 2)), batch=n, dtype="bf16", shape=list(x.shape))
        r.emit("pool_slices_nhwc", r.time(lambda: B.avg_pool_2x2_slices(x)), batch=n, dtype="bf16", shape=list(x.shape))
        std, mean = torch.randn(n, c, generator=g).to(r.device), torch.randn(n, c, generator=g).to(r.device)
        plain = lambda: F.leaky_relu(std[:, :, None, None].to(x.dtype) * F.instance_norm(x.float()).to(x.dtype)  # noqa: E731
                                     + mean[:, :, None, None].to(x.dtype), B.LRELU_SLOPE)
        before = dict(B._fused)
        B.set_fused_norm("on")
        try:
            fused = lambda: B._run_fused(x, std, mean)  # noqa: E731
            diff = float((fused().float() - B.norm_act(x.float(), std, mean)).abs().max())
            r.emit("adain_act_plain_bf16", r.time(plain), batch=n, dtype="bf16", shape=list(x.shape))
            r.emit("adain_act_fused_bf16", r.time(fused), batch=n, dtype="bf16", shape=list(x.shape),
                   fused_failed=B._fused["failed"])
            r.emit("adain_act_fused_vs_fp32_max_abs", diff, unit="abs", dtype="bf16")
        finally:
            B._fused.update(before)


def _swap_cases(r: Run, model, label: str, dtype: str) -> None:
    """cold / cached at batch 1, cached at batch `big`; keeps the outputs on the sample photos for `quality`."""
    src, tgt1, tgt_big = r.images(1, 1), r.images(1, 2), r.images(r.big, 3)
    t = time.perf_counter()
    model.swap(src, tgt1)
    if r.sync:
        r.sync()
    r.emit(f"first_call{label}", round(time.perf_counter() - t, 3), batch=1, dtype=dtype)
    ident = model.identity(src)
    r.emit(f"cold{label}", r.time(lambda: model.swap(src, tgt1)), batch=1, dtype=dtype)
    r.emit(f"cached{label}", r.time(lambda: model.swap(ident, tgt1)), batch=1, dtype=dtype)
    prepared = model.prepare_target(tgt1)
    r.emit(f"cached_prepared{label}", r.time(lambda: model.swap(ident, prepared)), batch=1, dtype=dtype)
    t = time.perf_counter()
    model.swap(ident, tgt_big)
    if r.sync:
        r.sync()
    r.emit(f"first_call_big{label}", round(time.perf_counter() - t, 3), batch=r.big, dtype=dtype)
    value = r.time(lambda: model.swap(ident, tgt_big))
    r.emit(f"cached{label}", value, batch=r.big, dtype=dtype, pairs_per_s=round(r.big / value, 1))
    import torch

    faces = r.sample_faces()  # identities at batch 1, targets as one batch: shapes the graphs above already have
    r.outputs[f"{dtype}{label}"] = torch.cat([model.swap(model.identity(f[None]), faces).float().cpu() for f in faces])


def section_swap(r: Run) -> None:
    from hififace.nn import fast as B

    variants = [("fp32", False, "auto", ""), ("bf16", True, "auto", "+channels_last")]
    if r.cuda:  # what the fused kernels buy: the plain norm path in the same layout
        variants.append(("bf16", True, "off", "+channels_last+plain_norm"))
    before = dict(B._fused)
    for dtype, channels_last, fused, label in variants:
        r.reset_peak()
        B.set_fused_norm(fused)
        try:
            model = r.load(dtype, channels_last)
            _swap_cases(r, model, label, dtype)
            del model
        finally:
            B._fused.update(before)


def section_quality(r: Run) -> None:
    ref = r.outputs.get("fp32")
    if ref is None:
        r.note(case="quality", skipped="needs the swap section")
        return
    for name, out in r.outputs.items():
        if name == "fp32":
            continue
        d = (out.clamp(0, 1) - ref.clamp(0, 1)).abs() * 255.0  # what an 8-bit image shows
        r.emit(f"grey_levels_vs_fp32[{name}]", round(float(d.mean()), 4), unit="grey levels (mean |diff|)",
               batch=out.shape[0], max=round(float(d.max()), 3), p99=round(float(d.flatten().kthvalue(
                   max(1, int(0.99 * d.numel()))).values), 3))


def _train_cases(r: Run, cases) -> dict:
    import train_step

    results = {}
    for batch, dtype in cases:
        r.reset_peak()
        spec = dict(variant="reference", batch=batch, size=r.size, device=r.device, dtype=dtype,
                    repeats=min(r.repeats, 6), warmup=min(r.warmup, 2))
        if r.quick:
            spec.update(config=TINY_TRAIN, overrides={"model.ema_decay": "0"})
        rec = train_step.run_case(**spec)
        results[(batch, dtype)] = rec["value"]
        r.emit("train_step", round(rec["value"], 4), batch=batch, dtype=dtype,
               **{k: rec[k] for k in ("peak_gpu_mib", "params_trained") if k in rec})
    return results


def section_train(r: Run) -> None:
    b = 1 if r.quick else 16
    r.bare = _train_cases(r, [(b, "bf16"), (b, "fp32")])


def section_train32(r: Run) -> None:
    if r.quick:
        r.note(case="train_step", batch=32, skipped="--quick")
        return
    _train_cases(r, [(32, "bf16"), (32, "fp32")])


def section_compile(r: Run) -> None:
    mode = "reduce-overhead" if r.cuda else None
    r.reset_peak()
    model = r.load("bf16", True)
    t = time.perf_counter()
    model.compile(mode=mode)
    _swap_cases(r, model, f"+channels_last+compile[{mode or 'default'}]", "bf16")
    r.emit("compile_wall_total", round(time.perf_counter() - t, 1), dtype="bf16",
           note="compile + every compiled swap case above")
    if r.args.compile_fp32:
        model = r.load("fp32", False).compile(mode=mode)
        _swap_cases(r, model, f"+compile[{mode or 'default'}]", "fp32")


class _IterTimer:
    """Lightning callback: wall time per iteration over the iterations after ``warm`` (two syncs in all)."""

    def __init__(self, warm: int):
        import lightning as L

        class CB(L.Callback):
            def on_train_batch_end(cb, trainer, module, outputs, batch, batch_idx):  # noqa: N805
                self.n += 1
                if self.n == self.warm or self.n == trainer.max_steps // 2:
                    if self.sync:
                        self.sync()
                    self.marks.append((self.n, time.perf_counter()))

        self.warm, self.n, self.marks, self.sync = warm, 0, [], None
        self.callback = CB()

    def per_iteration(self) -> float | None:
        if len(self.marks) < 2:
            return None
        (n0, t0), (n1, t1) = self.marks[0], self.marks[-1]
        return (t1 - t0) / (n1 - n0)


def _dataset(r: Run) -> tuple[Path, Path]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from trainkit import make_dataset  # the synthetic faces of the training tests

    root = r.tmp / "faces"
    if not (root / "images").exists():
        # one epoch covers the whole timed run (an epoch boundary restarts the loader's prefetching)
        make_dataset(root, identities=4 if r.quick else 16, per_identity=4 if r.quick else 16, size=r.size)
    return root / "images", root / "parsing"


def section_fit(r: Run) -> None:
    import torch

    from hififace.training.build import fit
    from hififace.training.config import load_config
    from hififace.training.data import FaceDataModule

    images, parsing = _dataset(r)
    batch = 1 if r.quick else 16
    warm, iters = (2, 3) if r.quick else (3, 10)
    workers = 0 if r.quick else 4
    base = {"data.images": str(images), "data.parsing": str(parsing), "data.batch_size": str(batch),
            "data.num_workers": str(workers), "data.pin_memory": str(r.cuda).lower(),
            "trainer.max_steps": str(warm + iters), "trainer.val_every": "0", "trainer.image_every": "0",
            "trainer.progress_bar": "false", "trainer.accelerator": "gpu" if r.cuda else "cpu",
            "checkpoint.every": "1000000", "checkpoint.top_k": "0"}  # no checkpoint inside the timed iterations
    config = TINY_TRAIN if r.quick else None
    if not r.quick:
        base["losses.recon_size"] = "224"  # as train_step.py (the reference's ReconNet input)
    precisions = [("bf16-mixed", "bf16"), ("32-true", "fp32")]
    for precision, dtype in precisions:
        if r.elapsed() > r.args.budget:
            r.note(case="fit", precision=precision, skipped=f"time budget ({r.args.budget} s) spent")
            continue
        r.reset_peak()
        cfg = load_config(config, {**base, "trainer.precision": precision,
                                   "checkpoint.dir": str(r.tmp / f"run-{precision}")})
        timer = _IterTimer(warm)
        timer.sync = r.sync
        timer.warm = warm
        fit(cfg, callbacks_extra=[timer.callback])
        per_it = timer.per_iteration()
        bare = getattr(r, "bare", {}).get((batch, dtype))
        r.emit("fit_iteration", round(per_it, 4) if per_it else None, batch=batch, dtype=precision,
               bare_step=bare, ratio_to_bare=round(per_it / bare, 3) if per_it and bare else None,
               loader_workers=workers)
        torch.cuda.empty_cache() if r.cuda else None

    # the loader alone, as fit builds it
    cfg = load_config(config, {**base, "checkpoint.dir": str(r.tmp / "run-loader")})
    dm = FaceDataModule(cfg)
    dm.setup("fit")
    loader = dm.train_dataloader()
    t = time.perf_counter()
    it = iter(loader)
    next(it)
    first = time.perf_counter() - t
    times = []
    for _ in range(3 if r.quick else 20):
        t = time.perf_counter()
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
        times.append(time.perf_counter() - t)
    r.emit("loader_per_batch", round(statistics.median(times), 4), batch=batch, loader_workers=workers,
           first_batch=round(first, 3))


def section_profile(r: Run) -> None:
    from torch.profiler import ProfilerActivity, profile

    model = r.load("bf16", True)
    src, tgt = r.images(1, 1), r.images(r.big, 3)
    ident = model.identity(src)
    for _ in range(2):
        model.swap(ident, tgt)
    if r.sync:
        r.sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if r.cuda else [])
    calls = 3
    with profile(activities=acts) as prof:
        for _ in range(calls):
            model.swap(ident, tgt)
        if r.sync:
            r.sync()
    events = prof.key_averages()

    def self_us(e) -> float:
        if r.cuda:
            return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)))
        return float(e.self_cpu_time_total)

    rows = sorted((e for e in events if self_us(e) > 0 and (r.cuda or e.key.startswith("aten::"))),
                  key=self_us, reverse=True)
    total = sum(self_us(e) for e in rows) or 1.0
    for i, e in enumerate(rows[:15]):
        r.emit("profile_top", round(self_us(e) / 1000 / calls, 4), unit="ms per swap", rank=i + 1,
               name=e.key[:120], pct=round(100 * self_us(e) / total, 1), calls=e.count // calls, batch=r.big,
               dtype="bf16")
    shares: dict[str, float] = {}
    for e in rows:
        cat = next((c for c, pat in CATEGORIES if re.search(pat, e.key, re.I)), "other")
        shares[cat] = shares.get(cat, 0.0) + self_us(e)
    r.emit("profile_shares", round(total / 1000 / calls, 3), unit="ms per swap (profiled)", batch=r.big, dtype="bf16",
           shares={k: round(100 * v / total, 1) for k, v in sorted(shares.items(), key=lambda kv: -kv[1])})
    print(prof.key_averages().table(sort_by="self_device_time_total" if r.cuda else "self_cpu_time_total",
                                    row_limit=15), file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny model, batch 1-2, 2 repeats (the CPU smoke run)")
    ap.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    ap.add_argument("--cases", default=None, help=f"comma list of sections (default: all): {', '.join(SECTIONS)}")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--big", type=int, default=64, help="the large swap batch (default 64)")
    ap.add_argument("--budget", type=float, default=200.0,
                    help="seconds after which no further section starts (default 200)")
    ap.add_argument("--compile-fp32", action="store_true", help="also compile the fp32 model (one more compile)")
    ap.add_argument("--no-cudnn-benchmark", action="store_true")
    args = ap.parse_args()

    import torch

    logging.disable(logging.WARNING)  # random-weight warnings
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available; use --device cpu", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    wanted = args.cases.split(",") if args.cases else list(SECTIONS)
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        print(f"error: unknown case(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    r = Run(args)
    print(json.dumps({"bench": BENCH, "machine": machine(), "device": args.device, "quick": args.quick,
                      "cudnn_benchmark": torch.backends.cudnn.benchmark,
                      "fused_norm": os.environ.get("HIFIFACE_FUSED_NORM", "auto")}), flush=True)
    failed = 0
    for name in SECTIONS:
        if name not in wanted:
            continue
        if r.elapsed() > args.budget:
            r.note(case=name, skipped=f"time budget ({args.budget} s) spent")
            continue
        t = time.perf_counter()
        try:
            globals()[f"section_{name}"](r)
        except Exception as err:  # noqa: BLE001 - report and go on with the next section
            failed += 1
            r.note(case=name, error=f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")
        r.note(case=f"section_{name}", seconds=round(time.perf_counter() - t, 1))
    r.note(case="total", seconds=round(r.elapsed(), 1))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
