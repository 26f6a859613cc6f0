"""``hififace verify FILE...``: is this image or video labelled, signed or watermarked as made by hififace?

For each file: the metadata label (present or absent), the C2PA manifest (valid / untrusted signer / tampered /
none, the claim generator, the source type, the signer), the invisible watermark (detected, confidence, the 16
fingerprint bits it carries; over sampled frames for a video) and a one-word verdict (see
:mod:`hififace.provenance.report`). A table for people; ``--json`` prints a list with one object per file.
Exit status 0 when every file was read; a file that is not an image or a video gets one line on stderr and the
exit status is 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check files for hififace's label, C2PA manifest and invisible watermark",
                       description="For each file: the metadata label, the C2PA manifest (valid / untrusted signer / "
                       "tampered / none, claim generator, source type, signer), the invisible watermark (detected, "
                       "confidence, the 16 fingerprint bits; over sampled frames of a video) and a one-word verdict: "
                       "tampered, signed, signed-untrusted, watermarked, labelled or no-mark. Exit status 0 when every "
                       "file was read, 2 when one was not an image or video.")
    p.add_argument("files", nargs="+", metavar="FILE", help="images (JPEG, PNG, WebP, ...) or videos (MP4, ...)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per file")
    p.add_argument("--trust", metavar="PEM", default=None,
                   help="PEM certificate(s) whose signers count as trusted (e.g. a local-ca.pem you know)")
    p.add_argument("--frames", type=int, default=12, metavar="N", help="video frames checked for the watermark")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import HifiFaceError
    from ..media.labels import read_label
    from ..provenance import report

    if args.frames < 1:
        raise HifiFaceError(f"--frames {args.frames}: give at least 1")
    trust = None
    if args.trust:
        from pathlib import Path

        try:
            trust = Path(args.trust).read_bytes()
        except OSError as err:
            raise HifiFaceError(f"{args.trust}: cannot read the trust anchors ({err.strerror or err}); "
                                "give a PEM certificate file to --trust") from None
        if b"-----BEGIN CERTIFICATE" not in trust:
            raise HifiFaceError(f"{args.trust}: no PEM certificate in it; give a PEM certificate file to --trust")
    results, failed = [], 0
    for name in args.files:
        try:
            rep = report.inspect(name, label_reader=read_label, trust_anchors=trust, frames=args.frames)
        except HifiFaceError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            if args.json:
                results.append({"file": name, "error": str(err), "verdict": None})
            continue
        results.append(rep.as_dict())
    if args.json:
        print(json.dumps(results, indent=2))
    elif any("error" not in r for r in results):
        _table([r for r in results if "error" not in r])
    return 2 if failed else 0


def _table(rows: list[dict]) -> None:
    head = ("file", "verdict", "label", "c2pa", "signer", "watermark", "bits")
    lines = []
    for r in rows:
        c, w = r["c2pa"], r["watermark"]
        mark = f"yes ({w['confidence']:.4f})" if w["detected"] else f"no (score {w['score']:.1f})"
        lines.append((r["file"], r["verdict"], "yes" if r["label"] else "no", c["status"], c["signer"] or "-", mark,
                      w["bits"] or "-"))
    widths = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    for row in [head, *lines]:
        print("  ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    for r in rows:
        c = r["c2pa"]
        if c["status"] != "none" and (c["generator"] or c["source_type"]):
            print(f"{r['file']}: made by {c['generator'] or '?'}; source type {c['source_type'] or '?'}"
                  + (f"; weights {c['fingerprint']}" if c.get("fingerprint") else ""))
