"""Options and model loading shared by the commands that run the model (swap, grid, interpolate, demo)."""
from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path
from typing import Any

from ..errors import HifiFaceError
from ..export.providers import PROVIDERS, parse_providers
from ..inference.enhance import DEFAULT_BLEND, FaceEnhancer, as_restorer, check_blend
from ..provenance.outputs import Provenance, using
from ..utils.text import printable

log = logging.getLogger("hififace")

CONSENT = "Use only with the consent of the people shown; outputs are labelled as synthetic in their metadata."
#: Extensions that mark a file as a video (a --target of 'swap', a --source or --match: pointed to the right use).
VIDEOS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
#: --source-weighting's choices and --pose-temperature's default: hififace.face.pose's WEIGHTINGS and
#: POSE_TEMPERATURE, spelled out so that --help does not import torch (tests/test_cli_look.py checks they agree).
WEIGHTINGS = ("mean", "pose", "nearest")
POSE_TEMPERATURE = 10.0


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", metavar="DIR",
                   help="model folder (from 'hififace convert'); default: $HIFIFACE_HOME, then ~/.cache/hififace")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="compute precision (default fp32)")
    p.add_argument("--engine", default="torch", choices=("torch", "onnx"),
                   help="torch (default) or onnx: onnxruntime on the files of 'hififace export onnx' (<weights>/onnx)")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks (CUDA graphs on CUDA): "
                   "faster per image, but compiling takes a while (minutes on a CPU); pays off for many swaps")
    add_provider_args(p)


def add_provider_args(p: argparse.ArgumentParser) -> None:
    """``--provider`` and TensorRT's options: onnxruntime's execution providers for ``--engine onnx``."""
    g = p.add_argument_group("onnxruntime providers (--engine onnx)")
    g.add_argument("--provider", metavar="LIST", type=_provider_names,
                   help=f"execution providers in order of preference, comma-separated: {', '.join(PROVIDERS)} "
                        "(default: tensorrt,cuda when onnxruntime has them, then cpu); "
                        "missing ones are skipped with a warning; 'hififace info --providers' lists this machine's")
    g.add_argument("--trt-fp16", action="store_true", help="TensorRT: build fp16 engines (faster, slightly different)")
    g.add_argument("--trt-cache", metavar="DIR",
                   help="TensorRT: folder of the built engines (they take minutes to build; default "
                        "~/.cache/hififace/tensorrt)")


def add_watermark_arg(p: argparse.ArgumentParser) -> None:
    """Options of the commands that write labelled images: the visible mark and the replacement policy."""
    p.add_argument("--watermark", action="store_true",
                   help="also draw a visible 'AI-generated' mark (the metadata label is always written)")
    p.add_argument("--no-clobber", action="store_true",
                   help="refuse to replace an existing output file (by default it is replaced, atomically)")
    add_provenance_args(p)


def add_provenance_args(p: argparse.ArgumentParser) -> None:
    """Options of every command that writes model outputs: the C2PA manifest and the invisible watermark that
    each output carries by default (see docs/provenance.md); :func:`provenance_scope` applies them."""
    g = p.add_argument_group("provenance (every output is signed and invisibly watermarked; docs/provenance.md)")
    g.add_argument("--no-c2pa", action="store_true",
                   help="do not sign the outputs with C2PA Content Credentials (the label and watermark stay)")
    g.add_argument("--sign-cert", metavar="FILE", help="PEM certificate chain to sign with (end-entity first; "
                   "default: $HIFIFACE_SIGN_CERT, else a local key made once in $HIFIFACE_HOME/signing)")
    g.add_argument("--sign-key", metavar="FILE", help="PEM private key of --sign-cert (default: $HIFIFACE_SIGN_KEY)")
    g.add_argument("--c2pa-ingredients", action="store_true",
                   help="name the target file (name, format, hash; no thumbnail) as an ingredient of the manifest; "
                        "by default no input is named (the source face is personal data)")
    g.add_argument("--no-invisible-watermark", action="store_true",
                   help="for research that must measure the unmarked output: leave out the invisible watermark "
                        "(the output can then only be recognised by its metadata and manifest)")
    p.set_defaults(provenance_scope=provenance_scope)  # applied by cli.main around the command


def provenance_scope(args: argparse.Namespace):
    """The context a command runs in: the :class:`~hififace.provenance.outputs.Provenance` its options describe,
    made the writers' default. A signing certificate or key that cannot be used is one error now, before any
    work; a command without these options runs with the defaults (both marks)."""
    if not hasattr(args, "no_c2pa"):
        return contextlib.nullcontext()
    prov = Provenance(invisible=not args.no_invisible_watermark, c2pa=not args.no_c2pa, sign_cert=args.sign_cert,
                      sign_key=args.sign_key, ingredients=args.c2pa_ingredients)
    if args.no_c2pa and (args.sign_cert or args.sign_key or args.c2pa_ingredients):
        given = [o for o, a in (("--sign-cert", "sign_cert"), ("--sign-key", "sign_key"),
                                ("--c2pa-ingredients", "c2pa_ingredients")) if getattr(args, a)]
        raise HifiFaceError(f"{', '.join(given)} and --no-c2pa contradict each other; drop one")
    prov.check()
    if args.no_invisible_watermark:
        log.warning("--no-invisible-watermark: the outputs carry no invisible watermark; once their metadata is "
                    "stripped nothing in them says they are synthetic")
    return using(prov)


def pick_device(name: str | None) -> Any:
    """``auto`` -> cuda when available, else cpu; an unavailable device is one clear error."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise HifiFaceError(f"unknown device {name!r}: use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HifiFaceError(f"--device {name}: CUDA is not available here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise HifiFaceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s); use cuda:0")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise HifiFaceError(f"--device {name}: MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise HifiFaceError(f"unsupported device {name!r}: use cpu, cuda, cuda:N or auto")
    return device


def model_config(args: argparse.Namespace):
    """The config of the model folder ``--weights`` points to (cheap: inputs can be checked before loading)."""
    from ..config import HifiFaceConfig
    from ..models.hififace import CONFIG_FILE
    from ..weights.resolve import resolve_model_dir

    return HifiFaceConfig.load(resolve_model_dir(getattr(args, "weights", None)) / CONFIG_FILE)


def load_model(args: argparse.Namespace):
    """The model folder from ``--weights`` (then $HIFIFACE_HOME, ~/.cache/hififace) on ``--device``/``--dtype``."""
    if getattr(args, "engine", "torch") == "onnx":
        return load_onnx_model(args)
    check_provider_args(args)
    from ..models.hififace import HifiFace

    device = pick_device(getattr(args, "device", None))
    model = HifiFace.from_pretrained(getattr(args, "weights", None), device=device, dtype=getattr(args, "dtype", None))
    log.debug("model %s on %s (%s)", model.config.variant, device, getattr(args, "dtype", "fp32"))
    _warn_if_random(model)
    return maybe_compile(model, args)


def _provider_names(text: str) -> tuple[str, ...]:
    """``--provider``'s value, checked as the command line is parsed (an unknown name is a usage error)."""
    try:
        return parse_providers(text)
    except HifiFaceError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--provider ")) from None


def check_provider_args(args: argparse.Namespace) -> None:
    """``--provider``/``--trt-*`` without ``--engine onnx``: one error (they would be ignored), before any work."""
    if getattr(args, "engine", "torch") == "onnx":
        return
    given = [o for o, a in (("--provider", "provider"), ("--trt-fp16", "trt_fp16"), ("--trt-cache", "trt_cache"))
             if getattr(args, a, None)]
    if given:
        raise HifiFaceError(f"{', '.join(given)} applies to --engine onnx (onnxruntime); add --engine onnx, or drop "
                            f"{'it' if len(given) == 1 else 'them'} (--engine torch runs on --device)")


def _warn_if_random(model: Any) -> None:
    if model.is_random:
        log.warning("this model folder holds RANDOM weights (saved from HifiFace.random): the output is noise and is "
                    "labelled 'random weights'")


def maybe_compile(model: Any, args: argparse.Namespace) -> Any:
    """``--compile``: ``model.compile()``, recording CUDA graphs (fixed batch shapes) on CUDA."""
    if getattr(args, "compile", False):
        model.compile(mode="reduce-overhead" if model.device.type == "cuda" else None)
    return model


def load_onnx_model(args: argparse.Namespace):
    """``--engine onnx``: onnxruntime on ``<weights>/onnx`` (or an ONNX folder given as ``--weights``)."""
    from ..export.engine import OnnxHifiFace

    if getattr(args, "dtype", "fp32") not in (None, "fp32"):
        raise HifiFaceError(f"--dtype {args.dtype}: the ONNX export is float32; drop --dtype or use --engine torch")
    if getattr(args, "compile", False):
        raise HifiFaceError("--compile applies to --engine torch (onnxruntime optimises its graphs itself); drop one")
    provider = getattr(args, "provider", None)
    model = OnnxHifiFace.from_pretrained(getattr(args, "weights", None), device=getattr(args, "device", None),
                                         providers=provider, trt_fp16=getattr(args, "trt_fp16", False),
                                         trt_cache=getattr(args, "trt_cache", None))
    _warn_if_random(model)
    return model


def progress(total: int, desc: str):
    """A tqdm bar on stderr (hidden when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None, leave=False)


def add_face_args(p: argparse.ArgumentParser, align_passes: int) -> None:
    """Options of the commands that swap faces in photos and videos (swap, video): sources, face choice, pipeline."""
    from ..inference.pipeline import DEFAULT_MIN_FACE

    p.add_argument("--source", "-s", action="append", required=True, metavar="SOURCE",
                   help="photo (or identity file) whose identity is used; repeat to average several photos")
    pick = p.add_mutually_exclusive_group()
    pick.add_argument("--face", type=int, metavar="N",
                      help="swap face N only (numbered from 0, left to right, as 'hififace faces' prints them)")
    pick.add_argument("--all-faces", action="store_true", help="swap every face")
    pick.add_argument("--match", metavar="REF", help="swap the face most like this photo (or identity file)")
    g = p.add_argument_group("face pipeline")
    g.add_argument("--min-face", type=float, default=DEFAULT_MIN_FACE, metavar="PX",
                   help=f"leave faces smaller than this alone, with a note (default {DEFAULT_MIN_FACE} px)")
    g.add_argument("--color-match", action="store_true", help="match the swapped face's colours to the target's skin")
    g.add_argument("--blur", type=float, default=0.05, metavar="F",
                   help="feathering of the paste-back mask, as a fraction of the crop size (default 0.05)")
    add_detector_args(g)
    g.add_argument("--parsing", default="auto", choices=("auto", "landmarks", "bisenet", "psfrgan"),
                   help="face-region mask: auto (parser weights when found, else an outline posed on the landmarks)")
    g.add_argument("--parsing-weights", metavar="FILE", help="79999_iter.pth (BiSeNet) or parse_multi_iter_90000.pth")
    add_model_mask_arg(g)
    g.add_argument("--align-passes", type=int, default=align_passes, metavar="N",
                   help=f"landmark refinement passes before aligning (default {align_passes})")
    g.add_argument("--batch-size", type=int, default=8, help="faces per model call (default 8)")
    g.add_argument("--save-identity", metavar="FILE.safetensors",
                   help="also save the (averaged) source identity; reuse it later with --source FILE.safetensors")
    add_look_args(p, sources=True)
    add_enhance_args(p)


def add_look_args(p: argparse.ArgumentParser, sources: bool = False) -> None:
    """What the swapped face keeps of the target (swap, video, grid): mouth, identity/shape strength; with
    ``sources`` also how several --source photos are weighted."""
    g = p.add_argument_group("what the swapped face takes from the target")
    g.add_argument("--keep-mouth", action="store_true",
                   help="keep the target's mouth interior (teeth, tongue), feathered, so speech shows as it was")
    g.add_argument("--keep-lips", action="store_true", help="with --keep-mouth: keep the target's lips too")
    g.add_argument("--identity-strength", type=float, default=1.0, metavar="A",
                   help="0..1: move the ArcFace identity from the target's own (0) to the source's (1, default)")
    g.add_argument("--shape-strength", type=float, default=1.0, metavar="B",
                   help="0..1: move the 3D face shape (3DMM) from the target's own (0) to the source's (1, default)")
    if sources:
        g.add_argument("--source-weighting", default="mean", choices=WEIGHTINGS,
                       help="several --source photos: their mean (default), weighted for each target face by how "
                            "close their head pose is (pose), or the closest alone (nearest)")
        g.add_argument("--pose-temperature", type=float, default=POSE_TEMPERATURE, metavar="DEG",
                       help=f"--source-weighting pose: a source this many degrees further from the target's pose "
                            f"gets 1/e of the weight (default {POSE_TEMPERATURE:g})")


def check_look_args(args: argparse.Namespace) -> None:
    """Refuse bad values of :func:`add_look_args` options before any work."""
    import math

    for option in ("identity_strength", "shape_strength"):
        value = getattr(args, option, 1.0)
        if not 0.0 <= value <= 1.0:  # also NaN
            raise HifiFaceError(f"--{option.replace('_', '-')} {value:g}: use a number from 0 to 1")
    temperature = getattr(args, "pose_temperature", 10.0)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise HifiFaceError(f"--pose-temperature {temperature:g}: use a positive number of degrees")
    weighting = getattr(args, "source_weighting", "mean")
    if weighting != "mean" and len(getattr(args, "source", None) or []) > 1:
        for src in args.source:
            if str(src).lower().endswith(".safetensors"):
                raise HifiFaceError(f"{printable(src, 80)}: an identity file holds no head pose; give photos with "
                                    f"--source-weighting {weighting} (or use --source-weighting mean)")
    if getattr(args, "keep_lips", False) and not getattr(args, "keep_mouth", False):
        args.keep_mouth = True  # --keep-lips says it: the lips and what is between them


def look_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`~hififace.inference.pipeline.FaceSwapper` options of :func:`add_look_args`."""
    return dict(keep_mouth=getattr(args, "keep_mouth", False), keep_lips=getattr(args, "keep_lips", False),
                identity_strength=getattr(args, "identity_strength", 1.0),
                shape_strength=getattr(args, "shape_strength", 1.0),
                source_weighting=getattr(args, "source_weighting", "mean"),
                pose_temperature=getattr(args, "pose_temperature", 10.0))


def look_record(args: argparse.Namespace) -> dict[str, Any]:
    """The look options as a report records them."""
    return {k: v for k, v in look_options(args).items() if k != "pose_temperature" or
            getattr(args, "source_weighting", "mean") == "pose"}


def start_report(args: argparse.Namespace, swapper: Any, sources: list[Any], identity: Any, kind: str = "photo",
                 fps: float | None = None, aligned: bool | None = None):
    """``--report``: hand the pipeline a quality recorder (``swapper.observer``); returns ``finish(output, target)``
    that writes the report and says so, or None without ``--report``."""
    if not getattr(args, "report", None):
        return None
    from ..metrics.quality import finish_report, recorder_for

    recorder = swapper.observer = recorder_for(swapper, sources, identity, kind, fps, swap_model=args.weights or "",
                                               aligned=aligned)

    def finish(output: Any, target: Any) -> None:
        paths = finish_report(args.report, recorder, output=str(output), target=str(target),
                              sources=[str(s) for s in args.source], weights=args.weights, options=look_record(args))
        flagged = recorder.report().flagged()
        log.info("wrote %s (%d face(s) scored, %d flagged)", ", ".join(map(str, paths)), len(recorder.rows),
                 len(flagged))

    return finish


def add_report_arg(p: argparse.ArgumentParser) -> None:
    """``--report FILE.json`` (swap, video): the quality report of the output, a PNG plot beside it."""
    p.add_argument("--report", metavar="FILE.json",
                   help="also write a quality report of the output (identity similarity, pose/expression error; "
                        "video: flicker and flagged frames) and a plot FILE.png beside it")


def check_report_arg(args: argparse.Namespace, check_output_path) -> None:
    """A report path that cannot be written is refused before any work (a .json file; its plot, the same name in
    .png, must not replace the output or the target)."""
    if getattr(args, "report", None):
        from pathlib import Path

        taken = {what: path for what, path in (("the output (-o)", getattr(args, "output", None)),
                                                ("the target", getattr(args, "target", None))) if path}
        check_output_path(args.report, {".json": "json"}, getattr(args, "no_clobber", False), inputs=taken)
        png = Path(args.report).with_suffix(".png")  # metrics.quality.plot_path of a .json name
        for what, path in taken.items():
            if png.resolve() == Path(path).resolve():
                raise HifiFaceError(f"--report {args.report}: its plot {png.name} would replace {what}; give the "
                                    f"report another name")


def add_model_mask_arg(p: Any) -> None:
    """``--no-model-mask``: paste the whole face region, without the model's own mask m_r (swap, video, app)."""
    p.add_argument("--no-model-mask", action="store_true",
                   help="paste the whole face region, leaving out the model's own blending mask m_r (for a model "
                        "whose mask is empty: random weights, or a collapsed mask)")


def check_face_args(args: argparse.Namespace) -> None:
    """Refuse bad values of :func:`add_face_args` options before any work."""
    check_provider_args(args)
    check_enhance_args(args)
    if args.batch_size < 1:
        raise HifiFaceError(f"--batch-size {args.batch_size}: use 1 or more")
    if args.min_face < 0:
        raise HifiFaceError(f"--min-face {args.min_face:g}: use 0 or more pixels")
    if args.face is not None and args.face < 0:
        raise HifiFaceError(f"--face {args.face}: faces are numbered from 0, left to right "
                            f"(see 'hififace faces PHOTO')")
    if not 0.0 <= args.blur <= 0.5:
        raise HifiFaceError(f"--blur {args.blur:g}: use a fraction of the crop size between 0 and 0.5")
    from ..media.images import check_output_path

    check_look_args(args)
    check_report_arg(args, check_output_path)
    if args.align_passes < 0:
        raise HifiFaceError(f"--align-passes {args.align_passes}: use 0 or more")
    check_detector_args(args)
    if args.save_identity and not str(args.save_identity).lower().endswith(".safetensors"):
        raise HifiFaceError(f"--save-identity {args.save_identity}: the file name must end in .safetensors")
    if args.save_identity:  # a folder of that name, or a file in the way, is refused before the model loads
        check_output_path(args.save_identity, {".safetensors": "safetensors"}, getattr(args, "no_clobber", False))


def add_detector_args(g: Any) -> None:
    """The face detector options (swap, video, enhance, faces): --detector, --detector-model, --threshold."""
    g.add_argument("--detector", default="yunet", help="face detector: yunet (default, built in), scrfd or retinaface")
    g.add_argument("--detector-model", metavar="ONNX", help="insightface .onnx file for scrfd/retinaface")
    g.add_argument("--threshold", type=float, default=0.6, help="detector score threshold (default 0.6)")


def check_detector_args(args: argparse.Namespace) -> None:
    """Refuse an unknown detector, an insightface detector without its file, or a bad threshold, before any work."""
    from ..face.detect import available_detectors

    check_threshold(args.threshold)
    if args.detector.lower() not in available_detectors():
        raise HifiFaceError(f"--detector {args.detector}: choose one of {', '.join(available_detectors())}")
    if args.detector.lower() != "yunet" and not args.detector_model:
        raise HifiFaceError(f"--detector {args.detector} needs its insightface .onnx file: --detector-model FILE")


def add_enhance_args(p: argparse.ArgumentParser) -> None:
    """``--enhance`` and ``--enhance-blend``: a face restorer run on each swapped (or, in 'enhance', each) face."""
    g = p.add_argument_group("face restoration (docs/restoration.md)")
    g.add_argument("--enhance", metavar="DIR|FILE.onnx",
                   help="restore each swapped face with this restorer: a folder made by 'hififace convert --gfpgan "
                        "GFPGANv1.4.pth -o DIR', or an ONNX restorer (gfpgan_1.4.onnx, gpen_bfr_512.onnx, "
                        "codeformer.onnx, ...); it runs on --device")
    g.add_argument("--enhance-blend", metavar="B",
                   help="0 to 1: how much of the restored face replaces the unrestored one (default 1)")


def check_enhance_args(args: argparse.Namespace, required: bool = False) -> None:
    """Refuse bad ``--enhance``/``--enhance-blend`` values before any work (the restorer itself loads later)."""
    enhance = getattr(args, "enhance", None)
    blend = getattr(args, "enhance_blend", None)
    if enhance is None and required:
        raise HifiFaceError("give the restorer: --enhance DIR (hififace convert --gfpgan GFPGANv1.4.pth -o DIR) or "
                            "--enhance FILE.onnx")
    if blend is not None and enhance is None:
        raise HifiFaceError(f"--enhance-blend {str(blend)[:40]} applies to the restorer of --enhance; add --enhance "
                            "DIR|FILE.onnx or drop it")
    args.enhance_blend = check_blend(DEFAULT_BLEND if blend is None else blend)
    if enhance is not None and not Path(enhance).expanduser().exists():
        raise HifiFaceError(f"--enhance {enhance}: not found; give a restorer folder (hififace convert --gfpgan "
                            "GFPGANv1.4.pth -o DIR) or an ONNX restorer file (.onnx)")


def load_enhancer(args: argparse.Namespace, device: Any):
    """The :class:`~hififace.inference.enhance.FaceEnhancer` of ``--enhance`` on ``device`` (None without it)."""
    if getattr(args, "enhance", None) is None:
        return None
    return FaceEnhancer(as_restorer(args.enhance, device), _blend(args))


def check_threshold(threshold: float) -> None:
    """A detector score threshold outside (0, 1) finds every blob or nothing: refused, not blamed on a photo."""
    if not 0.0 < threshold < 1.0:
        raise HifiFaceError(f"--threshold {threshold:g}: use a detector score between 0 and 1 (default 0.6)")


def build_swapper(args: argparse.Namespace, model: Any):
    """The :class:`~hififace.inference.pipeline.FaceSwapper` the face options describe."""
    from ..inference.pipeline import FaceSwapper

    return FaceSwapper(model, detector=args.detector, detector_model=args.detector_model, threshold=args.threshold,
                       parsing=args.parsing, parsing_weights=args.parsing_weights, min_face=args.min_face,
                       align_passes=args.align_passes, color_match=args.color_match, blur=args.blur,
                       batch_size=args.batch_size, model_mask=not args.no_model_mask,
                       restorer=getattr(args, "enhance", None), enhance_blend=_blend(args), **look_options(args))


def _blend(args: argparse.Namespace) -> Any:
    blend = getattr(args, "enhance_blend", None)
    return 1.0 if blend is None else blend


def read_sources(paths: list[str], option: str = "--source") -> list[Any]:
    """Source photos decoded now (bad files are reported before the model loads); identity files as paths."""
    from pathlib import Path

    from ..errors import InputImageError
    from ..media.images import read_photo

    out: list[Any] = []
    for p in paths:
        if Path(p).suffix.lower() in VIDEOS:
            raise InputImageError(f"{p}: is a video; {option} takes a photo of the face (or an identity file made "
                                  f"with --save-identity)")
        if Path(p).suffix.lower() == ".safetensors":
            if not Path(p).is_file():
                raise InputImageError(f"{p}: identity file not found; check the path (make one with --save-identity)")
            out.append(p)
        else:
            out.append(read_photo(p))
    return out
