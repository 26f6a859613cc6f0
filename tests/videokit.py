"""Helpers of the video tests: tiny clips made with the ffmpeg binary imageio-ffmpeg ships (sine audio, rotation)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from face_helpers import photo


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def face_frames(n: int, size: tuple[int, int] = (192, 224), name: str = "grace_hopper.jpg", step: int = 2,
                blank: tuple[int, ...] = ()) -> list[np.ndarray]:
    """``n`` frames (width, height = ``size``) showing a photo's face drifting right by ``step`` px per frame;
    frames listed in ``blank`` are a flat grey (no face)."""
    import cv2

    img = photo(name)
    w, h = size
    scale = min(w / img.shape[1], h / img.shape[0]) * 1.1
    small = cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        canvas = np.full((h, w, 3), 90, np.uint8)
        if i not in blank:
            x0 = (w - small.shape[1]) // 2 + i * step - n * step // 2
            y0 = (h - small.shape[0]) // 2
            xs, ys = max(0, x0), max(0, y0)
            xe, ye = min(w, x0 + small.shape[1]), min(h, y0 + small.shape[0])
            canvas[ys:ye, xs:xe] = small[ys - y0 : ye - y0, xs - x0 : xe - x0]
        frames.append(canvas)
    return frames


def make_clip(path: Path, frames: list[np.ndarray], rate: str = "25", audio: bool = True, rotation: int = 0,
              pix_fmt: str | None = None) -> Path:
    """Encode upright ``frames`` as H.264 (+ a 440 Hz sine AAC track as long as the video); with ``rotation`` the
    frames are stored turned and the file carries that display rotation, as phone videos do."""
    k = rotation // 90
    stored = [np.ascontiguousarray(np.rot90(f, -k)) for f in frames]
    h, w = stored[0].shape[:2]
    pix = pix_fmt or ("yuv444p" if w % 2 or h % 2 else "yuv420p")
    n = len(frames)
    from fractions import Fraction

    seconds = float(n / Fraction(rate))
    cmd = [ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-framerate", rate, "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=22050:duration={seconds:.4f}", "-c:a", "aac"]
    plain = path.with_name("plain_" + path.name) if rotation else path
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", pix, str(plain)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in stored), check=True, capture_output=True)
    if rotation:  # the display rotation is stream side data: set it on a copy, as a phone's muxer does
        subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-display_rotation", str(rotation),
                        "-i", str(plain), "-c", "copy", str(path)], check=True, capture_output=True)
        plain.unlink()
    return path


def decode(path: Path) -> list[np.ndarray]:
    """Every frame of a video, upright (ffmpeg applies the display rotation)."""
    from hififace.media.video import FrameReader, probe

    with FrameReader(probe(path)) as reader:
        return [f.copy() for f in reader]


def audio_seconds(path: Path) -> float:
    """Duration of the audio stream, from decoding it."""
    out = subprocess.run([ffmpeg(), "-hide_banner", "-i", str(path), "-map", "0:a:0", "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    t = [line for line in out.replace("\r", "\n").splitlines() if "time=" in line][-1]
    hh, mm, ss = t.split("time=")[1].split()[0].split(":")
    return int(hh) * 3600 + int(mm) * 60 + float(ss)


def make_lying_clip(path: Path, small: tuple[int, int] = (64, 64), big: tuple[int, int] = (512, 512),
                    small_frames: int = 60, big_frames: int = 3) -> Path:
    """An MPEG-TS file whose header shows ``small`` frames (all ffmpeg looks at when probing) followed by ``big``
    ones: two H.264 streams of flat grey frames, concatenated byte for byte (a TS file can be cut and joined)."""
    parts = []
    for (w, h), n, offset in ((small, small_frames, 0.0), (big, big_frames, small_frames / 25)):
        part = path.with_name(f"part{len(parts)}_{path.stem}.ts")
        subprocess.run([ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"color=gray:s={w}x{h}:r=25", "-frames:v", str(n), "-c:v", "libx264", "-preset", "ultrafast",
                        "-pix_fmt", "yuv420p", "-output_ts_offset", f"{offset:.3f}", "-f", "mpegts", str(part)],
                       check=True, capture_output=True)
        parts.append(part)
    path.write_bytes(b"".join(p.read_bytes() for p in parts))
    for p in parts:
        p.unlink()
    return path
