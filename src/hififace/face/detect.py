"""Face detection behind one small interface: ``get_detector(name).detect(rgb) -> list[Face]``.

Backends: ``yunet`` (default; OpenCV's ``cv2.FaceDetectorYN`` with the model vendored in ``hififace/assets``, works
offline right after install) and ``scrfd`` / ``retinaface`` (insightface ONNX files users bring, run with
onnxruntime). Every backend returns faces sorted left to right, each with a box ``(x1, y1, x2, y2)`` in pixels, a
score in [0, 1] and 5 landmarks in this order (image left/right, i.e. the subject's right eye comes first):

    0 eye_left, 1 eye_right, 2 nose, 3 mouth_left, 4 mouth_right

which is also the order of the ArcFace template (``align.ARCFACE_112``). Coordinates use the pixel-centre
convention: pixel (i, j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5].
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ConfigError, MissingDependencyError, WeightsError
from ..media.images import to_rgb_uint8
from ..utils.optional import require

log = logging.getLogger(__name__)

LANDMARK_NAMES_5 = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")
#: Index permutation that maps the 5 landmarks of a face to those of its horizontal mirror image.
MIRROR_5 = (1, 0, 2, 4, 3)


@dataclass
class Face:
    """One detected face. ``landmarks`` is 5 x 2 (order in :data:`LANDMARK_NAMES_5`); ``landmarks68`` 68 x 2 or None."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray
    landmarks68: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """Face size used by the filters: the shorter box side, in pixels."""
        return min(self.width, self.height)

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks5": np.round(self.landmarks.astype(np.float64), 2).tolist(),
        }
        if self.landmarks68 is not None:
            out["landmarks68"] = np.round(self.landmarks68.astype(np.float64), 2).tolist()
        return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes ``a`` (N x 4) and ``b`` (M x 4) in x1, y1, x2, y2."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def sort_left_to_right(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: (float(f.center[0]), float(f.center[1])))


class FaceDetector:
    """Base class: subclasses implement :meth:`_detect_bgr` on an image at the scale they chose."""

    name = "base"

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3):
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB image (H x W x 3 uint8; grey and RGBA accepted), sorted left to right."""
        raise NotImplementedError

    __call__ = detect


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _faces_from_rows(rows: np.ndarray, sx: float, sy: float) -> list[Face]:
    """Rows of x1, y1, x2, y2, 5 x (x, y), score in a resized frame -> faces in the original frame."""
    faces = []
    for r in rows:
        # pixel-centre convention: x_orig = (x + 0.5) / s - 0.5
        box = np.array([(r[0] + 0.5) / sx - 0.5, (r[1] + 0.5) / sy - 0.5, (r[2] + 0.5) / sx - 0.5, (r[3] + 0.5) / sy - 0.5])
        pts = r[4:14].reshape(5, 2).astype(np.float64)
        pts = np.stack([(pts[:, 0] + 0.5) / sx - 0.5, (pts[:, 1] + 0.5) / sy - 0.5], axis=1)
        faces.append(Face(box=box.astype(np.float32), score=float(r[14]), landmarks=pts.astype(np.float32)))
    return faces


class MultiScaleDetector(FaceDetector):
    """Detect on a copy at most ``max_side`` px, and again smaller when faces come out larger than the backend likes.

    YuNet's scores drop for faces wider than about 300 px, so a face found wider than ``big_face`` px (in the
    detection frame) triggers a second pass at the scale that makes it ``target_face`` px wide; when nothing is found
    at all, one pass at 40 % is tried (a face filling a large photo).
    """

    big_face = 224.0
    target_face = 160.0

    def __init__(self, score_threshold: float = 0.6, nms_threshold: float = 0.3, max_side: int = 640):
        super().__init__(score_threshold, nms_threshold)
        self.max_side = int(max_side)

    def _run(self, bgr: np.ndarray) -> np.ndarray:
        """N x 15 rows (x1, y1, x2, y2, 10 landmark coordinates, score) for one BGR image."""
        raise NotImplementedError

    def _pass(self, bgr: np.ndarray, scale: float) -> list[Face]:
        small = _resize(bgr, scale)
        h, w = bgr.shape[:2]
        sh, sw = small.shape[:2]
        if min(sh, sw) < 16:
            return []
        rows = self._run(small)
        return _faces_from_rows(rows, sw / w, sh / h)

    def detect(self, image: np.ndarray) -> list[Face]:
        rgb = to_rgb_uint8(image)
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        h, w = bgr.shape[:2]
        s0 = min(1.0, self.max_side / max(h, w))
        faces = self._pass(bgr, s0)
        if faces:
            widest = max(f.width for f in faces) * s0
            if widest > self.big_face:
                s1 = s0 * self.target_face / widest
                second = self._pass(bgr, s1)
                if second:
                    # faces too small to be seen at the second scale survive from the first pass
                    keep = [f for f in faces if not len(second) or box_iou(f.box, np.stack([g.box for g in second])).max() < 0.3]
                    faces = second + keep
        elif min(h, w) * s0 * 0.4 >= 32:
            faces = self._pass(bgr, s0 * 0.4)
        return sort_left_to_right(faces)


def default_yunet_path() -> Path:
    return Path(str(resources.files("hififace") / "assets" / "face_detection_yunet_2023mar.onnx"))


@contextlib.contextmanager
def quiet_opencv(cv2: Any) -> Iterator[None]:
    """OpenCV's native log at ERROR for the block (its warnings go straight to stderr, past Python's logging)."""
    cvlog = getattr(getattr(cv2, "utils", None), "logging", None)
    if cvlog is None or logging.getLogger("hififace").isEnabledFor(logging.DEBUG):  # -v shows them
        yield
        return
    old = cvlog.getLogLevel()
    cvlog.setLogLevel(cvlog.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cvlog.setLogLevel(old)


class YuNetDetector(MultiScaleDetector):
    """OpenCV YuNet (``cv2.FaceDetectorYN``), model ``face_detection_yunet_2023mar.onnx`` (Apache-2.0, vendored)."""

    name = "yunet"

    def __init__(self, model_path: str | Path | None = None, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 5000, max_side: int = 640):
        super().__init__(score_threshold, nms_threshold, max_side)
        cv2 = require("cv2", "the YuNet face detector")
        self.model_path = Path(model_path) if model_path else default_yunet_path()
        if not self.model_path.is_file():
            raise WeightsError(f"{self.model_path}: YuNet model not found; reinstall hififace or pass the .onnx file")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise MissingDependencyError("opencv-python-headless>=4.8", "face", "the YuNet face detector")
        try:
            with quiet_opencv(cv2):  # OpenCV 5 warns "setPreferableTarget ... not supported" on every create
                self._net = cv2.FaceDetectorYN.create(str(self.model_path), "", (320, 320), self.score_threshold,
                                                      self.nms_threshold, int(top_k))
        except cv2.error as err:
            raise WeightsError(f"{self.model_path}: OpenCV cannot load this YuNet model ({str(err).strip()[:120]})") from None

    def _run(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        self._net.setInputSize((w, h))
        _, rows = self._net.detect(bgr)
        if rows is None or len(rows) == 0:
            return np.zeros((0, 15), np.float32)
        rows = np.asarray(rows, dtype=np.float64).copy()
        # YuNet rows: x, y, w, h, 5 landmarks, score -> x1, y1, x2, y2
        rows[:, 2] += rows[:, 0]
        rows[:, 3] += rows[:, 1]
        return rows[:, :15]


# ---------------------------------------------------------------- insightface SCRFD / RetinaFace ONNX

def _anchor_centers(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    ys, xs = np.mgrid[:height, :width]
    centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centers, num_anchors, axis=0) if num_anchors > 1 else centers


def decode_scrfd(outputs: list[np.ndarray], input_hw: tuple[int, int], score_threshold: float = 0.5,
                 nms_threshold: float = 0.4) -> np.ndarray:
    """Decode insightface SCRFD/RetinaFace outputs into N x 15 rows in the network frame (the decoding contract:
    docs/formats.md#scrfd-and-retinaface-detectors).

    Outputs come grouped by kind: all score maps, then all box maps, then (when present) all keypoint maps. 9 or 6
    outputs mean strides 8/16/32 with 2 anchors per location, 15 or 10 mean strides 8..128 with 1 anchor.
    """
    n = len(outputs)
    if n in (6, 9):
        strides, num_anchors = (8, 16, 32), 2
    elif n in (10, 15):
        strides, num_anchors = (8, 16, 32, 64, 128), 1
    else:
        raise WeightsError(f"detector ONNX with {n} outputs: expected 6, 9, 10 or 15 (SCRFD/RetinaFace layout)")
    k = len(strides)
    has_kps = n == 3 * k
    outs = [np.asarray(o) for o in outputs]
    outs = [o[0] if o.ndim == 3 else o for o in outs]  # batched exports carry a leading batch axis
    ih, iw = input_hw
    rows = []
    for i, stride in enumerate(strides):
        scores = outs[i].reshape(-1)
        boxes = outs[k + i].reshape(-1, 4) * stride
        centers = _anchor_centers(ih // stride, iw // stride, stride, num_anchors)
        if centers.shape[0] != scores.shape[0]:
            raise WeightsError(f"detector output for stride {stride} has {scores.shape[0]} anchors, expected "
                               f"{centers.shape[0]} for a {iw}x{ih} input")
        sel = np.nonzero(scores >= score_threshold)[0]
        if sel.size == 0:
            continue
        c = centers[sel]
        b = boxes[sel]
        xyxy = np.concatenate([c - b[:, :2], c + b[:, 2:]], axis=1)
        if has_kps:
            kps = outs[2 * k + i].reshape(-1, 10)[sel] * stride
            kps = kps.reshape(-1, 5, 2) + c[:, None, :]
        else:  # no keypoints: place them at the box's fixed proportions so alignment still has something
            kps = _kps_from_boxes(xyxy)
        rows.append(np.concatenate([xyxy, kps.reshape(-1, 10), scores[sel, None]], axis=1))
    if not rows:
        return np.zeros((0, 15), np.float32)
    allrows = np.concatenate(rows, axis=0).astype(np.float64)
    keep = nms(allrows[:, :4], allrows[:, 14], nms_threshold)
    return allrows[keep]


def _kps_from_boxes(xyxy: np.ndarray) -> np.ndarray:
    # relative positions of the ArcFace template inside a typical detector box (rough; only for kps-less models)
    rel = np.array([[0.31, 0.40], [0.69, 0.40], [0.50, 0.58], [0.35, 0.76], [0.65, 0.76]])
    w = (xyxy[:, 2] - xyxy[:, 0])[:, None]
    h = (xyxy[:, 3] - xyxy[:, 1])[:, None]
    return np.stack([xyxy[:, None, 0] + rel[None, :, 0] * w, xyxy[:, None, 1] + rel[None, :, 1] * h], axis=-1)


class SCRFDDetector(MultiScaleDetector):
    """insightface SCRFD (``scrfd_*_bnkps.onnx``, ``det_10g.onnx``) or RetinaFace ONNX run with onnxruntime.

    Letterbox into the network input (640 x 640 unless the file fixes another size), RGB, (x - 127.5) / 128.
    Licence: insightface's pretrained models are for non-commercial research use (their README).
    """

    name = "scrfd"
    big_face = 10_000.0  # SCRFD handles large faces; no second pass

    def __init__(self, model_path: str | Path, score_threshold: float = 0.5, nms_threshold: float = 0.4,
                 input_size: int = 640, providers: list[str] | None = None):
        super().__init__(score_threshold, nms_threshold, max_side=100_000)
        ort = require("onnxruntime", f"the {self.name} detector")
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise WeightsError(f"{self.model_path}: detector file not found; pass the insightface .onnx file "
                               f"(e.g. scrfd_10g_bnkps.onnx or det_10g.onnx)")
        try:
            self._sess = ort.InferenceSession(str(self.model_path), providers=providers or ["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise WeightsError(f"{self.model_path}: onnxruntime cannot load it ({str(err).strip()[:120]})") from None
        inp = self._sess.get_inputs()[0]
        self._input_name = inp.name
        shape = list(inp.shape)
        fixed = len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int)
        self.input_hw = (int(shape[2]), int(shape[3])) if fixed else (int(input_size), int(input_size))

    def _run(self, bgr: np.ndarray) -> np.ndarray:
        import cv2

        ih, iw = self.input_hw
        h, w = bgr.shape[:2]
        scale = min(ih / h, iw / w)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        canvas = np.zeros((ih, iw, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        blob = (canvas[:, :, ::-1].astype(np.float32) - 127.5) / 128.0
        blob = np.ascontiguousarray(blob.transpose(2, 0, 1)[None])
        outputs = self._sess.run(None, {self._input_name: blob})
        rows = decode_scrfd(outputs, (ih, iw), self.score_threshold, self.nms_threshold)
        rows[:, :14] /= scale
        return rows


class RetinaFaceDetector(SCRFDDetector):
    """insightface RetinaFace ONNX: same decoding contract as SCRFD."""

    name = "retinaface"


_DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "yunet": YuNetDetector,
    "scrfd": SCRFDDetector,
    "retinaface": RetinaFaceDetector,
}


def available_detectors() -> list[str]:
    return sorted(_DETECTORS)


def get_detector(name: str = "yunet", **kwargs: Any) -> FaceDetector:
    """Build a detector by name. ``yunet`` needs nothing; ``scrfd``/``retinaface`` need ``model_path=``."""
    key = name.lower()
    if key not in _DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(available_detectors())}")
    if key in ("scrfd", "retinaface") and not kwargs.get("model_path"):
        raise ConfigError(f"the {key} detector needs its insightface .onnx file: pass model_path= (or --detector-model)")
    return _DETECTORS[key](**kwargs)
