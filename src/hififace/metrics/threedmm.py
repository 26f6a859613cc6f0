"""Pose, expression and shape errors from Deep3DFaceRecon 3DMM coefficients (ReconNet, 257 per face).

Coefficient layout (Deep3DFaceRecon ``split_coeff``): id 80 | exp 64 | tex 80 | angles 3 | gamma 27 | trans 3.
Each face is cropped with Deep3DFaceRecon's own 224 alignment from its 5 landmarks (as its ``align_img``) before
ReconNet, whatever the size and alignment of the image it comes from.

- ``pose_error``: L2 distance of the (pitch, yaw, roll) angles of result and target, in degrees (ReconNet gives
  radians). The paper measured pose with a separate head-pose estimator; this is the same quantity from the 3DMM
  fit, so values are comparable between methods scored here, not to the paper's table.
- ``expression_error``: L2 distance of the 64 expression coefficients of result and target.
- ``shape_error``: L2 distance of the 80 identity (shape) coefficients of result and source.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..config import HifiFaceConfig
from ..face.landmarks import deep3d_crop
from ..models.frozen.recon import ReconNet
from ..models.hififace import CONFIG_FILE, RECON_FILE, assign_state
from ..weights.io import load_safetensors
from .cache import file_fingerprint
from .nets import FrozenNet

log = logging.getLogger(__name__)

#: Coefficients the errors compare (the 257 layout: docs/formats.md#reconnet-and-the-3dmm).
ID = slice(0, 80)
EXP = slice(80, 144)
ANGLES = slice(224, 227)
N_COEFFS = 257


class ReconCoefficients(FrozenNet):
    """A frozen ReconNet on the Deep3DFaceRecon crops of faces given by their 5 landmarks; ``from_file`` takes
    ``epoch_20.pth`` (or a full-width ReconNet state_dict / ``recon3d.safetensors``)."""

    kind = "recon"
    loader = ".converters.deep3d:load_recon"
    label = "Deep3DFaceRecon ReconNet ({file})"

    @classmethod
    def from_model_dir(cls, folder: str | Path, device: str | torch.device = "cpu") -> "ReconCoefficients":
        """The ReconNet of a hififace model folder (``recon3d.safetensors``, at the width its config.json says)."""
        folder = Path(folder)
        config = HifiFaceConfig.load(folder / CONFIG_FILE)
        file = folder / RECON_FILE
        with torch.device("meta"):
            net = ReconNet(width=config.frozen_width)
        assign_state(net, load_safetensors(file, "ReconNet (3DMM) weights"), file)
        return cls(net, f"Deep3DFaceRecon ReconNet ({folder.name}/{RECON_FILE})", f"recon-{file_fingerprint(file)}", device)

    @torch.no_grad()
    def coefficients(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """N x 257 float64 coefficients."""
        if not images:
            return np.zeros((0, N_COEFFS))
        crops = np.stack([deep3d_crop(img, lm)[0] for img, lm in zip(images, landmarks)])
        x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255.0).to(self.device)
        return self.net(x).double().cpu().numpy()


def _l2(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)


def pose_error(result: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Degrees between the head-pose angles of result and target coefficients (rows of 257)."""
    return _l2(result[..., ANGLES], target[..., ANGLES]) * (180.0 / math.pi)


def expression_error(result: np.ndarray, target: np.ndarray) -> np.ndarray:
    return _l2(result[..., EXP], target[..., EXP])


def shape_error(result: np.ndarray, source: np.ndarray) -> np.ndarray:
    return _l2(result[..., ID], source[..., ID])
