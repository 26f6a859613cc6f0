"""Face restoration wired into the pipeline (``FaceSwapper(..., restorer=...)``, ``--enhance``) and ``hififace
enhance``, on a tiny random-weight GFPGAN: the restoration stays inside what the swap changed (every other pixel
bit-identical), blend 0 is no restoration bit for bit, runs are deterministic, the label names the restorer, and bad
restorer options give one line and no output."""
from __future__ import annotations

import numpy as np
import pytest

from face_helpers import PHOTOS
from hififace.errors import ConfigError
from hififace.media.images import read_crop, read_photo
from hififace.models.restorers import GFPGAN, GFPGANConfig
from hififace.restore import load_restorer
from inferkit import FakeEngine, assert_one_error, leftovers, run_cli, tiny_model_dir

pytest.importorskip("cv2")

#: The reduced-width GFPGAN of test_restore_gfpgan.py: 64 px crops, milliseconds per face.
TINY = GFPGANConfig(out_size=64, narrow=1 / 32)


@pytest.fixture(scope="module")
def restorer_dir(tmp_path_factory):
    return GFPGAN.random(TINY, seed=3).save_pretrained(tmp_path_factory.mktemp("r") / "gfpgan-tiny")


@pytest.fixture(scope="module")
def restorer(restorer_dir):
    return load_restorer(restorer_dir, device="cpu")


@pytest.fixture(scope="module")
def target():
    return read_photo(PHOTOS / "two_people.jpg")


def _swapper(restorer=None, **kw):
    from hififace.inference.pipeline import FaceSwapper

    return FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0, restorer=restorer, **kw)


@pytest.fixture(scope="module")
def ident():
    return _swapper().identity(PHOTOS / "grace_hopper.jpg")


@pytest.fixture(scope="module")
def plain(target, ident):
    return _swapper().swap(ident, target, all_faces=True)


def test_restoration_stays_inside_the_swap_and_changes_the_faces(restorer, target, plain, ident):
    result = _swapper(restorer).swap(ident, target, all_faces=True)
    assert result.swapped == plain.swapped == [0, 1]
    np.testing.assert_array_equal(result.changed, plain.changed)
    # outside the swap's paste mask every pixel is the target's, bit for bit
    assert np.array_equal(result.image[~plain.changed], target.rgb[~plain.changed])
    # the restorer did change each face (random weights: a different picture, far from the swap's output)
    differs = (result.image != plain.image).any(axis=2)
    assert not (differs & ~plain.changed).any()
    for f in result.faces:
        cx, cy = (int(v) for v in f.center)
        assert differs[cy - 5 : cy + 5, cx - 5 : cx + 5].mean() > 0.5


def test_blend_zero_is_no_restoration_bit_for_bit_and_runs_are_deterministic(restorer, target, plain, ident):
    out0 = _swapper(restorer, enhance_blend=0.0).swap(ident, target, all_faces=True)
    assert np.array_equal(out0.image, plain.image)
    runs = [_swapper(restorer, enhance_blend=0.5).swap(ident, target, all_faces=True).image for _ in range(2)]
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], plain.image)


def test_half_blend_lies_between_unrestored_and_restored(restorer, target, plain, ident):
    full, half = _swapper(restorer), _swapper(restorer, enhance_blend=0.5)
    a = full.swap(ident, target, all_faces=True).image.astype(int)
    h = half.swap(ident, target, all_faces=True).image.astype(int)
    p = plain.image.astype(int)
    lo, hi = np.minimum(a, p), np.maximum(a, p)
    assert ((h >= lo - 1) & (h <= hi + 1)).all()


@pytest.mark.parametrize("blend", [-0.1, 1.5, float("nan"), "much"])
def test_bad_blend_is_one_line(restorer, blend):
    with pytest.raises(ConfigError, match=r"--enhance-blend .*0 .*1") as info:
        _swapper(restorer, enhance_blend=blend)
    assert "\n" not in str(info.value)


def test_the_label_names_the_restorer_and_its_random_weights(restorer_dir):
    swapper = _swapper(str(restorer_dir), enhance_blend=0.7)  # a folder path: loaded on the model's device
    label = swapper.label()
    assert label["restorer"] == "GFPGAN (random weights)" and label["enhance_blend"] == "0.7"
    assert len(label["restorer_fingerprint"]) == 16 and "random" in label["restorer_weights"]
    assert _swapper().label() == {}


def test_aligned_crop_is_restored_whole(restorer):
    from hififace.face.align import template_points
    from hififace.inference.enhance import FaceEnhancer

    crop = read_crop(PHOTOS / "obama_crop.jpg", 256)
    enh = FaceEnhancer(restorer)
    out = enh.enhance_aligned(crop, template_points("arcface", 256))
    assert out.shape == crop.shape and out.dtype == np.uint8 and not np.array_equal(out, crop)
    both = enh.enhance_aligned(np.stack([crop, crop]), template_points("arcface", 256))  # batched: the same
    assert np.array_equal(both[0], out) and np.array_equal(both[1], out)


# ------------------------------------------------------------------------------------------------ command line
def test_enhance_command_on_a_photo_and_on_a_512_crop(tmp_path, restorer_dir, capsys):
    from hififace.media.labels import read_label
    from PIL import Image

    src = read_photo(PHOTOS / "grace_hopper.jpg")
    rc, _, err = run_cli(["enhance", PHOTOS / "grace_hopper.jpg", "-o", tmp_path / "g.png", "--enhance",
                          restorer_dir, "--device", "cpu", "--no-invisible-watermark"], capsys)  # pixels compared
    assert rc == 0, err
    out = np.asarray(Image.open(tmp_path / "g.png").convert("RGB"))
    assert out.shape == src.rgb.shape and not np.array_equal(out, src.rgb)
    label = read_label(tmp_path / "g.png")
    assert label["hififace:command"] == "enhance" and label["hififace:restorer"] == "GFPGAN (random weights)"
    assert (out != src.rgb).any(axis=2).mean() < 0.5  # the face, not the whole photo
    crop = np.asarray(Image.fromarray(src.rgb).resize((512, 512)))
    Image.fromarray(crop).save(tmp_path / "crop.png")
    rc, _, err = run_cli(["enhance", tmp_path / "crop.png", "-o", tmp_path / "c.png", "--enhance", restorer_dir,
                          "--enhance-blend", "1"], capsys)
    assert rc == 0, err
    whole = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"))
    assert whole.shape == (512, 512, 3) and (whole != crop).any(axis=2).mean() > 0.5  # restored whole


@pytest.mark.parametrize("case", ["missing", "not_a_restorer", "pth", "blend_range", "blend_text", "no_enhance",
                                  "blend_without_enhance"])
def test_bad_enhance_options_give_one_line_and_no_output(tmp_path, restorer_dir, capsys, case):
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"this is not an onnx graph")
    pth = tmp_path / "GFPGANv1.4.pth"
    pth.write_bytes(b"\x80\x04")
    opts = {"missing": ["--enhance", tmp_path / "nope"], "not_a_restorer": ["--enhance", bad_onnx],
            "pth": ["--enhance", pth], "blend_range": ["--enhance", restorer_dir, "--enhance-blend", "2"],
            "blend_text": ["--enhance", restorer_dir, "--enhance-blend", "lots"], "no_enhance": [],
            "blend_without_enhance": ["--enhance-blend", "0.5"]}[case]
    needles = {"missing": ["nope", "not found"], "not_a_restorer": ["bad.onnx"], "pth": ["convert --gfpgan"],
               "blend_range": ["--enhance-blend 2", "0"], "blend_text": ["--enhance-blend lots"],
               "no_enhance": ["--enhance"], "blend_without_enhance": ["give the restorer"]}[case]
    rc, _, err = run_cli(["enhance", PHOTOS / "grace_hopper.jpg", "-o", tmp_path / "out.png", *opts], capsys)
    assert_one_error(rc, err, *needles)
    assert not (tmp_path / "out.png").exists() and not leftovers(tmp_path)


def test_swap_with_enhance_labels_the_output_and_refuses_a_bad_restorer(tmp_path, restorer_dir, capsys):
    from hififace.media.labels import read_label

    weights = tiny_model_dir(tmp_path / "w")
    a, b = PHOTOS / "obama_crop.jpg", PHOTOS / "obama2_crop.jpg"
    args = ["swap", "--source", a, "--target", b, "--aligned", "--weights", weights, "--device", "cpu"]
    rc, _, err = run_cli([*args, "-o", tmp_path / "e.png", "--enhance", restorer_dir, "--enhance-blend", "0.8"],
                         capsys)
    assert rc == 0, err
    label = read_label(tmp_path / "e.png")
    assert label["hififace:restorer"] == "GFPGAN (random weights)" and label["hififace:enhance_blend"] == "0.8"
    rc, _, err = run_cli([*args, "-o", tmp_path / "bad.png", "--enhance", weights], capsys)  # a swap model folder
    assert_one_error(rc, err, "not a face-restorer folder")
    assert not (tmp_path / "bad.png").exists()


def test_video_restores_the_swapped_faces_and_labels_the_restorer(tmp_path, restorer_dir):
    pytest.importorskip("imageio_ffmpeg")
    import hififace
    from hififace.media.video import probe
    from videokit import decode, face_frames, make_clip

    clip = make_clip(tmp_path / "clip.mp4", face_frames(3, blank=(1,)), audio=False)
    kw = dict(model=FakeEngine(), parsing="landmarks", progress=False, preset="ultrafast", batch_frames=2)
    hififace.swap_video(PHOTOS / "astronaut.png", clip, tmp_path / "plain.mp4", **kw)
    hififace.swap_video(PHOTOS / "astronaut.png", clip, tmp_path / "e.mp4", restorer=restorer_dir, **kw)
    assert "hififace:restorer=GFPGAN (random weights)" in probe(tmp_path / "e.mp4").metadata["comment"]
    plain, enhanced = decode(tmp_path / "plain.mp4"), decode(tmp_path / "e.mp4")
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean(axis=2) for a, b in zip(plain, enhanced)]
    assert diffs[0][90:150, 70:130].mean() > 10 and diffs[2][90:150, 70:130].mean() > 10  # the faces restored
    assert diffs[1].mean() < 1.5 and diffs[0][:, :10].mean() < 1.5  # a frame without a face, the border: untouched


# ------------------------------------------------------------------------------------------------ the app
def test_app_service_restores_only_when_asked_and_only_with_its_own_restorer(tmp_path, restorer_dir):
    from hififace.app.service import SwapService
    from hififace.media.labels import read_label

    plain = SwapService(FakeEngine(), workdir=tmp_path / "p", parsing="landmarks")
    with pytest.raises(ConfigError, match="--enhance"):  # no restorer configured: the tick box is not offered
        plain.run([str(PHOTOS / "astronaut.png")], str(PHOTOS / "grace_hopper.jpg"), enhance=True)
    service = SwapService(FakeEngine(), workdir=tmp_path / "e", parsing="landmarks", restorer=restorer_dir,
                          enhance_blend=0.9)
    off = service.run([str(PHOTOS / "astronaut.png")], str(PHOTOS / "grace_hopper.jpg"))
    on = service.run([str(PHOTOS / "astronaut.png")], str(PHOTOS / "grace_hopper.jpg"), enhance=True)
    def label(path) -> str:  # a JPEG keeps the fields in one EXIF comment, a PNG in text chunks
        return " ".join(f"{k}={v}" for k, v in read_label(path).items())

    assert "hififace:restorer" not in label(off.path)
    assert "hififace:restorer=GFPGAN (random weights)" in label(on.path)
    assert "hififace:enhance_blend=0.9" in label(on.path)
    assert not np.array_equal(read_crop(off.path), read_crop(on.path))


def test_app_page_offers_enhance_only_with_a_restorer(tmp_path, restorer_dir):
    pytest.importorskip("gradio")
    from hififace.app.service import SwapService
    from hififace.app.ui import build_ui

    def enhance_box(service):
        page = build_ui(service)
        return [b for b in page.blocks.values() if getattr(b, "elem_id", None) == "enhance"][0]

    assert enhance_box(SwapService(FakeEngine(), workdir=tmp_path / "a")).visible is False
    box = enhance_box(SwapService(FakeEngine(), workdir=tmp_path / "b", restorer=restorer_dir))
    assert box.visible is True and "GFPGAN" in box.label


def test_live_frames_are_restored_inside_the_swap_only(restorer):
    import cv2

    from hififace.live.swapper import build_processor
    from videokit import face_frames

    frames = face_frames(2, size=(192, 224))
    outs = {}
    for key, r in (("plain", None), ("enhanced", restorer)):
        proc = build_processor(_swapper(r), [PHOTOS / "astronaut.png"], detect_every=1, fps=25.0, name="test")
        outs[key] = [proc(f.copy(), i / 25) for i, f in enumerate(frames)]
    for frame, plain, enhanced in zip(frames, outs["plain"], outs["enhanced"]):
        swapped = (plain != frame).any(axis=2)
        # the swap's feathered rim, where its alpha is too small to change a value: a few pixels wide
        near = cv2.dilate(swapped.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        assert swapped.any() and not np.array_equal(plain, enhanced)
        assert np.array_equal(enhanced[~near], frame[~near])  # nothing outside what the swap changed
        assert (enhanced != plain).any(axis=2)[swapped].mean() > 0.5


def test_an_onnx_restorer_file_through_the_api(tmp_path, target, plain, ident):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import hififace
    from hififace.media.labels import read_label
    from test_restore_onnx import F32, make_graph

    # a 64 px "restorer" computing 0.5 * x in [-1, 1]: it halves the contrast of each face around mid-grey
    onnx_file = make_graph(tmp_path / "gpen_bfr_64.onnx", [("input", F32, [1, 3, 64, 64])], ("output", [1, 3, 64, 64]))
    swapper = _swapper(str(onnx_file))
    result = hififace.swap_image(ident, PHOTOS / "two_people.jpg", tmp_path / "out.png", model=swapper, all_faces=True)
    assert np.array_equal(result.image[~plain.changed], target.rgb[~plain.changed])
    face = plain.changed & (result.image != plain.image).any(axis=2)
    assert face.sum() > 0.5 * plain.changed.sum()
    label = read_label(tmp_path / "out.png")
    assert label["hififace:restorer"] == "gpen_bfr_64.onnx" and len(label["hififace:restorer_fingerprint"]) == 16
    assert "hififace:restorer_weights" not in label


def test_grid_with_enhance_restores_each_cell_and_labels_it(tmp_path, restorer_dir, capsys):
    import shutil

    from hififace.media.labels import read_label
    from inferkit import SAMPLES

    faces = tmp_path / "faces"
    faces.mkdir()
    shutil.copy(SAMPLES / "astronaut.png", faces / "astronaut.png")  # a 1 x 1 grid: one swap, one restore
    weights = tiny_model_dir(tmp_path / "w")
    for out, extra in (("plain.png", []), ("e.png", ["--enhance", restorer_dir])):
        rc, _, err = run_cli(["grid", faces, "-o", tmp_path / out, "--weights", weights, "--device", "cpu", *extra],
                             capsys)
        assert rc == 0, err
    plain, enhanced = read_crop(tmp_path / "plain.png"), read_crop(tmp_path / "e.png")
    assert plain.shape == enhanced.shape and not np.array_equal(plain, enhanced)
    assert read_label(tmp_path / "e.png")["hififace:restorer"] == "GFPGAN (random weights)"
    rc, _, err = run_cli(["grid", faces, "-o", tmp_path / "bad.png", "--weights", weights, "--enhance-blend", "0.5"],
                         capsys)
    assert_one_error(rc, err, "--enhance-blend 0.5", "--enhance")
    assert not (tmp_path / "bad.png").exists()


def test_enhance_command_on_several_photos_writes_a_folder_and_a_faceless_photo_is_one_line(tmp_path, capsys):
    from PIL import Image

    from hififace.models.restorers.gfpgan import RANDOM_NOTE_KEY

    model = GFPGAN.random(TINY, seed=3)
    model.config.notes.pop(RANDOM_NOTE_KEY)  # stands in for trained weights: no 'random weights' warning line
    restorer_dir = model.save_pretrained(tmp_path / "trained")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(blank)
    rc, _, err = run_cli(["enhance", blank, "-o", tmp_path / "b.png", "--enhance", restorer_dir], capsys)
    assert_one_error(rc, err, "blank.png", "no face found")
    assert not (tmp_path / "b.png").exists() and not leftovers(tmp_path)
    rc, _, err = run_cli(["enhance", PHOTOS / "grace_hopper.jpg", PHOTOS / "obama_crop.jpg", "-o", tmp_path / "out",
                          "--enhance", restorer_dir, "--enhance-blend", "0.5"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["grace_hopper.jpg", "obama_crop.jpg"]
