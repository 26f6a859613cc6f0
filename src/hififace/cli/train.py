"""``hififace train``: train or fine-tune HifiFace with Lightning (one GPU, several, or several nodes)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..utils.optional import require

log = logging.getLogger("hififace")

EPILOG = """examples:
  hififace train --config hififace_256_reference --data.images DIR --data.parsing DIR
  hififace train --resume runs/x/checkpoints/last.ckpt             # the run's own config, from the checkpoint
  hififace train --config hififace_256_paper --init weights/init-256 --data.root prep/
  hififace train --config ... --trainer.devices 8 --trainer.precision bf16-mixed
  srun hififace train --config ... --trainer.num_nodes 4 --trainer.devices 8
  tensorboard --logdir runs/

Any config value can be overridden as --section.key VALUE (VALUE is read as YAML: 1e-4, [0, 0.99], null).
A fresh run refuses a checkpoint.dir that already holds a run: resume it, or pass --checkpoint.overwrite.
"""


USAGE = "hififace train [-h] [--config NAME|FILE] [--resume CKPT] [--init DIR] [--print-config] [--SECTION.KEY VALUE ...]"


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..training.config import override_keys  # no Lightning import here: --help stays fast

    # The usage names the override pattern once; the overrides themselves are listed in their own group.
    p = sub.add_parser("train", help="train or fine-tune a HifiFace model", epilog=EPILOG, usage=USAGE,
                       formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, max_help_position=40))
    p.add_argument("--config", metavar="NAME|FILE",
                   help="YAML training config: a file, or a shipped one by name (hififace_256_reference, "
                        "hififace_256_paper, hififace_512_reference, hififace_512_paper, hififace_tiny)")
    p.add_argument("--resume", metavar="CKPT",
                   help="continue a run exactly from its checkpoint (e.g. runs/x/checkpoints/last.ckpt); without "
                        "--config the checkpoint's own config is used (overrides still apply)")
    p.add_argument("--init", metavar="DIR", help="start from this model folder (shortcut for --model.init)")
    p.add_argument("--print-config", "--dry-run", dest="print_config", action="store_true",
                   help="validate the config, print it resolved and exit (nothing is trained)")
    group = p.add_argument_group("config overrides (VALUE is read as YAML; a true/false key alone means true; "
                                 "losses.r1/recon_size/adversarial default by model.variant)")
    for key, (kind, default) in override_keys().items():
        flag = dict(nargs="?", const="true") if kind == "bool" else {}
        group.add_argument(f"--{key}", dest=f"override:{key}", default=argparse.SUPPRESS, metavar="V",
                           help=f"{kind}, default {'null' if default is None else default}", **flag)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..training.build import started_by_a_launcher
    from ..training.config import load_config

    if started_by_a_launcher():  # ranks 1.. of a distributed run: rank 0 reports; warnings and errors still show
        log.setLevel(logging.WARNING)

    overrides = {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("override:")}
    if args.init:
        overrides["model.init"] = args.init
    if args.resume:
        from ..training.resume import resume_config

        cfg = resume_config(args.resume, args.config, overrides)  # the checkpoint's own config without --config
    else:
        cfg = load_config(args.config, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
        return 0
    require("lightning", "hififace train")
    from ..training.build import fit

    trainer, module = fit(cfg, resume=args.resume)
    log.info("finished at iteration %d (trainer.max_steps=%d); checkpoints in %s", module.iteration,
             cfg.trainer.max_steps, Path(cfg.checkpoint.dir) / "checkpoints")
    return 0

