"""``hififace preprocess``: a folder of identity folders -> aligned crops, parsing maps and index.jsonl for training."""
from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger("hififace")

EPILOG = """examples:
  hififace preprocess RAW_DIR OUT_DIR --size 256 --align arcface --parsing auto --workers 8
  hififace preprocess RAW_DIR OUT_DIR --shard 3/64        # shard 3 of 64 (numbered from 0; Slurm --array=0-63)
  hififace preprocess RAW_DIR OUT_DIR --merge             # merge the shard indexes into index.jsonl now
  hififace preprocess RAW_DIR OUT_DIR --merge --partial   # ... even though some shards have not finished
Run the same command again to resume: finished files are kept, skipped files are counted, not retried.
See docs/preprocessing.md for the layout, the index.jsonl schema and a Slurm example.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preprocess", help="align, crop and parse a dataset of identity folders (VGGFace2 layout)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("raw_dir", metavar="RAW_DIR", help="input folder with one sub-folder of photos per identity")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (images/, parsing/, index.jsonl)")
    p.add_argument("--size", type=int, default=256, help="crop size in pixels (default 256)")
    p.add_argument("--align", default="arcface", choices=("arcface", "ffhq", "frontal"),
                   help="alignment template (default arcface: insightface's 5-point template scaled to the crop; the reference's "
                        "own alignment, from 3DDFA_V2 landmarks, was never released)")
    p.add_argument("--parsing", default="auto", choices=("auto", "bisenet", "psfrgan", "landmarks"),
                   help="face parser (default auto: BiSeNet or PSFRGAN when their file is found, else landmarks)")
    p.add_argument("--parsing-weights", metavar="FILE", help="79999_iter.pth (BiSeNet) or parse_multi_iter_90000.pth (PSFRGAN)")
    p.add_argument("--detector", default="yunet", help="yunet (default, built in), scrfd or retinaface")
    p.add_argument("--detector-model", metavar="ONNX", help="insightface .onnx file for scrfd/retinaface")
    p.add_argument("--landmarks68", default="auto", help="68-point backend: auto (default), recon, dlib, mediapipe, none")
    p.add_argument("--recon3d", metavar="FILE",
                   help="ReconNet weights (epoch_20.pth or recon3d.safetensors) for 68-point landmarks; with --bfm")
    p.add_argument("--bfm", metavar="FILE", help="BFM_model_front.mat (or bfm_landmarks.safetensors); with --recon3d")
    p.add_argument("--min-face", type=float, default=40.0, help="skip faces whose box is smaller than this many pixels (default 40)")
    p.add_argument("--min-score", type=float, default=0.7, help="skip faces the detector scores below this (default 0.7)")
    p.add_argument("--multi-face", default="largest", choices=("largest", "skip"),
                   help="photos with several faces: crop the largest (default) or skip the photo")
    p.add_argument("--align-passes", type=int, default=2,
                   help="re-detection passes on aligned crops for stable alignment (default 2; 0 = detector only, fastest)")
    p.add_argument("--align-jitter", action="store_true", help="average 4 shifted re-detections (steadiest, ~2x slower)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--shard", default="0/1", metavar="I/N", help="process only shard I of N (numbered from 0)")
    p.add_argument("--device", default="cpu", help="device for neural parsers: cpu (default) or cuda")
    p.add_argument("--retry-skipped", action="store_true", help="try again the files an earlier run skipped")
    p.add_argument("--merge", action="store_true",
                   help="merge the shard indexes into index.jsonl now (every shard must have finished, see --partial)")
    p.add_argument("--partial", action="store_true", help="with --merge: merge the finished shards even if some are missing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in batch jobs)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import PreprocessConfig, parse_shard, preprocess

    shard = parse_shard(args.shard)
    if args.merge:
        return _merge(args)
    cfg = PreprocessConfig(size=args.size, align=args.align, parsing=args.parsing, parsing_weights=args.parsing_weights,
                           detector=args.detector, detector_model=args.detector_model, landmarks68=args.landmarks68,
                           refine_passes=args.align_passes, refine_jitter=args.align_jitter, min_face=args.min_face,
                           min_score=args.min_score, multi_face=args.multi_face, device=args.device,
                           workers=args.workers, shard=shard, retry_skipped=args.retry_skipped,
                           recon3d=args.recon3d, bfm=args.bfm)
    result = preprocess(args.raw_dir, args.out_dir, cfg, progress=not args.no_progress)
    _print_summary(result.summary, args.json, f"shard {shard[0]}/{shard[1]}" if shard[1] > 1 else "done",
                   warn=result.merged is None)
    if result.merged is not None:
        _print_summary(result.merged, args.json, "all shards merged")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..data.prepare import merge_shards, shard_status

    total, missing = shard_status(args.out_dir)
    if not total:
        raise HifiFaceError(f"{args.out_dir}: no shard indexes (index.shard-*.jsonl) to merge; run the shards first")
    if missing and not args.partial:
        raise HifiFaceError(f"{args.out_dir}: {len(missing)} of {total} shards have not finished (shard "
                            f"{', '.join(map(str, missing[:20]))}{' ...' if len(missing) > 20 else ''}); rerun them "
                            f"with --shard I/{total}, or pass --partial to merge the {total - len(missing)} finished")
    merged = merge_shards(args.out_dir, force=True)
    if missing:
        log.warning("merged %d of %d shards; missing shard(s) %s", total - len(missing), total,
                    ", ".join(map(str, missing)))
    _print_summary(merged, args.json, "merged")
    return 0


def _print_summary(summary: dict, as_json: bool, title: str, warn: bool = True) -> None:
    for warning in summary.get("warnings", []) if warn else ():  # loud, whatever the output format
        log.warning("WARNING: %s", warning)
    if as_json:
        print(json.dumps(summary, sort_keys=True))
        return
    print(f"{title}: {summary['files']} files, {summary['ok']} crops, {summary['skipped']} skipped")
    for reason, count in summary.get("skip_reasons", {}).items():
        print(f"  skipped {reason}: {count}")
    if summary.get("parsers"):
        print("  parsers: " + ", ".join(f"{k} {v}" for k, v in summary["parsers"].items()))
    if "processed" in summary:
        print(f"  processed now: {summary['processed']} in {summary.get('seconds', 0):.1f} s, already done: {summary['already_done']}")
