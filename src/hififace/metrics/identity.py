"""Identity metrics measured with a face-recognition model that is NOT the one the swap model trained with.

Models (one interface: ``embed(images, landmarks5) -> N x D`` L2-normalised float64 rows):

- :class:`DlibIdentity` (default, offline): dlib's ResNet face descriptor (``dlib_face_recognition_resnet_model_v1.dat``,
  128-d, 99.38 % on LFW per its author) with its 5-point shape predictor for the face chip, both from the
  ``face-recognition-models`` package (public domain / CC0, Davis King; trained on FaceScrub, VGG-Face and web
  images, whose own terms apply). Needs ``pip install 'hififace[eval]'`` (``dlib-bin``, ``face-recognition-models``).
- :class:`IResNetIdentity`: an insightface IResNet file the user brings (``backbone.pth`` of an ArcFace or CosFace
  model, e.g. ``glint360k_cosface_r100_fp16_0.1``), on the ArcFace 112 x 112 alignment from the same 5 points.

Metrics: ``id_similarity`` = cosine similarity of result and source; ``id_retrieval`` = share of results whose
most similar face among all source faces (the gallery) belongs to their own source identity.
"""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from ..face.align import estimate_transform, warp_face
from ..face.dlib_models import PREDICTOR_5, RECOGNITION, dlib_box_from_landmarks, dlib_model_path, import_dlib
from .nets import FrozenNet

log = logging.getLogger(__name__)


class IdentityModel:
    """A face-recognition embedder; ``name`` is written into the report, ``key`` names its cache."""

    name = "identity model"
    key = "identity"

    def embed(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError


def _normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


class DlibIdentity(IdentityModel):
    key = "dlib-resnet-v1"

    def __init__(self):
        feature = "the dlib identity metric"
        self._dlib = import_dlib("eval", feature)
        self._predictor = self._dlib.shape_predictor(str(dlib_model_path(PREDICTOR_5, "eval", feature)))
        self._net = self._dlib.face_recognition_model_v1(str(dlib_model_path(RECOGNITION, "eval", feature)))
        version = getattr(self._dlib, "__version__", "?")
        self.name = f"dlib ResNet face descriptor ({RECOGNITION}, dlib {version})"

    def embed(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for image, lm in zip(images, landmarks):
            img = np.ascontiguousarray(image)
            shape = self._predictor(img, self._dlib.rectangle(*dlib_box_from_landmarks(lm)))
            out.append(np.array(self._net.compute_face_descriptor(img, shape)))
        return _normalise(np.stack(out)) if out else np.zeros((0, 128))


class IResNetIdentity(FrozenNet, IdentityModel):
    """insightface IResNet (ArcFace/CosFace) on ArcFace-aligned 112 x 112 crops in [-1, 1]."""

    kind = "iresnet"
    loader = ".converters.arcface:load_arcface"
    label = "insightface IResNet-{arch} ({file})"

    @torch.no_grad()
    def embed(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        if not images:
            return np.zeros((0, 512))
        crops = [warp_face(img, estimate_transform(lm, "arcface", 112), 112) for img, lm in zip(images, landmarks)]
        x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        return _normalise(self.net((x - 0.5) / 0.5).double().cpu().numpy())


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two N x D arrays."""
    return np.sum(_normalise(a) * _normalise(b), axis=-1)


def retrieval(queries: np.ndarray, query_labels: Sequence[str], gallery: np.ndarray,
              gallery_labels: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """For each query: whether its most similar gallery row has the query's label, and that row's label."""
    if len(queries) == 0:
        return np.zeros(0, dtype=bool), []
    sims = _normalise(queries) @ _normalise(gallery).T
    best = np.argmax(sims, axis=1)
    found = [gallery_labels[i] for i in best]
    return np.array([f == q for f, q in zip(found, query_labels)]), found
