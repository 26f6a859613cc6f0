"""The photo pipeline (detect -> align -> swap -> paste back) on real photos and collages made from them.

These tests check the pipeline (faces found and chosen, crops on the landmarks, pixels outside the blended region
untouched, file properties kept), not the swap's quality: most run a stand-in engine (``FakeEngine``: inverted
colours, a full mask) that costs nothing; the tiny random-weight model serves where the model itself matters (its
mask m_r, the aligned path's exact outputs).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from face_helpers import PHOTOS, crop_disagreement, photo
from hififace.errors import ConfigError, InputImageError
from hififace.face.align import template_points, transform_points
from hififace.media.images import read_photo, stored, upright
from hififace.provenance.outputs import Provenance
from inferkit import FakeEngine, tiny_model

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def swapper():
    from hififace.inference.pipeline import FaceSwapper

    return FaceSwapper(FakeEngine(), parsing="landmarks")


@pytest.fixture(scope="module")
def grace(swapper):
    return swapper.identity(PHOTOS / "grace_hopper.jpg")


def place(canvas: np.ndarray, img: np.ndarray, angle: float, scale: float, cx: float, cy: float) -> np.ndarray:
    """Paste ``img`` rotated (degrees, counter-clockwise) and scaled with its centre at (cx, cy); returns the
    2 x 3 matrix photo -> canvas."""
    import cv2

    h, w = img.shape[:2]
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    t = np.deg2rad(angle)
    r = scale * np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
    m = np.zeros((2, 3))
    m[:, :2] = r
    m[:, 2] = np.array([cx, cy]) - r @ c
    size = (canvas.shape[1], canvas.shape[0])
    warped = cv2.warpAffine(img, m, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones(img.shape[:2], np.uint8), m, size, flags=cv2.INTER_NEAREST) > 0
    canvas[inside] = warped[inside]
    return m


@pytest.fixture(scope="module")
def collage():
    """Three faces in one picture: astronaut small, Grace Hopper turned 25 degrees, astronaut turned -15 and larger."""
    canvas = np.full((520, 1100, 3), 200, np.uint8)
    a, g = photo("astronaut.png"), photo("grace_hopper.jpg")
    mats = [place(canvas, a, 0, 0.7, 180, 260), place(canvas, g, 25, 0.6, 550, 260),
            place(canvas, a, -15, 0.9, 900, 250)]
    return canvas, mats, [a, g, a]


# ------------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_helpers_match_pil(tmp_path, orientation):
    rng = np.random.default_rng(orientation)
    arr = rng.integers(0, 255, (6, 9, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    np.testing.assert_array_equal(upright(arr, orientation), expected)
    np.testing.assert_array_equal(stored(upright(arr, orientation), orientation), arr)


def test_collage_faces_left_to_right_and_crops_land_on_the_landmarks(swapper, collage):
    canvas, mats, originals = collage
    faces = swapper.detect(canvas)
    assert len(faces) == 3
    assert [f.center[0] for f in faces] == sorted(f.center[0] for f in faces)
    crops, crop_mats = swapper.align(canvas, [f.landmarks for f in faces])
    assert crops.shape == (3, 256, 256, 3) and crops.dtype == np.uint8
    tpl = template_points(swapper.engine.align, 256)
    errors = []
    for k, (f, m) in enumerate(zip(faces, crop_mats)):
        # the landmarks the crop was made from land on the template (up to the similarity fit's residual: this face's
        # shape is not the template's; a wrong template or scale would be 20+ px off) ...
        assert np.linalg.norm(transform_points(f.landmarks, m) - tpl, axis=1).mean() < 8.0
        # ... and the detector, run again on the crop, finds the face there (YuNet's own bias on a face this large
        # is 5-8 px; a crop off by a feature would be 30+)
        again = swapper.detector.detect(crops[k])
        assert len(again) >= 1
        assert np.linalg.norm(again[0].landmarks - tpl, axis=1).mean() < 12.0
        # the same face cut from the original photo and from the turned, scaled copy registers within a few pixels
        own = swapper.detect(originals[k])[0]
        _, m_own = swapper.align(originals[k], [own.landmarks])
        errors.append(crop_disagreement(m_own[0], m, mats[k]))
    # the bounds of test_face_align's alignment-consistency test (crop pixels at 256)
    assert np.median(errors) <= 3.0 and max(errors) <= 8.0, errors


# ------------------------------------------------------------------------------------------------ paste-back
def test_swap_changes_only_pixels_inside_the_blended_region(swapper, grace):
    from hififace.face.align import crop_footprint

    target = read_photo(PHOTOS / "two_people.jpg")
    result = swapper.swap(grace, target, all_faces=True)
    assert result.swapped == [0, 1] and not result.aligned
    diff = (result.image != target.rgb).any(axis=2)
    assert not (diff & ~result.changed).any()  # outside the blended region: bit-identical
    foot = np.zeros_like(result.changed)
    for m in result.matrices:
        x0, y0, x1, y1 = crop_footprint(m, (256, 256), foot.shape)
        foot[y0:y1, x0:x1] = True
    assert not (result.changed & ~foot).any()  # nothing outside the crops' footprints is even considered
    for f in result.faces:  # the face centres did change
        cx, cy = (int(v) for v in f.center)
        assert diff[cy - 5 : cy + 5, cx - 5 : cx + 5].mean() > 0.5
    assert 0.01 < result.changed.mean() < 0.2


def test_model_mask_and_colour_matching_shape_the_alpha(model):
    """The model's m_r only ever removes from the face region; colour matching changes colours, not the alpha."""
    from hififace.inference.pipeline import FaceSwapper

    plain = FaceSwapper(model, parsing="landmarks", align_passes=0)
    rgb = photo("astronaut.png")
    face = plain.detect(rgb)[0]
    crops, mats = plain.align(rgb, [face.landmarks])
    i_r, m_r = plain.swap_crops(plain.identity(crops[0]), crops)
    assert i_r.shape == (1, 3, 256, 256) and m_r.shape == (1, 1, 256, 256)
    assert 0 <= float(i_r.min()) and float(i_r.max()) <= 1 and 0 <= float(m_r.min()) and float(m_r.max()) <= 1
    lms = transform_points(face.landmarks, mats[0])[None]
    blend = plain.blend_faces(crops, i_r, m_r, lms)
    faces, alpha = blend.faces, blend.alphas
    full = FaceSwapper(model, parsing="landmarks", model_mask=False).blend_faces(crops, i_r, m_r, lms)
    matched = FaceSwapper(model, parsing="landmarks", color_match=True).blend_faces(crops, i_r, m_r, lms)
    assert (alpha <= full.alphas + 1e-6).all() and alpha.sum() < full.alphas.sum()
    np.testing.assert_array_equal(matched.alphas, alpha)
    assert not np.array_equal(matched.faces, faces)
    assert alpha[0, 0].max() == 0 and alpha[0, :, 0].max() == 0  # the crop's own edge never shows


# ------------------------------------------------------------------------------------------------ files
def _rotated_jpeg(path, orientation=6):
    """Grace Hopper stored turned, with an EXIF orientation that turns her upright, a camera tag and a thumbnail."""
    img = Image.open(PHOTOS / "grace_hopper.jpg").convert("RGB")
    img = img.transpose(Image.Transpose.ROTATE_90)  # stored turned: orientation 6 turns it back
    exif = img.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    img.save(path, exif=exif.tobytes(), quality=90, icc_profile=b"\0" * 0)
    return path


def test_output_keeps_size_orientation_format_and_exif(swapper, grace, tmp_path):
    from hififace.media.labels import read_label

    src = _rotated_jpeg(tmp_path / "turned.jpg")
    stored_in = np.asarray(Image.open(src).convert("RGB"))
    up = read_photo(src)
    assert up.orientation == 6 and up.rgb.shape == (600, 512, 3)  # upright, as a viewer shows it
    res = swapper.swap_file(grace, src, tmp_path / "out.png")
    with Image.open(tmp_path / "out.png") as out:
        assert out.size == Image.open(src).size and out.mode == "RGB" and out.format == "PNG"
        assert out.getexif()[0x0112] == 6 and out.getexif()[0x010F] == "TestCam"
        arr = np.asarray(out)
    # lossless output: every stored pixel outside the blended region is the input's, bit for bit
    changed = stored(res.changed, 6)
    np.testing.assert_array_equal(arr[~changed], stored_in[~changed])
    assert (arr[changed] != stored_in[changed]).any()
    assert read_label(tmp_path / "out.png")["AI-Generated"] == "true"
    swapper.swap_file(grace, src, tmp_path / "out.webp")  # WebP is written lossless: the same guarantee
    with Image.open(tmp_path / "out.webp") as out:
        assert out.format == "WEBP" and out.getexif()[0x0112] == 6
        np.testing.assert_array_equal(np.asarray(out.convert("RGB"))[~changed], stored_in[~changed])
    # a JPEG from a JPEG: same orientation, same quantisation tables, labelled, and no (unswapped) thumbnail
    swapper.swap_file(grace, src, tmp_path / "out.jpg")
    with Image.open(tmp_path / "out.jpg") as out, Image.open(src) as orig:
        assert out.size == orig.size and out.getexif()[0x0112] == 6
        assert out.quantization == orig.quantization
        assert b"\xff\xd8\xff" not in out.info["exif"][8:]
    assert "hififace" in read_label(tmp_path / "out.jpg")["Software"]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_colour_mode_kept_and_untouched_pixels_identical(swapper, grace, tmp_path, mode):
    base = Image.open(PHOTOS / "grace_hopper.jpg").convert("RGB")
    img = base.convert(mode) if mode != "RGBA" else base.copy()
    if mode == "RGBA":
        alpha = np.full(base.size[::-1], 255, np.uint8)
        alpha[:40] = 7  # a translucent band, not over the face
        img.putalpha(Image.fromarray(alpha))
    img.save(tmp_path / "in.png")
    res = swapper.swap_file(grace, tmp_path / "in.png", tmp_path / "out.png")
    with Image.open(tmp_path / "in.png") as a, Image.open(tmp_path / "out.png") as b:
        assert b.mode == mode and b.size == a.size
        arr_a, arr_b = np.asarray(a), np.asarray(b)
    np.testing.assert_array_equal(arr_b[~res.changed], arr_a[~res.changed])
    assert res.swapped == [0] and (arr_b[res.changed] != arr_a[res.changed]).any()  # the face itself did change
    if mode == "RGBA":
        np.testing.assert_array_equal(arr_b[..., 3], arr_a[..., 3])  # the alpha channel is the input's


# ------------------------------------------------------------------------------------------------ identities
def test_identity_mean_is_normalised_and_weighted():
    from hififace import Identity

    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(3, 512, generator=g), dim=1)
    ident = Identity(torch.randn(3, 80, generator=g), v)
    one = ident.mean()
    assert len(one) == 1 and torch.allclose(one.v_id.norm(dim=1), torch.ones(1))
    torch.testing.assert_close(one.c_id, ident.c_id.mean(0, keepdim=True))
    torch.testing.assert_close(one.v_id, torch.nn.functional.normalize(v.mean(0, keepdim=True), dim=1))
    w = ident.mean([1.0, 0.0001, 0.0001])
    assert torch.allclose(w.v_id, v[:1], atol=1e-3)
    with pytest.raises(ValueError):
        ident.mean([1.0, 2.0])


def test_several_sources_averaged_and_identity_file_round_trip(swapper, tmp_path):
    from hififace import Identity

    a = swapper.identity(PHOTOS / "grace_hopper.jpg")
    b = swapper.identity(PHOTOS / "astronaut.png")
    both = swapper.identity(PHOTOS / "grace_hopper.jpg", PHOTOS / "astronaut.png")
    expected = Identity.cat([a, b]).mean()
    torch.testing.assert_close(both.v_id, expected.v_id, rtol=0, atol=0)
    torch.testing.assert_close(both.c_id, expected.c_id, rtol=0, atol=0)
    f = swapper.save_identity(tmp_path / "me.safetensors", both, sources=2)
    assert f.stat().st_size < 4096
    loaded, count = swapper.load_identity(f)
    assert count == 2 and torch.equal(loaded.v_id, both.v_id.cpu()) and torch.equal(loaded.c_id, both.c_id.cpu())
    # the file is a source like a photo, and it counts the photos behind it when averaged again
    again = swapper.identity(f, PHOTOS / "grace_hopper.jpg")
    torch.testing.assert_close(again.c_id, (2 * both.c_id + a.c_id) / 3)
    t = read_photo(PHOTOS / "astronaut.png")
    np.testing.assert_array_equal(swapper.swap(f, t, aligned=False).image, swapper.swap(both, t, aligned=False).image)


def test_identity_file_from_other_networks_or_not_an_identity_is_refused(swapper, tmp_path):
    from hififace.inference.pipeline import FaceSwapper
    from hififace.weights.io import save_safetensors

    other = FaceSwapper(FakeEngine(tag="other networks"), parsing="landmarks")
    f = other.save_identity(tmp_path / "other.safetensors", other.identity(PHOTOS / "astronaut.png"))
    with pytest.raises(InputImageError, match="other identity networks"):
        swapper.identity(f)
    save_safetensors({"x": torch.zeros(2)}, tmp_path / "weights.safetensors")
    with pytest.raises(InputImageError, match="not a hififace identity file"):
        swapper.identity(tmp_path / "weights.safetensors")
    with pytest.raises(ConfigError, match="must end in .safetensors"):
        swapper.save_identity(tmp_path / "me.npz", swapper.identity(PHOTOS / "astronaut.png"))


@pytest.mark.parametrize("bad", ["nan", "inf", "int", "overlapping offsets"])
def test_a_damaged_identity_file_is_refused_not_swapped_black(swapper, grace, tmp_path, bad):
    import json
    import struct

    from safetensors import safe_open

    from hififace.weights.io import save_safetensors

    f = swapper.save_identity(tmp_path / "me.safetensors", grace)
    with safe_open(str(f), framework="pt") as st:
        meta, tensors = st.metadata(), {k: st.get_tensor(k) for k in st.keys()}
    if bad == "overlapping offsets":  # the header lies: v_id's bytes start inside c_id's
        n = struct.unpack("<Q", f.read_bytes()[:8])[0]
        header = json.loads(f.read_bytes()[8:8 + n])
        header["v_id"]["data_offsets"] = [o - 4 for o in header["v_id"]["data_offsets"]]
        raw = json.dumps(header).encode()
        f.write_bytes(struct.pack("<Q", len(raw)) + raw + f.read_bytes()[8 + n:])
    else:
        if bad == "int":
            tensors["v_id"] = tensors["v_id"].to(torch.int32)
        else:
            tensors["v_id"][0, 7] = float(bad)
        save_safetensors(tensors, f, meta)
    with pytest.raises(InputImageError) as info:
        swapper.swap(f, read_photo(PHOTOS / "astronaut.png"), aligned=False)
    text = str(info.value)
    assert text.startswith(f"{f}: ") and "--save-identity me.safetensors" in text and "\n" not in text, text
    assert {"nan": "NaN or infinite", "inf": "NaN or infinite", "int": "unexpected tensors",
            "overlapping offsets": "not a valid safetensors file"}[bad] in text, text


# ------------------------------------------------------------------------------------------------ choice
def test_face_choice_index_all_largest_and_match(swapper, grace):
    target = read_photo(PHOTOS / "two_people.jpg")
    faces = swapper.detect(target.rgb)
    assert len(faces) == 2
    assert swapper.choose(target.rgb, faces) == [int(np.argmax([f.area for f in faces]))]
    assert swapper.choose(target.rgb, faces, _choice(index=0)) == [0]
    assert swapper.choose(target.rgb, faces, _choice(all=True)) == [0, 1]
    for k in (0, 1):  # the reference is that face's own aligned crop: it matches itself best
        crop, _ = swapper.align(target.rgb, [faces[k].landmarks])
        assert swapper.choose(target.rgb, faces, _choice(match=crop[0])) == [k]
    with pytest.raises(InputImageError, match=r"no face #2: 2 face\(s\) found.*hififace faces"):
        swapper.choose(target.rgb, faces, _choice(index=2), name="two_people.jpg")
    with pytest.raises(ConfigError):
        _choice(index=0, all=True)


def _choice(**kw):
    from hififace.inference.pipeline import FaceChoice

    return FaceChoice(**kw)


def test_small_faces_left_alone_with_a_note(grace, tmp_path, caplog):
    from hififace.inference.pipeline import FaceSwapper

    sw = FaceSwapper(FakeEngine(), parsing="landmarks", min_face=1000, align_passes=0)
    target = read_photo(PHOTOS / "two_people.jpg")
    res = sw.swap(grace, target, all_faces=True)
    assert res.swapped == [] and sorted(res.skipped) == [0, 1]
    np.testing.assert_array_equal(res.image, target.rgb)
    assert "left alone" in caplog.text and "minimum face size 1000" in caplog.text
    with pytest.raises(InputImageError, match="no face large enough"):
        sw.swap_file(grace, target, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_no_face_in_target_or_source_names_the_file(swapper, grace, tmp_path):
    Image.new("RGB", (300, 200), (120, 130, 140)).save(tmp_path / "wall.png")
    with pytest.raises(InputImageError, match=r"wall\.png: no face found"):
        swapper.swap(grace, tmp_path / "wall.png")
    with pytest.raises(InputImageError, match=r"wall\.png: no face found in this source photo"):
        swapper.identity(tmp_path / "wall.png")


def test_source_with_several_faces_uses_the_largest_with_a_warning(swapper, caplog):
    got = swapper.identity(PHOTOS / "two_people.jpg")
    assert "2 faces in the source photo; using the largest" in caplog.text
    target = read_photo(PHOTOS / "two_people.jpg")
    faces = swapper.detect(target.rgb)
    big = int(np.argmax([f.area for f in faces]))
    crop, _ = swapper.align(target.rgb, [faces[big].landmarks])
    torch.testing.assert_close(got.v_id, swapper.crop_identity(crop).v_id)


def test_model_size_images_take_the_aligned_path(swapper, model, caplog):
    from hififace.inference.pipeline import FaceSwapper
    from inferkit import sample

    crop, source = sample("astronaut"), sample("grace_hopper")  # 256 x 256: aligned crops
    res = FaceSwapper(model, parsing="landmarks").swap(source, crop)
    assert res.aligned and res.faces == [] and res.changed.all()
    np.testing.assert_array_equal(res.image, model.swap(source, crop))  # exactly what HifiFace.swap gives
    assert "do not apply" not in caplog.text
    assert swapper.swap(source, crop, face=0).aligned and "--face/--match do not apply; use --detect" in caplog.text
    forced = swapper.swap(source, crop, aligned=False)  # --detect: the face in the crop is found and pasted back
    assert not forced.aligned and forced.swapped == [0]
    assert not forced.changed.all()


def test_swap_image_api_averages_sources_batches_faces_caches_identities_and_writes_labelled(tmp_path):
    import hififace
    from hififace.media.labels import read_label
    from hififace.inference.pipeline import FaceSwapper

    engine = FakeEngine()
    encoded = []
    real_identity = engine.identity
    engine.identity = lambda crops: encoded.append(len(crops)) or real_identity(crops)
    sw = FaceSwapper(engine, parsing="landmarks", align_passes=0)
    sources = [PHOTOS / "grace_hopper.jpg", PHOTOS / "astronaut.png"]
    res = hififace.swap_image(sources, PHOTOS / "two_people.jpg", model=sw, all_faces=True)
    assert res.swapped == [0, 1] and engine.calls == 1  # both faces in one model call
    assert len(encoded) == 2 and not list(tmp_path.iterdir())  # each source encoded once; nothing written
    out = tmp_path / "out.png"
    again = hififace.swap_image(sources, PHOTOS / "two_people.jpg", out, model=sw, all_faces=True,
                                provenance=Provenance(invisible=False))  # the written pixels compared
    assert len(encoded) == 2  # the identities come from the pipeline's cache
    np.testing.assert_array_equal(again.image, res.image)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), res.image)
    label = read_label(out)
    assert label["AI-Generated"] == "true" and label["hififace:command"] == "swap_image"
    expected = sw.swap(sw.identity(*sources), read_photo(PHOTOS / "two_people.jpg"), all_faces=True)
    np.testing.assert_array_equal(res.image, expected.image)  # the sources' averaged identity
    one = FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0, batch_size=1)
    one.swap(PHOTOS / "astronaut.png", PHOTOS / "two_people.jpg", all_faces=True)
    assert one.engine.calls == 2  # batch_size faces per call


def test_crops_are_cut_with_the_align_template_in_the_weights_config(model, tmp_path):
    import json

    from hififace.face.align import estimate_transform
    from hififace.inference.pipeline import FaceSwapper

    folder = model.save_pretrained(tmp_path / "ffhq_model")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["align"] == "arcface"
    cfg["align"] = "ffhq"  # weights trained on FFHQ-aligned crops
    (folder / "config.json").write_text(json.dumps(cfg))
    rgb = photo("astronaut.png")
    mats = {}
    for name, sw in (("arcface", FaceSwapper(model, parsing="landmarks", align_passes=0)),
                     ("ffhq", FaceSwapper.from_pretrained(folder, parsing="landmarks", align_passes=0))):
        face = sw.detect(rgb)[0]
        _, m = sw.align(rgb, [face.landmarks])
        np.testing.assert_allclose(m[0], estimate_transform(face.landmarks, name, 256))
        assert np.linalg.norm(transform_points(face.landmarks, m[0]) - template_points(name, 256), axis=1).mean() < 8
        mats[name] = m[0]
    assert np.abs(mats["ffhq"][:, :2]).sum() < 0.8 * np.abs(mats["arcface"][:, :2]).sum()  # FFHQ crops show more


def test_coverage_says_how_much_of_each_face_was_replaced(model, swapper, grace, caplog):
    """PhotoResult.coverage: the share of each face region pasted. A model whose mask m_r is ~0 (the tiny random
    one) replaces almost nothing: said in a warning naming --no-model-mask; model_mask=False pastes the region."""
    import logging

    from hififace.inference.pipeline import LOW_COVERAGE, FaceSwapper

    rgb = photo("two_people.jpg")
    full = swapper.swap(grace, rgb, all_faces=True)  # the stand-in engine's mask covers the whole crop
    assert len(full.coverage) == len(full.swapped) == 2 and all(0.6 < c <= 1.0 for c in full.coverage)
    assert full.low_coverage() == [] and full.replaced().startswith("face #0 ")
    random_net = FaceSwapper(model, parsing="landmarks", align_passes=0)
    ident = random_net.identity(PHOTOS / "grace_hopper.jpg")
    with caplog.at_level(logging.WARNING, logger="hififace"):
        empty = random_net.swap(ident, rgb, face=1)
    assert empty.swapped == [1] and empty.coverage[0] < LOW_COVERAGE and empty.low_coverage() == [1]
    said = [r.getMessage() for r in caplog.records if "of the face replaced" in r.getMessage()]
    assert len(said) == 1 and "face #1: only" in said[0] and "--no-model-mask" in said[0], caplog.text
    pasted = FaceSwapper(model, parsing="landmarks", align_passes=0, model_mask=False).swap(ident, rgb, face=1)
    assert pasted.coverage[0] > 0.6 and pasted.coverage[0] > 10 * empty.coverage[0]
    assert swapper.swap(grace, photo("astronaut.png")[128:384, 128:384]).coverage == [1.0]  # an aligned crop: all of it
