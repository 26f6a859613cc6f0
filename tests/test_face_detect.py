"""Face detection on real public-domain photos: faces found where they are, stable under known photo transforms."""
from __future__ import annotations

import numpy as np
import pytest

from face_helpers import photo, photo_transform
from hififace.errors import ConfigError, WeightsError
from hififace.face.align import transform_points, umeyama
from hififace.face.detect import MIRROR_5, box_iou, decode_scrfd, get_detector, nms

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def det():
    return get_detector("yunet")


def test_astronaut_face_and_landmarks_where_they_are(det):
    faces = det.detect(photo("astronaut.png"))
    assert len(faces) == 1
    f = faces[0]
    # values measured independently with cv2.FaceDetectorYN (assets/SOURCES.md): box x, y, w, h = 178.2, 62.9, 89.9, 113.3
    np.testing.assert_allclose(f.box, [178.2, 62.9, 178.2 + 89.9, 62.9 + 113.3], atol=2.0)
    expected = [[200.1, 101.8], [247.1, 102.6], [220.4, 124.5], [198.6, 142.8], [239.7, 143.6]]
    np.testing.assert_allclose(f.landmarks, expected, atol=2.0)
    assert 0.9 < f.score <= 1.0
    # order: image-left eye before image-right eye, mouth corners likewise, nose between
    assert f.landmarks[0, 0] < f.landmarks[2, 0] < f.landmarks[1, 0]
    assert f.landmarks[3, 0] < f.landmarks[4, 0]
    assert f.landmarks[:2, 1].max() < f.landmarks[2, 1] < f.landmarks[3:, 1].min()


def test_two_faces_sorted_left_to_right(det):
    faces = det.detect(photo("two_people.jpg"))
    assert len(faces) == 2
    assert faces[0].center[0] < faces[1].center[0]
    assert box_iou(faces[0].box, np.array([234, 21, 384, 225]))[0, 0] > 0.7
    assert box_iou(faces[1].box, np.array([790, 49, 937, 256]))[0, 0] > 0.7


def test_greyscale_profile_found_at_low_threshold(det):
    faces = det.detect(photo("cameraman.png")[:, :, 0])  # 2-D grey input is accepted
    assert len(faces) == 1
    assert box_iou(faces[0].box, np.array([196, 113, 257, 194]))[0, 0] > 0.6


def test_no_face_in_flat_image(det):
    assert det.detect(np.full((240, 320, 3), 127, np.uint8)) == []


def test_large_photo_found_as_well_as_small(det):
    import cv2

    img = photo("grace_hopper.jpg")
    small = det.detect(img)[0]
    big_img = cv2.resize(img, None, fx=3.0, fy=3.0, interpolation=cv2.INTER_CUBIC)  # face about 510 px wide
    big = det.detect(big_img)
    assert len(big) == 1 and big[0].score > 0.85
    np.testing.assert_allclose((big[0].landmarks + 0.5) / 3.0 - 0.5, small.landmarks, atol=3.0)


@pytest.mark.parametrize("case", [dict(angle=10.0), dict(angle=-12.0), dict(scale=0.75), dict(scale=1.3),
                                  dict(shift=(31, -17)), dict(flip=True), dict(angle=-8.0, scale=1.15, shift=(12, 9))])
def test_known_photo_transform_recovered_from_landmarks(det, case):
    """Rotate/scale/shift/mirror the photo by known amounts: the (refined) landmarks move the same way."""
    from hififace.face.align import refine_landmarks

    img = photo("grace_hopper.jpg")  # face about 170 px wide
    lm = refine_landmarks(img, det.detect(img)[0].landmarks, det)[0]
    out, t = photo_transform(img, **case)
    lm2 = refine_landmarks(out, det.detect(out)[0].landmarks, det)[0]
    if case.get("flip"):
        lm2 = lm2[list(MIRROR_5)]  # the mirrored face's image-left eye is the original's image-right eye
    expected = transform_points(lm, t)
    assert np.abs(lm2 - expected).max() < 6.5
    if not case.get("flip"):
        est = umeyama(lm, lm2)
        scale = np.sqrt(abs(np.linalg.det(est[:, :2])))
        assert abs(scale - case.get("scale", 1.0)) < 0.03 * case.get("scale", 1.0)
        angle = np.rad2deg(np.arctan2(-est[1, 0], est[0, 0]))  # counter-clockwise on screen, as photo_transform
        assert abs(angle - case.get("angle", 0.0)) < 2.5


def test_single_pass_landmarks_follow_a_shift(det):
    img = photo("astronaut.png")
    lm = det.detect(img)[0].landmarks
    out, t = photo_transform(img, shift=(40, 24))
    assert np.abs(det.detect(out)[0].landmarks - transform_points(lm, t)).max() < 4.0


def test_mirrored_photo_gives_mirrored_landmarks(det):
    img = photo("astronaut.png")
    a = det.detect(img)[0].landmarks
    b = det.detect(np.ascontiguousarray(img[:, ::-1]))[0].landmarks[list(MIRROR_5)]
    b = b.copy()
    b[:, 0] = img.shape[1] - 1 - b[:, 0]
    assert np.abs(a - b).max() < 6.0


def test_nms_and_iou():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], dtype=float)
    assert box_iou(boxes[0], boxes[0])[0, 0] == pytest.approx(1.0)
    assert list(nms(boxes, np.array([0.9, 0.8, 0.7]), 0.4)) == [0, 2]


def test_decode_scrfd_grid_layout():
    ih = iw = 64
    outs = []
    for stride in (8, 16, 32):
        n = (ih // stride) * (iw // stride) * 2
        outs.append(np.zeros((n, 1), np.float32))
    boxes = [np.zeros((o.shape[0], 4), np.float32) for o in outs]
    kps = [np.zeros((o.shape[0], 10), np.float32) for o in outs]
    # stride 16, row 1, col 2, second anchor: index (1 * 4 + 2) * 2 + 1
    idx = (1 * 4 + 2) * 2 + 1
    outs[1][idx] = 0.9
    boxes[1][idx] = [1, 2, 3, 4]
    kps[1][idx] = np.arange(10) * 0.1
    rows = decode_scrfd(outs + boxes + kps, (ih, iw), 0.5, 0.4)
    assert rows.shape == (1, 15)
    cx, cy = 2 * 16, 1 * 16
    np.testing.assert_allclose(rows[0, :4], [cx - 16, cy - 32, cx + 48, cy + 64])
    np.testing.assert_allclose(rows[0, 4:14].reshape(5, 2), np.arange(10).reshape(5, 2) * 1.6 + [cx, cy], atol=1e-5)
    assert rows[0, 14] == pytest.approx(0.9)


def test_scrfd_onnx_end_to_end(tmp_path):
    """A constant-output ONNX file in SCRFD's layout goes through letterbox, decoding and the scale back."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper


    ih = iw = 64
    arrays = {}
    for k, stride in enumerate((8, 16, 32)):
        n = (ih // stride) * (iw // stride) * 2
        arrays[f"score{k}"] = np.zeros((n, 1), np.float32)
        arrays[f"bbox{k}"] = np.zeros((n, 4), np.float32)
        arrays[f"kps{k}"] = np.zeros((n, 10), np.float32)
    arrays["score0"][(3 * 8 + 4) * 2] = 0.95  # stride 8, row 3, col 4 -> centre (32, 24)
    arrays["bbox0"][(3 * 8 + 4) * 2] = [2, 2, 2, 2]
    names = [f"score{k}" for k in range(3)] + [f"bbox{k}" for k in range(3)] + [f"kps{k}" for k in range(3)]
    nodes = [helper.make_node("Constant", [], [n], value=numpy_helper.from_array(arrays[n], n + "_v")) for n in names]
    graph = helper.make_graph(nodes, "fake_scrfd", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, ih, iw])],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(arrays[n].shape)) for n in names])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "scrfd_fake.onnx"
    onnx.save(model, str(path))
    det = get_detector("scrfd", model_path=str(path))
    faces = det.detect(np.zeros((128, 96, 3), np.uint8))  # letterbox scale 0.5
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, [(32 - 16) * 2, (24 - 16) * 2, (32 + 16) * 2, (24 + 16) * 2], atol=1e-3)


def test_detector_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown face detector"):
        get_detector("nope")
    with pytest.raises(ConfigError, match="model_path"):
        get_detector("scrfd")
    with pytest.raises(WeightsError, match="not found"):
        get_detector("scrfd", model_path=str(tmp_path / "missing.onnx"))
    with pytest.raises(WeightsError, match="not found"):
        get_detector("yunet", model_path=str(tmp_path / "missing.onnx"))
