"""Every output carries its provenance: the label, a signed C2PA manifest and the invisible watermark (issue 23).

The writers apply :mod:`hififace.provenance.outputs`; these tests check it through the commands (swap, grid,
interpolate, video), the app's service and the live loop, with the tiny random-weight model or the fake engine.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hififace.media.labels import read_label
from hififace.provenance import credentials as cr
from hififace.provenance import outputs as po
from hififace.provenance import watermark as wm
from inferkit import SAMPLES, assert_one_error, leftovers, run_cli, tiny_model

PHOTOS = Path(__file__).parent / "data" / "photos"
FINGERPRINT = "beef0123456789ab"

needs_c2pa = pytest.mark.skipif(not cr.available(), reason="c2pa-python (hififace[provenance]) is not installed")


@pytest.fixture
def home(monkeypatch, tmp_path):
    """An empty $HIFIFACE_HOME (the local signing key goes there), no signing variables, no model found."""
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.setenv("HIFIFACE_HOME", str(tmp_path / "hififace_home"))
    monkeypatch.delenv(cr.ENV_CERT, raising=False)
    monkeypatch.delenv(cr.ENV_KEY, raising=False)
    return tmp_path


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def _crops(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(SAMPLES / f"{name}.png", folder / f"{name}.png")
    return folder


def _label(path: Path) -> dict:
    return read_label(path)


# ---------------------------------------------------------------------------------------------- the writers
def test_writers_mark_and_sign_model_outputs_only(home):
    meta = {"hififace:command": "swap", "hififace:fingerprint": FINGERPRINT}
    from hififace.media.images import write_image

    photo = _rgb(SAMPLES / "astronaut.png")
    out = write_image(home / "o.png", photo, meta=meta)
    det = wm.detect(_rgb(out))
    assert det.detected and det.bits_hex == FINGERPRINT[:4]
    assert wm.psnr_db(_rgb(out), photo) >= 40.0
    if cr.available():
        creds = cr.read(out)
        assert creds.status == "untrusted" and creds.fingerprint == FINGERPRINT
    # no command in the label: not a model output (e.g. a preview), pixels as given, no manifest
    plain = write_image(home / "p.png", photo, meta={"hififace:x": "1"})
    np.testing.assert_array_equal(_rgb(plain), photo)
    assert cr.read(plain).status in ("none", "unknown")
    # the research switch: unmarked pixels, still signed
    raw = write_image(home / "r.png", photo, meta=meta, provenance=po.Provenance(invisible=False))
    np.testing.assert_array_equal(_rgb(raw), photo)
    assert leftovers(home) == []


# ---------------------------------------------------------------------------------------------- swap (CLI)
@needs_c2pa
def test_swap_photo_is_labelled_signed_and_watermarked(home, tiny_weights, capsys):
    pytest.importorskip("cv2")
    out = home / "out.jpg"
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", PHOTOS / "grace_hopper.jpg", "-o", out,
                          "--weights", tiny_weights, "--align-passes", "0"], capsys)
    assert rc == 0, err
    label = _label(out)
    assert "hififace:command=swap" in label["UserComment"]
    fingerprint = label["UserComment"].split("hififace:fingerprint=")[1][:16]
    creds = cr.read(out)
    assert creds.status == "untrusted" and creds.fingerprint == fingerprint and creds.random_weights is False
    assert creds.source_type == cr.TRAINED_ALGORITHMIC_MEDIA and creds.generator.startswith("hififace")
    det = wm.detect(_rgb(out))
    assert det.detected and det.bits_hex == fingerprint[:4]
    rc, text, _ = run_cli(["verify", out, "--json"], capsys)
    assert rc == 0 and json.loads(text)[0]["verdict"] == "signed-untrusted"
    assert not any("unsigned" in line or "without Content Credentials" in line for line in err), err


@needs_c2pa
def test_no_c2pa_gives_no_manifest_and_ingredients_name_the_target(home, tiny_weights, capsys):
    crops = _crops(home / "in", "cameraman")
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", crops / "cameraman.png", "-o",
                          home / "a.png", "--weights", tiny_weights, "--no-c2pa"], capsys)
    assert rc == 0, err
    assert cr.read(home / "a.png").status == "none" and _label(home / "a.png")["hififace:command"] == "swap"
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", crops / "cameraman.png", "-o",
                          home / "b.png", "--weights", tiny_weights, "--c2pa-ingredients"], capsys)
    assert rc == 0, err
    import c2pa

    with open(home / "b.png", "rb") as f:
        store = json.loads(c2pa.Reader("image/png", f).json())
    active = store["manifests"][store["active_manifest"]]
    assert [i.get("title") for i in active.get("ingredients", [])] == ["cameraman.png"]


def test_a_failing_signer_still_writes_every_output_with_one_warning(home, tiny_weights, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("signer exploded")

    monkeypatch.setattr(cr, "_sign", broken)
    monkeypatch.setattr(cr, "load_c2pa", lambda: object())  # as if installed: the failure is the signer's
    crops = _crops(home / "in", "cameraman", "grace_hopper")
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", crops, "-o", home / "out",
                          "--weights", tiny_weights], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in (home / "out").iterdir()) == ["cameraman.png", "grace_hopper.png"]
    unsigned = [line for line in err if "without Content Credentials" in line]
    assert len(unsigned) == 1 and "signer exploded" in unsigned[0], err  # once per run, not per file
    for name in ("cameraman.png", "grace_hopper.png"):
        assert _label(home / "out" / name)["hififace:command"] == "swap"


@needs_c2pa
@pytest.mark.parametrize("case", ["not-pem", "wrong-pem", "alone"])
def test_a_bad_signing_key_is_one_line_before_any_work(case, home, tiny_weights, capsys, monkeypatch):
    from hififace.models.hififace import HifiFace

    monkeypatch.setattr(HifiFace, "from_pretrained", lambda *a, **k: pytest.fail("the model was loaded"))
    cert, key = home / "cert.pem", home / "key.pem"
    cr.local_identity(home / "ids")  # a valid chain, to pair with a bad key
    cert.write_bytes(cr._split_pem((home / "ids" / cr.LOCAL_SIGNER).read_bytes())[1])
    key.write_text("not a key\n" if case == "not-pem" else
                   "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    opts = ["--sign-key", key] if case == "alone" else ["--sign-cert", cert, "--sign-key", key]
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", SAMPLES / "cameraman.png", "-o",
                          home / "o.png", "--weights", tiny_weights, *opts], capsys)
    line = assert_one_error(rc, err, *{"not-pem": ("key.pem", "PEM"), "wrong-pem": ("--sign-cert", "cannot sign"),
                                       "alone": ("--sign-cert", "together")}[case])
    assert "Traceback" not in line and not (home / "o.png").exists()


# ---------------------------------------------------------------------------------------------- grid, GIF
@needs_c2pa
def test_grid_png_is_signed_and_watermarked(home, tiny_weights, capsys):
    faces = _crops(home / "faces", "astronaut", "cameraman")
    rc, _, err = run_cli(["grid", faces, "-o", home / "g.png", "--weights", tiny_weights], capsys)
    assert rc == 0, err
    assert cr.read(home / "g.png").status == "untrusted"
    assert wm.detect(_rgb(home / "g.png")).detected


def test_a_gif_says_once_it_cannot_be_signed_and_carries_the_mark(home, caplog):
    """interpolate's GIF goes through write_animation: the watermark in every frame, one info line, no manifest."""
    from hififace.media.video import write_animation

    frame = _rgb(SAMPLES / "astronaut.png")
    meta = {"hififace:command": "interpolate", "hififace:fingerprint": FINGERPRINT}
    with caplog.at_level(logging.INFO, logger="hififace"), po.using(po.Provenance()):
        for name in ("a.gif", "b.gif"):
            write_animation(home / name, [frame, frame[::-1].copy()], meta=meta)
    said = [r.getMessage() for r in caplog.records if "cannot carry Content Credentials" in r.getMessage()]
    assert len(said) == (1 if cr.available() else 0) and all(r.levelno == logging.INFO for r in caplog.records
                                                              if "cannot carry" in r.getMessage())
    write_animation(home / "c.gif", [frame, frame[::-1].copy()], meta=meta, provenance=po.Provenance(invisible=False))
    with Image.open(home / "a.gif") as marked, Image.open(home / "c.gif") as plain:
        assert not np.array_equal(np.asarray(marked.convert("RGB")), np.asarray(plain.convert("RGB")))
    assert cr.read(home / "a.gif").status in ("none", "unknown")


# ---------------------------------------------------------------------------------------------- video
@needs_c2pa
def test_video_every_frame_watermarked_and_the_file_signed(home, capsys):
    pytest.importorskip("cv2")
    pytest.importorskip("imageio_ffmpeg")
    from videokit import face_frames, make_clip

    from hififace.inference.pipeline import FaceSwapper
    from hififace.inference.video import swap_video
    from hififace.provenance.label import output_label
    from inferkit import FakeEngine

    clip = make_clip(home / "in.mp4", face_frames(6, size=(320, 384)), audio=False)
    engine = FakeEngine()
    swapper = FaceSwapper(engine, parsing="landmarks", align_passes=0)
    meta = {**output_label("video", engine), "hififace:fingerprint": FINGERPRINT}
    swap_video(swapper, swapper.identity(SAMPLES / "astronaut.png"), clip, home / "out.mov", meta=meta,
               progress=False)
    creds = cr.read(home / "out.mov")  # MOV: signed like MP4
    assert creds.status == "untrusted" and creds.fingerprint == FINGERPRINT
    rc, text, _ = run_cli(["verify", home / "out.mov", "--json"], capsys)
    rep = json.loads(text)[0]
    assert rc == 0 and rep["watermark"]["detected"] and rep["watermark"]["bits"] == FINGERPRINT[:4], rep
    assert rep["verdict"] == "signed-untrusted" and leftovers(home) == []


# ---------------------------------------------------------------------------------------------- app
@pytest.fixture(scope="module")
def trained_like():
    m = tiny_model()
    m.config.notes.pop("weights")
    return m


@needs_c2pa
def test_app_outputs_are_signed_and_the_verify_tab_reports(home, trained_like, tmp_path):
    pytest.importorskip("cv2")
    from hififace.app.service import SwapService
    from hififace.errors import HifiFaceError

    service = SwapService(trained_like, workdir=tmp_path / "work", model_mask=False, max_upload_mb=1)
    upload = tmp_path / "upload" / "grace_hopper.jpg"
    upload.parent.mkdir()
    shutil.copy(PHOTOS / "grace_hopper.jpg", upload)
    out = service.run([str(SAMPLES / "astronaut.png")], str(upload))
    rep = service.verify(out.path)
    assert rep.verdict == "signed-untrusted" and rep.label and rep.watermark["detected"]
    assert rep.file == out.path.name  # never the server's path
    from hififace.app.ui import verify_markdown

    assert verify_markdown(rep.as_dict()).startswith("**signed-untrusted**")
    text = tmp_path / "upload" / "notes.txt"
    text.write_text("hello")
    with pytest.raises(HifiFaceError) as err:
        service.verify(text)
    assert "notes.txt" in str(err.value) and str(tmp_path) not in str(err.value)
    big = tmp_path / "upload" / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(1_100_000))
    with pytest.raises(HifiFaceError, match="upload limit"):
        service.verify(big)
    service.close()


# ---------------------------------------------------------------------------------------------- live
def test_live_loop_marks_every_frame_for_every_output():
    from hififace.live.loop import run_live

    frames = [_rgb(SAMPLES / "astronaut.png").copy() for _ in range(3)]

    class Capture:
        name, frames, fault = "fake", 3, None

        def __init__(self):
            import threading

            self.items = list(frames)
            self.finished = threading.Event()

        def start(self):
            pass

        def stop(self):
            pass

        def get(self, timeout=None):
            import types

            if not self.items:
                self.finished.set()
                return None
            return types.SimpleNamespace(frame=self.items.pop(0), timestamp=0.0)

    class Collect:
        name = "collect"

        def __init__(self):
            self.got = []

        def write(self, frame, timestamp):
            self.got.append(frame.copy())

        def poll(self):
            return None

        def close(self):
            pass

    out = Collect()
    marker = po.FrameMarker({"hififace:command": "live", "hififace:fingerprint": FINGERPRINT})
    run_live(Capture(), lambda frame, t: frame, [out], invisible=marker)
    assert len(out.got) == 3
    assert all(wm.detect(f).bits_hex == FINGERPRINT[:4] for f in out.got)
    assert not po.FrameMarker({"hififace:command": "live"}, po.Provenance(invisible=False)).enabled


def test_provenance_caught_before_work_without_c2pa(home, monkeypatch, caplog):
    """c2pa-python missing: outputs are still written (label, watermark) and one warning per run says so."""
    from hififace.media.images import write_image

    monkeypatch.setattr(cr, "load_c2pa", lambda: None)
    meta = {"hififace:command": "swap", "hififace:fingerprint": FINGERPRINT}
    photo = _rgb(SAMPLES / "astronaut.png")
    with caplog.at_level(logging.WARNING, logger="hififace"), po.using(po.Provenance()):
        for name in ("a.png", "b.jpg"):
            write_image(home / name, photo, meta=meta)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "c2pa-python is not installed" in warnings[0]
    assert wm.detect(_rgb(home / "a.png")).detected and _label(home / "b.jpg")
