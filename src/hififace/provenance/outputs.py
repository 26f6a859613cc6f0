"""What every output hififace writes carries: the invisible watermark in its pixels and a signed C2PA manifest.

The image and video writers (:mod:`hififace.media.images`, :mod:`hififace.media.video`) call this module, so that
no command, app or API call has to remember it:

* :func:`mark` puts the invisible watermark (:mod:`.watermark`) into an image or video frame, after any visible
  mark and before encoding; its 16 payload bits are the start of the weights' fingerprint, read from the output's
  label (:func:`hififace.provenance.label.output_label` records it as ``hififace:fingerprint``);
* :func:`sign` signs a finished temporary file with a C2PA manifest (:mod:`.credentials`), before the writer
  renames it into place. JPEG, PNG, WebP, MP4 and MOV can be signed; other formats (GIF, MKV) get one info line.
  Signing never loses an output: when c2pa-python is missing or signing fails, the file keeps its metadata label
  and its watermark, and one warning line per run says that outputs are unsigned.

What is applied is a :class:`Provenance` (both marks, by default). The command line builds one from its options
(``--no-c2pa``, ``--sign-cert``, ``--sign-key``, ``--c2pa-ingredients``, ``--no-invisible-watermark``) and makes
it the default for the run with :func:`using`; the Python API does the same from its arguments. Only outputs
with a label from :func:`~hififace.provenance.label.output_label` (``hififace:command``: what the model made) are
marked and signed; pictures hififace did not make (the ``faces`` preview, data-preparation crops) are not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from . import credentials as cr, watermark as wm

log = logging.getLogger(__name__)

#: Label field holding the weights' fingerprint (hex); the watermark's payload is its first 16 bits.
FINGERPRINT = "hififace:fingerprint"
#: Label field naming the command or API call: only labelled model outputs are marked and signed.
COMMAND = "hififace:command"
#: Output extensions a manifest can be embedded in.
SIGNABLE = cr.SIGNABLE


@dataclass(frozen=True)
class Provenance:
    """What the writers apply to a labelled output.

    ``invisible``: embed the invisible watermark (off only for research that must measure the unmarked output);
    ``c2pa``: sign with a C2PA manifest; ``sign_cert``/``sign_key``: the signing identity (default: see
    :func:`hififace.provenance.credentials.resolve_identity`); ``ingredients``: add the target file as an
    ingredient of the manifest (its name, format and hash; never by default: the inputs show people).
    """

    invisible: bool = True
    c2pa: bool = True
    sign_cert: str | Path | None = None
    sign_key: str | Path | None = None
    ingredients: bool = False
    key: str = wm.DEFAULT_KEY

    def replace(self, **changes: Any) -> "Provenance":
        return dataclasses.replace(self, **changes)

    def identity(self) -> cr.SigningIdentity:
        """The signing identity (resolved once per certificate/key pair; the local one is made on first use)."""
        cache_key = (str(self.sign_cert), str(self.sign_key), _env_key())
        with _lock:
            found = _identities.get(cache_key)
            if found is None:
                found = cr.resolve_identity(self.sign_cert, self.sign_key)
                _identities[cache_key] = found
        return found

    def check(self) -> None:
        """Refuse an unusable signing certificate or key now, before any work: one
        :class:`~hififace.provenance.credentials.SigningError` line. Without c2pa-python nothing is checked (the
        outputs are written unsigned, with one warning)."""
        if not self.c2pa or not cr.available():
            return
        if self.sign_cert is None and self.sign_key is None and not any(map(os.environ.get, (cr.ENV_CERT, cr.ENV_KEY))):
            return  # the signing folder's key (made there on first use): a problem with it is a warning, later
        cr.check_identity(self.identity())


def _env_key() -> str:
    return f"{os.environ.get(cr.ENV_CERT)}|{os.environ.get(cr.ENV_KEY)}|{os.environ.get(cr.ENV_HOME)}"


#: For outputs that are measurements, not results to publish (``hififace eval``'s swapped crops and figures): the
#: metadata label only, so that the metrics measure the model and not the watermark.
UNMARKED = Provenance(invisible=False, c2pa=False)

_lock = threading.Lock()
_identities: dict[tuple[str, str, str], cr.SigningIdentity] = {}
_default = Provenance()
_said: set[str] = set()


def current() -> Provenance:
    """The :class:`Provenance` writers apply when given none (both marks, unless a caller chose otherwise)."""
    return _default


@contextlib.contextmanager
def using(provenance: Provenance) -> Iterator[Provenance]:
    """Make ``provenance`` the default of the writers for a run (a command, an API call); each run warns once.

    Process-wide, not per thread: the writers' own threads (video encoding, the app's workers) see it too.
    """
    global _default
    before = _default
    _default = provenance
    _reset_messages()
    try:
        yield provenance
    finally:
        _default = before


def _reset_messages() -> None:
    _said.clear()
    cr.reset_warnings()


def _once(reason: str, level: int, text: str) -> None:
    with _lock:
        if reason in _said:
            return
        _said.add(reason)
    log.log(level, "%s", text)


def applies(meta: Mapping[str, str] | None) -> bool:
    """Whether an output with label fields ``meta`` is a model output to mark and sign."""
    return bool(meta) and COMMAND in meta


def payload(meta: Mapping[str, str] | None) -> int:
    """The watermark's 16 payload bits for an output: the start of the weights' fingerprint (0 when unknown)."""
    value = (meta or {}).get(FINGERPRINT)
    if not value:
        return 0
    try:
        return wm.payload_from_fingerprint(value)
    except ValueError:
        return 0


def _resolve(meta: Mapping[str, str] | None, provenance: Provenance | None) -> Provenance | None:
    if not applies(meta):
        return None
    return provenance if provenance is not None else current()


def mark(rgb: np.ndarray, meta: Mapping[str, str] | None, provenance: Provenance | None = None) -> np.ndarray:
    """``rgb`` (H x W x 3 uint8) with the invisible watermark, when the output is a model output and the
    provenance asks for it; else ``rgb`` itself."""
    prov = _resolve(meta, provenance)
    if prov is None or not prov.invisible:
        return rgb
    return wm.embed(np.asarray(rgb, dtype=np.uint8), payload(meta), key=prov.key)


class FrameMarker:
    """:func:`mark` for the frames of one video: settled once (payload, provenance), then called per frame."""

    def __init__(self, meta: Mapping[str, str] | None, provenance: Provenance | None = None):
        prov = _resolve(meta, provenance)
        self.enabled = prov is not None and prov.invisible
        self.key = prov.key if prov is not None else wm.DEFAULT_KEY
        self.payload = payload(meta)
        if self.enabled:
            wm.patterns(self.key)  # made (and cached) now, not while the first frame waits

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return frame
        return wm.embed(np.asarray(frame, dtype=np.uint8), self.payload, key=self.key)


def facts(meta: Mapping[str, str] | None, ingredient: str | Path | None = None) -> cr.Facts:
    """The manifest's facts from an output's label fields."""
    meta = meta or {}
    return cr.Facts(fingerprint=meta.get(FINGERPRINT) or None, random_weights="hififace:weights" in meta,
                    command=meta.get(COMMAND), model=meta.get("hififace:model"), ingredient=ingredient)


def sign(tmp: str | Path, meta: Mapping[str, str] | None, name: str | Path | None = None,
         ingredient: str | Path | None = None, provenance: Provenance | None = None) -> bool:
    """Sign the finished temporary file ``tmp`` in place (its extension is the output's) with a C2PA manifest.

    True when signed. Never raises for a signing problem: the file stays as it was (labelled, watermarked) and
    one line per run says why it is unsigned. ``name``: what messages call the output. ``ingredient``: the target
    file, added only with ``ingredients``.
    """
    prov = _resolve(meta, provenance)
    if prov is None or not prov.c2pa:
        return False
    tmp = Path(tmp)
    name = str(name or tmp.name)
    suffix = tmp.suffix.lower()
    if suffix not in SIGNABLE:
        _once(f"format{suffix}", logging.INFO,
              f"{name}: {suffix or 'this format'} cannot carry Content Credentials (C2PA); written with its metadata "
              f"label and the invisible watermark (sign .jpg, .png, .webp, .mp4 or .mov outputs)")
        return False
    if not cr.available():
        _once("c2pa", logging.WARNING,
              "c2pa-python is not installed: outputs are written unsigned (no Content Credentials), with their "
              "metadata label and the invisible watermark; pip install 'hififace[provenance]'")
        return False
    try:
        identity = prov.identity()
    except cr.SigningError as err:
        _once("identity", logging.WARNING, f"outputs are written unsigned (no Content Credentials): {err}")
        return False
    ing = ingredient if prov.ingredients else None
    return cr.sign_file(tmp, tmp, facts(meta, ing), identity, name=name, warn=_warn_unsigned)


def _warn_unsigned(reason: str, text: str) -> None:
    """One warning per run for every signing failure (not one per file or frame)."""
    _once("sign-failed", logging.WARNING, text + "; further unsigned outputs of this run are not listed")
