#!/usr/bin/env python
"""Developer check (not a CI test): our GFPGAN v1.4 against the upstream network on the same random-weight file.

Needs a snapshot of TencentARC/GFPGAN as a git directory (``--mirror``) and the runner that executes its architecture
(``--upstream``, ``../shared/restorerref/upstream_gfpgan.py``). Without them it says so and exits 0.

    python scripts/parity_gfpgan.py --mirror /work/.mirror/TencentARC+GFPGAN/repo \\
        --upstream ../shared/restorerref/upstream_gfpgan.py [--work /tmp/gfpgan-parity] [--image face.png]

Steps: (1) a face aligned to the FFHQ 512 five-point template (default: the bundled ``grace_hopper.png`` sample, an
ArcFace-aligned 256 crop whose template points are known, re-warped onto the ``ffhq5`` template at 512; a 512 x 512
``--image`` is taken as already aligned); (2) a random-weight file in the released container
(``{'params_ema': state_dict}``) built from the key manifest ``tests/data/manifests/gfpgan_v1.4_clean_keys.tsv``
with fan-in-scaled values, so that the output lies mostly inside [-1, 1] (case ``scaled``); with
``--upstream-random`` also the runner's own ``--make-random`` file (every tensor N(0, 0.05^2): the activations grow
through the U-Net and the output reaches ~1e23, so nearly every pixel saturates; case ``upstream_random``, compared
relative to the output's scale); (3) the upstream runner runs GFPGANv1Clean on the face with the stored noise and
saves the raw output tensor and the PNG; (4) ``hififace convert --gfpgan`` converts the same file; (5) our model runs
on the same input. Reported per case: max |Δ| of the raw float outputs (absolute and relative to max |output|), of
the clamped outputs, and of the uint8 images (pass: <= 1 grey level). One JSON line per case on stdout; exit 1 when
the ``scaled`` images differ by more than one grey level.

``--golden tests/data/gfpgan_tiny_golden.json`` (re)writes the CI test's reference values: the upstream
GFPGANv1Clean built at a reduced width (64 px, narrow 1/32) with :func:`hififace.converters.gfpgan.random_release_state`
weights, run on a seeded random input; ``tests/test_restore_gfpgan.py`` checks our model against them.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "src" / "hififace" / "assets" / "samples" / "grace_hopper.png"
MANIFEST = ROOT / "tests" / "data" / "manifests" / "gfpgan_v1.4_clean_keys.tsv"
#: The reduced-width case of the CI golden test (tests/test_restore_gfpgan.py reads these from the JSON).
GOLDEN = {"out_size": 64, "narrow": 1 / 32, "weights_seed": 7, "input_seed": 1, "stride": 4}


def scaled_random_file(path: Path, seed: int) -> Path:
    """A GFPGANv1.4.pth-shaped file (every manifest key) of random values scaled by fan-in, whose outputs mostly stay
    inside [-1, 1]."""
    import torch

    from hififace.converters.gfpgan import random_release_state

    state = random_release_state(seed=seed)
    manifest = [line.split("\t")[0] for line in MANIFEST.read_text().splitlines()]
    assert list(state) == manifest, "random_release_state no longer matches the key manifest"
    torch.save({"params_ema": state}, path)
    return path


def aligned_face(image: Path, out: Path) -> Path:
    """A 512 x 512 face on the ffhq5 template: a 512 image as it is, a 256 sample re-warped from its ArcFace points."""
    from PIL import Image

    from hififace.face.align import align_crop, template_points, umeyama

    img = np.asarray(Image.open(image).convert("RGB"))
    if img.shape[:2] == (512, 512):
        Image.fromarray(img).save(out)
        return out
    if img.shape[0] != img.shape[1]:
        sys.exit(f"{image}: give a 512 x 512 aligned face or a square ArcFace-aligned sample crop")
    m = umeyama(template_points("arcface", img.shape[0]), template_points("ffhq5", 512))
    Image.fromarray(align_crop(img, m, 512)).save(out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", type=Path, help="git directory of TencentARC/GFPGAN")
    ap.add_argument("--upstream", type=Path, help="path of shared/restorerref/upstream_gfpgan.py")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gfpgan-parity"))
    ap.add_argument("--image", type=Path, default=SAMPLE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--upstream-random", action="store_true",
                    help="also compare on the runner's own --make-random file (saturated outputs)")
    ap.add_argument("--golden", type=Path, help="write the reduced-width reference values of the CI test to this JSON")
    args = ap.parse_args()
    if not (args.mirror and args.mirror.is_dir() and args.upstream and args.upstream.is_file()):
        print("skipped: give --mirror (TencentARC/GFPGAN git dir) and --upstream (restorerref/upstream_gfpgan.py) "
              "to compare with the upstream network")
        return 0
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.golden:
        write_golden(args)
    face = aligned_face(args.image, work / "face512.png")
    cases = {"scaled": scaled_random_file(work / "scaled.pth", args.seed)}
    if args.upstream_random:
        cases["upstream_random"] = None
    worst = 0
    for case, weights in cases.items():
        result = compare(args, face, work / case, weights)
        print(json.dumps(result), flush=True)
        if case == "scaled":
            worst = result["max_abs_uint8"]
    return 0 if worst <= 1 else 1


def write_golden(args: argparse.Namespace) -> None:
    """The upstream network at a reduced width on random_release_state weights: values for the CI test."""
    import importlib.util

    import torch

    from hififace.models.restorers import GFPGAN, GFPGANConfig
    from hififace.converters.gfpgan import random_release_state

    spec = importlib.util.spec_from_file_location("upstream_gfpgan", args.upstream)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    runner.load_upstream(str(args.mirror))  # puts the upstream architecture modules on sys.modules
    arch = sys.modules["gfparch.gfpganv1_clean_arch"]
    g = GOLDEN
    net = arch.GFPGANv1Clean(out_size=g["out_size"], num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                             fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=g["narrow"],
                             sft_half=True).eval()
    config = GFPGANConfig(out_size=g["out_size"], narrow=g["narrow"])
    state = random_release_state(config, seed=g["weights_seed"])
    net.load_state_dict(state, strict=True)
    x = torch.rand(1, 3, g["out_size"], g["out_size"], generator=torch.Generator().manual_seed(g["input_seed"])) * 2 - 1
    ours = GFPGAN(config).eval()
    ours.load_state_dict({k: v for k, v in state.items() if k in ours.state_dict()})
    with torch.no_grad():
        y = net(x, return_rgb=False, randomize_noise=False)[0]
        diff = float((ours(x) - y).abs().max())
    sub = y[0, :, :: g["stride"], :: g["stride"]]
    body = {"what": "TencentARC/GFPGAN GFPGANv1Clean (gfpgan/archs/gfpganv1_clean_arch.py) at out_size "
                    f"{g['out_size']}, narrow {g['narrow']}, channel_multiplier 2, sft_half, different_w, "
                    "input_is_latent; randomize_noise=False; weights hififace.converters.gfpgan.random_release_state; "
                    "made by scripts/parity_gfpgan.py --golden",
            **g, "shape": list(sub.shape), "mean": float(y.mean()), "std": float(y.std()),
            "values": [float(f"{v:.7g}") for v in sub.flatten().tolist()]}
    args.golden.write_text(json.dumps(body) + "\n")
    print(json.dumps({"check": "gfpgan_golden", "file": str(args.golden), "ours_vs_upstream_max_abs": diff}), flush=True)


def compare(args: argparse.Namespace, face: Path, work: Path, weights: Path | None) -> dict:
    import torch
    from PIL import Image

    from hififace.models.restorers import GFPGAN

    work.mkdir(parents=True, exist_ok=True)
    up_png, up_pt = work / "upstream.png", work / "upstream.pt"
    cmd = [sys.executable, str(args.upstream), "--mirror", str(args.mirror), "--seed", str(args.seed),
           "--input", str(face), "--output", str(up_png), "--save-tensor", str(up_pt)]
    if weights is None:
        weights = work / "random.pth"
        cmd += ["--make-random", str(weights)]
    else:
        cmd += ["--weights", str(weights)]
    subprocess.run(cmd, check=True)
    folder = work / "restorer"
    subprocess.run([sys.executable, "-m", "hififace.cli.main", "convert", "--gfpgan", str(weights), "-o", str(folder),
                    "--overwrite"], check=True)

    model = GFPGAN.from_pretrained(folder)
    x = torch.from_numpy(np.asarray(Image.open(face).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.no_grad():
        ours = model((x - 0.5) / 0.5)
    theirs = torch.load(up_pt, map_location="cpu", weights_only=True)
    raw = float((ours - theirs).abs().max())
    clamped = float((ours.clamp(-1, 1) - theirs.clamp(-1, 1)).abs().max())
    ours_u8 = ((ours.clamp(-1, 1) + 1) / 2 * 255.0).round().byte()[0].permute(1, 2, 0).numpy()
    Image.fromarray(ours_u8).save(work / "ours.png")
    theirs_u8 = np.asarray(Image.open(up_png).convert("RGB"))
    d8 = np.abs(ours_u8.astype(np.int16) - theirs_u8.astype(np.int16))
    return {"check": "gfpgan_parity", "case": work.name, "size": 512, "max_abs_float_raw": raw,
            "max_rel_float_raw": raw / max(1e-12, float(theirs.abs().max())), "max_abs_float_clamped": clamped,
            "output_range": [float(theirs.min()), float(theirs.max())],
            "saturated_fraction": float((theirs.abs() > 1).float().mean()), "max_abs_uint8": int(d8.max()),
            "pixels_differing": int((d8 > 0).any(-1).sum()), "pixels": int(d8.shape[0] * d8.shape[1]),
            "torch": torch.__version__, "work": str(work)}

if __name__ == "__main__":
    sys.exit(main())
