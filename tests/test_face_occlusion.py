"""Occlusion: with a parsing network, whatever it does not label face (a hand, a cup, a microphone) keeps the
target's pixels; the landmark fallback cannot see it. Today's paste mask already does this (face_mask of the
parser's labels, then soft_mask): these tests pin it, on the mask and through the photo pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from face_helpers import photo
from hififace.face.blend import soft_mask
from hififace.face.palette import CLASSES, FACE_CLASSES, face_mask
from hififace.face.parse import FaceParser, LandmarkParser
from inferkit import FakeEngine

cv2 = pytest.importorskip("cv2")

GREEN = (0, 255, 0)  # the occluder's colour: nothing in the test photo is this green


def _erode(region: np.ndarray, r: int) -> np.ndarray:
    return cv2.erode(region.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def _green(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb).astype(np.int16)
    return (a[..., 1] > 200) & (a[..., 0] < 60) & (a[..., 2] < 60)


class GreenIsNotFace(FaceParser):
    """A stand-in parsing network: the landmark parser's face, except pure green pixels, labelled ``background``
    (what BiSeNet does with a hand or a cup it does not take for skin)."""

    name = "stub"
    reads_pixels = True

    def parse(self, crops, landmarks=None):
        labels = LandmarkParser().parse(crops, landmarks)
        labels[_green(crops)] = CLASSES.index("background")
        return labels


@pytest.mark.parametrize("label", ["background", "hair", "hat", "eye_g", "neck", "cloth"])
def test_labels_that_are_not_face_get_no_alpha_beyond_the_feathered_edge(label):
    """The paste alpha of a crop (soft_mask of face_mask, as FaceSwapper.blend_faces builds it) over an occluder the
    parser labels as anything but face: at most the feathered edge's tail (under 4 % along a straight edge, under
    7 % at a corner, where the face surrounds it on three sides), and exactly 0 from 8 pixels in (erosion by a disk
    of 0.03 x 256 = 8 px, a Gaussian of 0.05 x 256 = 13 px reach in x and y: 6 px in along a straight edge)."""
    size = 256
    labels = np.zeros((size, size), np.uint8)
    cv2.ellipse(labels, (128, 128), (80, 105), 0, 0, 360, CLASSES.index("skin"), -1)
    occluder = np.zeros((size, size), bool)
    occluder[150:230, 60:130] = True  # a hand over the chin and mouth corner
    labels[occluder & (labels > 0)] = CLASSES.index(label)
    assert CLASSES.index(label) not in FACE_CLASSES
    alpha = soft_mask(size, face_mask(labels).astype(np.float32), 0.03, 0.05)
    inside = occluder & (np.arange(size)[:, None] < 225)  # the part of the hand over the face's ellipse
    assert alpha[inside].max() < 0.07
    straight = np.zeros_like(occluder)
    straight[150:190, 80:110] = True  # under the top edge, 20 px from its corners
    assert alpha[straight].max() < 0.04
    assert alpha[_erode(occluder, 8)].max() == 0.0
    assert alpha[straight & _erode(occluder, 5)].max() == 0.0
    assert alpha[100:130, 140:180].min() > 0.9  # the rest of the face is pasted


def _occluded_photo():
    """Astronaut with a green block (a microphone) over her mouth's image-left half; its box in the photo."""
    from hififace.inference.pipeline import FaceSwapper

    rgb = cv2.resize(photo("astronaut.png"), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)  # a larger face
    lm = FaceSwapper(FakeEngine(), parsing="landmarks").detect(rgb)[0].landmarks
    eyes = float(np.linalg.norm(lm[1] - lm[0]))
    x0, x1 = int(lm[3][0] - 0.3 * eyes), int(lm[2][0])
    y0, y1 = int(lm[2][1] + 0.1 * eyes), int(lm[3][1] + 0.7 * eyes)
    rgb[y0:y1, x0:x1] = GREEN
    box = np.zeros(rgb.shape[:2], bool)
    box[y0:y1, x0:x1] = True
    return rgb, box


def test_the_photo_pipeline_keeps_the_targets_pixels_over_an_occluder_a_parser_sees():
    from hififace.face.align import matrix_scale
    from hififace.inference.pipeline import FaceSwapper

    rgb, box = _occluded_photo()
    engine = FakeEngine()  # inverts colours and pastes with a full mask: every pasted pixel shows
    swapper = FaceSwapper(engine, parsing="landmarks", align_passes=0)
    ident = swapper.identity(photo("grace_hopper.jpg"))
    swapper._parser = GreenIsNotFace()  # the parser a FaceSwapper(parsing="bisenet") would hold
    seen = swapper.swap(ident, rgb)
    blind = FaceSwapper(engine, parsing="landmarks", align_passes=0).swap(ident, rgb)
    assert seen.swapped == [0] and blind.swapped == [0]
    diff_seen = np.abs(seen.image.astype(int) - rgb.astype(int)).max(axis=2)
    diff_blind = np.abs(blind.image.astype(int) - rgb.astype(int)).max(axis=2)
    # the face around the occluder is swapped by both
    face = LandmarkParser().parse(rgb, seen.faces[0].landmarks) > 0
    assert (diff_seen[face & ~box] > 0).mean() > 0.7
    # over the occluder: the feathered edge's tail at most (FakeEngine's change is 255 per channel), none inside
    margin = int(np.ceil(9 / matrix_scale(seen.matrices[0]))) + 1
    assert diff_seen[box & face].max() <= 0.07 * 255 + 1
    assert diff_seen[_erode(box, margin)].max() == 0
    # the landmark fallback cannot see it: the occluder is swapped over like skin
    deep = _erode(box, margin) & _erode(face, 2 * margin)  # past the paste mask's own erosion and feathering
    assert deep.sum() > 300 and (diff_blind[deep] > 128).mean() > 0.9
