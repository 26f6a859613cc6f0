"""C2PA Content Credentials: sign a written image or MP4 with a manifest that says hififace made it, and read one.

The manifest (``c2pa-python``, the optional extra ``provenance``):

* claim generator ``hififace`` + version;
* a ``c2pa.actions`` assertion with one ``c2pa.created`` action, digital source type
  ``http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia`` (IPTC: made by a trained model);
* a ``hififace.model`` assertion: the weights' fingerprint (the hash ``hififace export onnx`` records), whether
  they were random, and optionally the command and the model kind;
* no thumbnail and no input file names; only with ``ingredient=`` (``--c2pa-ingredients``) the target file is
  added as an ingredient (its title, format and hash; no thumbnail).

Signing identity (:func:`resolve_identity`), first found: the files given (``--sign-cert``/``--sign-key``), the
files in ``$HIFIFACE_SIGN_CERT``/``$HIFIFACE_SIGN_KEY``, ``cert.pem``/``key.pem`` in the signing folder
(``$HIFIFACE_HOME/signing`` or ``~/.cache/hififace/signing``), else a local identity made once in that folder
(:func:`local_identity`): a local CA and an ES256 end-entity certificate it issued (C2PA refuses self-signed
end-entity certificates), the private key and the chain in one file of mode 0600, the CA certificate beside it.
Verifiers then report the signer as untrusted (no public trust list holds it) but still detect any change.

Never losing an output: :func:`sign_file` writes a temporary file beside the output and renames it; when the
library is missing or signing fails, the output is written unsigned and one warning line says so.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .._version import __version__
from ..errors import HifiFaceError
from ..utils.atomic import atomic_path

log = logging.getLogger(__name__)

#: IPTC digital source type of content made by a trained model.
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: Label of our own assertion (the weights' fingerprint, random or not).
MODEL_ASSERTION = "hififace.model"
#: Output extension -> MIME type that can be signed.
SIGNABLE = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".mp4": "video/mp4",
            ".mov": "video/quicktime"}
ENV_CERT, ENV_KEY, ENV_HOME = "HIFIFACE_SIGN_CERT", "HIFIFACE_SIGN_KEY", "HIFIFACE_HOME"
#: Files of the signing folder: the user's own chain and key, and the generated local identity.
USER_CERT, USER_KEY = "cert.pem", "key.pem"
LOCAL_SIGNER, LOCAL_CA = "local-signer.pem", "local-ca.pem"


class SigningError(HifiFaceError):
    """The signing certificate or key cannot be used."""


@dataclass(frozen=True)
class Facts:
    """What a manifest says about an output."""

    fingerprint: str | None = None  #: the weights' fingerprint (hex), as ``hififace export onnx`` records it
    random_weights: bool = False
    command: str | None = None
    model: str | None = None  #: e.g. "reference-256"
    ingredient: str | Path | None = None  #: the target file, added only when asked (``--c2pa-ingredients``)


@dataclass(frozen=True)
class SigningIdentity:
    chain: bytes  #: PEM: end-entity certificate first, then its issuers
    key: bytes  #: PEM private key (EC P-256: ES256)
    source: str  #: where it came from, for messages
    alg: str = "es256"


@dataclass
class Credentials:
    """What :func:`read` found. ``status``: ``valid`` (signature and signer trusted), ``untrusted`` (signature
    intact, signer not in the trust list: e.g. a local key), ``tampered`` (the file or manifest changed after
    signing, or the manifest is broken), ``none`` (no manifest), ``unknown`` (c2pa-python is not installed)."""

    status: str
    generator: str | None = None
    source_type: str | None = None
    signer: str | None = None
    fingerprint: str | None = None
    random_weights: bool | None = None
    codes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "generator": self.generator, "source_type": self.source_type,
                "signer": self.signer, "fingerprint": self.fingerprint, "random_weights": self.random_weights,
                "codes": list(self.codes)}


# --------------------------------------------------------------------------------------------------- library
_warned: set[str] = set()


def _warn_once(reason: str, text: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        log.warning("%s", text)


def reset_warnings() -> None:
    """Forget which warnings were given (a new run warns again)."""
    _warned.clear()


def load_c2pa():
    """The ``c2pa`` module, or None when c2pa-python is not installed (or cannot load its native library)."""
    try:
        import c2pa  # noqa: F401

        return c2pa
    except (ImportError, OSError):
        return None


def available() -> bool:
    return load_c2pa() is not None


def version() -> str:
    return __version__


# --------------------------------------------------------------------------------------------------- identity
def signing_folder() -> Path:
    """``$HIFIFACE_HOME/signing``, else ``~/.cache/hififace/signing`` (where hififace keeps user files)."""
    home = os.environ.get(ENV_HOME)
    return (Path(home).expanduser() if home else Path("~/.cache/hififace").expanduser()) / "signing"


def _read_pem(path: Path, what: str, option: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SigningError(f"{path}: {what} not found; check {option}") from None
    except OSError as err:
        raise SigningError(f"{path}: cannot read the {what} ({err.strerror or err}); check {option}") from None
    if b"-----BEGIN" not in data:
        raise SigningError(f"{path}: not a PEM {what} (no '-----BEGIN' line); give a PEM file to {option}")
    return data


def resolve_identity(cert: str | Path | None = None, key: str | Path | None = None,
                     folder: str | Path | None = None) -> SigningIdentity:
    """The signing identity to use (see the module doc for the order); makes the local one when none is given."""
    if (cert is None) != (key is None):
        raise SigningError("--sign-cert and --sign-key go together; give both (or neither, for the local key)")
    if cert is not None:
        return SigningIdentity(_read_pem(Path(cert), "certificate chain", "--sign-cert"),
                               _read_pem(Path(key), "private key", "--sign-key"), "--sign-cert/--sign-key")
    env_cert, env_key = os.environ.get(ENV_CERT), os.environ.get(ENV_KEY)
    if env_cert or env_key:
        if not (env_cert and env_key):
            raise SigningError(f"${ENV_CERT} and ${ENV_KEY} go together; set both (or neither)")
        return SigningIdentity(_read_pem(Path(env_cert), "certificate chain", f"${ENV_CERT}"),
                               _read_pem(Path(env_key), "private key", f"${ENV_KEY}"), f"${ENV_CERT}/${ENV_KEY}")
    folder = Path(folder) if folder is not None else signing_folder()
    if (folder / USER_CERT).is_file() and (folder / USER_KEY).is_file():
        return SigningIdentity(_read_pem(folder / USER_CERT, "certificate chain", f"{folder}"),
                               _read_pem(folder / USER_KEY, "private key", f"{folder}"), str(folder))
    return local_identity(folder)


def local_identity(folder: str | Path | None = None) -> SigningIdentity:
    """The local signing identity in ``folder``, made on first use and reused afterwards.

    ``local-signer.pem`` (mode 0600) holds the private key and the chain (end-entity certificate, then the local
    CA); ``local-ca.pem`` is the CA certificate alone, to give to a verifier as a trust anchor.
    """
    folder = Path(folder) if folder is not None else signing_folder()
    path = folder / LOCAL_SIGNER
    if not path.is_file():
        _create_local_identity(folder)
    data = _read_pem(path, "local signing identity", f"{folder} (delete it to make a new one)")
    key, chain = _split_pem(data)
    if not key or not chain:
        raise SigningError(f"{path}: holds no private key and certificate; delete it to make a new one")
    return SigningIdentity(chain, key, f"local key in {folder}")


def _split_pem(data: bytes) -> tuple[bytes, bytes]:
    key, chain, block = b"", b"", []
    for line in data.splitlines(keepends=True):
        block.append(line)
        if line.startswith(b"-----END"):
            text = b"".join(block)
            if b"PRIVATE KEY" in line:
                key += text
            elif b"CERTIFICATE" in line:
                chain += text
            block = []
    return key, chain


def _create_local_identity(folder: Path) -> None:
    """Make a local CA and an end-entity certificate; written atomically, never over an existing identity."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise SigningError("the 'cryptography' package is needed to make a local signing key: "
                           "pip install 'hififace[provenance]'") from None
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise SigningError(f"{folder}: cannot make the signing folder ({err.strerror or err}); "
                           f"set ${ENV_HOME} or give --sign-cert/--sign-key") from None
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)
    tag = os.urandom(4).hex()  # tells installations apart without naming the machine or the user
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hififace local key (unverified)")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hififace local CA {tag}"), org])
    usage = dict(content_commitment=False, key_encipherment=False, data_encipherment=False, key_agreement=False,
                 encipher_only=False, decipher_only=False)
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, **usage), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    ee_key = ec.generate_private_key(ec.SECP256R1())
    ee_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"hififace local signer {tag}"), org])
    ee = (x509.CertificateBuilder().subject_name(ee_name).issuer_name(ca_name).public_key(ee_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **usage), critical=True)
          .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ee_key.public_key()), critical=False)
          .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = ee_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ca_pem = ca.public_bytes(pem)
    _write_new(folder / LOCAL_SIGNER, key_pem + ee.public_bytes(pem) + ca_pem, 0o600)
    if not (folder / LOCAL_CA).exists() or _split_pem((folder / LOCAL_SIGNER).read_bytes())[1].endswith(ca_pem):
        _write_new(folder / LOCAL_CA, ca_pem, 0o644, replace=True)
    log.info("made a local signing key in %s (verifiers will call it an untrusted signer)", folder)


def _write_new(path: Path, data: bytes, mode: int, replace: bool = False) -> None:
    """Write ``data`` with ``mode`` through a temporary file; without ``replace`` an existing file is kept (a
    concurrent first run wins, and both then use its identity)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # atomic create-if-absent
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _sanitise(text: str, limit: int = 60) -> str:
    clean = "".join(c if c.isprintable() and c not in "\r\n\t" else "?" for c in str(text))
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------- signing
def manifest(facts: Facts) -> dict[str, Any]:
    """The manifest definition (c2pa-python's JSON) for ``facts``."""
    ver = version()
    model: dict[str, Any] = {"random_weights": bool(facts.random_weights)}
    if facts.fingerprint:
        model["fingerprint"] = str(facts.fingerprint)
    if facts.model:
        model["model"] = str(facts.model)
    if facts.command:
        model["command"] = str(facts.command)
    return {
        "claim_generator_info": [{"name": "hififace", "version": ver}],
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                "softwareAgent": {"name": "hififace", "version": ver},
            }]}},
            {"label": MODEL_ASSERTION, "data": model},
        ],
    }


def _context(c2pa: Any, trust_anchors: bytes | None = None):
    settings: dict[str, Any] = {"builder": {"thumbnail": {"enabled": False}}}
    if trust_anchors:
        settings["trust"] = {"user_anchors": trust_anchors.decode("ascii", "replace")}
    return c2pa.Context.from_dict(settings)


def sign_file(src: str | Path, dst: str | Path, facts: Facts, identity: SigningIdentity | None = None,
              name: str | None = None, warn: Any = None) -> bool:
    """Write ``src`` to ``dst`` with a signed manifest (``src`` may be ``dst``: signed in place). True when signed.

    ``dst`` is written through a temporary file and a rename. When c2pa-python is missing, the format cannot be
    signed or signing fails, ``dst`` gets ``src``'s bytes unsigned and one warning line says why (never raises
    for that; a missing ``src`` or an unwritable ``dst`` still raise ``OSError``). ``name``: what messages call
    ``dst`` (e.g. the final name of a temporary file); ``warn(reason, text)`` replaces the once-per-reason warning.
    """
    src, dst = Path(src), Path(dst)
    label = name or str(dst)
    mime = SIGNABLE.get(dst.suffix.lower())
    c2pa = load_c2pa()
    reason = None
    if c2pa is None:
        reason = ("c2pa", "c2pa-python is not installed: outputs are not signed with Content Credentials "
                          "(pip install 'hififace[provenance]')")
    elif mime is None:
        reason = (f"format{dst.suffix}", f"{label}: {dst.suffix or 'this format'} cannot carry Content Credentials; "
                                         f"written unsigned (use .jpg, .png, .webp or .mp4)")
    if reason is None:
        try:
            identity = identity or resolve_identity()
            with atomic_path(dst) as tmp:
                _sign(c2pa, src, tmp, mime, facts, identity)
            return True
        except SigningError as err:
            reason = (f"identity:{err}", f"{label}: written without Content Credentials: {err}")
        except Exception as err:  # the native library raises its own errors: the output must still be written
            text = _sanitise(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__, 200)
            reason = ("sign", f"{label}: written without Content Credentials (signing failed: {text})")
    (warn or _warn_once)(*reason)
    if src.resolve() != dst.resolve():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return False


def _sign(c2pa: Any, src: Path, out: Path, mime: str, facts: Facts, identity: SigningIdentity) -> None:
    info = c2pa.C2paSignerInfo(identity.alg, identity.chain, identity.key, None)
    signer = c2pa.Signer.from_info(info)
    ctx = _context(c2pa)
    builder = c2pa.Builder.from_json(json.dumps(manifest(facts)), ctx)
    try:
        if facts.ingredient is not None:
            ing = Path(facts.ingredient)
            ing_mime = SIGNABLE.get(ing.suffix.lower()) or _guess_mime(ing)
            with open(ing, "rb") as f:
                builder.add_ingredient(json.dumps({"title": _sanitise(ing.name, 120), "relationship": "componentOf"}),
                                       ing_mime, f)
        with open(src, "rb") as fin, open(out, "w+b") as fout:
            builder.sign(signer, mime, fin, fout)
    finally:
        for obj in (builder, signer, ctx):
            with contextlib.suppress(Exception):
                obj.close()


def check_identity(identity: SigningIdentity) -> None:
    """Sign a tiny in-memory PNG with ``identity``: a :class:`SigningError` naming where the identity came from
    when c2pa-python refuses the certificate or the key (a wrong file, a key of another certificate, a self-signed
    end-entity certificate). Nothing is checked without c2pa-python."""
    c2pa = load_c2pa()
    if c2pa is None:
        return
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    png.seek(0)
    try:
        info = c2pa.C2paSignerInfo(identity.alg, identity.chain, identity.key, None)
        signer = c2pa.Signer.from_info(info)
        ctx = _context(c2pa)
        builder = c2pa.Builder.from_json(json.dumps(manifest(Facts(command="check"))), ctx)
        try:
            builder.sign(signer, "image/png", png, io.BytesIO())
        finally:
            for obj in (builder, signer, ctx):
                with contextlib.suppress(Exception):
                    obj.close()
    except Exception as err:  # the native library's own errors: one line naming the identity and the fix
        text = _sanitise(str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__, 160)
        raise SigningError(f"{identity.source}: cannot sign with this certificate and key ({text}); give an ES256 "
                           f"certificate chain (end-entity first, not self-signed) and its private key") from None


def _guess_mime(path: Path) -> str:
    import mimetypes

    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


# --------------------------------------------------------------------------------------------------- reading
def read(path: str | Path, trust_anchors: str | Path | bytes | None = None) -> Credentials:
    """The Content Credentials of ``path`` (any format c2pa-python reads; others: ``none``).

    ``trust_anchors``: PEM certificates (a file or bytes) whose signers count as trusted, e.g. a ``local-ca.pem``.
    """
    c2pa = load_c2pa()
    if c2pa is None:
        return Credentials("unknown", codes=["c2pa-python not installed"])
    anchors = Path(trust_anchors).read_bytes() if isinstance(trust_anchors, (str, Path)) else trust_anchors
    ctx = _context(c2pa, anchors)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
        mime = _sniff(head) or SIGNABLE.get(Path(path).suffix.lower())
        if mime is None:
            return Credentials("none")
        with open(path, "rb") as f:
            try:
                reader = c2pa.Reader(mime, f, context=ctx)
            except Exception as err:
                name = type(err).__name__
                if "ManifestNotFound" in name or "NotSupported" in name:
                    return Credentials("none")
                text = _sanitise(str(err).strip().splitlines()[0] if str(err).strip() else name, 160)
                return Credentials("tampered", codes=[text])
            try:
                return _credentials(json.loads(reader.json()))
            finally:
                with contextlib.suppress(Exception):
                    reader.close()
    finally:
        with contextlib.suppress(Exception):
            ctx.close()


def _sniff(head: bytes) -> str | None:
    if head[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:10] == b"qt" else "video/mp4"
    return None


def _credentials(store: Mapping[str, Any]) -> Credentials:
    active = (store.get("manifests") or {}).get(store.get("active_manifest") or "", {})
    state = str(store.get("validation_state") or "")
    codes = [str(s.get("code")) for s in store.get("validation_status") or [] if isinstance(s, Mapping)]
    if state == "Trusted":
        status = "valid"
    elif state == "Valid":
        status = "untrusted"
    else:
        status = "tampered"
    gen = None
    for info in active.get("claim_generator_info") or []:
        if isinstance(info, Mapping) and info.get("name"):
            gen = " ".join(str(x) for x in (info.get("name"), info.get("version")) if x)
            break
    gen = gen or active.get("claim_generator")
    source_type, fingerprint, random_weights = None, None, None
    for a in active.get("assertions") or []:
        if not isinstance(a, Mapping):
            continue
        label, data = str(a.get("label", "")), a.get("data") or {}
        if label.startswith("c2pa.actions") and source_type is None:
            for act in data.get("actions") or []:
                if isinstance(act, Mapping) and act.get("digitalSourceType"):
                    source_type = str(act["digitalSourceType"])
                    break
        elif label == MODEL_ASSERTION and isinstance(data, Mapping):
            fingerprint = data.get("fingerprint")
            random_weights = data.get("random_weights")
    sig = active.get("signature_info") or {}
    signer = sig.get("common_name") or sig.get("issuer")
    if sig.get("common_name") and sig.get("issuer"):
        signer = f"{sig['common_name']} ({sig['issuer']})"
    return Credentials(status, _clean(gen), _clean(source_type), _clean(signer), _clean(fingerprint),
                       random_weights if isinstance(random_weights, bool) else None,
                       [c for c in codes if c and c != "None"])


def _clean(value: Any) -> str | None:
    return None if value is None else _sanitise(str(value), 200)
