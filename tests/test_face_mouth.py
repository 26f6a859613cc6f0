"""The target's mouth region for --keep-mouth (hififace.face.mouth) on a drawn face with an open mouth."""
from __future__ import annotations

import numpy as np
import pytest

from hififace.errors import ConfigError
from hififace.face.align import reduce68to5
from hififace.face.mouth import METHODS, keep_target, mouth_mask, mouth_masks
from hififace.face.outline import face_unit
from hififace.face.palette import CLASSES
from synthface import draw_face

pytest.importorskip("cv2")

SIZE = 256


def _erode(region: np.ndarray, r: int) -> np.ndarray:
    import cv2

    return cv2.erode(region.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def _disk(hw, center, radius) -> np.ndarray:
    ys, xs = np.mgrid[0 : hw[0], 0 : hw[1]]
    return (xs - center[0]) ** 2 + (ys - center[1]) ** 2 <= radius**2


@pytest.fixture(scope="module")
def face():
    return draw_face(SIZE, scale=100.0, opening=0.2)


def _inputs(method, lm, labels):
    return {"parsing": dict(landmarks=lm, labels=labels), "landmarks68": dict(landmarks=lm),
            "outline5": dict(landmarks=reduce68to5(lm))}[method]


@pytest.mark.parametrize("method", METHODS)
def test_mask_covers_the_open_mouth_and_not_nose_or_chin(face, method):
    _, lm, labels = face
    m = mouth_mask((SIZE, SIZE), **_inputs(method, lm, labels))
    assert m.method == method and m.alpha.dtype == np.float32 and m.alpha.shape == (SIZE, SIZE)
    assert 0.0 <= m.alpha.min() and m.alpha.max() <= 1.0
    interior = labels == CLASSES.index("mouth")
    nose = labels == CLASSES.index("nose")
    chin = _disk((SIZE, SIZE), lm[8] - [0, 8], 8)  # just inside the chin
    eyes = np.isin(labels, [CLASSES.index("l_eye"), CLASSES.index("r_eye")])
    assert nose.any() and chin.any() and interior.sum() > 500
    if method == "outline5":
        # corners known, opening not: the region reaches a mouth open about 1 cm (0.1 units) below the corners
        reach = interior & (np.mgrid[0:SIZE, 0:SIZE][0] <= lm[48][1] + 0.1 * 100)
        assert m.alpha[reach].min() >= 0.9
        assert m.opening is None
    else:
        assert m.alpha[interior].mean() >= 0.97 and m.alpha[_erode(interior, 1)].min() >= 0.95
        assert m.opening == pytest.approx(0.12, abs=0.03)  # the drawing's inner area / width, in face units
    assert m.alpha[nose].max() <= 0.01
    assert m.alpha[chin].max() <= 0.01
    assert m.alpha[eyes].max() == 0.0


def test_the_lips_stay_swapped_unless_asked():
    scale = 160.0  # lips 13-18 pixels thick
    _, lm, labels = draw_face(SIZE, scale=scale, center=(128.0, 50.0))
    lips = np.isin(labels, [CLASSES.index("u_lip"), CLASSES.index("l_lip")])
    interior = labels == CLASSES.index("mouth")
    outer_lips = lips & ~_dilate(interior, int(np.ceil(0.07 * scale)))  # the outer part of the lips
    inner_rim = lips & _dilate(interior, 1)
    assert outer_lips.sum() > 200 and inner_rim.sum() > 100
    for kw in (dict(landmarks=lm), dict(landmarks=lm, labels=labels)):
        alpha = mouth_mask((SIZE, SIZE), **kw).alpha
        assert alpha[outer_lips].max() <= 0.05
        assert alpha[inner_rim].mean() >= 0.8  # where the swapped lips meet the target's interior
        with_lips = mouth_mask((SIZE, SIZE), **kw, lips=True).alpha
        assert with_lips[_erode(lips, 1)].min() >= 0.95 and with_lips[interior].min() >= 0.95
    # the 5 points cannot tell lips from interior: their region holds the lips
    five = mouth_mask((SIZE, SIZE), reduce68to5(lm)).alpha
    upper = lips & (np.mgrid[0:SIZE, 0:SIZE][0] < lm[48][1] - 2)
    assert upper.sum() > 500 and five[upper].mean() >= 0.9


def _dilate(region: np.ndarray, r: int) -> np.ndarray:
    import cv2

    return cv2.dilate(region.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0


def test_a_closed_mouth_keeps_nothing_and_the_mask_fades_in_as_it_opens():
    alphas = {}
    for opening in (0.0, 0.02, 0.03, 0.05, 0.25):
        _, lm, labels = draw_face(SIZE, scale=110.0, opening=opening)
        alphas[opening] = (mouth_mask((SIZE, SIZE), lm).alpha.max(),
                           mouth_mask((SIZE, SIZE), lm, labels).alpha.max())
    assert alphas[0.0] == (0.0, 0.0)  # nothing to keep: no seam of the target's lips either
    for method in (0, 1):
        peaks = [alphas[o][method] for o in sorted(alphas)]
        assert all(a <= b + 1e-6 for a, b in zip(peaks, peaks[1:])), peaks  # monotone in the opening
        assert peaks[-1] >= 0.99
    # the 5 points do not know the opening: the same region whether open or closed
    _, closed, _ = draw_face(SIZE, scale=110.0, opening=0.0)
    assert mouth_mask((SIZE, SIZE), reduce68to5(closed)).alpha.max() >= 0.99


@pytest.mark.parametrize("method", METHODS)
def test_dilation_and_feathering_grow_with_the_face(method):
    """A face twice as large (image and landmarks) gets twice the dilation and feathering: its mask, halved, is
    the small face's mask, and the soft edge is twice as wide in pixels."""
    import cv2

    small = draw_face(SIZE, scale=100.0, center=(128.0, 100.0))
    large = draw_face(2 * SIZE, scale=200.0, center=(256.5, 200.5))  # the same face: pixel centres x -> 2x + 0.5
    a = mouth_mask((SIZE, SIZE), **_inputs(method, small[1], small[2])).alpha
    b = mouth_mask((2 * SIZE, 2 * SIZE), **_inputs(method, large[1], large[2])).alpha
    assert face_unit(reduce68to5(large[1])) == pytest.approx(2 * face_unit(reduce68to5(small[1])), rel=1e-6)
    halved = cv2.resize(b, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    # the same mask up to where each size's pixel grid cuts the polygon's edge (0.5 pixel on a slope of 0.27/pixel)
    assert np.abs(halved - a).mean() <= 0.002 and np.abs(halved - a).max() <= 0.25
    band_a = ((a > 0.05) & (a < 0.95)).sum()
    band_b = ((b > 0.05) & (b < 0.95)).sum()
    assert 3.4 <= band_b / band_a <= 4.6  # an edge twice as wide along a contour twice as long


def test_batch_keep_target_and_bad_inputs(face):
    _, lm, labels = face
    many = mouth_masks((SIZE, SIZE), np.stack([lm, lm]), np.stack([labels, labels]))
    np.testing.assert_array_equal(many[0], mouth_mask((SIZE, SIZE), lm, labels).alpha)
    assert many.shape == (2, SIZE, SIZE)
    alpha = np.full((SIZE, SIZE), 0.8, np.float32)
    kept = keep_target(alpha, many[0])
    interior = labels == CLASSES.index("mouth")
    assert kept[interior].max() <= 0.08 and (kept[many[0] == 0] == np.float32(0.8)).all()
    assert (kept <= alpha).all()
    with pytest.raises(ConfigError, match="5 or 68"):
        mouth_mask((SIZE, SIZE), lm[:10])
    with pytest.raises(ConfigError, match="finite"):
        mouth_mask((SIZE, SIZE), np.full((5, 2), np.nan))
    with pytest.raises(ConfigError, match="labels"):
        mouth_mask((SIZE, SIZE), lm, labels[:100])
