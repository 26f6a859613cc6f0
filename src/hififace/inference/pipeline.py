"""Face swapping on whole photos: detect -> align -> swap (batched over faces) -> paste back.

:class:`FaceSwapper` is the pipeline object behind ``hififace swap``, ``hififace video`` (through
:mod:`hififace.inference.video`, which takes a swapper; the swapper knows nothing of video) and the Python API
(:mod:`hififace.api`)::

    swapper = FaceSwapper.from_pretrained("weights/hififace-256")
    me = swapper.identity("me.jpg", "me2.jpg")                  # averaged over photos, computed once
    result = swapper.swap(me, "group.jpg", all_faces=True)       # PhotoResult: .image, .faces, .swapped, ...
    swapper.swap_file(me, "group.jpg", "out.png", face=1)        # keeps size, EXIF, colour mode, format

Which path a target takes: an image of exactly the model's size (256 x 256 or 512 x 512) is an aligned crop and is
swapped as it is, as ``HifiFace.swap`` does; anything else is detected, aligned with the template the weights were
trained with (``config.align``), swapped and pasted back. ``aligned=True``/``False`` forces either path.

Paste-back: the alpha of each face is the face region (parsing map, or the outline posed on the landmarks without
a parser) times the model's own mask ``m_r`` (unless ``model_mask=False``), eroded and feathered relative to the
crop size; optionally the swapped face's colours are matched to the target's in Lab. Only the crop's footprint is
touched, and pixels whose alpha is 0 keep their exact values. How much of each face was actually replaced (the mean
alpha over the face region, :attr:`PhotoResult.coverage`) is reported, with a warning when it is almost nothing: a
model whose mask ``m_r`` collapsed to zero (a known training failure; random weights do it too) pastes nothing.

Options that change nothing unless given (each costs nothing when off): ``keep_mouth`` leaves the target's mouth
interior (:mod:`hififace.face.mouth`) in the final paste alpha; ``identity_strength`` / ``shape_strength`` move the
ArcFace and 3DMM-shape parts of the identity from the target's own toward the source's
(:meth:`~hififace.Identity.toward`); ``source_weighting`` ``pose`` / ``nearest`` weights several source photos by
head pose for each target face (:mod:`hififace.face.pose`; the sources come from :meth:`FaceSwapper.source`). The
last two need one ``engine.analyse`` pass over the target crops, shared by both. ``observer``: an object with
``add(frame, faces, targets, swapped, alphas, landmarks=..., target_coeffs=..., sources=...)`` that sees every
blended face (the quality report's recorder, built above this module: :mod:`hififace.metrics.quality`).
Face restoration (``restorer=``, ``--enhance``): after the paste-back each swapped face is aligned to the restorer's
template, restored (one call per photo or batch of frames) and pasted back inside the swap's own alpha, so pixels
the swap left alone stay bit-identical (:mod:`hififace.inference.enhance`).

The model is used only through a :class:`~hififace.inference.engine.SwapEngine`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from ..config import N_ID_COEFFS, unit_interval
from ..errors import ConfigError, InputImageError, WeightsError
from ..face.align import template_points, transform_points
from ..face.blend import match_color, paste_into, soft_mask
from ..face.choice import FaceChoice
from ..face.cropper import FaceCropper
from ..face.mouth import keep_target, mouth_mask
from ..face.palette import face_mask
from ..face.parse import get_parser
from ..face.pose import POSE_TEMPERATURE, WEIGHTINGS, head_pose, pose_weights, weighted_identity
from ..media.images import Photo, check_output_path, fit_to_size, photo_from_array, read_photo, write_image, write_photo
from ..media.tensors import as_batch, to_uint8
from ..models.hififace import HifiFace
from ..models.identity import Identity
from ..utils.text import printable
from ..weights.io import read_safetensors, save_safetensors
from .engine import SwapEngine, as_engine
from .enhance import DEFAULT_BLEND, FaceEnhancer, as_restorer

if TYPE_CHECKING:  # pragma: no cover
    from ..face.detect import Face, FaceDetector

log = logging.getLogger(__name__)

#: Faces whose box is shorter than this (pixels) are left alone by default: too little to swap.
DEFAULT_MIN_FACE = 32
IDENTITY_FORMAT = "hififace-identity/1"
#: Below this share of the face region replaced, a swap is reported as (almost) nothing done.
LOW_COVERAGE = 0.05
IDENTITY_SUFFIX = ".safetensors"


@dataclass
class PhotoResult:
    """Outcome of :meth:`FaceSwapper.swap` on one image.

    Attributes:
        image: upright H x W x 3 uint8 result.
        faces: every detected face, left to right (empty on the aligned-crop path).
        swapped: indices (into ``faces``) of the faces that were swapped.
        skipped: index -> why a chosen face was left alone (too small).
        changed: H x W bool, the pixels that may differ from the input (all others are the input's).
        aligned: True when the image was taken as an aligned crop.
        matrices: image -> crop matrix of each swapped face.
        coverage: for each swapped face (order of ``swapped``; one entry, 1.0, for an aligned crop), the share of
            its face region actually replaced: the mean paste-back alpha over the region, 0 to 1.
    """

    image: np.ndarray
    faces: list["Face"] = field(default_factory=list)
    swapped: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    changed: np.ndarray | None = None
    aligned: bool = False
    matrices: list[np.ndarray] = field(default_factory=list)
    coverage: list[float] = field(default_factory=list)

    def replaced(self) -> str:
        """How much of each swapped face was replaced, e.g. ``face #0 87 %, face #2 85 %`` (empty: none swapped)."""
        if self.aligned:
            return "the whole crop"
        return ", ".join(f"face #{i} {100 * c:.0f} %" for i, c in zip(self.swapped, self.coverage))

    def low_coverage(self) -> list[int]:
        """The swapped faces of which almost nothing was replaced (below :data:`LOW_COVERAGE`)."""
        return [i for i, c in zip(self.swapped, self.coverage) if c < LOW_COVERAGE]


@dataclass
class FaceCrops:
    """Detect -> choose -> align on one image (:meth:`FaceSwapper.face_crops`).

    Attributes:
        faces: every detected face, left to right (empty: no face found).
        chosen: indices of the chosen faces that are aligned (in ``crops`` order).
        skipped: index -> why a chosen face was left alone (too small).
        crops: N x S x S x 3 uint8 aligned crops of ``chosen``.
        matrices: N x 2 x 3 image -> crop matrices.
    """

    faces: list["Face"]
    chosen: list[int]
    skipped: dict[int, str]
    crops: np.ndarray
    matrices: np.ndarray


@dataclass
class Blend:
    """Crop-frame paste material (:meth:`FaceSwapper.blend_faces`): swapped crops (N x S x S x 3 uint8), their soft
    alphas (N x S x S float32) and the share of each face region they replace (N, 0 to 1)."""

    faces: np.ndarray
    alphas: np.ndarray
    coverage: np.ndarray


@dataclass
class PoseSources:
    """Several source photos kept apart for pose-matched weighting (:meth:`FaceSwapper.source`): their identities
    (K rows), head poses (K x 3 degrees, yaw/pitch/roll of :func:`~hififace.face.pose.head_pose`) and names."""

    identity: Identity
    poses: np.ndarray
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.identity)

    def mean(self) -> Identity:
        """The plain mean (what ``mean`` weighting uses; what ``--save-identity`` saves)."""
        return self.identity.mean()


@dataclass
class FaceIdentities:
    """What :meth:`FaceSwapper.face_identities` gives for a batch of target crops: the identity to swap with (one
    row, or one per face), the source identity of each face before strength (pose weighting; None: the one source),
    the targets' 3DMM coefficients (N x 257, None when not computed) and the source weights per face (N x K or None)."""

    swap: Identity
    sources: Identity | None = None
    target_coeffs: "torch.Tensor | None" = None
    weights: np.ndarray | None = None


def check_strength(value: float, option: str = "identity strength") -> float:
    """A strength in [0, 1] (NaN refused), or one :class:`ConfigError` line naming ``option``."""
    return unit_interval(value, option)


def low_coverage_reason(model_mask: bool) -> str:
    """Why a face may come out (almost) unchanged, and what to do; the end of a warning line."""
    if model_mask:
        return ("the model's own blending mask m_r is (almost) empty: random weights, or a collapsed mask (a known "
                "training failure); the output shows the target almost unchanged; --no-model-mask (model_mask=False) "
                "pastes the whole face region")
    return "the face-region mask is (almost) empty; try another --parsing"


class FaceSwapper:
    """The photo/video face-swap pipeline around a model (or any :class:`SwapEngine`).

    Args:
        model: a :class:`~hififace.HifiFace` or a swap engine.
        detector: ``yunet`` (built in), ``scrfd`` or ``retinaface`` (with ``detector_model``), or a detector object.
        threshold: detector score threshold.
        parsing: face-region parser for the paste-back mask: ``auto`` (BiSeNet/PSFRGAN weights when found, else an
            ellipse from the landmarks), ``landmarks``, ``bisenet``, ``psfrgan``.
        min_face: chosen faces with a shorter box side (pixels) are left alone with a note.
        align_passes: landmark refinement passes before aligning (as ``hififace preprocess --align-passes``).
        color_match: match the swapped face's colours to the target's (Lab mean and spread inside the face).
        model_mask: multiply the face region by the model's mask ``m_r`` (``False``: paste the whole face region, as
            ``--no-model-mask`` does; for models whose mask is empty).
        erode, blur: mask erosion and feathering, as fractions of the crop size.
        batch_size: faces per model call.
        keep_mouth: keep the target's mouth interior (teeth, tongue); ``keep_lips``: its lips too.
        identity_strength, shape_strength: 0..1 (default 1: the source's, today's swap; 0: the target's own).
        source_weighting: ``mean`` (default), ``pose`` or ``nearest`` for several sources (see :meth:`source`).
        pose_temperature: degrees of ``pose`` weighting (:data:`~hififace.face.pose.POSE_TEMPERATURE`).
        restorer: a face restorer run on each swapped face after the paste-back (``--enhance``): a restorer folder
            (``hififace convert --gfpgan``), an ONNX restorer file (loaded on the model's device) or a
            :class:`~hififace.restore.FaceRestorer`; None: no restoration.
        enhance_blend: 0 to 1, the share of the restored face over the unrestored one (default 1).
    """

    def __init__(self, model: Any, *, detector: Any = "yunet", detector_model: str | Path | None = None,
                 threshold: float = 0.6, parsing: str = "auto", parsing_weights: str | Path | None = None,
                 min_face: float = DEFAULT_MIN_FACE, align_passes: int = 2, color_match: bool = False,
                 model_mask: bool = True, erode: float = 0.03, blur: float = 0.05, batch_size: int = 8,
                 keep_mouth: bool = False, keep_lips: bool = False, identity_strength: float = 1.0,
                 shape_strength: float = 1.0, source_weighting: str = "mean",
                 pose_temperature: float = POSE_TEMPERATURE, restorer: Any = None,
                 enhance_blend: float = DEFAULT_BLEND):
        self.engine: SwapEngine = as_engine(model)
        if batch_size < 1:
            raise ConfigError(f"batch size {batch_size}: use 1 or more")
        if min_face < 0:
            raise ConfigError(f"minimum face size {min_face}: use 0 or more pixels")
        self.cropper = FaceCropper(detector, size=self.engine.image_size, template=self.engine.align,
                                   refine_passes=align_passes, threshold=threshold, detector_model=detector_model)
        self._parser_spec = (parsing, parsing_weights)
        self._parser = None
        self.min_face = float(min_face)
        self.color_match = bool(color_match)
        self.model_mask = bool(model_mask)
        self.erode = float(erode)
        self.blur = float(blur)
        self.batch_size = int(batch_size)
        self._identities: dict[Any, tuple[Identity, int]] = {}
        self.keep_mouth = bool(keep_mouth or keep_lips)
        self.keep_lips = bool(keep_lips)
        self.identity_strength = check_strength(identity_strength, "identity strength")
        self.shape_strength = check_strength(shape_strength, "shape strength")
        if source_weighting not in WEIGHTINGS:
            raise ConfigError(f"source weighting {printable(source_weighting, 20)!r}: use {', '.join(WEIGHTINGS)}")
        if not (float(pose_temperature) > 0 and np.isfinite(pose_temperature)):
            raise ConfigError(f"pose temperature {pose_temperature}: use a positive number of degrees")
        self.source_weighting = source_weighting
        self.pose_temperature = float(pose_temperature)
        #: Sees every blended face (the quality report); None: nothing is scored.
        self.observer: Any = None
        restorer = as_restorer(restorer, self.engine.device)
        self.enhancer = FaceEnhancer(restorer, enhance_blend, erode, blur) if restorer is not None else None

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = None, device: Any = None, dtype: Any = None,
                        **options: Any) -> "FaceSwapper":
        """Load a model folder (``None``: ``$HIFIFACE_HOME``, then ``~/.cache/hififace``) and build the pipeline."""
        return cls(HifiFace.from_pretrained(weights, device=device, dtype=dtype), **options)

    # ------------------------------------------------------------------ parts
    @property
    def size(self) -> int:
        return self.engine.image_size

    @property
    def detector(self) -> "FaceDetector":
        return self.cropper.detector

    @property
    def parser(self):
        if self._parser is None:
            name, weights = self._parser_spec
            self._parser = get_parser(name, weights, device=str(self.engine.device))
            log.debug("face-region parser: %s", self._parser.name)
        return self._parser

    def detect(self, image: np.ndarray) -> list["Face"]:
        """Faces in an upright RGB image, left to right; landmarks refined ``align_passes`` times."""
        return self.cropper.detect(image)

    def align(self, image: np.ndarray, landmarks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Aligned crops (N x S x S x 3 uint8) and their image -> crop matrices (N x 2 x 3) for 5-point landmarks."""
        return self.cropper.crops(image, landmarks)

    def face_crops(self, image: np.ndarray, choice: FaceChoice | None = None, name: Any = "image",
                   min_face: float | None = None) -> FaceCrops:
        """Detect -> choose -> align: the aligned crops of the chosen faces of an upright RGB image (the one chain
        behind photo swaps, source photos and ``hififace eval``). No face found: ``faces`` and ``crops`` are empty.
        Chosen faces whose box is shorter than ``min_face`` (default: this pipeline's) are left out, in ``skipped``."""
        faces = self.detect(image)
        chosen = self.choose(image, faces, choice, name)
        floor = self.min_face if min_face is None else float(min_face)
        skipped = {i: f"{faces[i].size:.0f} px, below the minimum face size {floor:.0f} px"
                   for i in chosen if faces[i].size < floor}
        todo = [i for i in chosen if i not in skipped]
        crops, mats = self.align(image, [faces[i].landmarks for i in todo])
        return FaceCrops(faces, todo, skipped, crops, mats)

    def one_face_crop(self, image: np.ndarray, name: Any = "image",
                      aligned: bool | None = None) -> tuple[str, np.ndarray | None]:
        """One face of an image taken as ``hififace swap`` takes a source: ``("aligned", crop)`` for an image of the
        model's size (or ``aligned=True``), ``("detected", crop)`` for the largest face found by :meth:`face_crops`,
        or ``("no-face", None)``. Used by ``hififace eval`` for sources and targets alike."""
        if self._is_aligned(image, aligned):
            return "aligned", self._fit(image, name)
        found = self.face_crops(image, FaceChoice(), name, min_face=0)
        return ("detected", found.crops[0]) if found.faces else ("no-face", None)

    def _batch(self, crops: np.ndarray) -> "torch.Tensor":
        """N x S x S x 3 uint8 -> N x 3 x S x S float in [0, 1] on the engine's device (exactly ``uint8 / 255``),
        through the one converter ``HifiFace.swap`` uses too (same values and memory layout, hence the same kernels
        and bit-identical outputs for the same crops)."""
        batch, _ = as_batch(crops[0] if len(crops) == 1 else list(crops), self.size)
        return batch.to(self.engine.device)

    def crop_identity(self, crops: np.ndarray) -> "Identity":
        """The engine's identity of aligned uint8 crops (N x S x S x 3), one per crop."""
        return self.engine.identity(self._batch(crops))

    def swap_crops(self, identity: "Identity", crops: np.ndarray) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The engine's (i_r, m_r) for aligned uint8 crops, in batches of ``batch_size``."""
        per_face = len(identity) > 1 and len(identity) == len(crops)  # one identity per face (strength, pose)
        outs = [self.engine.swap(identity[i : i + self.batch_size] if per_face else identity,
                                 self._batch(crops[i : i + self.batch_size]))
                for i in range(0, len(crops), self.batch_size)]
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def blend_faces(self, targets: np.ndarray, i_r: "torch.Tensor", m_r: "torch.Tensor",
                    landmarks_crop: np.ndarray, mouth_landmarks: Sequence[np.ndarray | None] | None = None) -> Blend:
        """Crop-frame paste material: the swapped crops (N x S x S x 3 uint8, colour-matched when asked), their
        soft alphas (N x S x S float32: face region x m_r, eroded and feathered; with ``keep_mouth`` times one minus
        the target's mouth) and how much of each face region the alphas replace (their mean over it).
        ``mouth_landmarks``: per face, 68 crop-frame points when a landmark backend gave them (else the 5 points)."""
        labels = self.parser.parse(targets, landmarks_crop)
        region = face_mask(labels).astype(np.float32)
        faces = i_r.detach().float().clamp(0, 1).mul(255).add_(0.5).to("cpu").permute(0, 2, 3, 1).numpy()
        faces = faces.astype(np.uint8)
        alphas = np.empty(region.shape, np.float32)
        masks = m_r.detach().float().to("cpu")[:, 0].numpy() if self.model_mask else None
        for k in range(len(targets)):
            mask = region[k] * masks[k] if masks is not None else region[k]
            alphas[k] = soft_mask(self.size, mask, self.erode, self.blur)
            if self.color_match:  # statistics over the face region (skin, features), whatever the model's mask
                faces[k] = match_color(faces[k], targets[k], region[k])
            if self.keep_mouth:  # on the final, feathered alpha: the mouth is the target's, feathered itself
                lm = mouth_landmarks[k] if mouth_landmarks is not None and mouth_landmarks[k] is not None else None
                lab = labels[k] if self.parser.reads_pixels else None
                keep = mouth_mask((self.size, self.size), landmarks_crop[k] if lm is None else lm, lab,
                                  lips=self.keep_lips).alpha
                alphas[k] = keep_target(alphas[k], keep)
        area = region.reshape(len(region), -1).sum(1)
        coverage = (alphas * region).reshape(len(region), -1).sum(1) / np.maximum(area, 1.0)
        return Blend(faces, alphas, coverage.astype(np.float64))

    def label(self) -> dict[str, str]:
        """Extra output-label fields of this pipeline's settings (the restorer, when there is one)."""
        return self.enhancer.label() if self.enhancer is not None else {}

    def restore_faces(self, images: Sequence[np.ndarray], owners: Sequence[int], landmarks: Sequence[np.ndarray],
                       matrices: np.ndarray, alphas: np.ndarray) -> None:
        """``restorer``: restore the swapped faces in place (one restorer call for all of them), each limited to its
        swap paste-back alpha, so pixels the swap left alone stay bit-identical. Face ``j``: ``images[owners[j]]``,
        its five points in that image, its swap crop's image -> crop matrix and crop-frame alpha."""
        if self.enhancer is not None and len(owners):
            self.enhancer.enhance_swapped(images, owners, landmarks, matrices, alphas)

    # ------------------------------------------------------------------ identities
    def identity(self, *sources: Any, aligned: bool | None = None) -> "Identity":
        """One identity from one or more sources, averaged (mean 3DMM shape, re-normalised mean ArcFace vector).

        A source is a photo (path, :class:`Photo`, uint8 array or PIL image), an identity file written by
        :meth:`save_identity`, or an :class:`~hififace.Identity`. Photos are encoded once and cached by this object.
        """
        if not sources:
            raise ConfigError("give at least one source photo or identity file")
        parts = [self._one_identity(s, aligned) for s in sources]
        if len(parts) == 1:
            return parts[0][0]
        return Identity.cat([p[0] for p in parts]).mean([float(p[1]) for p in parts])

    def source(self, *sources: Any, aligned: bool | None = None) -> "Identity | PoseSources":
        """What to swap with for this pipeline's ``source_weighting``: :meth:`identity` (the mean) for ``mean`` or a
        single source, else the sources kept apart with their head poses (:class:`PoseSources`, photos only: an
        identity file or an :class:`Identity` holds no pose and is refused in one line)."""
        if self.source_weighting == "mean" or len(sources) < 2:
            return self.identity(*sources, aligned=aligned)
        analyse = self._analyser("--source-weighting " + self.source_weighting)
        rows, names = [], []
        for s in sources:
            if isinstance(s, Identity) or (isinstance(s, (str, Path)) and Path(s).suffix.lower() == IDENTITY_SUFFIX):
                name = printable(Path(s).name, 60) if isinstance(s, (str, Path)) else "an Identity"
                raise ConfigError(f"{name}: an identity file holds no head pose; give photos with --source-weighting "
                                  f"{self.source_weighting} (or use --source-weighting mean)")
            photo = _as_photo(s)
            crop = self._source_crop(photo, aligned)
            v, c = analyse(self._batch(crop[None]))
            rows.append((Identity(c[:, :N_ID_COEFFS], v), c))
            names.append(printable(photo.path.name, 60) if photo.path else f"source #{len(names)}")
        poses = head_pose(torch.cat([c for _, c in rows]))
        for name, (yaw, pitch, _) in zip(names, poses):
            log.info("source %s: head pose yaw %+.0f, pitch %+.0f degrees", name, yaw, pitch)
        return PoseSources(Identity.cat([i for i, _ in rows]), poses, names)

    def _analyser(self, what: str):
        analyse = getattr(self.engine, "analyse", None)
        if analyse is None:
            raise ConfigError(f"{what} needs the 3DMM coefficients of the faces (engine.analyse), which this swap "
                              f"engine ({type(self.engine).__name__}) does not give; use a HifiFace model")
        return analyse

    @property
    def strength(self) -> bool:
        """Whether identity or shape strength is below 1 (then the targets' own identities are needed)."""
        return self.identity_strength < 1.0 or self.shape_strength < 1.0

    def face_identities(self, identity: "Identity | PoseSources", crops: np.ndarray, tracks: Sequence[Any] | None = None,
                        frames: Sequence[int] | None = None, smoother: Any = None) -> FaceIdentities:
        """The identity to swap each of these target crops with: ``identity`` itself (mean weighting, strength 1:
        nothing is computed), else one row per face from one ``engine.analyse`` pass over the crops: the sources
        weighted by pose (``tracks``/``frames``/``smoother``: the video's per-track smoothing,
        :class:`~hififace.face.pose.WeightSmoother`), then moved from the target's own identity by the strengths."""
        pose = isinstance(identity, PoseSources)
        if not (pose or self.strength) or len(crops) == 0:
            return FaceIdentities(identity)
        analyse = getattr(self.engine, "analyse", None)
        coeffs = None
        if analyse is None and not pose:  # a third-party engine: the target identity is all strength needs
            target = Identity.cat([self.crop_identity(crops[i : i + self.batch_size])
                                   for i in range(0, len(crops), self.batch_size)])
        else:
            analyse = analyse or self._analyser("--source-weighting " + self.source_weighting)
            parts = [analyse(self._batch(crops[i : i + self.batch_size])) for i in range(0, len(crops), self.batch_size)]
            v_id, coeffs = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            target = Identity(coeffs[:, :N_ID_COEFFS], v_id)
        per_face, weights = None, None
        source = identity
        if pose:
            weights = pose_weights(head_pose(coeffs), identity.poses, self.source_weighting, self.pose_temperature)
            if smoother is not None and tracks is not None and frames is not None:
                weights = np.stack([smoother.update(t, f, w) for t, f, w in zip(tracks, frames, weights)])
            per_face = Identity.cat([weighted_identity(identity.identity, w) for w in weights])
            source = per_face
        swap = source.toward(target, self.identity_strength, self.shape_strength) if self.strength else source
        return FaceIdentities(swap, per_face, coeffs, weights)

    def source_count(self, *sources: Any) -> int:
        """How many photos stand behind ``sources`` (identity files count the photos they were made from)."""
        return sum(self._one_identity(s, None)[1] for s in sources)

    def match_identity(self, reference: Any) -> "Identity":
        """The identity a ``match`` choice compares faces with: a reference photo's largest face (a photo without a
        face is refused as the reference photo, not as a source), an identity file or an :class:`Identity`."""
        return self._one_identity(reference, None, role="reference photo (--match)")[0]

    def _one_identity(self, source: Any, aligned: bool | None, role: str = "source photo") -> tuple["Identity", int]:
        if isinstance(source, Identity):
            return (source if len(source) == 1 else source.mean()), len(source)
        path = source.path if isinstance(source, Photo) else Path(source) if isinstance(source, (str, Path)) else None
        key = (str(path.resolve()), aligned) if path is not None else None
        if key is not None and key in self._identities:
            return self._identities[key]
        if isinstance(source, (str, Path)) and Path(source).suffix.lower() == IDENTITY_SUFFIX:
            out = self.load_identity(source)
        else:
            crop = self._source_crop(_as_photo(source), aligned, role)
            out = (self.crop_identity(crop[None]), 1)
        if key is not None:
            self._identities[key] = out
        return out

    def _source_crop(self, photo: Photo, aligned: bool | None, role: str = "source photo") -> np.ndarray:
        name = photo.path or role
        if self._is_aligned(photo.rgb, aligned):
            return self._fit(photo.rgb, name)
        found = self.face_crops(photo.rgb, FaceChoice(), name, min_face=0)  # the largest face, whatever its size
        if not found.faces:
            raise InputImageError(f"{name}: no face found in this {role}; use a photo where the face is clearly "
                                  f"visible, or an aligned {self.size}x{self.size} crop")
        faces, big = found.faces, found.chosen[0]
        if len(faces) > 1:
            log.warning("%s: %d faces in the %s; using the largest (#%d, numbered left to right)", name,
                        len(faces), role, big)
        if faces[big].size < self.min_face:
            log.warning("%s: the face in the %s is only %.0f px; the identity may be poor", name, role,
                        faces[big].size)
        return found.crops[0]

    def _is_aligned(self, rgb: np.ndarray, aligned: bool | None) -> bool:
        return bool(aligned) if aligned is not None else rgb.shape[:2] == (self.size, self.size)

    def _fit(self, rgb: np.ndarray, name: Any) -> np.ndarray:
        return fit_to_size(rgb, self.size, name=str(name))

    def save_identity(self, path: str | Path, identity: "Identity", sources: int = 1) -> Path:
        """Write ``identity`` (one) as a small safetensors file, reusable as a source (``--source FILE``)."""
        path = Path(path)
        if path.suffix.lower() != IDENTITY_SUFFIX:
            raise ConfigError(f"{path}: an identity file must end in {IDENTITY_SUFFIX}")
        one = identity if len(identity) == 1 else identity.mean()
        meta = {"format": IDENTITY_FORMAT, "sources": str(int(sources)), "fingerprint": self.engine.fingerprint(),
                "image_size": str(self.size), "align": self.engine.align}
        save_safetensors({"c_id": one.c_id.float().cpu(), "v_id": one.v_id.float().cpu()}, path, meta)
        return path

    def load_identity(self, path: str | Path) -> tuple["Identity", int]:
        """An identity file and the number of photos it was made from; refuses files made with other identity
        networks (their vectors mean nothing to this model)."""

        path = Path(path)
        remake = f"make it again: hififace swap --source PHOTO --save-identity {printable(path.name)}"
        if not path.exists():
            raise InputImageError(f"{path}: identity file not found; check the path (make one with --save-identity)")
        try:
            tensors, meta = read_safetensors(path, "identity file", fix=remake)
        except WeightsError as err:
            raise InputImageError(str(err)) from None
        if meta.get("format") != IDENTITY_FORMAT:
            raise InputImageError(f"{path}: not a hififace identity file (format {printable(meta.get('format'), 40)!r}); "
                                  "make one with --save-identity")
        c_id, v_id = tensors.get("c_id"), tensors.get("v_id")
        if (c_id is None or v_id is None or tuple(c_id.shape) != (1, N_ID_COEFFS) or tuple(v_id.shape) != (1, 512)
                or not (c_id.is_floating_point() and v_id.is_floating_point())):
            raise InputImageError(f"{path}: identity file with unexpected tensors; {remake}")
        if not bool(torch.isfinite(c_id.float()).all() and torch.isfinite(v_id.float()).all()):
            raise InputImageError(f"{path}: the identity holds NaN or infinite values (a damaged file); {remake}")
        if meta.get("fingerprint") != self.engine.fingerprint():
            raise InputImageError(f"{path}: made with other identity networks (ArcFace/3DMM weights) than this "
                                  f"model's; make it again from the photos with these --weights")
        sources = meta.get("sources", "1")
        return Identity(c_id.float(), v_id.float()), max(1, int(sources) if sources.isdecimal() and len(sources) < 10 else 1)

    # ------------------------------------------------------------------ face choice
    def choose(self, image: np.ndarray, faces: list["Face"], choice: FaceChoice | None = None,
               name: Any = "image") -> list[int]:
        """Indices of the faces to swap (see :class:`FaceChoice`; ``match`` compares ArcFace embeddings)."""
        choice = choice or FaceChoice()

        def similarities(image: np.ndarray, faces: Sequence["Face"]) -> np.ndarray:
            return self.similarities(image, list(faces), choice.match)

        return self.cropper.choose(image, faces, choice, name=name, similarities=similarities)

    def similarities(self, image: np.ndarray, faces: list["Face"], reference: Any) -> np.ndarray:
        """Cosine similarity of each face's ArcFace embedding with the reference's (photo, file or Identity)."""
        ref = self.match_identity(reference).v_id
        crops, _ = self.align(image, [f.landmarks for f in faces])
        embs = [self.crop_identity(crops[i : i + self.batch_size]).v_id
                for i in range(0, len(crops), self.batch_size)]
        return (torch.cat(embs).float().cpu() @ ref.float().cpu().reshape(-1, 1)).reshape(-1).numpy()

    # ------------------------------------------------------------------ swapping
    def swap(self, source: Any, target: Any, face: int | None = None, all_faces: bool = False, match: Any = None,
             aligned: bool | None = None) -> PhotoResult:
        """Swap the source identity onto face(s) of ``target`` (path, array, PIL image or :class:`Photo`)."""
        identity = source if isinstance(source, PoseSources) else self.identity(source, aligned=aligned)
        photo = _as_photo(target)
        return self._swap_photo(identity, photo, FaceChoice(face, all_faces, match), aligned)

    def _swap_photo(self, identity: "Identity | PoseSources", photo: Photo, choice: FaceChoice,
                    aligned: bool | None) -> PhotoResult:
        name = photo.path or "target image"
        rgb = photo.rgb
        if self._is_aligned(rgb, aligned):
            if choice.index is not None or choice.match is not None:
                log.warning("%s: taken as an aligned crop (%dx%d, the model size), swapped whole: --face/--match do "
                            "not apply; use --detect to pick a face in it", name, rgb.shape[1], rgb.shape[0])
            crop = self._fit(rgb, name)[None]
            fid = self.face_identities(identity, crop)
            i_r, _ = self.swap_crops(fid.swap, crop)
            out = to_uint8(i_r[0])  # as HifiFace.swap: clamp and truncate, like the reference's ToPILImage
            if self.keep_mouth or self.observer is not None:  # the whole crop, but the template's mouth
                lms = template_points(self.engine.align, self.size)[None].astype(np.float32)
                alpha = np.ones((1, self.size, self.size), np.float32)
                if self.keep_mouth:
                    alpha[0] = keep_target(alpha[0], mouth_mask((self.size, self.size), lms[0], lips=self.keep_lips).alpha)
                    out = (alpha[0, ..., None] * out + (1 - alpha[0, ..., None]) * crop[0] + 0.5).astype(np.uint8)
                self._observe(0, [0], crop, out[None], alpha, lms, fid)
            if self.enhancer is not None:  # the crop's five points are the model template's
                out = self.enhancer.enhance_aligned(out, template_points(self.engine.align, self.size))
            return PhotoResult(out, changed=np.ones(out.shape[:2], bool), aligned=True, coverage=[1.0])
        found = self.face_crops(rgb, choice, name)
        faces, todo, crops, mats = found.faces, found.chosen, found.crops, found.matrices
        if not faces:
            raise InputImageError(f"{name}: no face found; check the photo (faces smaller than about 10 px or turned "
                                  f"far away are not detected)")
        for i, why in found.skipped.items():
            log.warning("%s: face #%d left alone (%s)", name, i, why)
        result = PhotoResult(rgb.copy(), faces, todo, found.skipped, np.zeros(rgb.shape[:2], bool))
        if not todo:
            return result
        fid = self.face_identities(identity, crops)
        i_r, m_r = self.swap_crops(fid.swap, crops)

        lms = np.stack([transform_points(faces[i].landmarks, m) for i, m in zip(todo, mats)])
        blend = self.blend_faces(crops, i_r, m_r, lms, self.mouth_landmarks([faces[i] for i in todo], mats))
        self._observe(0, todo, crops, blend.faces, blend.alphas, lms, fid)
        for k in range(len(todo)):
            done = paste_into(result.image, blend.faces[k], mats[k], blend.alphas[k])
            if done is not None:
                (x0, y0, x1, y1), a = done
                result.changed[y0:y1, x0:x1] |= a > 0
        self.restore_faces([result.image], [0] * len(todo), [faces[i].landmarks for i in todo], mats, blend.alphas)
        result.matrices = list(mats)
        result.coverage = [float(c) for c in blend.coverage]
        for i, c in zip(todo, result.coverage):
            if c < LOW_COVERAGE:
                log.warning("%s: face #%d: only %.0f %% of the face replaced: %s", name, i, 100 * c,
                            low_coverage_reason(self.model_mask))
        return result

    def mouth_landmarks(self, faces: Sequence["Face"], mats: Sequence[np.ndarray]) -> list[np.ndarray | None] | None:
        """With ``keep_mouth``: each face's 68 crop-frame points when a landmark backend gave them, else None."""
        if not self.keep_mouth:
            return None
        return [None if getattr(f, "landmarks68", None) is None else transform_points(f.landmarks68, m)
                for f, m in zip(faces, mats)]

    def _observe(self, frame: int, faces: Sequence[int], targets: np.ndarray, swapped: np.ndarray, alphas: np.ndarray,
                 landmarks: np.ndarray, fid: FaceIdentities) -> None:
        if self.observer is not None:
            self.observer.add(frame, list(faces), targets, swapped, alphas, landmarks=landmarks,
                              target_coeffs=fid.target_coeffs, sources=fid.sources)

    def swap_file(self, source: Any, target: str | Path | Photo, output: str | Path, face: int | None = None,
                  all_faces: bool = False, match: Any = None, aligned: bool | None = None, watermark: bool = False,
                  meta: Mapping[str, str] | None = None) -> PhotoResult:
        """:meth:`swap` from a photo file to an output file that keeps the photo's properties (see
        :mod:`hififace.media.images`); an aligned crop is written as ``hififace swap`` always did."""
        output = check_output_path(output)
        photo = _as_photo(target)
        result = self.swap(source, photo, face, all_faces, match, aligned)
        if not result.aligned and not result.swapped:
            raise InputImageError(f"{photo.path}: no face large enough to swap ({'; '.join(result.skipped.values())}); "
                                  f"lower --min-face to swap it anyway")
        label = dict(meta or {})
        if result.aligned:
            write_image(output, result.image, watermark=watermark, meta=label, ingredient=photo.path)
        else:
            write_photo(output, photo, result.image, result.changed, meta=label, watermark=watermark)
        return result


def _as_photo(target: Any) -> Photo:
    if isinstance(target, Photo):
        return target
    if isinstance(target, (str, Path)):
        return read_photo(target)
    return photo_from_array(target)
