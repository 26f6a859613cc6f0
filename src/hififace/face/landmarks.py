"""68-point landmarks (iBUG 300-W order) behind one interface: ``get_landmarker(name).landmarks68(rgb, face)``.

Backends, all optional and imported lazily:

- ``recon``: the project's own Deep3DFaceRecon ReconNet + BFM (``epoch_20.pth`` and ``BFM_model_front.mat`` that
  users bring): the 3DMM's 68 keypoints projected into the photo. Crops are made with Deep3DFaceRecon's own 224
  alignment (docs/formats.md#reconnet-and-the-3dmm: scale + translation fit of the 5 points to a 3D template).
- ``dlib``: ``dlib-bin`` + ``face-recognition-models``. Its 68-point model is trained on iBUG 300-W, whose licence
  excludes commercial use.
- ``mediapipe``: mediapipe 0.10.21 face mesh (468 points, 68 picked). It pins numpy < 2 and brings its own OpenCV, so
  install it in its own environment.

5 points come from the detector; :func:`reduce68to5` turns 68 points into the detector's 5-point order.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, HifiFaceError, WeightsError
from ..utils.optional import require
from ..weights import resolve  # resolve.search_roots() at call time: one place to point at other folders
from .align import invert_affine, reduce68to5, transform_points, warp_face  # noqa: F401 (reduce68to5 re-exported)
from .detect import Face
from .dlib_models import PREDICTOR_68, dlib_model_path, import_dlib

log = logging.getLogger(__name__)

#: Deep3DFaceRecon's 3D 5-point template (x, y, z; docs/formats.md#reconnet-and-the-3dmm), order of
#: ``detect.LANDMARK_NAMES_5``.
DEEP3D_LM3D_5 = np.array([[-0.3115, 0.2904, 0.1338], [0.3098, 0.2897, 0.1318], [0.0033, -0.0462, 0.5524],
                          [-0.2522, -0.3813, 0.2241], [0.2485, -0.3813, 0.2224]], dtype=np.float64)
DEEP3D_SIZE = 224
DEEP3D_RESCALE = 102.0


def deep3d_align_matrix(landmarks5: np.ndarray, image_height: int) -> np.ndarray:
    """2 x 3 image -> 224 crop matrix of Deep3DFaceRecon's alignment (``align_img`` with its POS fit).

    The fit runs in the y-up frame (y' = H - 1 - y) as upstream does: a least-squares affine projection of the 3D
    template, scale = mean norm of its two rows, then the photo is scaled by 102 / scale and a 224 window is cut
    around the fitted translation.
    """
    lm = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2).copy()
    h0 = float(image_height)
    lm[:, 1] = h0 - 1 - lm[:, 1]
    n = lm.shape[0]
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = DEEP3D_LM3D_5
    a[0::2, 3] = 1
    a[1::2, 4:7] = DEEP3D_LM3D_5
    a[1::2, 7] = 1
    k, *_ = np.linalg.lstsq(a, lm.reshape(-1), rcond=None)
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    tx, ty = k[3], k[7]
    s = DEEP3D_RESCALE / s
    half = DEEP3D_SIZE / 2.0
    # crop column u = s (x - tx) + 112, row v = s (y - (H - ty)) + 112 (upstream resize_n_crop_img, y-down again)
    return np.array([[s, 0.0, half - s * tx], [0.0, s, half - s * (h0 - ty)]])


def deep3d_crop(image: np.ndarray, landmarks5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(224 x 224 ReconNet input crop, its 2 x 3 image -> crop matrix) of the face with these 5 points."""
    m = deep3d_align_matrix(landmarks5, image.shape[0])
    return warp_face(image, m, DEEP3D_SIZE, border="constant", interpolation="cubic"), m


class Landmarker:
    """68 points of one detected face, in the photo's pixel frame."""

    name = "base"

    def landmarks68(self, image: np.ndarray, face: Face) -> np.ndarray:
        raise NotImplementedError


class ReconLandmarker(Landmarker):
    """ReconNet coefficients -> BFM 68 keypoints projected by Deep3DFaceRecon's camera, mapped back to the photo."""

    name = "recon"

    def __init__(self, recon_path: str | Path, bfm_path: str | Path, device: str = "cpu"):
        import torch

        from ..converters.bfm import load_bfm  # torch: only when the ReconNet backend is asked for
        from ..converters.deep3d import load_recon

        self.device = torch.device(device)
        self.recon = load_recon(recon_path).to(self.device)
        self.bfm = load_bfm(bfm_path).to(self.device)

    def landmarks68(self, image: np.ndarray, face: Face) -> np.ndarray:
        import torch

        crop, m = deep3d_crop(image, face.landmarks)
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(255.0).to(self.device)
        with torch.no_grad():
            # BFMLandmarks gives Deep3DFaceRecon's y-up frame; to_pixel_frame flips it to y-down crop pixels
            lm = self.bfm.to_pixel_frame(self.bfm(self.recon(x)), DEEP3D_SIZE)[0].double().cpu().numpy()
        return transform_points(lm, invert_affine(m))


class DlibLandmarker(Landmarker):
    """dlib's shape predictor (``shape_predictor_68_face_landmarks.dat``; iBUG 300-W data: non-commercial use)."""

    name = "dlib"

    def __init__(self, predictor_path: str | Path | None = None):
        dlib = import_dlib("dlib", "dlib 68-point landmarks")
        if predictor_path is None:  # found without importing the package (its __init__ needs pkg_resources)
            predictor_path = dlib_model_path(PREDICTOR_68, "dlib", "dlib 68-point landmarks")
        path = Path(predictor_path)
        if not path.is_file():
            raise WeightsError(f"{path}: dlib shape predictor not found; pass shape_predictor_68_face_landmarks.dat")
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(path))
        log.info("dlib 68-point model: trained on iBUG 300-W, licensed for non-commercial use only")

    def landmarks68(self, image: np.ndarray, face: Face) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
        shape = self._predictor(np.ascontiguousarray(image), self._dlib.rectangle(x1, y1, x2, y2))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)


#: Face-mesh vertex picked for each iBUG-68 point (jaw 17, brows 5 + 5, nose 4 + 5, eyes 6 + 6, lips 12 + 8).
MEDIAPIPE_TO_68 = (
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)


class MediaPipeLandmarker(Landmarker):
    """mediapipe 0.10.21 face mesh on a square crop around the detected face; 68 of its 468 points."""

    name = "mediapipe"

    def __init__(self, margin: float = 0.5):
        face_mesh = require("mediapipe.python.solutions.face_mesh", "mediapipe 68-point landmarks")
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False)
        self.margin = float(margin)

    def landmarks68(self, image: np.ndarray, face: Face) -> np.ndarray:
        import cv2

        c = face.center
        half = max(face.width, face.height) * (0.5 + self.margin)
        x0, y0 = c[0] - half, c[1] - half
        side = 2 * half
        m = np.array([[256.0 / side, 0, -x0 * 256.0 / side], [0, 256.0 / side, -y0 * 256.0 / side]])
        crop = cv2.warpAffine(image, m, (256, 256), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        res = self._mesh.process(crop)
        if not res.multi_face_landmarks:
            raise HifiFaceError("mediapipe found no face mesh in the face crop")
        pts = res.multi_face_landmarks[0].landmark
        lm = np.array([[pts[i].x * 256.0 - 0.5, pts[i].y * 256.0 - 0.5] for i in MEDIAPIPE_TO_68])
        return lm * (side / 256.0) + [x0, y0]


def find_recon_files() -> tuple[Path, Path] | None:
    """``epoch_20.pth`` (or ``epoch_20_new.pth``) and ``BFM_model_front.mat`` in $HIFIFACE_HOME or ~/.cache/hififace."""
    for root in resolve.search_roots():
        recon = next((p for p in (root / "epoch_20.pth", root / "epoch_20_new.pth") if p.is_file()), None)
        bfm = next((p for p in (root / "BFM_model_front.mat", root / "BFM" / "BFM_model_front.mat") if p.is_file()), None)
        if recon and bfm:
            return recon, bfm
    return None


def get_landmarker(name: str = "auto", **kwargs: Any) -> Landmarker | None:
    """A 68-point backend by name (``recon``, ``dlib``, ``mediapipe``); ``auto`` picks the first usable one or
    returns None (then only the detector's 5 points are used); ``none`` returns None."""
    key = name.lower()
    if key == "none":
        return None
    if key == "recon":
        if not kwargs.get("recon_path") or not kwargs.get("bfm_path"):
            found = find_recon_files()
            if found is None:
                raise WeightsError("ReconNet landmarks need epoch_20.pth and BFM_model_front.mat: put them in "
                                   "$HIFIFACE_HOME (or ~/.cache/hififace) or pass recon_path= and bfm_path=")
            kwargs.setdefault("recon_path", found[0])
            kwargs.setdefault("bfm_path", found[1])
        return ReconLandmarker(**kwargs)
    if key == "dlib":
        return DlibLandmarker(**kwargs)
    if key == "mediapipe":
        return MediaPipeLandmarker(**kwargs)
    if key == "auto":
        found = find_recon_files()
        if found is not None:
            try:
                return ReconLandmarker(*found)
            except HifiFaceError as err:
                log.warning("ReconNet landmarks unavailable: %s", err)
        for cls in (DlibLandmarker, MediaPipeLandmarker):
            try:
                return cls()
            except HifiFaceError:
                continue
        return None
    raise ConfigError(f"unknown landmark backend {name!r}; choose auto, recon, dlib, mediapipe or none")
