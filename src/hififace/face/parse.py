"""Face parsing behind one interface: ``get_parser(name).parse(crops, landmarks) -> labels`` (PSFRGAN classes).

Backends:

- ``bisenet``: face-parsing.PyTorch BiSeNet, ``79999_iter.pth`` (MIT code; trained on CelebAMask-HQ);
- ``psfrgan``: PSFRGAN's ParseNet, ``parse_multi_iter_90000.pth`` (CC BY-NC-SA 4.0) — the parser whose colour PNGs
  the reference trained on;
- ``landmarks``: offline fallback with no weights: the face region from landmarks (the 68-point hull with eyes, brows,
  nose and lips painted in, else the hull of a face outline posed on the 5 points, see :mod:`hififace.face.outline`),
  labelled skin;
- ``auto``: bisenet, then psfrgan when their files are in $HIFIFACE_HOME or ~/.cache/hififace, else landmarks.

Labels are always in PSFRGAN / CelebAMask-HQ order (:data:`hififace.face.palette.CLASSES`).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, WeightsError
from ..weights import resolve  # resolve.search_roots() at call time: one place to point at other folders
from .outline import outline_points
from .palette import BISENET_TO_PSFRGAN, CLASSES

log = logging.getLogger(__name__)

BISENET_FILE = "79999_iter.pth"
PSFRGAN_FILE = "parse_multi_iter_90000.pth"
PARSERS = ("auto", "bisenet", "psfrgan", "landmarks")

class FaceParser:
    """Parses aligned crops. ``landmarks`` (N x K x 2, crop frame) are needed by the fallback only."""

    name = "base"
    #: Whether the labels come from the pixels (a network: it sees occluders, the mouth's opening, hair) or are
    #: drawn from the landmarks (the fallback: a fixed face-shaped region, everything inside it labelled face).
    reads_pixels = False

    def parse(self, crops: np.ndarray | Sequence[np.ndarray], landmarks: np.ndarray | Sequence[np.ndarray] | None = None) -> np.ndarray:
        """N x H x W x 3 uint8 RGB crops (or one H x W x 3) -> N x H x W (or H x W) uint8 labels."""
        raise NotImplementedError


def _stack(crops: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, bool]:
    if isinstance(crops, np.ndarray) and crops.ndim == 3:
        return crops[None], True
    return np.stack(list(crops)), False


class LandmarkParser(FaceParser):
    """Face-region labels from landmarks alone: no weights, a few milliseconds per crop."""

    name = "landmarks"

    def parse(self, crops, landmarks=None):
        arr, single = _stack(crops)
        if landmarks is None:
            raise ConfigError("the landmark fallback parser needs the landmarks of each crop")
        lms = [np.asarray(landmarks)] if single else list(landmarks)
        out = np.stack([landmark_labels(arr.shape[1:3], lm) for lm in lms])
        return out[0] if single else out


def landmark_labels(hw: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """H x W labels from 68 points (hull + parts) or 5 points (hull of the posed outline of
    :mod:`hififace.face.outline`: jaw and lifted brows), in the frame of the image they index."""
    import cv2

    h, w = int(hw[0]), int(hw[1])
    lab = np.zeros((h, w), dtype=np.uint8)
    lm = np.asarray(landmarks, dtype=np.float64)
    shift = 4  # draw with sub-pixel precision
    one = float(1 << shift)

    def poly(points: np.ndarray, label: int) -> None:
        cv2.fillPoly(lab, [np.round((points + 0.5) * one - 0.5 * one).astype(np.int32)], int(label), cv2.LINE_8, shift)

    if lm.shape[0] == 68:
        # face outline: jaw plus brows lifted by a fifth of the face height so the forehead counts as skin
        jaw, brows = lm[0:17], lm[17:27]
        lift = (lm[8] - lm[27:31].mean(0)) * 0.35
        hull = cv2.convexHull(np.concatenate([jaw, brows - lift]).astype(np.float32))[:, 0].astype(np.float64)
        poly(hull, CLASSES.index("skin"))
        thick = max(1, int(round(np.linalg.norm(lm[45] - lm[36]) * 0.06)))
        for idx, name in ((slice(17, 22), "l_brow"), (slice(22, 27), "r_brow")):
            pts = np.round(lm[idx] * one).astype(np.int32)
            cv2.polylines(lab, [pts], False, CLASSES.index(name), thick, cv2.LINE_8, shift)
        poly(lm[[27, 31, 32, 33, 34, 35]], CLASSES.index("nose"))
        poly(lm[36:42], CLASSES.index("l_eye"))
        poly(lm[42:48], CLASSES.index("r_eye"))
        poly(lm[48:60], CLASSES.index("u_lip"))
        poly(lm[[48, 59, 58, 57, 56, 55, 54, 64, 65, 66, 67, 60]], CLASSES.index("l_lip"))
        poly(lm[60:68], CLASSES.index("mouth"))
        return lab
    if lm.shape[0] != 5:
        raise ConfigError(f"the landmark fallback parser needs 5 or 68 points, got {lm.shape[0]}")

    # jaw and lifted brows of a 3D outline posed on the 5 points (the points themselves always inside)
    pts = np.concatenate([outline_points(lm), lm])
    poly(cv2.convexHull(pts.astype(np.float32))[:, 0].astype(np.float64), CLASSES.index("skin"))
    return lab


class _NetParser(FaceParser):
    """Runs a network at ``input_size`` (512, as both were trained) on crops of any size; labels in PSFRGAN order.
    Subclasses build their network (:meth:`_network`) and name its released file (``what``)."""

    reads_pixels = True
    what = ""

    def __init__(self, weights: str | Path, device: str = "cpu", batch_size: int = 8, input_size: int = 512):
        import torch

        from ..converters.parsers import load_parser_state  # torch: only when a neural parser is asked for

        net = self._network()
        load_parser_state(net, weights, self.what)
        self.weights = Path(weights)
        self.input_size = int(input_size)
        self.device = torch.device(device)
        self.net = net.to(self.device)
        self.batch_size = int(batch_size)

    def _network(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _prepare(self, x01):  # pragma: no cover - overridden
        raise NotImplementedError

    def _logits(self, x):  # pragma: no cover - overridden
        raise NotImplementedError

    def _to_project(self, labels: np.ndarray) -> np.ndarray:
        return labels

    def parse(self, crops, landmarks=None):
        import torch
        import torch.nn.functional as F

        arr, single = _stack(crops)
        h, w = arr.shape[1:3]
        out = []
        with torch.no_grad():
            for i in range(0, len(arr), self.batch_size):
                x = torch.from_numpy(np.ascontiguousarray(arr[i : i + self.batch_size])).permute(0, 3, 1, 2)
                x = x.to(self.device).float().div(255.0)
                x = F.interpolate(x, (self.input_size, self.input_size), mode="bilinear", align_corners=False)
                logits = self._logits(self._prepare(x))
                if (h, w) != (self.input_size, self.input_size):
                    logits = F.interpolate(logits, (h, w), mode="bilinear", align_corners=False)
                out.append(logits.argmax(1).to(torch.uint8).cpu().numpy())
        labels = self._to_project(np.concatenate(out))
        return labels[0] if single else labels


class BiSeNetParser(_NetParser):
    name = "bisenet"
    what = f"BiSeNet face parser ({BISENET_FILE})"

    def _network(self):
        from ..models.frozen.bisenet import BiSeNet

        return BiSeNet()

    def _prepare(self, x01):
        return self.net.normalize(x01)

    def _logits(self, x):
        return self.net(x)

    def _to_project(self, labels):
        return BISENET_TO_PSFRGAN[labels]


class PSFRGANParser(_NetParser):
    name = "psfrgan"
    what = f"PSFRGAN ParseNet ({PSFRGAN_FILE})"

    def __init__(self, weights: str | Path, device: str = "cpu", batch_size: int = 4, input_size: int = 512):
        super().__init__(weights, device, batch_size, input_size)

    def _network(self):
        from ..models.frozen.psfrgan import ParseNet

        return ParseNet()

    def _prepare(self, x01):
        return x01 * 2.0 - 1.0

    def _logits(self, x):
        return self.net(x)[0]


def find_parser_weights(name: str) -> Path | None:
    """The parser's file in $HIFIFACE_HOME or ~/.cache/hififace (also under ``face_parsing/``), or None."""
    fname = {"bisenet": BISENET_FILE, "psfrgan": PSFRGAN_FILE}[name]
    for root in resolve.search_roots():
        for cand in (root / fname, root / "face_parsing" / fname):
            if cand.is_file():
                return cand
    return None


def get_parser(name: str = "auto", weights: str | Path | None = None, **kwargs: Any) -> FaceParser:
    """A parser by name. ``bisenet``/``psfrgan`` need their file (``weights=`` or found in the model folders);
    ``auto`` never fails: it falls back to ``landmarks``."""
    key = name.lower()
    if key not in PARSERS:
        raise ConfigError(f"unknown face parser {name!r}; choose one of {', '.join(PARSERS)}")
    if key == "landmarks":
        return LandmarkParser()
    if key == "auto":
        if weights:  # a file the user named wins over anything found in the model folders
            return get_parser(_guess_kind(weights), weights, **kwargs)
        for cand in ("bisenet", "psfrgan"):
            found = find_parser_weights(cand)
            if found is not None:
                return get_parser(cand, found, **kwargs)
        return LandmarkParser()
    path = Path(weights) if weights else find_parser_weights(key)
    fname = BISENET_FILE if key == "bisenet" else PSFRGAN_FILE
    if path is None:
        raise WeightsError(f"{fname}: the {key} face parser's weights were not found; pass --parsing-weights FILE or put "
                           f"{fname} in $HIFIFACE_HOME (or use --parsing landmarks)")
    if not path.is_file():
        raise WeightsError(f"{path}: file not found ({key} face parser, {fname}); pass the right --parsing-weights FILE")
    cls = BiSeNetParser if key == "bisenet" else PSFRGANParser
    return cls(path, **kwargs)


def _guess_kind(weights: str | Path) -> str:
    return "psfrgan" if "parse" in Path(weights).name.lower() else "bisenet"
