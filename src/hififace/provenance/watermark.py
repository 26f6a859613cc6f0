"""An invisible watermark that survives JPEG, resizing, cropping and video re-encoding.

Scheme (spread spectrum with a periodic tile, after Kutter's self-referencing watermarks)::

    tile (TILE x TILE, periodic, band-limited) = a_sync * P_sync + a_bits * sum_k c_k * P_k
    image luma  +=  strength * mask * tile repeated over the whole frame (scaled by an integer factor on large images)

* ``P_sync`` and ``P_1..P_32`` are keyed pseudo-random patterns, orthonormal, holding only spatial frequencies of
  :data:`BAND` cycles per tile (mid frequencies: low enough to survive JPEG quality 50 after a 0.5x downscale,
  high enough to stay away from the image content's strongest frequencies). ``P_sync`` is the fixed hififace
  mark; ``c_1..c_32`` (+-1) are 16 payload bits (e.g. of the weights' fingerprint) coded with the extended BCH
  (32, 16) code (minimum distance 8), decoded by soft maximum likelihood.
* Only luma is marked, with the smallest RGB change that moves it (proportional to the luma weights; grey images
  stay grey); ``mask`` puts more of it in textured regions than in flat ones, and the strength is set so that
  the PSNR against the original is :data:`PSNR_DB`.
* Detection needs no original and no side information. The luma's high-pass residual is divided by its local RMS
  (edges turned down to the level of flat areas). Folding the residual with a period p (summing all tiles) and
  taking the tile's spectrum is the same as sampling the residual's spectrum at (ky, kx) / p, so one zero-padded
  FFT lets every period be tried (any resize); the three best are refined with an exact DFT. The folded tile's
  spectrum is whitened per frequency ring, and a cyclic cross-correlation with ``P_sync`` in four rotations finds
  the shift (any crop; EXIF-rotated or turned copies); its peak, as a z-score over all shifts, is the detection
  statistic, and the payload is read at that shift. Videos: see :func:`detect_frames`.
* The threshold :data:`THRESHOLD` was set on unmarked images (``benchmarks/watermark.py``: random views of the
  photos and of natural-image stand-ins, noise, flat images; see benchmarks/README.md).

The default key is public, so anyone can check a file with ``hififace verify``; the price is that anyone can also
try to remove or forge the mark (see docs/provenance.md). Only numpy and scipy are used.
"""
from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

#: Side of the periodic tile, in pixels at embedding scale 1.
TILE = 64
#: Radial spatial-frequency band of the patterns, in cycles per tile (periods of 16 to ~5.8 pixels).
BAND = (4.0, 11.0)
#: Payload size in bits, and the coded length (extended BCH(32, 16)).
PAYLOAD_BITS = 16
CODE_BITS = 32
#: Share of the watermark energy in the synchronisation (mark) pattern; the rest carries the payload.
SYNC_SHARE = 0.6
#: PSNR (dB) of a watermarked image against the original (the issue's floor is 40 dB).
PSNR_DB = 41.0
#: The public key: the hififace mark everyone can detect.
DEFAULT_KEY = "hififace"
#: Detection threshold on the sync z-score: 2,200 unmarked trials scored at most 6.02 (mean 4.54, sd 0.37); a Gumbel
#: fit puts the false-positive rate at 6.75 near 2.5e-4 (benchmarks/README.md).
THRESHOLD = 6.75
#: Images are box-reduced by an integer factor to a shorter side below 2x this, then its central part at most
#: this square is analysed (plenty of tiles; bounded time).
MAX_ANALYSIS_SIDE = 512
#: Smallest tile period searched, in analysed pixels (a 0.4x copy of a small image still has 25.6).
MIN_PERIOD = 24
#: ... and relative to the image's shorter side: :func:`embed_scale` keeps the period above 1/12 of the shorter
#: side, crops only raise that share, and 1/24 leaves room for a marked image inside a larger screenshot.
MIN_PERIOD_RATIO = 1 / 24


@dataclass(frozen=True)
class Detection:
    """What :func:`detect` found.

    ``detected``: the hififace mark is present (``score`` >= :data:`THRESHOLD`). ``confidence``: 1 - p, with p
    a (Bonferroni) bound on the chance of a score this high in an unmarked image. ``bits``: the 16-bit payload
    when detected (else None); ``bits_margin`` > 0 says how much better the decoded code word fitted than the
    runner-up (small: the bits are unreliable). ``scale``: the estimated size of the image relative to the one
    marked (0.5 after a 0.5x resize). ``frames``: how many frames were analysed.
    """

    detected: bool
    confidence: float
    score: float
    bits: int | None = None
    bits_margin: float = 0.0
    scale: float = 0.0
    frames: int = 1
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def bits_hex(self) -> str | None:
        return None if self.bits is None else f"{self.bits:04x}"


# ----------------------------------------------------------------------------------------------- patterns + code
def _seed(key: str, what: str) -> int:
    return int.from_bytes(hashlib.sha256(f"hififace-watermark/{key}/{what}".encode()).digest()[:8], "little")


def _band_mask(n: int) -> np.ndarray:
    f = np.fft.fftfreq(n) * n  # cycles per tile
    r = np.hypot(f[:, None], f[None, :])
    return (r >= BAND[0]) & (r <= BAND[1])


@functools.lru_cache(maxsize=8)
def patterns(key: str = DEFAULT_KEY) -> np.ndarray:
    """(1 + CODE_BITS) x TILE x TILE orthonormal band-limited patterns of ``key`` (row 0: the mark)."""
    rng = np.random.default_rng(_seed(key, "patterns"))
    band = _band_mask(TILE)
    spec = (rng.standard_normal((1 + CODE_BITS, TILE, TILE)) + 1j * rng.standard_normal((1 + CODE_BITS, TILE, TILE)))
    pats = np.fft.ifft2(spec * band, axes=(1, 2)).real.reshape(1 + CODE_BITS, -1)
    q, _ = np.linalg.qr(pats.T)  # orthonormal columns, still inside the band (a linear mix of band-limited rows)
    q = q.T * np.sign(np.sum(q.T * pats, axis=1, keepdims=True))
    return (q * math.sqrt(TILE * TILE)).reshape(1 + CODE_BITS, TILE, TILE).astype(np.float64)  # unit variance


_BCH_G = int("107657", 8)  # generator of the binary BCH(31, 16) code, t = 3


def bch_encode(message: int) -> np.ndarray:
    """16-bit ``message`` -> 32 code bits (systematic BCH(31, 16) + overall parity), as a 0/1 array."""
    r = (message & 0xFFFF) << 15
    for i in range(30, 14, -1):
        if r >> i & 1:
            r ^= _BCH_G << (i - 15)
    word = ((message & 0xFFFF) << 15) | r
    bits = np.array([(word >> i) & 1 for i in range(31)], dtype=np.int8)
    return np.append(bits, bits.sum() & 1).astype(np.int8)


@functools.lru_cache(maxsize=1)
def _codebook() -> np.ndarray:
    """65536 x 32 matrix of +-1 code words (built from the 16 generator rows; ~2 MB)."""
    rows = np.stack([bch_encode(1 << i) for i in range(PAYLOAD_BITS)]).astype(np.uint8)
    msgs = np.arange(1 << PAYLOAD_BITS, dtype=np.uint32)
    sel = ((msgs[:, None] >> np.arange(PAYLOAD_BITS, dtype=np.uint32)) & 1).astype(np.uint8)
    words = (sel @ rows) & 1  # linear code: XOR of the generator rows
    return (1 - 2 * words.astype(np.int8)).astype(np.float32)


def bch_decode(soft: np.ndarray) -> tuple[int, float]:
    """Soft maximum-likelihood decoding: (message, margin) where ``soft`` > 0 means bit 0."""
    scores = _codebook() @ np.asarray(soft, dtype=np.float32)
    best = int(np.argmax(scores))
    top2 = np.partition(scores, -2)[-2:]
    norm = float(np.linalg.norm(soft)) or 1.0
    return best, float(top2[1] - top2[0]) / norm


def payload_from_fingerprint(fingerprint: str) -> int:
    """The 16 payload bits for a weights' fingerprint (hex, as ``hififace export onnx`` records it): its first four
    hex digits, so that ``Detection.bits_hex`` reads as the fingerprint's start."""
    head = str(fingerprint).strip().lower()[:4]
    if len(head) < 4 or any(c not in "0123456789abcdef" for c in head):
        raise ValueError(f"not a hex fingerprint: {str(fingerprint)[:20]!r}")
    return int(head, 16)


# ------------------------------------------------------------------------------------------------------ embedding
_LUMA_RGB = np.array([0.299, 0.587, 0.114])


def _luma(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb, dtype=np.float32)
    if a.ndim == 2:
        return a
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def embed_scale(height: int, width: int) -> int:
    """Integer factor by which the tile is enlarged on large images (1 up to a shorter side of 767 pixels)."""
    return max(1, int(round(min(height, width) / 512)))


def tile_image(key: str, payload: int, scale: int = 1) -> np.ndarray:
    """The watermark tile at ``scale`` (``scale * TILE`` square, periodic, unit variance)."""
    pats = patterns(key)
    code = 1.0 - 2.0 * bch_encode(payload)
    t = math.sqrt(SYNC_SHARE) * pats[0] + math.sqrt((1 - SYNC_SHARE) / CODE_BITS) * np.tensordot(code, pats[1:], 1)
    if scale > 1:  # band-limited interpolation: the same frequencies in cycles per tile, exactly periodic
        n = TILE * scale
        spec = np.fft.fft2(t)
        big = np.zeros((n, n), dtype=complex)
        f = (np.fft.fftfreq(TILE) * TILE).astype(int)
        big[np.ix_(f % n, f % n)] = spec
        t = np.fft.ifft2(big).real * scale * scale
    return t / t.std()


def _block_mask(luma: np.ndarray) -> tuple[np.ndarray, int]:
    """:func:`activity_mask` before it is enlarged: one weight per ``f`` x ``f`` block (``f`` = 4, or 1 on tiny
    images), not yet normalised; the image is padded at its edges to whole blocks."""
    from scipy import ndimage

    h, w = luma.shape
    f = 4 if min(h, w) >= 64 else 1
    hh, ww = -(-h // f) * f, -(-w // f) * f
    y = luma if (hh, ww) == (h, w) else np.pad(luma, ((0, hh - h), (0, ww - w)), mode="edge")
    y = np.asarray(y, dtype=np.float32)
    fine = np.zeros_like(y)  # |horizontal| + |vertical| difference to the next pixel (0 past the last one)
    np.subtract(y[:, 1:], y[:, :-1], out=fine[:, :-1])
    np.abs(fine, out=fine)
    step = np.zeros_like(y)
    np.subtract(y[1:], y[:-1], out=step[:-1])
    np.abs(step, out=step)
    fine += step
    local = ndimage.uniform_filter(fine.reshape(hh // f, f, ww // f, f).mean(axis=(1, 3)), 3, mode="nearest")
    return np.sqrt(local + np.float32(4.0)), f


def _block_norm(m: np.ndarray, f: int, h: int, w: int) -> float:
    """The root mean square of the block weights ``m`` enlarged to ``h`` x ``w`` (edge blocks count partly)."""
    rows = np.full(m.shape[0], f, np.float64)
    rows[-1] = h - f * (m.shape[0] - 1)
    cols = np.full(m.shape[1], f, np.float64)
    cols[-1] = w - f * (m.shape[1] - 1)
    return math.sqrt(float(rows @ (m.astype(np.float64) ** 2) @ cols) / (h * w))


def activity_mask(luma: np.ndarray) -> np.ndarray:
    """Per-pixel weight (mean square 1): more watermark in texture, less in flat areas (square-root law, mild).

    Computed on a 4x reduced copy (texture varies slowly), so it costs little even on video frames.
    """
    h, w = luma.shape
    m, f = _block_mask(luma)
    m /= np.float32(_block_norm(m, f, h, w))
    return np.repeat(np.repeat(m, f, axis=0), f, axis=1)[:h, :w].astype(np.float32)


@functools.lru_cache(maxsize=2)
def _pattern(key: str, payload: int, scale: int, height: int, width: int) -> np.ndarray:
    """The tile repeated over ``height`` x ``width`` (float32; kept for the next frame of the same size)."""
    t = tile_image(key, payload, scale).astype(np.float32)
    n = t.shape[0]
    out = np.tile(t, (-(-height // n), -(-width // n)))[:height, :width]
    out.flags.writeable = False
    return out


def embed(rgb: np.ndarray, payload: int = 0, key: str = DEFAULT_KEY, psnr: float = PSNR_DB,
          mask: np.ndarray | None = None, scale: int | None = None) -> np.ndarray:
    """Watermark an H x W x 3 uint8 RGB image (or H x W grey); returns a new uint8 array of the same shape.

    ``payload``: 16 bits (e.g. ``int(fingerprint[:4], 16)``). ``mask`` (H x W, >= 0) restricts or weights where the
    mark goes (default: :func:`activity_mask`); the strength always gives ``psnr`` dB over the whole image.
    """
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"expected an H x W x 3 uint8 image, got {a.dtype} {a.shape}")
    h, w = a.shape[:2]
    k = embed_scale(h, w) if scale is None else int(scale)
    pattern = _pattern(key, int(payload), k, h, w)
    out = a.astype(np.float32)
    if mask is None:  # the activity mask, applied block by block (no full-size copy of it is made)
        m, f = _block_mask(out if out.ndim == 2 else out[..., :3] @ _LUMA_RGB.astype(np.float32))
        m /= np.float32(_block_norm(m, f, h, w))
        hh, ww = m.shape[0] * f, m.shape[1] * f
        delta = np.zeros((hh, ww), np.float32)
        delta[:h, :w] = pattern
        delta.reshape(m.shape[0], f, m.shape[1], f)[...] *= m[:, None, :, None]
        delta = delta[:h, :w]
    else:
        delta = pattern * np.asarray(mask, dtype=np.float32)
    target_mse = 255.0 ** 2 / 10 ** (psnr / 10)
    flat = np.ascontiguousarray(delta).ravel()
    gain = math.sqrt(max(target_mse - 1 / 12, 1e-6) / max(float(np.dot(flat, flat)) / flat.size, 1e-12))  # rounding: ~1/12
    delta = delta * np.float32(gain)
    if out.ndim == 2:
        out += delta
    elif _is_grey(a):  # keep a grey image grey
        for c in range(3):
            out[..., c] += delta
    else:  # the RGB change of least squared size that moves luma by delta: proportional to the luma weights
        for c, weight in enumerate(_LUMA_RGB / np.sqrt(np.mean(_LUMA_RGB ** 2))):
            out[..., c] += delta * np.float32(weight)
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _is_grey(a: np.ndarray) -> bool:
    return bool(np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 1], a[..., 2]))


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


# ------------------------------------------------------------------------------------------------------ detection
#: Highest frequency of the patterns (cycles per tile): the folded tile's spectrum is needed only up to it.
_KMAX = int(BAND[1])


def _whiten(x: np.ndarray, sigma_hp: float = 2.0, sigma_rms: float = 2.0) -> np.ndarray:
    """High-pass residual, divided by its local RMS and clipped: edges and texture are turned down to the level of
    flat areas, where the mark is strongest relative to the image (a small RMS window measured best: 0.5x + JPEG 75
    of a 256 x 256 photo went from z 5.5 to 7.8 between windows of 12 and 2 pixels, see benchmarks/README.md)."""
    from scipy import ndimage

    r = x - ndimage.gaussian_filter(x, sigma_hp)
    rms = np.sqrt(ndimage.gaussian_filter(r * r, sigma_rms)) + 1e-3
    return np.clip(r / rms, -3.0, 3.0)


def _analysis_luma(rgb: np.ndarray) -> tuple[np.ndarray, int, float]:
    """Luma to analyse (box-reduced by an integer factor, then the central part of at most MAX_ANALYSIS_SIDE
    square), the reduction factor, and the smallest tile period worth searching (see :data:`MIN_PERIOD_RATIO`)."""
    y = _luma(rgb).astype(np.float64)
    f = max(1, min(y.shape) // MAX_ANALYSIS_SIDE)
    if f > 1:  # box-reduce very large images (the tile period shrinks with them)
        h, w = (y.shape[0] // f) * f, (y.shape[1] // f) * f
        y = y[:h, :w].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    h, w = y.shape
    ch, cw = min(h, MAX_ANALYSIS_SIDE), min(w, MAX_ANALYSIS_SIDE)
    y0, x0 = (h - ch) // 2, (w - cw) // 2  # the central part holds plenty of tiles
    return np.ascontiguousarray(y[y0:y0 + ch, x0:x0 + cw]), f, max(float(MIN_PERIOD), min(h, w) * MIN_PERIOD_RATIO)


def _fold_spectrum(r: np.ndarray, period: float) -> np.ndarray:
    """The spectrum (TILE x TILE, in-band part) of ``r`` folded with a (fractional) ``period``.

    Folding (summing all tiles) and the DFT of the folded tile are done at once: coefficient (ky, kx) in cycles
    per tile is ``sum r(y, x) exp(-2 pi i (ky y + kx x) / period)``, two small matrix products; exact for any period.
    """
    h, w = r.shape
    k = np.arange(-_KMAX, _KMAX + 1)
    ax = -2 * np.pi * np.outer(np.arange(w), k) / period
    ay = -2 * np.pi * np.outer(k, np.arange(h)) / period
    rx = r @ np.cos(ax) + 1j * (r @ np.sin(ax))  # h x 23
    c = (np.cos(ay) + 1j * np.sin(ay)) @ rx  # 23 x 23
    out = np.zeros((TILE, TILE), dtype=complex)
    out[np.ix_(k % TILE, k % TILE)] = c
    return out


def _ring_whiten(spec: np.ndarray) -> np.ndarray:
    """Divide each in-band coefficient by the RMS of its frequency ring: the image's leftover (stronger at low
    frequencies) then weighs the same at every frequency, the matched filter for coloured noise."""
    rings, band = _rings()
    power = np.abs(spec) ** 2
    mean = np.bincount(rings.ravel(), power.ravel(), minlength=TILE) / np.maximum(np.bincount(rings.ravel(), minlength=TILE), 1)
    return np.where(band, spec / np.sqrt(np.maximum(mean[rings], 1e-20)), 0)


@functools.lru_cache(maxsize=1)
def _rings() -> tuple[np.ndarray, np.ndarray]:
    f = np.fft.fftfreq(TILE) * TILE
    return np.rint(np.hypot(f[:, None], f[None, :])).astype(np.int64), _band_mask(TILE)


#: The four ways a picture can be turned (EXIF orientations applied or not, rotated screenshots). Mirrored
#: copies are not searched (it would double the scan and raise the false-positive floor for a rare edit).
ORIENTATIONS = tuple((k, False) for k in range(4))


def _orient(a: np.ndarray, how: tuple[int, bool]) -> np.ndarray:
    k, mirror = how
    a = np.rot90(a, k, axes=(-2, -1))
    return np.flip(a, axis=-1) if mirror else a


@functools.lru_cache(maxsize=8)
def _pattern_spectra(key: str) -> np.ndarray:
    """Conjugate spectra of the sync pattern in each orientation: 4 x TILE x TILE."""
    return np.conj(np.fft.fft2(np.stack([_orient(patterns(key)[0], o) for o in ORIENTATIONS]), axes=(1, 2)))


def _sync_score(spec: np.ndarray, key: str) -> tuple[float, tuple[int, int], float, int]:
    """z-score of the sync correlation's peak over all shifts and orientations, the shift, the correlation
    surface's std and the orientation's index."""
    c = np.fft.ifft2(spec[None] * _pattern_spectra(key), axes=(1, 2)).real
    std = c.std(axis=(1, 2))
    std[std <= 0] = np.inf
    z = (c - c.mean(axis=(1, 2), keepdims=True)) / std[:, None, None]
    i = int(np.argmax(z))
    o, rest = divmod(i, TILE * TILE)
    dy, dx = divmod(rest, TILE)
    return float(z.flat[i]), (dy, dx), float(std[o]), o


def _payload(spec: np.ndarray, shift: tuple[int, int], std: float, key: str, orientation: int = 0) -> np.ndarray:
    """Soft values of the 32 code bits at ``shift`` in ``orientation`` (positive: bit 0)."""
    folded = np.fft.ifft2(spec).real
    shifted = np.roll(_orient(patterns(key)[1:], ORIENTATIONS[orientation]), shift, axis=(1, 2))
    return np.tensordot(shifted, folded, axes=((1, 2), (0, 1))) / std


#: Zero-padding factor of the spectrum the period scan reads (coherence >= ~0.9 between grid points).
SCAN_PAD = 2
#: Candidate periods scored per batch in the scan.
_BATCH = 64


def _padded_spectrum(r: np.ndarray) -> np.ndarray:
    """Zero-padded 2-D spectrum of a residual (complex64): the scan samples it at k / period for any period."""
    from scipy import fft

    h, w = r.shape
    return fft.fft2(r.astype(np.float32), s=(fft.next_fast_len(SCAN_PAD * h), fft.next_fast_len(SCAN_PAD * w)))


def _scan_grid(lo: float, hi: float, span: int) -> np.ndarray:
    """Periods from ``lo`` to ``hi``, about one padded frequency bin apart at the highest frequency used."""
    out, p = [], lo
    while p <= hi:
        out.append(p)
        p += max(0.01, p * p / (_KMAX * SCAN_PAD * span))
    return np.array(out)


def _gather(spectra: list[np.ndarray], periods: np.ndarray) -> np.ndarray:
    """B x TILE x TILE tile spectra of ``periods``: the padded spectra (summed over frames) at (ky, kx) / period."""
    k = np.arange(-_KMAX, _KMAX + 1)
    out = np.zeros((len(periods), TILE, TILE), dtype=complex)
    acc = 0
    for spec in spectra:
        ph, pw = spec.shape
        iy = np.rint(np.outer(1.0 / periods, k) * ph).astype(np.int64) % ph  # B x 23
        ix = np.rint(np.outer(1.0 / periods, k) * pw).astype(np.int64) % pw
        acc = acc + spec[iy[:, :, None], ix[:, None, :]]
    out[:, (k % TILE)[:, None], (k % TILE)[None, :]] = acc
    return out


def _ring_whiten_batch(spec: np.ndarray) -> np.ndarray:
    rings, band = _rings()
    power = np.abs(spec) ** 2
    flat = rings.ravel()
    counts = np.maximum(np.bincount(flat, minlength=TILE), 1)
    mean = np.stack([np.bincount(flat, p.ravel(), minlength=TILE) for p in power]) / counts
    return np.where(band, spec / np.sqrt(np.maximum(mean[:, rings], 1e-20)), 0)


@functools.lru_cache(maxsize=8)
def _pattern_half_spectra(key: str) -> np.ndarray:
    """:func:`_pattern_spectra` as real-FFT halves (complex64): the batched scan's correlations."""
    return _pattern_spectra(key)[..., : TILE // 2 + 1].astype(np.complex64)


def _scores_batch(spec: np.ndarray, key: str) -> np.ndarray:
    """Best sync z-score (over shifts and orientations) of each of B whitened tile spectra."""
    from scipy import fft

    half = spec[:, None, :, : TILE // 2 + 1].astype(np.complex64) * _pattern_half_spectra(key)[None]
    c = fft.irfft2(half, s=(TILE, TILE), axes=(2, 3))  # B x 4 x T x T, float32
    c -= c.mean(axis=(2, 3), keepdims=True)
    std = c.std(axis=(2, 3))
    z = c.max(axis=(2, 3)) / np.where(std > 0, std, np.inf)
    return z.max(axis=1)


def _search(residuals: list[np.ndarray], key: str, lo: float = MIN_PERIOD) -> tuple[float, float, np.ndarray, int]:
    """Best (score, period, whitened folded spectrum, periods tried): a scan of all periods on the padded
    spectrum, then an exact local refinement of the three best."""
    h, w = residuals[0].shape
    lo, hi = float(lo), min(h, w) / 2.0  # at least two periods
    if hi < lo:
        return 0.0, 0.0, np.zeros((TILE, TILE), complex), 0
    spectra = [_padded_spectrum(r) for r in residuals]
    grid = _scan_grid(lo, hi, max(h, w))
    scores = np.concatenate([_scores_batch(_ring_whiten_batch(_gather(spectra, grid[i:i + _BATCH])), key)
                             for i in range(0, len(grid), _BATCH)])
    order = np.argsort(scores)[::-1]
    cands: list[float] = []
    for i in order:  # three best, not neighbours of each other
        if all(abs(grid[i] - c) > 0.02 * c for c in cands):
            cands.append(float(grid[i]))
        if len(cands) == 3:
            break
    tried = len(grid)
    best = (-np.inf, 0.0, None)
    for p in cands:
        step = max(0.01, p * p / (_KMAX * SCAN_PAD * max(h, w)))
        for q in (p - step / 2, p, p + step / 2):
            spec = _ring_whiten(sum(_fold_spectrum(r, q) for r in residuals))
            z = _sync_score(spec, key)[0]
            tried += 1
            if z > best[0]:
                best = (z, q, spec)
    return best[0], best[1], best[2], tried


def _confidence(score: float, trials: int) -> float:
    p = trials * 0.5 * math.erfc(score / math.sqrt(2))
    return max(0.0, 1.0 - min(1.0, p))


def _analyse(residuals: list[np.ndarray], key: str, lo: float = MIN_PERIOD) -> tuple[Detection, np.ndarray | None]:
    """Detection with the frames' folded tiles summed (one frame: an image); also the payload's soft values."""
    score, period, spec, tried = _search(residuals, key, lo)
    if not tried:
        return Detection(False, 0.0, 0.0, frames=len(residuals)), None
    z, shift, std, orientation = _sync_score(spec, key)
    soft = _payload(spec, shift, std, key, orientation)
    detected = score >= THRESHOLD
    bits, margin = bch_decode(soft) if detected else (None, 0.0)
    return Detection(detected, _confidence(score, tried * TILE * TILE * len(ORIENTATIONS)), float(score), bits, margin,
                     scale=float(period) / TILE, frames=len(residuals), extra={"tried": tried}), soft


def detect(rgb: np.ndarray, key: str = DEFAULT_KEY) -> Detection:
    """Look for the mark in an H x W x 3 uint8 RGB image (any size, any crop or rescale of a marked one)."""
    y, f, lo = _analysis_luma(rgb)
    return _rescaled(_analyse([_whiten(y)], key, lo)[0], f)


def _rescaled(d: Detection, f: int) -> Detection:
    if f == 1 or not d.scale:
        return d
    return Detection(d.detected, d.confidence, d.score, d.bits, d.bits_margin, d.scale * f, d.frames, d.extra)


#: Gumbel scale of the null scores (their std * sqrt(6) / pi, measured in benchmarks/watermark.py): the best of n
#: frames must beat the threshold by this times ln(n), so that it is no likelier by chance than one frame.
GUMBEL_SCALE = 0.30


def detect_frames(frames: Iterable[np.ndarray], key: str = DEFAULT_KEY) -> Detection:
    """Look for the mark in video frames of one size.

    Two statistics, the larger wins: the frames folded together (strongest when the picture stands still), and the
    best frame's own score less ``GUMBEL_SCALE * ln(frames)`` (each frame finds its own shift: motion compensation in
    a re-encoded video drags the mark along with the picture, and frames far from a key frame keep less of it).
    The correction keeps the best of n frames as unlikely to pass by chance as a single frame. The payload is read
    from the soft values of the frames that passed (each at its own shift), else of the best frame.
    """
    residuals, f, lo = [], 1, float(MIN_PERIOD)
    for frame in frames:
        y, f, lo = _analysis_luma(frame)
        if residuals and y.shape != residuals[0].shape:
            raise ValueError("frames of different sizes")
        residuals.append(_whiten(y))
    if not residuals:
        return Detection(False, 0.0, 0.0, frames=0)
    together, _ = _analyse(residuals, key, lo)
    if len(residuals) == 1 or together.score >= THRESHOLD + 1.0:  # clearly there: no need to look frame by frame
        return _rescaled(together, f)
    per = [_analyse([r], key, lo) for r in residuals]
    scores = np.array([d.score for d, _ in per])
    best = int(np.argmax(scores))
    score = float(scores[best]) - GUMBEL_SCALE * math.log(len(per))
    if score <= together.score:
        return _rescaled(together, f)
    detected = score >= THRESHOLD
    soft = sum(sv for d, sv in per if sv is not None and d.score >= THRESHOLD) if (scores >= THRESHOLD).any() \
        else per[best][1]
    bits, margin = bch_decode(soft) if detected else (None, 0.0)
    tried = sum(d.extra.get("tried", 1) for d, _ in per)
    return _rescaled(Detection(detected, _confidence(score + GUMBEL_SCALE * math.log(len(per)),
                                                     tried * TILE * TILE * len(ORIENTATIONS)), score, bits, margin,
                               per[best][0].scale, len(residuals), {"per_frame": scores.round(3).tolist()}), f)
