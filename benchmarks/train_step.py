"""Benchmark one full HifiFace training step: G forward incl. cycle, all losses, backward, G and D optimizer steps.

Each case runs in a fresh process so that its peak RSS is its own. Prints one JSON line per case:
{"bench": "train_step", "variant", "batch", "size", "device", "dtype", "value": median seconds, "unit": "s",
 "peak_rss_mib", "threads", "params_trained", "params_frozen"}.
Networks have random weights (full size); timing does not depend on the values.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def run_case(variant: str, batch: int, size: int, device: str, dtype: str, repeats: int, warmup: int,
             release_memory: bool = False, config: str | None = None, overrides: dict | None = None,
             compile: bool = False) -> dict:
    """One case in this process. ``config``/``overrides``: a training config and ``--key value`` overrides on top
    (e.g. the tiny test config); ``compile``: torch.compile the generator as ``model.compile: true`` does."""
    import logging
    import statistics

    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import peak_rss_mib  # VmHWM: ru_maxrss would carry the parent's peak into this child

    logging.disable(logging.WARNING)  # random-weight warnings
    from hififace.losses.composite import discriminator_loss
    from hififace.training.build import build_networks
    from hififace.training.config import load_config
    from hififace.training.data import with_same_index
    from hififace.training.module import HifiFaceModule

    cfg = load_config(config, {"model.variant": variant, "model.image_size": str(size),
                               "trainer.release_cpu_memory": str(release_memory).lower(),
                               **({"losses.recon_size": "224"} if variant == "reference" and not config else {}),
                               **(overrides or {})})
    model, disc, lpips, landmarks, _ = build_networks(cfg)
    module = HifiFaceModule(cfg, model, disc, lpips, landmarks).to(device)
    module.train()
    opt_g = torch.optim.AdamW(model.generator.parameters(), lr=1e-4, betas=(0.0, 0.999))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=1e-4, betas=(0.0, 0.999))
    g = torch.Generator().manual_seed(0)
    b = {"source": torch.rand(batch, 3, size, size, generator=g), "target": torch.rand(batch, 3, size, size, generator=g),
         "mask": (torch.rand(batch, 1, size, size, generator=g) > 0.5).float(), "same": (torch.arange(batch) % 2).float()}
    b = with_same_index(b)  # host-side indices, as the data module adds them (no sync in the step)
    b = {k: v.to(device) for k, v in b.items()}
    amp = dtype == "bf16"
    generator = torch.compile(model.generator) if compile else model.generator
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            disc.requires_grad_(False)
            v_sid, out, cyc = module._generate(generator, b["source"], b["target"])
            loss, _ = module._g_loss(b, v_sid, out, cyc)
        loss.backward()
        disc.requires_grad_(True)
        opt_g.step()
        opt_g.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=amp):
            d_loss, _ = discriminator_loss(disc, module.loss_cfg, b["target"], out.i_r.detach())
        d_loss.backward()
        opt_d.step()
        opt_d.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    trained = sum(p.numel() for p in list(model.generator.parameters()) + list(disc.parameters()))
    frozen = sum(p.numel() for m in module.frozen_modules() for p in m.parameters())
    requires_grad = sum(p.numel() for p in module.parameters() if p.requires_grad)
    rec = {"bench": "train_step", "variant": variant, "batch": batch, "size": size, "device": device, "dtype": dtype,
           "value": statistics.median(times), "unit": "s",
           "peak_rss_mib": peak_rss_mib(),
           "threads": torch.get_num_threads(), "params_trained": trained, "params_frozen": frozen,
           "params_requiring_grad": requires_grad, "repeats": repeats,
           "release_cpu_memory": release_memory, "compiled": compile}
    if device.startswith("cuda"):
        rec["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only batch 2, 256, reference, fp32 + bf16, 2 repeats")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--release-memory", action="store_true",
                    help="trainer.release_cpu_memory=true (malloc_trim before the step's memory peak)")
    ap.add_argument("--force-bf16", action="store_true", help="run bf16 cases even on a CPU without native bf16")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(**json.loads(args.case))), flush=True)
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    repeats, warmup = (2, 1) if args.quick else (args.repeats, 1)
    cases = [("reference", 2, 256, "fp32"), ("reference", 2, 256, "bf16")]
    if not args.quick:
        cases += [("paper", 2, 256, "fp32"), ("paper", 2, 256, "bf16")]
        if device.startswith("cuda"):
            cases += [(v, bs, 256, "bf16") for v in ("reference", "paper") for bs in (16, 32)]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import native_bf16

    for variant, batch, size, dtype in cases:
        if dtype == "bf16" and not (args.force_bf16 or native_bf16(device)):
            print(json.dumps({"bench": "train_step", "variant": variant, "batch": batch, "size": size, "device": device,
                              "dtype": dtype, "skipped": "no native bf16 on this CPU (--force-bf16 to run anyway)"}))
            continue
        spec = dict(variant=variant, batch=batch, size=size, device=device, dtype=dtype, repeats=repeats, warmup=warmup,
                    release_memory=args.release_memory)
        proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(spec)], capture_output=True, text=True,
                              env={**os.environ})
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode or not line:
            print(json.dumps({"bench": "train_step", **spec, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}))
        else:
            print(line[-1], flush=True)


if __name__ == "__main__":
    main()
