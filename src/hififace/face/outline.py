"""A pose-aware face outline from the detector's 5 points: the landmark parser's fallback when no 68 points exist.

A small 3D model of the face outline (jaw line and brows, written for this project, see below) is posed by fitting
its 5 key points to the 5 detected ones and projected into the image. For a frontal face the outline is close to
an ellipse around brows and chin; for a face turned to the side the far half of the jaw goes behind the nose and
the near cheek widens, so the outline stops at the profile line instead of spilling onto the background in front of
the face, and reaches the cheek towards the ear.

The pose is a scaled orthographic camera fitted by least squares (the 2 x 4 affine projection of the 5 model points
onto the 5 detected points, its two rows then made the nearest pair of orthonormal rows): head yaw, pitch and roll
as far as 5 points show them (yaw mostly from where the nose tip sits between the eyes and the mouth corners).

What it cannot do: it is one average face, not the person's. Hair, ears, beards, glasses, hands or objects in front
of the face are not seen; a face turned beyond about 70 degrees, where the detector's 5 points are mostly guesses,
gets an outline as unreliable as those points. A face-parsing network (``--parsing bisenet``) sees all of these.

The model: 17 jaw points (from the ear on the image's left, round the chin, to the other ear, as the iBUG-68 jaw)
and 10 brow points, in units of about 10 cm, x to the image's right, y up, z towards the camera, the origin between
the eyes and the face plane. The numbers were written for this project from average adult proportions (eye centres
6.3 cm apart; face 13-14 cm wide at the cheekbones and about 10 cm at the jaw angles; chin about 4.5 cm below the
mouth; the jaw line near the ears 3-4 cm behind the eyes and the chin 1-2 cm in front of them; brows 2-2.5 cm above
the eyes), then scaled as a whole so that frontal faces get nearly the ellipse this fallback drew before (mask IoU
0.92 on the ArcFace template). They come from no scanned head model or landmark data set (no BFM, no iBUG 300-W).
"""
from __future__ import annotations

import numpy as np

#: The 5 key points (eye centres, nose tip, mouth corners; the detector's order) in the outline model's frame.
KEYPOINTS_3D = np.array([[-0.315, 0.29, 0.13], [0.315, 0.29, 0.13], [0.0, -0.05, 0.55], [-0.25, -0.38, 0.22],
                         [0.25, -0.38, 0.22]], dtype=np.float64)
_JAW_HALF = np.array([[-0.69, 0.19, -0.32], [-0.68, 0.03, -0.30], [-0.66, -0.14, -0.26], [-0.62, -0.29, -0.20],
                      [-0.56, -0.44, -0.12], [-0.46, -0.57, -0.02], [-0.35, -0.69, 0.08], [-0.19, -0.78, 0.17],
                      [0.0, -0.81, 0.21]])
_BROW_HALF = np.array([[-0.56, 0.45, 0.00], [-0.45, 0.53, 0.12], [-0.33, 0.56, 0.20], [-0.21, 0.55, 0.25],
                       [-0.09, 0.52, 0.28]])
#: Jaw line, 17 points, image-left ear -> chin -> image-right ear (the iBUG-68 jaw order).
JAW_3D = np.concatenate([_JAW_HALF, _JAW_HALF[-2::-1] * [-1.0, 1.0, 1.0]])
#: Brows, 10 points, outer left -> inner left, inner right -> outer right (the iBUG-68 brow order).
BROWS_3D = np.concatenate([_BROW_HALF, _BROW_HALF[::-1] * [-1.0, 1.0, 1.0]])
#: How far the brows are lifted (up, and back with the forehead's slope) so that the forehead counts as face.
BROW_LIFT = np.array([0.0, 0.26, -0.08])
#: The mouth region of the 5-point ``--keep-mouth`` fallback (:mod:`hififace.face.mouth`), 12 points round the mouth:
#: the image-left corner (the corner of KEYPOINTS_3D), over the upper lip to the other corner, back under the lower
#: lip. The top edge is 8 mm above the corners at the middle (the top of the upper lip), the bottom edge 22 mm below
#: them (the lower lip of a mouth open about 1 cm); the lips stand up to 1.2 cm in front of the corners. Written
#: for this project from the same average proportions as the outline (no landmark data set).
_MOUTH_TOP_HALF = np.array([[-0.25, -0.38, 0.22], [-0.17, -0.32, 0.29], [-0.08, -0.30, 0.33]])
_MOUTH_BOTTOM_HALF = np.array([[0.18, -0.49, 0.27], [0.09, -0.57, 0.30]])
MOUTH_3D = np.concatenate([_MOUTH_TOP_HALF, [[0.0, -0.30, 0.34]], _MOUTH_TOP_HALF[::-1] * [-1.0, 1.0, 1.0],
                           _MOUTH_BOTTOM_HALF, [[0.0, -0.60, 0.31]], _MOUTH_BOTTOM_HALF[::-1] * [-1.0, 1.0, 1.0]])


def fit_pose(landmarks5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled orthographic camera of 5 image points (x right, y down): ``(P, t)`` with ``image = X @ P.T + t`` for
    model points X (N x 3); P is 2 x 3 (scale times two orthonormal rows, y flipped to the image's down)."""
    pts = np.asarray(landmarks5, dtype=np.float64).reshape(5, 2)
    up = pts * [1.0, -1.0]  # the model's y points up
    x = KEYPOINTS_3D
    a = np.zeros((10, 8))
    a[0::2, 0:3], a[0::2, 3] = x, 1.0
    a[1::2, 4:7], a[1::2, 7] = x, 1.0
    k, *_ = np.linalg.lstsq(a, up.reshape(-1), rcond=None)
    r1, r2 = k[0:3], k[4:7]
    n1, n2 = float(np.linalg.norm(r1)), float(np.linalg.norm(r2))
    if not (np.isfinite(k).all() and n1 > 1e-9 and n2 > 1e-9):  # degenerate points: an upright frontal face
        spread = float(np.linalg.norm(up - up.mean(0), axis=1).mean())
        scale = spread / float(np.linalg.norm(x[:, :2] - x[:, :2].mean(0), axis=1).mean())
        rot = np.eye(3)
    else:
        scale = (n1 + n2) / 2.0
        rows = np.stack([r1 / n1, r2 / n2, np.cross(r1 / n1, r2 / n2)])
        u, _, vt = np.linalg.svd(rows)  # the nearest rotation
        rot = u @ vt
    p = scale * rot[:2] * np.array([[1.0], [-1.0]])
    t = pts.mean(0) - (x @ p.T).mean(0)
    return p, t


def outline_points(landmarks5: np.ndarray) -> np.ndarray:
    """27 x 2 image points of the posed outline: the jaw (17) and the brows lifted onto the forehead (10)."""
    p, t = fit_pose(landmarks5)
    return np.concatenate([JAW_3D, BROWS_3D + BROW_LIFT]) @ p.T + t


def mouth_points(landmarks5: np.ndarray) -> np.ndarray:
    """12 x 2 image points of :data:`MOUTH_3D` posed on the 5 points as the outline is (lips and the interior of a
    mouth open about 1 cm; the 5 points do not say how far the mouth is open)."""
    p, t = fit_pose(landmarks5)
    return MOUTH_3D @ p.T + t


def face_unit(landmarks5: np.ndarray) -> float:
    """Pixels per model unit (about 10 cm of face, 1.5 x the eye-to-mouth distance) of the pose fitted on the 5
    points: the size that masks drawn relative to the face scale with (turning the head does not shrink it)."""
    p, _ = fit_pose(landmarks5)
    return float(np.linalg.norm(p[0]))
