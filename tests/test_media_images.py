"""Image files in and out: reading every kind of awkward file, labelled writing, pixel parity, grids, animations."""
from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from hififace.errors import HifiFaceError, InputImageError, MissingDependencyError
from hififace.media import images as im
from hififace.media.labels import read_label
from hififace.inference.grid import make_grid, swap_grid
from hififace.inference.interpolate import rates
from hififace.media.video import write_animation
from hififace.media.tensors import to_uint8
from inferkit import png_header_only

RNG = np.random.RandomState(0)


def rgb(h=64, w=64, seed=0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------- reading: failures
def test_missing_file(tmp_path):
    with pytest.raises(InputImageError, match="nope.png: file not found"):
        im.read_crop(tmp_path / "nope.png")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(InputImageError, match="is a folder"):
        im.read_crop(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    with pytest.raises(InputImageError, match=r"empty\.png: empty file"):
        im.read_crop(p)


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is text, not pixels\n" * 20)
    with pytest.raises(InputImageError, match=r"notes\.png: not an image"):
        im.read_crop(p)


def test_not_an_image_and_a_damaged_image_are_told_apart(tmp_path):
    """One decoder for every command: preprocess records ``not_an_image`` for :class:`NotAnImageError` and
    ``unreadable`` for the rest, with the message the command line prints."""
    (tmp_path / "notes.jpg").write_text("text\n" * 20)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "header.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)  # a PNG signature, then nothing usable
    for name in ("notes.jpg", "empty.png"):
        with pytest.raises(im.NotAnImageError):
            im.read_photo(tmp_path / name)
    with pytest.raises(InputImageError, match=r"header\.png: not an image file PIL can read") as err:
        im.read_photo(tmp_path / "header.png")
    assert not isinstance(err.value, im.NotAnImageError)


def test_photos_and_crops_decode_alike(tmp_path, caplog):
    """Transparency composited onto black and EXIF orientation applied, whichever reader (and limit) is used."""
    a = rgb(40, 60)
    alpha = np.full((40, 60), 255, np.uint8)
    alpha[:, :30] = 128
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated 90 degrees clockwise
    Image.fromarray(np.dstack([a, alpha]), "RGBA").save(tmp_path / "t.png", exif=exif.tobytes())
    want = np.rot90((a.astype(np.float64) * alpha[..., None] / 255 + 0.5).astype(np.uint8), -1)
    photo = im.read_photo(tmp_path / "t.png")
    assert photo.orientation == 6 and photo.rgb.shape == (60, 40, 3)
    np.testing.assert_allclose(photo.rgb, want, atol=1)
    np.testing.assert_array_equal(im.read_crop(tmp_path / "t.png"), photo.rgb)
    assert "has transparency; composited onto black" in caplog.text


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root can read files without read permission")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.png"
    Image.fromarray(rgb()).save(p)
    p.chmod(0)
    try:
        with pytest.raises(InputImageError, match="permission denied"):
            im.read_crop(p)
    finally:
        p.chmod(0o644)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    # the same path for everyone (root reads 0o000 files): the OS refuses to open the file
    p = tmp_path / "locked.png"
    Image.fromarray(rgb()).save(p)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(InputImageError, match=r"locked\.png: cannot read the file \(permission denied\)"):
        im.read_crop(p)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, fmt):
    buf = io.BytesIO()
    Image.fromarray(rgb(128, 128)).save(buf, format=fmt)
    p = tmp_path / f"cut.{fmt.lower()}"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputImageError, match="truncated or corrupt"):
        im.read_crop(p)


def test_too_small(tmp_path):
    p = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 10, 10)).save(p)
    with pytest.raises(InputImageError, match=r"dot\.png: 1x1 is too small"):
        im.read_crop(p)


@pytest.mark.parametrize("side", [20000, 7000])
def test_too_large_refused_from_the_header(tmp_path, side):
    # 20000^2 trips PIL's own bomb guard inside Image.open; 7000^2 is under PIL's limit but over ours.
    p = png_header_only(tmp_path / f"huge{side}.png", side, side)
    assert p.stat().st_size < 200
    with pytest.raises(InputImageError, match=rf"huge{side}\.png: .*too large"):
        im.read_crop(p)


# ---------------------------------------------------------------------------------------------- reading: conversions
def test_rgb_png_round_trip_is_exact(tmp_path):
    a = rgb(40, 30)
    p = tmp_path / "a.png"
    Image.fromarray(a).save(p)
    b = im.read_crop(p)
    assert b.dtype == np.uint8 and b.shape == (40, 30, 3)
    np.testing.assert_array_equal(a, b)


def test_rgba_composited_on_black(tmp_path, caplog):
    a = rgb(32, 32)
    alpha = np.full((32, 32), 255, np.uint8)
    alpha[:16] = 0  # top half fully transparent
    alpha[16:, :8] = 128
    p = tmp_path / "alpha.png"
    Image.fromarray(np.dstack([a, alpha]), "RGBA").save(p)
    with caplog.at_level(logging.WARNING):
        b = im.read_crop(p)
    assert b.shape == (32, 32, 3)
    assert (b[:16] == 0).all()  # transparent -> black
    np.testing.assert_array_equal(b[16:, 8:], a[16:, 8:])  # opaque pixels unchanged
    half = a[16:, :8].astype(int) * 128 / 255
    assert np.abs(b[16:, :8].astype(int) - half).max() <= 1
    assert "transparency" in caplog.text


def test_opaque_rgba_equals_rgb(tmp_path):
    a = rgb(32, 32)
    p = tmp_path / "opaque.png"
    Image.fromarray(np.dstack([a, np.full((32, 32), 255, np.uint8)]), "RGBA").save(p)
    np.testing.assert_array_equal(im.read_crop(p), a)


def test_16bit_greyscale_is_scaled(tmp_path):
    g = np.array([[0, 257 * 127, 65535, 32768]] * 16, dtype=np.uint16)
    g = np.repeat(g, 4, axis=1)  # 16 x 16
    p = tmp_path / "deep.png"
    Image.fromarray(g).save(p)
    with Image.open(p) as check:
        assert check.mode.startswith("I")  # really a 16-bit file
    b = im.read_crop(p)
    assert b.dtype == np.uint8 and b.shape == (16, 16, 3)
    assert (b[:, 0:4] == 0).all() and (b[:, 8:12] == 255).all()
    assert (b[:, 4:8] == 127).all() and np.all(np.abs(b[:, 12:16].astype(int) - 127) <= 1)


def test_16bit_rgb(tmp_path):
    cv2 = pytest.importorskip("cv2")
    a = np.zeros((16, 16, 3), np.uint16)
    a[..., 0], a[..., 1], a[..., 2] = 1000, 32768, 65535  # BGR order for OpenCV
    p = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(p), a)
    b = im.read_crop(p)
    assert b.dtype == np.uint8 and (b[0, 0] == [255, 128, 3]).all()


def test_greyscale_to_rgb(tmp_path):
    g = RNG.randint(0, 256, (20, 24), dtype=np.uint8)
    p = tmp_path / "grey.png"
    Image.fromarray(g, "L").save(p)
    b = im.read_crop(p)
    assert b.shape == (20, 24, 3)
    for c in range(3):
        np.testing.assert_array_equal(b[:, :, c], g)


def test_palette_image(tmp_path):
    p = tmp_path / "pal.png"
    Image.fromarray(rgb(32, 32)).convert("P").save(p)
    b = im.read_crop(p)
    assert b.shape == (32, 32, 3) and b.dtype == np.uint8


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((32, 64, 3), np.uint8)  # stored landscape: 64 wide, 32 high
    a[:8, :8] = (255, 0, 0)  # red block in the stored top-left corner
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation 6: display rotated 90 degrees clockwise
    p = tmp_path / "phone.jpg"
    img.save(p, exif=exif.tobytes(), quality=100)
    b = im.read_crop(p)
    assert b.shape == (64, 32, 3)  # upright: portrait
    # after a clockwise turn the stored top-left corner is at the top-right
    assert b[2, -3, 0] > 200 and b[2, -3, 1] < 60
    assert b[2, 2].max() < 60 and b[-3, -3].max() < 60


def test_fit_keeps_model_size_crops_untouched():
    a = rgb(256, 256)
    assert im.fit_to_size(a, 256) is a


def test_fit_square_resize_matches_pil_bilinear(caplog):
    a = rgb(300, 300)
    with caplog.at_level(logging.WARNING):
        b = im.fit_to_size(a, 256, name="x.png")
    np.testing.assert_array_equal(b, np.asarray(Image.fromarray(a).resize((256, 256), Image.BILINEAR)))
    assert "x.png: 300x300 resized to the model size 256x256" in caplog.text


def test_fit_non_square_centre_crops(caplog):
    a = np.zeros((400, 256, 3), np.uint8)
    a[:72] = (255, 0, 0)
    a[72:328] = (0, 255, 0)
    a[328:] = (0, 0, 255)
    with caplog.at_level(logging.WARNING):
        b = im.fit_to_size(a, 256, name="tall.png")
    assert b.shape == (256, 256, 3)
    assert (b == np.array([0, 255, 0], np.uint8)).all()  # only the middle band is left
    assert "not square" in caplog.text


def test_load_with_size(tmp_path):
    p = tmp_path / "big.png"
    Image.fromarray(rgb(512, 512)).save(p)
    assert im.read_crop(p, 256).shape == (256, 256, 3)


def test_list_images(tmp_path):
    for name in ("b.png", "a.jpg", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in im.list_images(tmp_path)] == ["a.jpg", "b.png"]
    with pytest.raises(InputImageError, match="no images"):
        im.list_images(_empty(tmp_path))
    with pytest.raises(InputImageError, match="folder not found"):
        im.list_images(tmp_path / "missing")


def _empty(tmp_path):
    d = tmp_path / "empty_dir"
    d.mkdir()
    return d


# ---------------------------------------------------------------------------------------------- writing
def test_png_pixels_equal_the_reference_topilimage():
    # the reference saves `ToPILImage()(out.clamp(0, 1))`, i.e. `pic.mul(255).byte()`: truncation, not rounding
    t = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(3)) * 1.2 - 0.1
    expected = t.clamp(0, 1).mul(255).byte().permute(1, 2, 0).numpy()
    buf_path = _tmp_file("parity.png")
    im.write_image(buf_path, to_uint8(t))
    with Image.open(buf_path) as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), expected)


def _tmp_file(name):
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp()) / name


def test_one_label_builder_names_command_model_and_random_weights():
    from hififace.provenance.label import RANDOM_WEIGHTS, output_label
    from inferkit import tiny_model

    assert output_label("eval") == {"hififace:command": "eval"}
    model = tiny_model()
    assert output_label("grid", model, sources=2) == {"hififace:command": "grid", "hififace:model": "reference-256",
                                                      "hififace:weights": RANDOM_WEIGHTS,
                                                      "hififace:fingerprint": model.identity_fingerprint(),
                                                      "hififace:sources": "2"}
    model.config.notes.pop("weights")
    assert "hififace:weights" not in output_label("swap", model)


@pytest.mark.parametrize("ext", ["png", "jpg", "jpeg", "webp"])
def test_every_output_carries_the_label(tmp_path, ext):
    p = im.write_image(tmp_path / f"out.{ext}", rgb(), meta={"hififace:command": "test"})
    label = read_label(p)
    text = " ".join(label.values())
    assert "Synthetic image generated by hififace" in text
    assert "hififace 0.1" in label["Software"]
    assert "trainedAlgorithmicMedia" in label.get("XMP", "") + label.get("XML:com.adobe.xmp", "")
    assert "hififace:command" in text or label.get("hififace:command") == "test"
    if ext == "png":
        assert label["AI-Generated"] == "true" and label["hififace:command"] == "test"
    else:
        assert label["ImageDescription"].startswith("Synthetic image") and "AI-Generated=true" in label["UserComment"]
    assert sorted(x.name for x in tmp_path.iterdir()) == [f"out.{ext}"]  # no temporary file left


@pytest.mark.parametrize("ext", ["png", "webp"])
def test_lossless_outputs_keep_pixels(tmp_path, ext):
    a = rgb(50, 60)
    np.testing.assert_array_equal(im.read_crop(im.write_image(tmp_path / f"o.{ext}", a)), a)


def test_watermark_marks_only_a_corner(tmp_path):
    a = np.full((256, 256, 3), 128, np.uint8)
    b = im.read_crop(im.write_image(tmp_path / "w.png", a, watermark=True))
    diff = np.any(b != a, axis=2)
    assert diff.sum() > 100  # something visible was drawn
    ys, xs = np.nonzero(diff)
    assert ys.min() > 256 * 0.75 and xs.min() > 256 * 0.4  # bottom-right corner only


def test_unsupported_output_format_refused(tmp_path):
    with pytest.raises(HifiFaceError, match=r"out\.bmp: unsupported output format"):
        im.write_image(tmp_path / "out.bmp", rgb())
    with pytest.raises(HifiFaceError, match="is a folder"):
        im.check_output_path(tmp_path)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_bytes(b"x")  # an output "inside" a file: refused before any work, in one line
    with pytest.raises(HifiFaceError, match=r"out\.png: cannot write there \(.*file is a file, not a folder\)"):
        im.check_output_path(tmp_path / "file" / "sub" / "out.png")


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        im.write_image(tmp_path / "o.png", np.zeros((8, 8, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- grids
class CountingModel:
    """Stands in for HifiFace: identity = the source's mean colour, swap = the target tinted by it."""

    def __init__(self):
        self.identity_calls = 0
        self.prepare_calls = 0
        self.swap_calls = 0

    def identity(self, source):
        self.identity_calls += 1
        return int(source.mean())

    def prepare_target(self, targets):
        self.prepare_calls += 1
        return list(targets)

    def swap(self, ident, targets):
        self.swap_calls += 1
        return [np.full_like(t, ident) for t in targets]


def test_swap_grid_encodes_each_source_and_each_target_batch_once():
    sources = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20, 30)]
    targets = [np.zeros((8, 8, 3), np.uint8)] * 5
    model = CountingModel()
    done = []
    res = swap_grid(model, sources, targets, batch_size=2, progress=done.append)
    assert model.identity_calls == 3
    assert model.prepare_calls == 3  # 5 targets in batches of 2, each prepared once for all sources
    assert model.swap_calls == 3 * 3
    assert sum(done) == 15
    assert [[int(c[0, 0, 0]) for c in row] for row in res] == [[10] * 5, [20] * 5, [30] * 5]


def test_make_grid_layout():
    s = [np.full((32, 32, 3), 50 * (i + 1), np.uint8) for i in range(2)]
    t = [np.full((32, 32, 3), 200, np.uint8), np.full((32, 32, 3), 220, np.uint8), np.full((32, 32, 3), 240, np.uint8)]
    r = [[np.full((32, 32, 3), 10 * (i * 3 + j), np.uint8) for j in range(3)] for i in range(2)]
    g = np.asarray(make_grid(["s0", "s1"], s, ["t0", "t1", "t2"], t, r, padding=2))
    band = 12
    assert g.shape == (2 + 3 * (32 + band + 2), 2 + 4 * (32 + 2), 3)

    def cell(row, col):
        y, x = 2 + row * (32 + band + 2), 2 + col * (32 + 2)
        return g[y : y + 32, x : x + 32]

    np.testing.assert_array_equal(cell(0, 2), t[1])  # first row: targets
    np.testing.assert_array_equal(cell(2, 0), s[1])  # first column: sources
    np.testing.assert_array_equal(cell(2, 3), r[1][2])
    caption = g[2 + 32 : 2 + 32 + band, 2 + 34 : 2 + 34 + 32]
    assert (caption < 128).any()  # a caption was written under the target


# ---------------------------------------------------------------------------------------------- animations
def test_rates_match_the_reference():
    assert rates() == [i / 20.0 for i in range(21)]


def test_gif_like_the_reference(tmp_path):
    frames = [np.full((64, 64, 3), 12 * i, np.uint8) for i in range(21)]
    p = write_animation(tmp_path / "o.gif", frames, meta={"hififace:mode": "all"})
    with Image.open(p) as gif:
        assert gif.n_frames == 21 and gif.info["loop"] == 0 and gif.info["duration"] == 300
        assert b"Synthetic image generated by hififace" in gif.info["comment"]
        assert "hififace:mode=all" in read_label(p)["Comment"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["o.gif"]


def test_mp4_written_and_labelled(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v2 as iio

    frames = [np.full((64, 64, 3), 12 * i, np.uint8) for i in range(21)]
    p = write_animation(tmp_path / "o.mp4", frames)
    reader = iio.get_reader(str(p))
    try:
        assert sum(1 for _ in reader) == 21
    finally:
        reader.close()
    assert b"Synthetic image generated by hififace" in p.read_bytes()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["o.mp4"]


def test_mp4_without_the_video_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # makes `import imageio_ffmpeg` fail
    with pytest.raises(MissingDependencyError, match=r"hififace\[video\]"):
        write_animation(tmp_path / "o.mp4", [np.zeros((16, 16, 3), np.uint8)] * 2)
    assert list(tmp_path.iterdir()) == []


def test_output_path_in_a_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path, monkeypatch):
    import os

    check_output_path = im.check_output_path
    (tmp_path / "a_file.png").write_bytes(b"x")
    with pytest.raises(HifiFaceError, match=r"a_file\.png is a file, not a folder\); choose another -o"):
        check_output_path(tmp_path / "a_file.png" / "sub" / "out.png")
    assert check_output_path(tmp_path / "new" / "sub" / "out.png")  # missing folders are made when writing
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(HifiFaceError, match=r"cannot write there \(.* is not writable\); choose another -o"):
        check_output_path(tmp_path / "new" / "out.png")
