"""``hififace eval``: the paper's face-swap metrics on FF++ or on your own pairs, and side-by-side comparisons."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger("hififace")

EPILOG = """examples:
  hififace eval --weights weights/hififace-256 --protocol ffpp --data FFPP_DIR -o report/
  hififace eval --weights weights/hififace-256 --pairs pairs.csv -o report/
  hififace eval --pairs pairs.csv --results other_method_outputs/ -o report_other/
  hififace eval --compare report/ report_other/

pairs.csv has the columns source,target (paths; relative ones are relative to the CSV's folder) and optionally
result and source_id. Metrics whose weights are missing are skipped with the reason in the report; see
docs/evaluation.md for the protocol, the metric models and the report files.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="face-swap metrics (ID retrieval, pose/expression/shape errors, FID/KID, PSNR/SSIM/LPIPS)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    what = p.add_argument_group("what to score")
    what.add_argument("--pairs", metavar="CSV", help="source,target[,result][,source_id] rows to score")
    what.add_argument("--protocol", choices=("ffpp",), help="ffpp: the paper's FaceForensics++ protocol (needs --data)")
    what.add_argument("--data", metavar="FFPP_DIR", help="FaceForensics++ folder (original_sequences/, splits/)")
    what.add_argument("--results", metavar="DIR", help="score these images (any method) instead of making them with --weights")
    what.add_argument("--compare", nargs=2, metavar=("REPORT_A", "REPORT_B"), help="print two reports side by side")
    what.add_argument("-o", "--output", metavar="DIR", help="report folder (metrics.json, per_sample.csv, report.md, "
                      "figures); with --compare: also write the comparison to this .md file")
    what.add_argument("--limit", type=int, metavar="N", help="only the first N pairs (ffpp: N video pairs)")
    ff = p.add_argument_group("FaceForensics++")
    ff.add_argument("--split", default="all", choices=("all", "train", "val", "test"), help="FF++ split (default all: 1000 videos)")
    ff.add_argument("--ffpp-compression", default="c23", metavar="c23|c40|raw", help="FF++ quality folder (default c23)")
    ff.add_argument("--ffpp-method", metavar="NAME", help="score FF++'s own fakes (Deepfakes, FaceSwap, FaceShifter, ...)")
    ff.add_argument("--self-recon", action="store_true",
                    help="also swap each target frame onto itself: PSNR, SSIM, LPIPS of the self-reconstruction")
    nets = p.add_argument_group("metric models (missing ones are skipped)")
    nets.add_argument("--id-model", default="dlib", metavar="dlib|none|FILE",
                      help="identity model: dlib (default, needs the eval extra), none, or an insightface IResNet "
                           "backbone.pth (ArcFace/CosFace) other than the one the model trained with")
    nets.add_argument("--recon", metavar="FILE", help="Deep3DFaceRecon epoch_20.pth (default: the --weights folder's ReconNet)")
    nets.add_argument("--inception", metavar="FILE", help="pt_inception-2015-12-05-6726825d.pth for FID/KID")
    nets.add_argument("--lpips", nargs="+", metavar="FILE", default=[],
                      help="lpips.safetensors, or vgg16-397923af.pth and lpips' vgg.pth (default: the --weights folder's)")
    run = p.add_argument_group("running")
    run.add_argument("--weights", metavar="DIR", help="model folder: makes the results (without --results) and supplies "
                     "the 3DMM network")
    run.add_argument("--faces", default="detect", choices=("detect", "template"),
                     help="detect: find faces with the face pipeline (default); template: images are aligned crops")
    run.add_argument("--cache", metavar="DIR", help="cache of detections and features (default: REPORT/cache)")
    run.add_argument("--batch-size", type=int, default=16, metavar="N", help="images per forward pass (default 16)")
    run.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    run.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    run.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="precision of the swap model (default fp32)")
    p.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import ConfigError

    if args.compare:
        return _compare(args)
    if not args.output:
        raise ConfigError("-o REPORT_DIR is required (the folder the report is written to)")
    from ..metrics.run import EvalRequest, run_eval
    from ._common import pick_device, progress

    req = EvalRequest(
        output=Path(args.output), pairs=Path(args.pairs) if args.pairs else None, protocol=args.protocol,
        data=Path(args.data) if args.data else None, weights=args.weights,
        results=Path(args.results) if args.results else None, ffpp_method=args.ffpp_method,
        ffpp_compression=args.ffpp_compression, split=args.split, self_recon=args.self_recon, limit=args.limit,
        id_model=args.id_model,
        recon=args.recon, inception=args.inception, lpips=args.lpips, faces=args.faces,
        cache=Path(args.cache) if args.cache else None, batch_size=args.batch_size, device=pick_device(args.device),
        dtype=args.dtype, figures=not args.no_figures,
    )
    data = run_eval(req, progress=progress)
    from ..metrics.report import format_value

    shown = [f"{k} {format_value(k, data[k])}" for k in ("id_retrieval", "id_similarity", "pose_error", "fid", "psnr")
             if data.get(k) is not None]
    gone = data["counts"].get("skipped_rows", 0)
    print(f"{args.output}: {data['n_pairs']} pairs" + (f" ({gone} not scored: no face)" if gone else "") + "; " + ", ".join(shown) + (f"; skipped: {', '.join(data['skipped'])}"
                                                                         if data["skipped"] else ""))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..metrics.report import compare

    clash = [o for o, v in (("--pairs", args.pairs), ("--protocol", args.protocol), ("--results", args.results),
                            ("--weights", args.weights)) if v]
    if clash:
        raise ConfigError(f"--compare reads two finished reports; drop {', '.join(clash)}")
    out = None
    if args.output:
        from pathlib import Path

        from ..utils.atomic import unwritable_reason

        out = Path(args.output)
        if out.is_dir():
            raise ConfigError(f"{out}: is a folder; with --compare, -o takes a .md file name")
        why = unwritable_reason(out.parent)
        if why:
            raise ConfigError(f"{out}: cannot write there ({why}); give -o a .md file in a folder you can write to")
    text = compare(*args.compare)
    print(text, end="")
    if out is not None:
        from ..utils.atomic import atomic_write_text

        atomic_write_text(out, text)
    return 0
