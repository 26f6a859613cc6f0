"""Developer script: rebuild the demo's 256 x 256 aligned face crops from the public-domain / CC0 photos.

Run from the repository root with the three photos in a folder (see README.md here):
    python src/hififace/assets/samples/make_samples.py PHOTO_DIR
YuNet (src/hififace/assets/face_detection_yunet_2023mar.onnx) finds the 5 landmarks; a least-squares
similarity transform maps them onto insightface's ArcFace 112 template scaled to 256 (x 256/128 and shifted right
by 8 * 256/128, FORMATS.md section 6); the photo is warped with bilinear sampling and a black border.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
YUNET = HERE.parent / "face_detection_yunet_2023mar.onnx"
# insightface ArcFace template (112 x 112); order: image-left eye, image-right eye, nose tip, image-left and
# image-right mouth corners, the same image order as YuNet's landmark columns.
ARCFACE_112 = np.array([(38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655),
                        (70.7299, 92.2041)], dtype=np.float64)
SIZE = 256
TEMPLATE = ARCFACE_112 * (SIZE / 128) + np.array([8 * SIZE / 128, 0.0])
PHOTOS = {"astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg", "cameraman": "cameraman.png"}


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 least-squares similarity (rotation, uniform scale, translation) taking ``src`` points to ``dst``."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / s.var(0).sum()
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def main(photo_dir: str) -> None:
    import cv2

    det = cv2.FaceDetectorYN.create(str(YUNET), "", (320, 320), 0.6, 0.3, 5000)
    for name, file in PHOTOS.items():
        img = cv2.imread(str(Path(photo_dir) / file), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        det.setInputSize((w, h))
        _, faces = det.detect(img)
        face = faces[np.argmax(faces[:, -1])]
        landmarks = face[4:14].reshape(5, 2).astype(np.float64)
        m = similarity(landmarks, TEMPLATE)
        crop = cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cv2.imwrite(str(HERE / f"{name}.png"), crop)
        print(name, "score", round(float(face[-1]), 3))


if __name__ == "__main__":
    main(sys.argv[1])
