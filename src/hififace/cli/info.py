"""``hififace info``: format, config and parameter counts of a model folder (or a foreign checkpoint)."""
from __future__ import annotations

import argparse
import json

from ..errors import HifiFaceError, MissingDependencyError, WeightsError
from ..export.providers import PACKAGES, PROVIDERS, short_name


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="show the format, config and parameter counts of a model folder")
    p.add_argument("path", nargs="?", help="model folder or restorer folder (default: $HIFIFACE_HOME, then "
                                           "~/.cache/hififace)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--providers", action="store_true",
                   help="list the execution providers this machine's onnxruntime offers (for --engine onnx --provider)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.providers:
        if args.path is not None:
            raise HifiFaceError("--providers lists onnxruntime's providers, not a model folder's: drop the folder")
        return show_providers(args.json)
    from ..models.hififace import read_folder_info
    from ..models.restorers.gfpgan import is_restorer_folder, read_restorer_info

    from ..weights.resolve import find_model_dir

    found = find_model_dir(args.path) if args.path is not None else None
    if found is not None and is_restorer_folder(found):
        info = read_restorer_info(found)
    else:
        info = read_folder_info(args.path, how="give the folder: hififace info DIR")
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print(info)
    if info["missing"]:
        raise WeightsError(f"{info['folder']}: incomplete model folder, missing {', '.join(info['missing'])}; "
                           "re-create it with 'hififace convert'")
    return 0


#: What each generator variant is, in words (``hififace info``).
VARIANT_WORDS = {
    "reference": "mindslab-ai/hififace's generator (the reference implementation)",
    "paper": "the paper authors' clarified generator",
    "xuehy": "xuehy/HiFiFace-pytorch's generator (inference only)",
}


def _print(info: dict) -> None:
    from ..utils.text import printable

    print(f"folder:  {info['folder']}")
    print(f"format:  {info['format']}")
    cfg = info["config"]
    notes = cfg.get("notes", {})
    if "variant" in cfg:  # a swap model (a restorer folder's config has no variant)
        print(f"model:   {cfg['variant']} variant: {VARIANT_WORDS.get(cfg['variant'], '?')}, {cfg['image_size']}px, "
              f"aligned with the {cfg['align']} template")
    if "converted_from" in notes:
        sha = f", sha256 {notes['source_sha256']}" if "source_sha256" in notes else ""
        print(f"weights: converted from {printable(notes['converted_from'], 200)} "
              f"({printable(notes.get('source_format', '?'), 40)}{printable(sha, 80)})")
    print("config:  " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "notes"))
    for k, v in notes.items():  # free text from config.json: shown escaped and cut
        print(f"  note {printable(k, 40)}: {printable(v, 200)}")
    total = 0
    for name, f in info["files"].items():
        total += f["elements"]
        print(f"  {printable(name):28s} {f['tensors']:5d} tensors {f['elements']:13,d} elements {f['bytes'] / 2**20:9.1f} MiB")
    print(f"  {'total':28s} {'':5s}         {total:13,d} elements")


def show_providers(as_json: bool = False) -> int:
    """``hififace info --providers``: onnxruntime's version, the providers it offers here (by the short names
    ``--provider`` takes) and, for the known ones it lacks, the package that brings them."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "hififace info --providers") from None
    available = list(ort.get_available_providers())
    known = {v: k for k, v in PROVIDERS.items()}
    info = {
        "onnxruntime": ort.__version__,
        "available": [{"name": short_name(p), "provider": p, "usable": p in known} for p in available],
        "missing": [{"name": k, "provider": v, "install": PACKAGES[k]} for k, v in PROVIDERS.items()
                    if v not in available],
        "default": [short_name(p) for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
        + ["cpu"],
    }
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"onnxruntime {info['onnxruntime']}: execution providers on this machine")
    for p in info["available"]:
        note = "" if p["usable"] else "  (not used by hififace)"
        print(f"  {p['name']:10s} {p['provider']}{note}")
    print("not here (--provider skips them with a warning):")
    for p in info["missing"]:
        print(f"  {p['name']:10s} {p['provider']:28s} {p['install']}")
    print(f"--engine onnx without --provider uses: {','.join(info['default'])}")
    return 0
