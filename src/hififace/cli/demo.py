"""``hififace demo``: a swap on the bundled sample faces; a labelled random-weight smoke run without weights."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ._common import CONSENT, add_model_args, add_watermark_arg

log = logging.getLogger("hififace")

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"
#: Default source and targets: one identity on the two other sample faces (3 forward passes in all).
DEFAULT_SOURCE = "astronaut"
DEFAULT_TARGETS = ("grace_hopper", "cameraman")
RANDOM_TAG = "random weights"

EPILOG = f"""examples:
  hififace demo                                  # uses $HIFIFACE_HOME or ~/.cache/hififace if a model is there
  hififace demo --weights weights/hififace-256 -o demo.png --all

Without trained weights the demo says so and runs a smoke test with random weights: the output then shows
noise, its file name ends in '_random_weights' and it carries a visible 'random weights' mark.
Sample faces: public-domain / CC0 photos, see {SAMPLES_DIR / 'README.md'}.
{CONSENT}
"""


def smoke_config():
    """Config of the random-weight smoke model: the full-size 256 reference network."""
    from ..config import HifiFaceConfig

    return HifiFaceConfig()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="swap on the bundled sample faces (random-weight smoke test without weights)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", default="demo_out.png", help="output image (default demo_out.png)")
    p.add_argument("--all", action="store_true", help="every sample on every sample (9 swaps) instead of 1 x 2")
    add_model_args(p)
    add_watermark_arg(p)
    p.set_defaults(func=run)


def sample_files() -> dict[str, Path]:
    from ..errors import HifiFaceError

    files = {p.stem: p for p in sorted(SAMPLES_DIR.glob("*.png"))}
    if not files:
        raise HifiFaceError(f"{SAMPLES_DIR}: the bundled sample faces are missing; reinstall hififace")
    return files


def random_output_name(path: Path) -> Path:
    """``demo_out.png`` -> ``demo_out_random_weights.png`` (unless the name already says so)."""
    tag = RANDOM_TAG.replace(" ", "_")
    return path if tag in path.stem else path.with_name(f"{path.stem}_{tag}{path.suffix}")


def load_model_or_random(args: argparse.Namespace):
    """The model ``--weights`` (or $HIFIFACE_HOME, ~/.cache/hififace) holds; without one, said in a warning, the
    random-weight smoke model (:func:`smoke_config`). Returns the model and, for random weights, why (one sentence;
    else "")."""
    from ..weights.resolve import find_model_dir, resolve_model_dir
    from ._common import check_provider_args, load_model, maybe_compile, pick_device

    check_provider_args(args)
    folder = resolve_model_dir(args.weights) if args.weights else find_model_dir(None)
    if folder is None:
        from ..models.hififace import HifiFace, resolve_dtype
        from ..weights.resolve import searched_places

        log.warning("no trained weights found in %s (pass --weights DIR or set $HIFIFACE_HOME): running a smoke "
                    "test with RANDOM weights; the output is noise", searched_places())
        model = HifiFace.random(smoke_config(), seed=0).to(device=pick_device(args.device), dtype=resolve_dtype(args.dtype))
        return maybe_compile(model, args), f"No trained weights were found in {searched_places()}."
    args.weights = str(folder)
    model = load_model(args)
    return model, f"The model folder {folder} holds random weights." if model.is_random else ""


def run(args: argparse.Namespace) -> int:
    from ..inference.grid import make_grid, swap_grid
    from ..media.images import check_output_path, read_crop, write_image
    from ..provenance.label import WATERMARK_TEXT
    from ..provenance.label import output_label
    from ._common import progress

    out = check_output_path(args.output, no_clobber=args.no_clobber)
    files = sample_files()
    model, _ = load_model_or_random(args)
    random_mode = model.is_random  # also a folder saved from HifiFace.random
    if random_mode:
        out = check_output_path(random_output_name(out), no_clobber=args.no_clobber)
    size = model.config.image_size
    if args.all:
        source_names = target_names = list(files)
    else:
        source_names = [DEFAULT_SOURCE if DEFAULT_SOURCE in files else next(iter(files))]
        target_names = [n for n in DEFAULT_TARGETS if n in files] or [n for n in files if n not in source_names]
        target_names = target_names or source_names
    images = {name: read_crop(files[name], size) for name in dict.fromkeys(source_names + target_names)}
    sources = [images[n] for n in source_names]
    targets = [images[n] for n in target_names]
    with progress(len(sources) * len(targets), "demo") as bar:
        results = swap_grid(model, sources, targets, progress=bar.update)
    canvas = make_grid(source_names, sources, target_names, targets, results, cell=size)
    write_image(out, canvas, watermark=args.watermark or random_mode, meta=output_label("demo", model),
               watermark_text=f"{WATERMARK_TEXT} · {RANDOM_TAG}" if random_mode else None)
    log.info("wrote %s%s", out, " (random weights: a smoke test, not a face swap)" if random_mode else "")
    return 0
