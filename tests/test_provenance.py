"""Provenance: the invisible watermark (robustness, no false positives), C2PA signing and reading (every format,
tampering, the local key, a missing library), and ``hififace verify``."""
from __future__ import annotations

import io
import json
import logging
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hififace.provenance import credentials as cr
from hififace.provenance import watermark as wm
from inferkit import SAMPLES, assert_one_error, run_cli

PHOTOS = Path(__file__).parent / "data" / "photos"
PAYLOAD = 0xBEEF
FINGERPRINT = "beef0123456789ab"


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    b = io.BytesIO()
    Image.fromarray(a).save(b, "JPEG", quality=quality)
    return np.asarray(Image.open(b).convert("RGB"))


def _resize(a: np.ndarray, s: float) -> np.ndarray:
    h, w = a.shape[:2]
    return np.asarray(Image.fromarray(a).resize((round(w * s), round(h * s)), Image.BICUBIC))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _rgb(PHOTOS / "astronaut.png")[64:448, 64:448]  # 384 x 384, public domain (NASA)


@pytest.fixture(scope="module")
def marked(photo) -> np.ndarray:
    return wm.embed(photo, PAYLOAD)


@pytest.fixture
def home(monkeypatch, tmp_path):
    """An empty $HIFIFACE_HOME (where the local signing key goes); no signing variables."""
    monkeypatch.setenv("HIFIFACE_HOME", str(tmp_path / "hififace_home"))
    monkeypatch.delenv(cr.ENV_CERT, raising=False)
    monkeypatch.delenv(cr.ENV_KEY, raising=False)
    monkeypatch.chdir(tmp_path)
    cr._warned.clear()
    return tmp_path


needs_c2pa = pytest.mark.skipif(not cr.available(), reason="c2pa-python (hififace[provenance]) is not installed")


# ----------------------------------------------------------------------------------------------------- watermark
def test_bch_code_has_distance_8_and_corrects_three_errors():
    book = wm._codebook()
    weights = ((1 - book[1:]) / 2).sum(axis=1)  # bit-1 count of every non-zero code word
    assert weights.min() == 8
    code = 1.0 - 2.0 * wm.bch_encode(0x1234)
    code[[0, 7, 30]] *= -1  # three hard errors
    assert wm.bch_decode(code)[0] == 0x1234


def test_payload_is_the_fingerprints_first_four_hex_digits():
    assert wm.payload_from_fingerprint(FINGERPRINT) == PAYLOAD
    with pytest.raises(ValueError):
        wm.payload_from_fingerprint("xyz")


def test_embed_keeps_psnr_and_detects_the_payload(photo, marked):
    assert marked.shape == photo.shape and marked.dtype == np.uint8
    assert wm.psnr_db(photo, marked) >= 40.0
    d = wm.detect(marked)
    assert d.detected and d.bits == PAYLOAD and d.bits_hex == "beef"
    assert d.confidence > 0.999 and d.score >= wm.THRESHOLD
    assert abs(d.scale - 1.0) < 0.02


@pytest.mark.parametrize("attack", ["jpeg50", "jpeg75+resize0.5", "crop10", "rot90"])
def test_watermark_survives(marked, attack):
    x = {"jpeg50": lambda a: _jpeg(a, 50),
         "jpeg75+resize0.5": lambda a: _resize(_jpeg(a, 75), 0.5),
         "crop10": lambda a: a[23:23 + 346, 11:11 + 346],
         "rot90": lambda a: np.ascontiguousarray(np.rot90(a))}[attack](marked)
    d = wm.detect(x)
    assert d.detected, d
    assert d.bits == PAYLOAD


def test_no_false_positive_on_the_bundled_photos():
    files = sorted(p for p in PHOTOS.iterdir() if p.suffix in (".png", ".jpg")) + sorted(SAMPLES.glob("*.png"))
    assert len(files) >= 8
    for f in files:
        d = wm.detect(_rgb(f))
        assert not d.detected, (f.name, d.score)
        assert d.bits is None and d.score < wm.THRESHOLD


def test_the_key_matters(marked):
    assert not wm.detect(marked, key="another key").detected


def test_grey_images_stay_grey():
    g = np.repeat(_rgb(SAMPLES / "cameraman.png")[:, :, :1], 3, axis=2)
    out = wm.embed(g, 1)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_embed_refuses_what_is_not_an_image():
    with pytest.raises(ValueError):
        wm.embed(np.zeros((8, 8, 3), np.float32))


def test_watermark_survives_an_h264_reencode(photo, tmp_path):
    iio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    frames = [wm.embed(np.ascontiguousarray(photo[i * 4:i * 4 + 320, i * 4:i * 4 + 320]), PAYLOAD) for i in range(6)]
    path = str(tmp_path / "clip.mp4")
    w = iio.get_writer(path, fps=25, codec="libx264", macro_block_size=2, ffmpeg_params=["-crf", "28"],
                       pixelformat="yuv420p")
    for f in frames:
        w.append_data(f)
    w.close()
    r = iio.get_reader(path)
    back = [np.asarray(f) for f in r]
    r.close()
    assert len(back) == 6
    d = wm.detect_frames(back)
    assert d.detected and d.bits == PAYLOAD and d.frames == 6
    plain = [np.ascontiguousarray(photo[i * 4:i * 4 + 320, i * 4:i * 4 + 320]) for i in range(6)]
    assert not wm.detect_frames(plain).detected  # frame by frame, the best of six must not pass by chance


# ----------------------------------------------------------------------------------------------------- C2PA
def _write(path: Path, a: np.ndarray) -> Path:
    if path.suffix == ".mp4":
        iio = pytest.importorskip("imageio.v2")
        pytest.importorskip("imageio_ffmpeg")
        w = iio.get_writer(str(path), fps=10, codec="libx264", macro_block_size=2, pixelformat="yuv420p")
        for _ in range(3):
            w.append_data(a)
        w.close()
    elif path.suffix == ".webp":
        Image.fromarray(a).save(path, lossless=True)
    else:
        Image.fromarray(a).save(path)
    return path


@needs_c2pa
@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".mp4"])
def test_sign_and_read_back_every_format(home, ext):
    a = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    src = _write(home / f"plain{ext}", a)
    out = home / f"signed{ext}"
    assert cr.sign_file(src, out, cr.Facts(fingerprint=FINGERPRINT, random_weights=True, command="swap"))
    c = cr.read(out)
    assert c.status == "untrusted"  # the local key: intact, but no trust list holds it
    assert c.generator == f"hififace {cr.version()}"
    assert c.source_type == cr.TRAINED_ALGORITHMIC_MEDIA
    assert c.fingerprint == FINGERPRINT and c.random_weights is True
    assert c.signer and "hififace local signer" in c.signer
    ca = home / "hififace_home" / "signing" / cr.LOCAL_CA
    assert cr.read(out, trust_anchors=ca).status == "valid"
    assert cr.read(src).status == "none"
    if ext != ".mp4":
        assert np.array_equal(_rgb(out), _rgb(src))  # signing never touches the pixels
    assert not [p.name for p in home.iterdir() if p.name.startswith(".")]  # no temporary left


@needs_c2pa
def test_manifest_has_no_thumbnail_and_no_input_names_unless_asked(home):
    import c2pa

    src = _write(home / "target_photo_of_alice.png", np.full((32, 32, 3), 90, np.uint8))
    cr.sign_file(src, home / "a.png", cr.Facts(fingerprint=FINGERPRINT))
    store = json.loads(c2pa.Reader(str(home / "a.png")).json())
    text = json.dumps(store)
    assert "thumbnail" not in text and "alice" not in text and "ingredients" not in text
    cr.sign_file(src, home / "b.png", cr.Facts(fingerprint=FINGERPRINT, ingredient=src))
    text = c2pa.Reader(str(home / "b.png")).json()
    assert "target_photo_of_alice.png" in text and "thumbnail" not in text


@needs_c2pa
@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".mp4"])
def test_a_changed_byte_reads_as_tampered(home, ext):
    a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    out = home / f"s{ext}"
    cr.sign_file(_write(home / f"p{ext}", a), out, cr.Facts())
    data = bytearray(out.read_bytes())
    marker = data.rfind({".jpg": b"\xff\xda", ".png": b"IDAT", ".webp": b"VP8L", ".mp4": b"mdat"}[ext])  # pixel data
    data[marker + 40] ^= 0x01
    out.write_bytes(bytes(data))
    c = cr.read(out)
    assert c.status == "tampered", c
    assert any("mismatch" in code for code in c.codes), c.codes


@needs_c2pa
def test_local_key_is_made_once_private_and_reused(home):
    from cryptography import x509

    folder = home / "keys"
    first = cr.local_identity(folder)
    signer = folder / cr.LOCAL_SIGNER
    assert stat.S_IMODE(signer.stat().st_mode) == 0o600
    assert (folder / cr.LOCAL_CA).is_file()
    mtime = signer.stat().st_mtime_ns
    second = cr.local_identity(folder)
    assert second.key == first.key and second.chain == first.chain and signer.stat().st_mtime_ns == mtime
    ee, ca = x509.load_pem_x509_certificates(first.chain)
    assert ee.issuer == ca.subject != ee.subject  # not self-signed: C2PA refuses those
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert x509.ExtendedKeyUsageOID.EMAIL_PROTECTION in ee.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    ee.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    # resolve_identity() without anything given makes it in $HIFIFACE_HOME/signing
    assert "local key" in cr.resolve_identity().source
    assert (home / "hififace_home" / "signing" / cr.LOCAL_SIGNER).is_file()


@needs_c2pa
def test_identity_from_the_environment_and_options(home, monkeypatch):
    local = cr.local_identity(home / "k")
    (home / "chain.pem").write_bytes(local.chain)
    (home / "key.pem").write_bytes(local.key)
    assert cr.resolve_identity(home / "chain.pem", home / "key.pem").source == "--sign-cert/--sign-key"
    monkeypatch.setenv(cr.ENV_CERT, str(home / "chain.pem"))
    monkeypatch.setenv(cr.ENV_KEY, str(home / "key.pem"))
    ident = cr.resolve_identity()
    assert ident.source.startswith("$") and ident.key == local.key
    with pytest.raises(cr.SigningError, match="--sign-key"):
        cr.resolve_identity(cert=home / "chain.pem")
    (home / "bad.pem").write_text("not a pem")
    with pytest.raises(cr.SigningError, match="bad.pem"):
        cr.resolve_identity(home / "bad.pem", home / "key.pem")


def test_without_c2pa_the_output_is_written_unsigned_with_one_warning(home, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # `import c2pa` now raises ImportError
    src = _write(home / "p.png", np.full((16, 16, 3), 7, np.uint8))
    with caplog.at_level(logging.WARNING, logger="hififace"):
        assert cr.sign_file(src, home / "o1.png", cr.Facts()) is False
        assert cr.sign_file(src, home / "o2.png", cr.Facts()) is False
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "not signed" in warnings[0].getMessage()
    assert (home / "o1.png").read_bytes() == src.read_bytes() == (home / "o2.png").read_bytes()
    assert cr.read(home / "o1.png").status == "unknown"


@needs_c2pa
def test_a_refused_certificate_still_writes_the_output(home, caplog):
    """A self-signed end-entity certificate is refused by c2pa ("the certificate is invalid"): unsigned + warning."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    ident = cr.SigningIdentity(cert.public_bytes(serialization.Encoding.PEM),
                               key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), "test")
    src = _write(home / "p.jpg", np.full((16, 16, 3), 7, np.uint8))
    with caplog.at_level(logging.WARNING, logger="hififace"):
        assert cr.sign_file(src, home / "o.jpg", cr.Facts(), ident) is False
    assert (home / "o.jpg").read_bytes() == src.read_bytes()
    assert len([r for r in caplog.records if "without Content Credentials" in r.getMessage()]) == 1
    # in place: the file stays as it was
    assert cr.sign_file(src, src, cr.Facts(), ident) is False and src.is_file()


@needs_c2pa
def test_sign_in_place(home):
    p = _write(home / "x.webp", np.full((16, 16, 3), 200, np.uint8))
    assert cr.sign_file(p, p, cr.Facts(fingerprint=FINGERPRINT))
    assert cr.read(p).status == "untrusted"


# ----------------------------------------------------------------------------------------------------- verify
def test_verify_on_a_non_image_says_so_in_one_line(home, capsys):
    (home / "notes.txt").write_text("hello\n")
    rc, out, err = run_cli(["verify", home / "notes.txt"], capsys)
    assert_one_error(rc, err, "notes.txt", "not an image or video")
    assert out == ""
    rc, out, err = run_cli(["verify", home / "missing.png"], capsys)
    assert_one_error(rc, err, "missing.png", "not found")


@needs_c2pa
def test_verify_json_schema_and_verdicts(home, capsys, marked, photo):
    from hififace.media.images import write_image

    Image.fromarray(marked).save(home / "marked.jpg", quality=90)
    cr.sign_file(home / "marked.jpg", home / "signed.jpg", cr.Facts(fingerprint=FINGERPRINT))
    Image.fromarray(photo).save(home / "plain.png")
    write_image(home / "labelled.png", photo)  # today's metadata label only
    _jpeg_stripped = _jpeg(_rgb(home / "signed.jpg"), 75)  # metadata stripped, re-encoded
    Image.fromarray(_jpeg_stripped).save(home / "stripped.jpg", quality=95)
    files = ["signed.jpg", "stripped.jpg", "plain.png", "labelled.png"]
    rc, out, err = run_cli(["verify", "--json", *files], capsys)
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["file"] for r in rows] == files
    for r in rows:
        assert {"file", "label", "c2pa", "watermark", "verdict"} <= set(r)
        assert isinstance(r["label"], bool)
        assert {"status", "generator", "source_type", "signer"} <= set(r["c2pa"])
        assert r["c2pa"]["status"] in ("valid", "untrusted", "tampered", "none")
        assert {"detected", "confidence", "bits"} <= set(r["watermark"])
        assert isinstance(r["watermark"]["detected"], bool) and 0.0 <= r["watermark"]["confidence"] <= 1.0
    by = {r["file"]: r for r in rows}
    assert by["signed.jpg"]["verdict"] == "signed-untrusted" and by["signed.jpg"]["watermark"]["bits"] == "beef"
    assert by["signed.jpg"]["c2pa"]["generator"].startswith("hififace ")
    assert by["stripped.jpg"]["c2pa"]["status"] == "none" and by["stripped.jpg"]["verdict"] == "watermarked"
    assert by["stripped.jpg"]["watermark"]["bits"] == "beef"
    assert by["plain.png"]["verdict"] == "no-mark" and not by["plain.png"]["label"]
    assert by["labelled.png"]["label"] and by["labelled.png"]["verdict"] == "labelled"
    # the table for people
    rc, out, err = run_cli(["verify", "signed.jpg", "plain.png"], capsys)
    assert rc == 0 and "signed-untrusted" in out and "no-mark" in out and not err


def test_verify_reads_a_video(home, capsys, photo):
    iio = pytest.importorskip("imageio.v2")
    pytest.importorskip("imageio_ffmpeg")
    w = iio.get_writer(str(home / "clip.mp4"), fps=25, codec="libx264", macro_block_size=2, pixelformat="yuv420p",
                       ffmpeg_params=["-crf", "28"])
    for i in range(5):
        w.append_data(wm.embed(np.ascontiguousarray(photo[i:i + 320, :320]), PAYLOAD))
    w.close()
    rc, out, err = run_cli(["verify", "--json", "clip.mp4"], capsys)
    assert rc == 0, err
    (row,) = json.loads(out)
    assert row["kind"] == "video" and row["watermark"]["detected"] and row["watermark"]["bits"] == "beef"
    assert row["verdict"] in ("watermarked", "signed-untrusted")


def test_verify_does_not_leave_the_key_folder_behind(home, capsys):
    """Verifying reads only: no signing key is made."""
    Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(home / "a.png")
    run_cli(["verify", "a.png"], capsys)
    assert not (home / "hififace_home" / "signing").exists()
