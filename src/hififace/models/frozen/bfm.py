"""The Basel Face Model reduced to its 68 landmark vertices, projected with Deep3DFaceRecon's camera.

This is all the shape loss needs (q = 68 projected landmarks of the 3DMM face). Facts from
sicxu/Deep3DFaceRecon_pytorch ``models/bfm.py`` (ParametricFaceModel: recenter, compute_shape,
compute_rotation, transform, to_camera, to_image) and ``util/load_mats.py``; written independently.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ...errors import WeightsError
from ...utils.files import open_regular
from ...utils.text import printable
from ...weights.matfile import MatLimits, check_mat_file
from ._frozen import FrozenModule

log = logging.getLogger(__name__)

N_ID, N_EXP = 80, 64
N_LANDMARKS = 68
#: Offsets of the coefficient groups in the 257-d ReconNet output.
ID_SLICE, EXP_SLICE, ANGLE_SLICE, TRANS_SLICE = slice(0, 80), slice(80, 144), slice(224, 227), slice(254, 257)
FOCAL = 1015.0
CENTER = 112.0
CAMERA_DISTANCE = 10.0
CROP_SIZE = 224
BFM_MAT_NAME = "BFM_model_front.mat"
BFM_ARRAYS = ("meanshape", "idBase", "exBase", "keypoints")


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """N x 3 x 3 matrices for row vectors (``points @ R``) from N x 3 angles (x, y, z) in radians.

    Deep3DFaceRecon composes Rz @ Ry @ Rx for column vectors and transposes it for row vectors.
    """
    x, y, z = angles.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    cx, sx, cy, sy, cz, sz = x.cos(), x.sin(), y.cos(), y.sin(), z.cos(), z.sin()
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(-1, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    return (rz @ ry @ rx).transpose(1, 2)


class BFMLandmarks(FrozenModule):
    """3DMM coefficients N x 257 -> the 68 landmarks N x 68 x 2 as Deep3DFaceRecon projects them (224 crop).

    Buffers: ``mean_shape`` 68 x 3 (mean face re-centred over all vertices), ``id_base`` 204 x 80 and
    ``exp_base`` 204 x 64 (xyz-interleaved rows of the landmark vertices).
    Output coordinates are Deep3DFaceRecon's: x right, y UP from the bottom of the crop (its ``to_image`` does not
    flip); :meth:`to_pixel_frame` turns them into y-down pixel coordinates. L1 distances are the same in both.
    """

    def __init__(self, mean_shape, id_base, exp_base, focal: float = FOCAL, center: float = CENTER,
                 camera_distance: float = CAMERA_DISTANCE):
        super().__init__()
        mean_shape = torch.as_tensor(np.asarray(mean_shape), dtype=torch.float32).reshape(-1, 3)
        id_base = torch.as_tensor(np.asarray(id_base), dtype=torch.float32)
        exp_base = torch.as_tensor(np.asarray(exp_base), dtype=torch.float32)
        n = mean_shape.shape[0]
        if id_base.shape != (3 * n, N_ID) or exp_base.shape != (3 * n, N_EXP):
            raise ValueError(f"BFM landmark bases must be {3 * n}x{N_ID} and {3 * n}x{N_EXP}, got "
                             f"{tuple(id_base.shape)} and {tuple(exp_base.shape)}")
        self.register_buffer("mean_shape", mean_shape.contiguous())
        self.register_buffer("id_base", id_base.contiguous())
        self.register_buffer("exp_base", exp_base.contiguous())
        self.focal = float(focal)
        self.center = float(center)
        self.camera_distance = float(camera_distance)
        self.freeze()

    @property
    def num_landmarks(self) -> int:
        return self.mean_shape.shape[0]

    def shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor) -> torch.Tensor:
        """Landmark vertices N x 68 x 3 of the face with these identity/expression coefficients (model space)."""
        offset = id_coeff @ self.id_base.T + exp_coeff @ self.exp_base.T
        return self.mean_shape + offset.reshape(id_coeff.shape[0], -1, 3)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """Camera-space points (z already 10 - z) -> image plane, perspective with focal 1015 and centre 112."""
        z = points[..., 2:]
        return self.focal * points[..., :2] / z + self.center

    def forward(self, coeffs: torch.Tensor) -> torch.Tensor:
        # Projection is sensitive to precision (division by z): always float32, even under autocast.
        with torch.autocast(coeffs.device.type, enabled=False):
            c = coeffs.float()
            pts = self.shape(c[:, ID_SLICE], c[:, EXP_SLICE])
            pts = pts @ rotation_matrix(c[:, ANGLE_SLICE]) + c[:, TRANS_SLICE].unsqueeze(1)
            pts = torch.cat([pts[..., :2], self.camera_distance - pts[..., 2:]], dim=-1)
            return self.project(pts)

    @staticmethod
    def to_pixel_frame(landmarks: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
        """Deep3DFaceRecon's y-up landmarks -> y-down pixel coordinates (y' = size - 1 - y, as its scripts do)."""
        return torch.stack([landmarks[..., 0], (size - 1) - landmarks[..., 1]], dim=-1)

    @classmethod
    def random(cls, seed: int = 0, num_landmarks: int = N_LANDMARKS) -> "BFMLandmarks":
        """A plausible random face model (decimetre scale like BFM) for tests and smoke runs; not a real face."""
        gen = np.random.default_rng(seed)
        mean = gen.uniform([-0.8, -1.0, -0.3], [0.8, 1.0, 0.6], size=(num_landmarks, 3))
        id_base = gen.normal(0.0, 0.01, size=(3 * num_landmarks, N_ID))
        exp_base = gen.normal(0.0, 0.005, size=(3 * num_landmarks, N_EXP))
        return cls(mean, id_base, exp_base)


def reduce_bfm(meanshape: np.ndarray, id_base: np.ndarray, exp_base: np.ndarray, keypoints: np.ndarray) -> BFMLandmarks:
    """Keep the landmark rows of a full BFM (keypoints 0-based), re-centring the mean over ALL vertices first."""
    mean = np.asarray(meanshape, dtype=np.float64).reshape(-1, 3)
    mean = mean - mean.mean(axis=0, keepdims=True)  # ParametricFaceModel(recenter=True)
    kp = np.asarray(keypoints, dtype=np.int64).reshape(-1)
    rows = (3 * kp[:, None] + np.arange(3)[None, :]).reshape(-1)
    return BFMLandmarks(mean[kp], np.asarray(id_base)[rows], np.asarray(exp_base)[rows])


def load_bfm_mat(path: str | Path, limits: MatLimits | None = None) -> BFMLandmarks:
    """Read Deep3DFaceRecon's ``BFM_model_front.mat`` and keep only the 68 landmark vertices.

    The file is walked first (:func:`hififace.weights.matfile.check_mat_file`: MAT v5 only, every declared size
    and every compressed element bounded by ``limits``), then scipy reads the same open file."""
    import scipy.io

    path = Path(path)
    where = f"{BFM_MAT_NAME}, built by Deep3DFaceRecon_pytorch from BFM09 (registration at the University of Basel)"
    if not path.exists():
        raise WeightsError(f"{path}: file not found; expected {where}")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; pass the {BFM_MAT_NAME} file inside it")
    try:
        with open_regular(path, BFM_MAT_NAME, WeightsError) as f:
            check_mat_file(f, path, BFM_MAT_NAME, limits)
            f.seek(0)
            mat = scipy.io.loadmat(f, variable_names=list(BFM_ARRAYS))
    except WeightsError:
        raise
    except Exception as err:  # scipy raises ValueError, TypeError, OSError, MatReadError... on damaged files
        reason = printable((str(err).strip().splitlines() or [type(err).__name__])[0], 200)
        raise WeightsError(f"{path}: cannot read as a MATLAB .mat file ({reason}); expected {where}") from None
    missing = [k for k in BFM_ARRAYS if k not in mat]
    if missing:
        raise WeightsError(f"{path}: missing array(s) {', '.join(missing)}; not a {BFM_MAT_NAME} (expected {where})")
    wrong = [f"{k} is {_kind(mat[k])}" for k in BFM_ARRAYS
             if not (isinstance(mat[k], np.ndarray) and mat[k].dtype.kind in "fiub")]
    if wrong:
        raise WeightsError(f"{path}: {'; '.join(wrong)}, expected real numbers; not a {BFM_MAT_NAME} "
                           f"(expected {where})")
    mean, id_base, exp_base = mat["meanshape"], mat["idBase"], mat["exBase"]
    keypoints = np.asarray(mat["keypoints"], dtype=np.float64).reshape(-1)
    n3 = mean.size
    problems = []
    if n3 == 0 or n3 % 3:
        problems.append(f"meanshape has {n3} values (not 3 per vertex)")
    if id_base.ndim != 2 or id_base.shape[0] != n3 or id_base.shape[1] < N_ID:
        problems.append(f"idBase is {id_base.shape}, expected ({n3}, {N_ID})")
    if exp_base.ndim != 2 or exp_base.shape[0] != n3 or exp_base.shape[1] < N_EXP:
        problems.append(f"exBase is {exp_base.shape}, expected ({n3}, {N_EXP})")
    if keypoints.size != N_LANDMARKS:
        problems.append(f"keypoints has {keypoints.size} entries, expected {N_LANDMARKS}")
    elif n3 and not (np.isfinite(keypoints).all() and (keypoints == np.round(keypoints)).all()
                     and keypoints.min() >= 1 and keypoints.max() <= n3 // 3):
        problems.append(f"keypoints outside 1..{n3 // 3} or not whole numbers (they are 1-based vertex indices)")
    if problems:
        raise WeightsError(f"{path}: inconsistent face model ({'; '.join(problems)}); expected {where}")
    arrays = (mean, id_base[:, :N_ID], exp_base[:, :N_EXP])
    if not all(np.isfinite(a).all() for a in arrays):
        raise WeightsError(f"{path}: non-finite values (NaN/inf) in the face model; the file is damaged")
    log.info("BFM %s: %d vertices, keeping the %d landmark vertices", path, n3 // 3, N_LANDMARKS)
    return reduce_bfm(mean, id_base[:, :N_ID], exp_base[:, :N_EXP], keypoints.astype(np.int64) - 1)


def _kind(value) -> str:
    """What scipy made of a variable, in a few words (for a message)."""
    if not isinstance(value, np.ndarray):
        return type(value).__name__
    kinds = {"c": "complex", "U": "text", "S": "text", "O": "a cell array", "V": "a struct", "b": "logical"}
    return kinds.get(value.dtype.kind, str(value.dtype))

