"""The HifiFace model: shape-aware identity extractor (frozen) + swap network (trainable).

A model folder holds ``config.json`` and safetensors files (diffusers style):

===========================  ============================================================  ==========
file                         what                                                          needed for
===========================  ============================================================  ==========
``config.json``              :class:`~hififace.HifiFaceConfig`                              always
``generator.safetensors``    encoder, decoder, SFF                                         always
``arcface.safetensors``      insightface IResNet (keys as in ``backbone.pth``)              always
``recon3d.safetensors``      Deep3DFaceRecon ReconNet (keys as in ``epoch_20.pth``)        always
``discriminator.safetensors``  discriminator (keys of :mod:`~hififace.models.discriminators`)  training
``bfm_landmarks.safetensors``  BFM rows of the 68 landmarks (shape loss)                    training
``lpips.safetensors``        LPIPS VGG-16 trunk and linear heads                            training
===========================  ============================================================  ==========
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import HifiFaceConfig
from ..errors import WeightsError
from ..media.tensors import as_batch, restore
from ..utils.compiling import check_mode, compile_method, uncompile_method
from ..weights.io import check_state, load_safetensors, read_safetensors_header, save_safetensors
from ..weights.resolve import resolve_model_dir
from .frozen.arcface import IResNet
from .frozen.recon import ReconNet
from .generator import Generator, GeneratorOutput
from .identity import INTERP_MODES, Identity, ShapeAwareIdentityExtractor  # noqa: F401 (Identity re-exported)

log = logging.getLogger(__name__)

FORMAT_NAME = "hififace"
FORMAT_VERSION = "1"
GENERATOR_FILE = "generator.safetensors"
ARCFACE_FILE = "arcface.safetensors"
RECON_FILE = "recon3d.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
BFM_FILE = "bfm_landmarks.safetensors"
LPIPS_FILE = "lpips.safetensors"
CONFIG_FILE = "config.json"
#: ``config.notes`` entry of a model made by :meth:`HifiFace.random` (kept in its folder's config.json).
RANDOM_NOTE_KEY = "weights"
RANDOM_NOTE = "random (HifiFace.random)"

SwapOutput = GeneratorOutput


@dataclass
class PreparedTarget:
    """Target face(s) with everything that depends on them alone computed once: the image tensor, its 3DMM
    coefficients and the encoder's outputs. ``model.swap(identity, prepared)`` then only runs the decoder and
    the SFF, so many sources (a grid, an interpolation) cost no repeated target work."""

    image: torch.Tensor
    coeffs: torch.Tensor
    z_enc: torch.Tensor
    z: torch.Tensor
    kind: Any = None

    def __len__(self) -> int:
        return self.image.shape[0]


def build_frozen(config: HifiFaceConfig) -> tuple[nn.Module, nn.Module]:
    """Randomly initialised ArcFace and ReconNet of the configured size (weights are loaded afterwards)."""
    return IResNet(config.arcface_arch, width=config.frozen_width), ReconNet(width=config.frozen_width)


class HifiFace(nn.Module):
    """Face swapping with HifiFace: ``model.swap(source, target)``.

    Attributes:
        config: the :class:`~hififace.HifiFaceConfig` it was built from.
        id_extractor: frozen ArcFace + ReconNet building v_sid (shared with the training losses).
        generator: the trainable swap network.
    """

    def __init__(self, config: HifiFaceConfig, arcface: nn.Module | None = None, recon: nn.Module | None = None):
        super().__init__()
        self.config = config
        if arcface is None or recon is None:
            default_arcface, default_recon = build_frozen(config)
            arcface = arcface if arcface is not None else default_arcface
            recon = recon if recon is not None else default_recon
        self.id_extractor = ShapeAwareIdentityExtractor(config, arcface, recon)
        self.generator = Generator(config)

    # ------------------------------------------------------------------ tensors in, tensors out
    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.generator.parameters()).dtype

    def forward(self, source: torch.Tensor | Identity, target: torch.Tensor) -> GeneratorOutput:
        """All four generator outputs for image tensors in [0, 1] (N x 3 x S x S) or a cached source identity."""
        v_sid = self.id_extractor(source, target)
        return self.generator(target.to(self.dtype), v_sid.to(self.dtype))

    # ------------------------------------------------------------------ friendly API
    @torch.inference_mode()
    def identity(self, source: Any) -> Identity:
        """Encode source face(s) once; pass the result to :meth:`swap` in place of the source image."""
        batch, _ = as_batch(source, self.config.image_size)
        return self.id_extractor.encode_source(batch.to(self.device, self.dtype))

    @torch.inference_mode()
    def analyse(self, images: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """What the frozen networks see in aligned face(s): the L2-normalised ArcFace embedding (N x 512) and the
        257 3DMM coefficients (N x 257), float32, exactly as :meth:`identity` and :meth:`prepare_target` compute them
        (``Identity(coeffs[:, :80], v_id)`` is ``identity(images)``). For the head pose of pose-matched sources, the
        target's own identity (identity/shape strength) and the quality report."""
        batch, _ = as_batch(images, self.config.image_size)
        x = batch.to(self.device, self.dtype)
        return self.id_extractor.embed(x).float(), self.id_extractor.coefficients(x).float()

    @torch.inference_mode()
    def prepare_target(self, target: Any) -> PreparedTarget:
        """Encode target face(s) once; pass the result to :meth:`swap` or :meth:`interpolate` as the target."""
        tgt, kind = as_batch(target, self.config.image_size)
        tgt = tgt.to(self.device, self.dtype)
        z_enc, z = self.generator.encoder(tgt)
        return PreparedTarget(tgt, self.id_extractor.coefficients(tgt).float(), z_enc, z, kind)

    def _run(self, identity: Identity, target: PreparedTarget) -> GeneratorOutput:
        v_sid = self.id_extractor.fuse(identity.to(self.device).expand(len(target)), target.coeffs)
        return self.generator.decode(target.image, target.z_enc, target.z, v_sid.to(self.dtype))

    @torch.inference_mode()
    def swap(self, source: Any, target: Any, return_all: bool = False) -> Any:
        """Put the source's identity on the target(s); the result comes back in the target's kind.

        ``source`` is an image (tensor in [0, 1], PIL image, uint8 array, or a list) or an :class:`Identity`;
        ``target`` likewise, or a :class:`PreparedTarget`. One source may serve a batch of targets. Images come back
        in [0, 1] (float tensors clamped as the 8-bit path is); with ``return_all`` the raw
        :class:`GeneratorOutput` tensors are returned instead (not clamped).
        """
        prepared = target if isinstance(target, PreparedTarget) else self.prepare_target(target)
        ident = source if isinstance(source, Identity) else self.identity(source)
        out = self._run(ident, prepared)
        if return_all:
            return GeneratorOutput(*(t.float() for t in out))
        return restore(out.i_r.float().clamp(0, 1), prepared.kind)

    @torch.inference_mode()
    def interpolate(self, source: Any, source2: Any, target: Any, rate: float, mode: str = "all") -> Any:
        """The reference's interpolation: mix the identity of ``source`` (rate 1) with ``source2`` (rate 0)."""
        if mode not in INTERP_MODES:
            raise ValueError(f"mode must be one of {', '.join(INTERP_MODES)}")
        prepared = target if isinstance(target, PreparedTarget) else self.prepare_target(target)
        a = source if isinstance(source, Identity) else self.identity(source)
        b = source2 if isinstance(source2, Identity) else self.identity(source2)
        out = self._run(a.mix(b, rate, mode), prepared)
        return restore(out.i_r.float().clamp(0, 1), prepared.kind)

    def identity_fingerprint(self) -> str:
        """sha256 (16 hex digits) over the identity networks' config fields and their first and last tensors:
        identity vectors saved with other ArcFace/ReconNet weights mean nothing to this model."""
        import hashlib

        h = hashlib.sha256()
        h.update(f"{self.config.arcface_arch}/{self.config.frozen_width}".encode())
        for net in (self.id_extractor.arcface, self.id_extractor.recon):
            tensors = list(net.state_dict().values())
            for t in (tensors[0], tensors[-1]):
                h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ speed
    def compile(self, mode: str | None = None, dynamic: bool | None = None, fullgraph: bool = False,
                backend: Any = "inductor") -> "HifiFace":
        """Compile, in place, what :meth:`identity`, :meth:`prepare_target` and :meth:`swap` run; returns ``self``.

        Compiled: the generator's encoder and :meth:`~hififace.models.generator.Generator.decode` (decoder + SFF,
        one graph), ArcFace and ReconNet; each on first call, again for a new input shape or dtype. Norm,
        activation, AdaIN affine and pooling are fused by the compiler (see :func:`hififace.nn.fast.norm_act`).
        ``mode`` is ``torch.compile``'s: ``"reduce-overhead"`` records CUDA graphs on CUDA (fixed batch shapes;
        a graph per shape); its outputs are copied out of the graph memory, so results and prepared targets stay
        valid across calls. By default a second input shape recompiles with that dimension dynamic; ``dynamic=True``
        starts shape-generic (batch 1 still gets a graph of its own). Works on CPU (inductor's C++
        backend; needs a C++ compiler). Outputs equal the eager ones within float rounding, not bit for bit.
        ``backend`` is ``torch.compile``'s (``"aot_eager"`` and the like for debugging; ``mode`` is inductor's).
        State dict keys do not change; :meth:`uncompile` restores the eager methods.
        """
        check_mode(mode)
        for module, name in self._compiled_methods():
            compile_method(module, name, mode=mode, dynamic=dynamic, fullgraph=fullgraph, backend=backend)
        return self

    def uncompile(self) -> "HifiFace":
        """Undo :meth:`compile`: the eager methods again."""
        for module, name in self._compiled_methods():
            uncompile_method(module, name)
        return self

    def _compiled_methods(self) -> list[tuple[nn.Module, str]]:
        ext = self.id_extractor
        return [(self.generator.encoder, "forward"), (self.generator, "decode"), (ext.arcface, "forward"),
                (ext.recon, "forward")]

    # ------------------------------------------------------------------ weights
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Generator weights only: the frozen networks never go into trainable checkpoints."""
        return self.generator.state_dict()

    def save_pretrained(self, path: str | Path, extra_files: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
        """Write ``config.json`` and the safetensors files into folder ``path`` (each file written atomically)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # one metadata key: safetensors keeps several in hash order, which would make files differ between runs
        meta = {"format": f"{FORMAT_NAME}/{FORMAT_VERSION}"}
        save_safetensors(self.generator.state_dict(), path / GENERATOR_FILE, meta)
        save_safetensors(self.id_extractor.arcface.state_dict(), path / ARCFACE_FILE, meta)
        save_safetensors(self.id_extractor.recon.state_dict(), path / RECON_FILE, meta)
        for name, tensors in (extra_files or {}).items():
            save_safetensors(tensors, path / name, meta)
        self.config.save(path / CONFIG_FILE)  # last: a folder with config.json is complete
        return path

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        channels_last: bool = False,
    ) -> "HifiFace":
        """Load a model folder. ``path=None`` looks in ``$HIFIFACE_HOME`` then ``~/.cache/hififace``.

        ``dtype=torch.bfloat16`` (or ``"bf16"``) runs the networks in bfloat16; instance-norm statistics and
        the identity vector stay in float32. ``channels_last=True`` stores every convolution weight (generator,
        ArcFace, ReconNet) channels_last, so activations stay in that layout (faster on GPUs, with
        :meth:`compile` or the fused norms); outputs equal the default layout's within float rounding.
        """
        folder = resolve_model_dir(path)
        config = HifiFaceConfig.load(folder / CONFIG_FILE)
        with torch.device("meta"):
            model = cls(config)
        parts = {
            GENERATOR_FILE: (model.generator, "generator weights"),
            ARCFACE_FILE: (model.id_extractor.arcface, "ArcFace weights"),
            RECON_FILE: (model.id_extractor.recon, "ReconNet (3DMM) weights"),
        }
        for name, (module, what) in parts.items():
            file = folder / name
            if not file.exists():
                raise WeightsError(f"{file}: missing {what}; the folder is incomplete, re-create it with 'hififace convert'")
            assign_state(module, load_safetensors(file, what), file)
        model.eval()
        dtype = resolve_dtype(dtype)
        if dtype == torch.bfloat16 and torch.device(device or "cpu").type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            log.warning("this CPU has no native bfloat16 (no AVX512-BF16/AMX): bf16 runs much slower than fp32 here")
        model = model.to(device=device, dtype=dtype)
        return model.to(memory_format=torch.channels_last) if channels_last else model

    @classmethod
    def random(cls, config: HifiFaceConfig | None = None, seed: int = 0) -> "HifiFace":
        """A model with random weights (smoke tests, demos without weights). Its outputs mean nothing.

        Its config records that (``notes["weights"]``), so a folder saved from it is known to be random and the
        outputs of the commands that use it are labelled "random weights".
        """
        import dataclasses

        config = config or HifiFaceConfig()
        config = dataclasses.replace(config, notes={**config.notes, RANDOM_NOTE_KEY: f"{RANDOM_NOTE}, seed {seed}"})
        torch.manual_seed(seed)
        model = cls(config)
        return model.eval()

    @property
    def is_random(self) -> bool:
        """True for a model made by :meth:`random` (or loaded from a folder saved from one)."""
        return is_random_config(self.config)

    def num_parameters(self) -> dict[str, int]:
        count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
        return {
            "generator": count(self.generator),
            "arcface": count(self.id_extractor.arcface),
            "recon3d": count(self.id_extractor.recon),
        }


def is_random_config(config: HifiFaceConfig) -> bool:
    """True when a config records random weights (a model from :meth:`HifiFace.random`, or a folder or export saved
    from one): what such a model makes is labelled "random weights"."""
    return str(config.notes.get(RANDOM_NOTE_KEY, "")).startswith(RANDOM_NOTE)


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    names = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}: use fp32 or bf16")
    return names[dtype]


def assign_state(module: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Strictly load ``state`` into a module built on the meta device (no second copy of the weights).

    Tensors stored in another floating dtype (a folder saved in bfloat16) take the module's, so that a model is
    never built of mixed dtypes; ``from_pretrained(dtype=...)`` decides the compute dtype."""
    check_state(module, state, source, hint="; was config.json edited?")
    own = module.state_dict()
    state = {k: v if v.dtype == own[k].dtype else v.to(own[k].dtype) for k, v in state.items()}
    module.load_state_dict(state, strict=True, assign=True)


def read_folder_info(path: str | Path | None, how: str = "pass --weights DIR") -> dict[str, Any]:
    """Format, config and per-file tensor counts of a model folder, without building the model; ``missing`` lists
    the files it needs for inference but lacks."""
    folder = resolve_model_dir(path, how)
    config = HifiFaceConfig.load(folder / CONFIG_FILE)
    files = {}
    for file in sorted(folder.glob("*.safetensors")):
        header = read_safetensors_header(file, "weights")
        files[file.name] = {"tensors": len(header.tensors), "elements": sum(t.numel for t in header.tensors.values()),
                            "bytes": file.stat().st_size, "metadata": header.metadata}
    missing = [name for name in (GENERATOR_FILE, ARCFACE_FILE, RECON_FILE) if name not in files]
    return {"folder": str(folder), "format": f"{FORMAT_NAME} v{FORMAT_VERSION}", "config": config.to_dict(),
            "files": files, "missing": missing}
