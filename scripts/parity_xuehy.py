#!/usr/bin/env python
"""Developer check (not a CI test): our ``xuehy`` variant vs xuehy/HiFiFace-pytorch's own ``Generator``.

Needs a snapshot of that repository (its git directory, e.g. the one ``fetch github:xuehy/HiFiFace-pytorch`` makes,
or a checkout): only its ``models/``, ``arcface_torch/backbones/`` and ``Deep3DFaceRecon_pytorch/models/`` are used,
and ``kornia`` (imported by its Deep3DFaceRecon networks module, unused by the generator) is stubbed when missing.
Without ``--mirror`` the check is skipped (exit 0, one line saying so).

    python scripts/parity_xuehy.py --mirror /work/.mirror/xuehy+HiFiFace-pytorch/repo [--work /tmp/parity-xuehy]

Steps: one random-weight ``generator_<iter>.pth`` in the released layout is built from the key manifest
(``tests/data/manifests/xuehy_hififace_generator_keys.tsv``, as ``tests/fakes.py`` does); the ArcFace
``backbone.pth`` and Deep3DFaceRecon ``epoch_20_new.pth`` its constructor insists on loading are written from the
same random weights; the generator file is converted with ``hififace convert``. The inputs are 256x256 uint8 crops:
the bundled test photos (tests/data/photos: astronaut, cameraman, grace_hopper) detected (YuNet) and aligned with the
folder's ``frontal`` template by our pipeline, and random images. Each ordered pair goes through upstream ``Generator(source, target)`` and through ``model.swap``;
reported per pair: max |diff| of v_sid and of the four float outputs, and of the 8-bit images (upstream's
``clamp(0, 1) * 255`` then ``uint8``, i.e. truncation), plus ``hififace swap`` on the crop files for the first
pairs. A sensitivity run shows what the comparison catches: upstream with its in-place LeakyReLU heads made out of
place, and ours with a bilinear ArcFace resize.
"""
from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM_PARTS = ("models", "arcface_torch/backbones", "Deep3DFaceRecon_pytorch/models")
#: the photos bundled with the tests whose swaps may be shown (tests/data/photos/SOURCES.md)
PHOTOS = ("astronaut.png", "cameraman.png", "grace_hopper.jpg")
ITERATION = 320000


def upstream_tree(mirror: Path, work: Path) -> tuple[Path, str]:
    """A directory holding the upstream sources (a checkout as it is, or the needed parts of a git directory)."""
    if (mirror / "models" / "generator.py").is_file():
        rev = subprocess.run(["git", "-C", str(mirror), "rev-parse", "HEAD"], capture_output=True, text=True)
        return mirror, (rev.stdout.strip() or "checkout (no git)")
    git = ["git", f"--git-dir={mirror}"]
    rev = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True)
    if rev.returncode != 0:
        raise SystemExit(f"parity_xuehy: {mirror} is neither a checkout of xuehy/HiFiFace-pytorch nor its git directory")
    tree = work / "upstream"
    if tree.exists():
        subprocess.run(["rm", "-rf", str(tree)], check=True)
    tree.mkdir(parents=True)
    archive = subprocess.run(git + ["archive", "HEAD", *UPSTREAM_PARTS], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree, rev.stdout.strip()


def import_upstream_generator(tree: Path):
    """xuehy's ``models.generator.Generator``; ``kornia`` stubbed if absent (only its networks module imports it)."""
    try:
        import kornia  # noqa: F401
    except ImportError:
        kornia = types.ModuleType("kornia")
        kornia.geometry = types.ModuleType("kornia.geometry")
        kornia.geometry.warp_affine = None  # used by Deep3DFaceRecon's face-recognition loss only
        sys.modules["kornia"], sys.modules["kornia.geometry"] = kornia, kornia.geometry
    sys.path.insert(0, str(tree))
    from models.generator import Generator  # noqa: E402  (upstream code)

    return Generator


def write_weights(work: Path, seed: int):
    """Random-weight generator file in the released layout, and the two files its constructor loads."""
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import fake_state  # noqa: E402

    state = fake_state("xuehy_hififace_generator_keys.tsv", seed)
    folder = work / "standard_model"
    folder.mkdir(parents=True, exist_ok=True)
    gen = folder / f"generator_{ITERATION}.pth"
    torch.save(state, gen)
    arcface = work / "ms1mv3_arcface_r100_fp16_backbone.pth"
    torch.save({k[len("id_extractor.f_id."):]: v for k, v in state.items() if k.startswith("id_extractor.f_id.")}, arcface)
    recon = work / "epoch_20_new.pth"
    torch.save({"net_recon": {k[len("id_extractor.f_3d."):]: v for k, v in state.items()
                              if k.startswith("id_extractor.f_3d.")}}, recon)
    return gen, arcface, recon


def aligned_crops(model, work: Path, n_random: int, seed: int) -> list[tuple[str, Path]]:
    """256x256 uint8 PNG crops: the test photos aligned by our pipeline with the model's template, then random."""
    from PIL import Image

    from hififace.media.images import read_crop
    from hififace.inference.pipeline import FaceSwapper

    swapper = FaceSwapper(model, parsing="landmarks")
    crops = []
    for file in PHOTOS:
        name = file.split(".")[0]
        image = read_crop(ROOT / "tests" / "data" / "photos" / file)
        faces = swapper.detect(image)
        if not faces:
            print(json.dumps({"note": f"no face found in {file}"}))
            continue
        face = max(faces, key=lambda f: f.area)
        crop, _ = swapper.align(image, [face.landmarks])
        path = work / "crops" / f"{name}_{model.config.align}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(crop[0]).save(path)
        crops.append((name, path))
    rng = np.random.default_rng(seed)
    for i in range(n_random):
        path = work / "crops" / f"random{i}.png"
        Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(path)
        crops.append((f"random{i}", path))
    return crops


def to_tensor(a: np.ndarray):
    """uint8 H x W x 3 -> 1 x 3 x H x W float in [0, 1] as upstream builds it (``.float()`` then ``/ 255.0``)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).unsqueeze(0).float() / 255.0


def upstream_uint8(i_r) -> np.ndarray:
    """Upstream's 8-bit image of a result (benchmark/app_image.py, entry/inference.py): clamp, x 255, truncate."""
    import torch

    return (torch.clamp(i_r, 0, 1) * 255).type(torch.uint8)[0].permute(1, 2, 0).numpy()


def maxabs(a, b) -> float:
    return float((a.double() - b.double()).abs().max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirror", type=Path, help="xuehy/HiFiFace-pytorch snapshot: its git directory or a checkout")
    ap.add_argument("--work", type=Path, default=Path("/tmp/hififace-parity-xuehy"))
    ap.add_argument("--random", type=int, default=2, help="random 256x256 crops besides the test photos")
    ap.add_argument("--pairs", type=int, default=0, help="at most this many ordered pairs (0: all)")
    ap.add_argument("--cli-pairs", type=int, default=2, help="pairs also run through 'hififace swap' (PNG files)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.mirror is None:
        print("parity_xuehy: skipped: no xuehy/HiFiFace-pytorch snapshot given (pass --mirror PATH: its git directory "
              "or a checkout)")
        return 0
    if not args.mirror.exists():
        raise SystemExit(f"parity_xuehy: {args.mirror}: not found")
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from hififace import HifiFace
    from hififace.cli.main import main as cli
    from hififace.media.tensors import to_uint8

    args.work.mkdir(parents=True, exist_ok=True)
    tree, commit = upstream_tree(args.mirror.resolve(), args.work)
    gen_file, arcface_file, recon_file = write_weights(args.work, args.seed)
    folder = args.work / "xuehy-standard"
    if cli(["convert", str(gen_file), "-o", str(folder), "--overwrite"]) != 0:
        raise SystemExit("parity_xuehy: hififace convert failed")
    ours = HifiFace.from_pretrained(folder)

    Generator = import_upstream_generator(tree)
    theirs = Generator({"f_3d_checkpoint_path": str(recon_file), "f_id_checkpoint_path": str(arcface_file)})
    theirs.load_state_dict(torch.load(gen_file, map_location="cpu"))  # as its HifiFace.load does (strict)
    theirs.eval()

    crops = aligned_crops(ours, args.work, args.random, args.seed)
    images = {name: np.asarray(Image.open(p).convert("RGB")) for name, p in crops}
    pairs = list(itertools.permutations([n for n, _ in crops], 2))
    if args.pairs:
        pairs = pairs[: args.pairs]
    print(json.dumps({"upstream_commit": commit, "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "crops": [n for n, _ in crops], "pairs": len(pairs)}))
    results = []
    names = ("i_r", "i_low", "m_r", "m_low")
    seen = {}
    theirs.id_extractor.register_forward_hook(lambda module, inputs, output: seen.__setitem__("v_sid", output))
    for k, (s, t) in enumerate(pairs):
        src, tgt = to_tensor(images[s]), to_tensor(images[t])
        with torch.no_grad():
            up = theirs(src, tgt)
            up_vsid = seen["v_sid"]
            our_vsid = ours.id_extractor(src, tgt)
        out = ours.swap(images[s], images[t], return_all=True)
        ours_u8 = to_uint8(out.i_r[0])  # what model.swap gives for uint8 inputs (clamp, x 255, truncate)
        up_u8 = upstream_uint8(up[0])
        d8 = np.abs(ours_u8.astype(np.int16) - up_u8.astype(np.int16))
        row = {"pair": k, "source": s, "target": t, "v_sid": maxabs(our_vsid, up_vsid)}
        row.update({name: maxabs(a, b) for name, a, b in zip(names, out, up)})
        row.update({"uint8_max": int(d8.max()), "uint8_frac_diff": float((d8 > 0).mean())})
        if k < args.cli_pairs:
            png = args.work / f"ours_cli{k}.png"
            rc = cli(["swap", "--source", str(dict(crops)[s]), "--target", str(dict(crops)[t]), "-o", str(png),
                      "--weights", str(folder), "--no-invisible-watermark", "--no-c2pa"])  # the model's own pixels
            got = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
            row["cli_png_max"] = int(np.abs(got - up_u8.astype(np.int16)).max()) if rc == 0 else f"swap exit {rc}"
        results.append(row)
        print(json.dumps(row))

    # sensitivity: what the comparison would show for the two numerically relevant details
    s, t = pairs[0]
    src, tgt = to_tensor(images[s]), to_tensor(images[t])
    sff = theirs.sff_module
    for relu in (sff.i_low_block[0], sff.f_up.i_r_net[0]):
        relu.inplace = False
    with torch.no_grad():
        up_oop = theirs(src, tgt)
    for relu in (sff.i_low_block[0], sff.f_up.i_r_net[0]):
        relu.inplace = True
    with torch.no_grad():
        up = theirs(src, tgt)
        arcface = ours.id_extractor.arcface
        bilinear_vid = F.normalize(arcface(F.interpolate((src - 0.5) / 0.5, size=112, mode="bilinear")), dim=-1)
        bicubic_vid = ours.id_extractor.embed(src)
    sens = {"sensitivity_pair": [s, t],
            "heads_out_of_place_i_r": maxabs(up_oop[0], up[0]), "heads_out_of_place_m_r": maxabs(up_oop[2], up[2]),
            "arcface_bilinear_vs_bicubic_v_id": maxabs(bilinear_vid, bicubic_vid)}
    print(json.dumps(sens))

    worst = {key: max(r[key] for r in results) for key in ("v_sid", *names, "uint8_max")}
    exact = all(r[key] == 0 for r in results for key in ("v_sid", *names, "uint8_max"))
    summary = {"pairs": len(results), "worst": worst, "bit_identical": exact, "pass": worst["uint8_max"] <= 1,
               "upstream_commit": commit}
    (args.work / "summary.json").write_text(json.dumps({"summary": summary, "sensitivity": sens, "pairs": results},
                                                       indent=2) + "\n")
    print(json.dumps(summary))
    return 0 if summary["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
