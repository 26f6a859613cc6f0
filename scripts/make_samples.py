"""Developer script: rebuild the demo's 256 x 256 aligned face crops from the public-domain / CC0 photos.

Run from the repository root with the three photos in a folder (see README.md here):
    python scripts/make_samples.py PHOTO_DIR
YuNet (src/hififace/assets/face_detection_yunet_2023mar.onnx) finds the 5 landmarks; a least-squares
similarity transform maps them onto insightface's ArcFace 112 template scaled to 256 (x 256/128 and shifted right
by 8 * 256/128, docs/formats.md#alignment-templates); the photo is warped with bilinear sampling and a black border.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parents[1] / "src" / "hififace" / "assets" / "samples"
YUNET = HERE.parent / "face_detection_yunet_2023mar.onnx"
SIZE = 256
PHOTOS = {"astronaut": "astronaut.png", "grace_hopper": "grace_hopper.jpg", "cameraman": "cameraman.png"}


def main(photo_dir: str) -> None:
    import cv2

    from hififace.face.align import template_points, umeyama

    det = cv2.FaceDetectorYN.create(str(YUNET), "", (320, 320), 0.6, 0.3, 5000)
    for name, file in PHOTOS.items():
        img = cv2.imread(str(Path(photo_dir) / file), cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        det.setInputSize((w, h))
        _, faces = det.detect(img)
        face = faces[np.argmax(faces[:, -1])]
        landmarks = face[4:14].reshape(5, 2).astype(np.float64)
        m = umeyama(landmarks, template_points("arcface", SIZE))  # insightface template x 256/128, shifted 16 px
        crop = cv2.warpAffine(img, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        cv2.imwrite(str(HERE / f"{name}.png"), crop)
        print(name, "score", round(float(face[-1]), 3))  # a developer script: plain output is fine here


if __name__ == "__main__":
    main(sys.argv[1])
