#!/usr/bin/env python
"""Developer check (not a CI test): record what users see, to prove a refactoring changed none of it.

Writes into a folder the outputs of the commands on fixed inputs, with a tiny random-weight model made here from
fixed seeds: ``hififace swap`` on whole photos (largest face, ``--face``, ``--all-faces``, ``--match``,
``--color-match``, ``--no-model-mask``, a JPEG output) and on a model-size crop, and ``hififace verify`` of the
results; ``hififace video`` (the encoded file, its frames decoded
by the ffmpeg binary itself, and the frames handed to the encoder); ``hififace preprocess`` (crops, masks, index);
``hififace faces`` (detections, refined landmarks, preview); ``hififace eval`` on crops, on photos (face
detection) and on a tiny FaceForensics++ folder (metrics, per-sample rows, the swapped results). Then compares two
such folders file by file:

    python scripts/pin_outputs.py /tmp/pin-before [--cases swap,video] [--threads 2]
    ... change the code ...
    python scripts/pin_outputs.py /tmp/pin-after
    python scripts/pin_outputs.py --compare /tmp/pin-before /tmp/pin-after     # exit 1 if anything differs

Run both on the same machine, environment and thread count (CPU float results change in their last bits between
machines; ``manifest.json`` records the environment and ``compare`` names any difference in it). Paths are written
relative to the folder, so two folders compare. Each file is reported ``same`` (bytes), ``same-content`` (bytes
differ but the decoded pixels / arrays / JSON values do not: e.g. a library version in metadata) or ``DIFFERENT``.
Needs the ``face`` and ``video`` extras (OpenCV, imageio-ffmpeg); ``eval`` runs without dlib (``--id-model none``).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "photos"
SAMPLES = ROOT / "src" / "hififace" / "assets" / "samples"
TINY = dict(channel_multiplier=1 / 16, frozen_width=0.125, arcface_arch="r18", recon_input_size=64)
CASES = ("swap", "video", "preprocess", "faces", "eval")
TEXT = {".json", ".jsonl", ".csv", ".md", ".txt"}
IMAGES = {".png", ".jpg", ".jpeg", ".webp"}
#: JSON keys holding wall-clock times, and verify's C2PA signer (each folder makes its own local signing key)
VOLATILE = {"seconds", "created", "signer"}
#: (file name, JSON key) pairs that depend on file times: eval's results stamp fingerprints the weights by mtime
VOLATILE_IN = {(".hififace-weights.json", "fingerprint")}
TIMESTAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})? UTC"


# ---------------------------------------------------------------------------------------------- record
class Recorder:
    def __init__(self, out: Path, threads: int):
        self.out = out.resolve()
        self.inputs = self.out / "inputs"  # made here, not compared
        self.outputs = self.out / "outputs"
        self.threads = threads
        self.cli_log: list[dict] = []

    def cli(self, case: str, argv: list, stdout_name: str | None = None) -> int:
        """Run one ``hififace`` command in-process; its exit code (and stdout if asked) go into the record."""
        from hififace.cli.main import main

        argv = [str(a) for a in argv]
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(argv)
        self.cli_log.append({"case": case, "argv": [self.rel_text(a) for a in argv], "rc": rc})
        if rc != 0:
            raise SystemExit(f"pin: {case}: 'hififace {' '.join(argv)}' exited {rc}")
        if stdout_name:
            (self.outputs / case).mkdir(parents=True, exist_ok=True)
            (self.outputs / case / stdout_name).write_text(self.rel_text(buf.getvalue()))
        return rc

    def rel(self, text: str) -> str:
        return text.replace(str(self.out), "<OUT>")

    def model(self) -> Path:
        """A tiny random-weight model folder (fixed seed), labelled as trained weights would be (no random note)."""
        folder = self.inputs / "model"
        if not (folder / "config.json").exists():
            from hififace import HifiFace, HifiFaceConfig

            model = HifiFace.random(HifiFaceConfig(**TINY), seed=0)
            model.config.notes.pop("weights", None)
            model.save_pretrained(folder)
        return folder

    def lpips_file(self) -> Path:
        path = self.inputs / "lpips.safetensors"
        if not path.exists():
            import torch

            from hififace.losses.lpips import LPIPS
            from hififace.weights.io import save_safetensors

            torch.manual_seed(0)
            save_safetensors(LPIPS().state_dict(), path)
        return path

    def rel_text(self, text: str, name: str = "") -> str:
        """``text`` with absolute paths as ``<OUT>``/``<REPO>``, dates as ``<TIME>`` and, in JSON, wall times and
        mtime-based fingerprints (``VOLATILE``, ``VOLATILE_IN``) as null."""
        import re

        text = re.sub(TIMESTAMP, "<TIME>", self.rel(text).replace(str(ROOT), "<REPO>"))
        try:
            data = json.loads(text)
        except ValueError:
            return text
        if not isinstance(data, dict):
            return text
        volatile = VOLATILE | {key for file, key in VOLATILE_IN if file == name}
        indent = 2 if text.lstrip().startswith("{\n") else None
        return json.dumps(_drop_volatile(data, volatile), indent=indent) + ("\n" if text.endswith("\n") else "")

    def normalise_texts(self, folder: Path) -> None:
        """Text outputs through :meth:`rel_text`: two record folders compare."""
        for p in folder.rglob("*"):
            if p.is_file() and p.suffix.lower() in TEXT:
                p.write_text(self.rel_text(p.read_text(), p.name))


def _drop_volatile(data, volatile: set[str]):
    if isinstance(data, dict):
        return {k: None if k in volatile else _drop_volatile(v, volatile) for k, v in data.items()}
    if isinstance(data, list):
        return [_drop_volatile(v, volatile) for v in data]
    return data


def case_swap(r: Recorder) -> None:
    w, out = r.model(), r.outputs / "swap"
    out.mkdir(parents=True, exist_ok=True)
    base = ["swap", "--weights", w, "--device", "cpu"]
    src = PHOTOS / "grace_hopper.jpg"
    two = PHOTOS / "two_people.jpg"
    runs = {
        "largest_face.png": ["--source", src, "--target", PHOTOS / "astronaut.png"],
        "largest_face.jpg": ["--source", src, "--target", PHOTOS / "astronaut.png"],
        "grey_photo.png": ["--source", src, "--target", PHOTOS / "cameraman.png"],
        "face_1.png": ["--source", src, "--target", two, "--face", "1"],
        "all_faces.png": ["--source", src, "--target", two, "--all-faces"],
        "match.png": ["--source", PHOTOS / "astronaut.png", "--target", two, "--match", PHOTOS / "obama_crop.jpg"],
        "color_match_no_refine.png": ["--source", src, "--target", two, "--color-match", "--align-passes", "0"],
        "no_model_mask.png": ["--source", src, "--target", two, "--all-faces", "--no-model-mask"],
        "two_sources.png": ["--source", src, "--source", PHOTOS / "astronaut.png", "--target", PHOTOS / "obama2_crop.jpg"],
        "model_size_crop.png": ["--source", SAMPLES / "astronaut.png", "--target", SAMPLES / "cameraman.png"],
        "crop_detected.png": ["--source", SAMPLES / "astronaut.png", "--target", SAMPLES / "grace_hopper.png", "--detect"],
    }
    for name, args in runs.items():
        r.cli("swap", base + args + ["-o", out / name])
    r.cli("swap", base + ["--source", src, "--source", PHOTOS / "astronaut.png", "--save-identity",
                          out / "identity.safetensors"])
    r.cli("swap", ["verify", "--json", out / "largest_face.png", out / "largest_face.jpg"],
          stdout_name="verify.json")


def _face_frames(n: int, size: tuple[int, int], name: str, step: int, blank: tuple[int, ...] = ()) -> list[np.ndarray]:
    """``n`` frames showing a photo drifting right by ``step`` px per frame on grey (``blank``: no photo)."""
    from PIL import Image

    img = Image.open(PHOTOS / name).convert("RGB")
    w, h = size
    scale = min(w / img.width, h / img.height) * 1.1
    small = np.asarray(img.resize((int(img.width * scale), int(img.height * scale)), Image.BILINEAR))
    frames = []
    for i in range(n):
        canvas = np.full((h, w, 3), 90, np.uint8)
        if i not in blank:
            x0 = (w - small.shape[1]) // 2 + i * step - n * step // 2
            y0 = (h - small.shape[0]) // 2
            xs, ys = max(0, x0), max(0, y0)
            xe, ye = min(w, x0 + small.shape[1]), min(h, y0 + small.shape[0])
            canvas[ys:ye, xs:xe] = small[ys - y0: ye - y0, xs - x0: xe - x0]
        frames.append(canvas)
    return frames


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _make_clip(path: Path, frames: list[np.ndarray], audio: bool, rotation: int = 0) -> Path:
    """H.264 (+ a 440 Hz AAC sine) of upright ``frames``; with ``rotation`` stored turned, with display rotation."""
    if path.exists():
        return path
    k = rotation // 90
    stored = [np.ascontiguousarray(np.rot90(f, -k)) for f in frames]
    h, w = stored[0].shape[:2]
    plain = path.with_name("plain_" + path.name)
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-framerate", "25", "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=22050:duration={len(frames) / 25:.4f}",
                "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-threads", "1", "-pix_fmt", "yuv420p", str(plain)]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in stored), check=True, capture_output=True)
    extra = ["-display_rotation", str(rotation)] if rotation else []
    subprocess.run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", *extra, "-i", str(plain), "-c", "copy",
                    "-metadata", "title=pin clip", str(path)], check=True, capture_output=True)
    plain.unlink()
    return path


def _decode_with_ffmpeg(path: Path) -> np.ndarray:
    """Every frame of ``path``, upright, decoded by the ffmpeg binary itself (not by hififace's reader)."""
    import re

    proc = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                          capture_output=True, check=True)
    err = proc.stderr.decode("utf-8", "replace")
    line = next(s for s in err[err.index("Output #0"):].splitlines() if "Video:" in s)
    w, h = map(int, re.search(r", (\d+)x(\d+)[ ,]", line).groups())  # after the display rotation
    return np.frombuffer(proc.stdout, np.uint8).reshape(-1, h, w, 3)


@contextlib.contextmanager
def _frames_handed_to_the_encoder(store: list):
    """Record every frame the video pipeline writes (``FrameWriter.write``), where that class is reachable."""
    import importlib

    for name in ("hififace.media.video", "hififace.media.video"):  # after / before issue 20
        try:
            FrameWriter = importlib.import_module(name).FrameWriter
            break
        except (ImportError, AttributeError):
            continue
    else:
        yield False
        return
    real = FrameWriter.write

    def write(self, frame):
        store.append(np.array(frame, copy=True))
        return real(self, frame)

    FrameWriter.write = write
    try:
        yield True
    finally:
        FrameWriter.write = real


def case_video(r: Recorder) -> None:
    w, out = r.model(), r.outputs / "video"
    out.mkdir(parents=True, exist_ok=True)
    clips = {
        "drift": (_make_clip(r.inputs / "drift.mp4", _face_frames(10, (192, 224), "grace_hopper.jpg", 2, blank=(4,)),
                             audio=True), []),
        "two_rotated": (_make_clip(r.inputs / "two_rotated.mp4", _face_frames(6, (256, 160), "two_people.jpg", 3),
                                   audio=False, rotation=90), ["--all-faces"]),
        "match": (r.inputs / "two_rotated.mp4", ["--match", PHOTOS / "obama_crop.jpg", "--smooth", "0"]),
    }
    for name, (clip, extra) in clips.items():
        frames: list[np.ndarray] = []
        with _frames_handed_to_the_encoder(frames) as reachable:
            r.cli("video", ["video", "--source", PHOTOS / "astronaut.png", "--target", clip, "-o", out / f"{name}.mp4",
                            "--weights", w, "--device", "cpu", "--frames-per-batch", "4", "--crf", "18",
                            "--preset", "ultrafast", *extra])
        if reachable:
            np.save(out / f"{name}.encoder_frames.npy", np.stack(frames))
        np.save(out / f"{name}.decoded_frames.npy", _decode_with_ffmpeg(out / f"{name}.mp4"))
    r.cli("video", ["verify", "--json", "--frames", "4", out / "drift.mp4"], stdout_name="verify.json")


def case_preprocess(r: Recorder) -> None:
    from PIL import Image

    raw = r.inputs / "raw"
    if not raw.exists():
        grace = Image.open(PHOTOS / "grace_hopper.jpg").convert("RGB").resize((256, 300), Image.BILINEAR)
        for rel, img in {"alice/a1.png": Image.open(PHOTOS / "astronaut.png").convert("RGB").resize((320, 320)),
                         "bob/g1.jpg": grace, "bob/g2.png": grace.rotate(10, expand=True, fillcolor=(90, 90, 90)),
                         "bob/blank.png": Image.new("RGB", (200, 180), (120, 120, 120)),
                         "carol/two.jpg": Image.open(PHOTOS / "two_people.jpg").convert("RGB"),
                         "carol/grey.png": Image.open(PHOTOS / "cameraman.png")}.items():
            (raw / rel).parent.mkdir(parents=True, exist_ok=True)
            img.save(raw / rel, quality=92) if rel.endswith(".jpg") else img.save(raw / rel)
    for name, extra in {"arcface256": ["--size", "256"],
                        "ffhq128": ["--size", "128", "--align", "ffhq", "--align-passes", "0"],
                        "skip_multi": ["--size", "128", "--multi-face", "skip", "--align-jitter"]}.items():
        dst = r.outputs / "preprocess" / name
        r.cli("preprocess", ["preprocess", raw, dst, "--parsing", "landmarks", "--landmarks68", "none",
                             "--no-progress", "--json", *extra], stdout_name=f"{name}.summary.json")
        shutil.rmtree(dst / ".locks", ignore_errors=True)  # the lock holds the process id: not an output
        r.normalise_texts(dst)


def case_faces(r: Recorder) -> None:
    out = r.outputs / "faces"
    out.mkdir(parents=True, exist_ok=True)
    for name, photo, extra in (("two_people", "two_people.jpg", []), ("two_people_refined", "two_people.jpg", ["--refine"]),
                               ("grace", "grace_hopper.jpg", ["--refine"])):
        r.cli("faces", ["faces", PHOTOS / photo, "--json", "-o", out / f"{name}.png", *extra],
              stdout_name=f"{name}.json")


def _ffpp(root: Path, n_frames: int = 6) -> Path:
    """A tiny FaceForensics++ folder: 3 'videos' of frames (sample faces shifted a little per frame), the splits, and
    one manipulation method whose fakes are the target frames."""
    from PIL import Image

    if root.exists():
        return root
    base = root / "original_sequences" / "youtube" / "c23" / "images"
    for vid, name in (("000", "astronaut"), ("001", "grace_hopper"), ("002", "cameraman")):
        img = np.asarray(Image.open(SAMPLES / f"{name}.png").convert("RGB"))
        (base / vid).mkdir(parents=True)
        for i in range(n_frames):
            Image.fromarray(np.roll(img, (i % 4) - 2, axis=1)).save(base / vid / f"{i:04d}.png")
    (root / "splits").mkdir()
    (root / "splits" / "train.json").write_text('[["000", "002"]]')
    (root / "splits" / "val.json").write_text("[]")
    (root / "splits" / "test.json").write_text('[["000", "001"]]')
    fake = root / "manipulated_sequences" / "Same" / "c23" / "images"
    for t, s in (("000", "001"), ("001", "000")):
        shutil.copytree(base / t, fake / f"{t}_{s}")
    return root


def case_eval(r: Recorder) -> None:
    w, lp = r.model(), r.lpips_file()
    crops = r.inputs / "eval_crops"
    crops.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "grace_hopper", "cameraman"):
        shutil.copy(SAMPLES / f"{name}.png", crops / f"{name}.png")
    (crops / "pairs.csv").write_text("source,target\nastronaut.png,grace_hopper.png\ngrace_hopper.png,cameraman.png\n"
                                     "cameraman.png,astronaut.png\nastronaut.png,astronaut.png\n")
    photos = r.inputs / "eval_photos"
    photos.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut.png", "grace_hopper.jpg", "obama_crop.jpg", "obama2_crop.jpg"):
        shutil.copy(PHOTOS / name, photos / name)
    (photos / "pairs.csv").write_text("source,target,source_id\nobama_crop.jpg,grace_hopper.jpg,obama\n"
                                      "grace_hopper.jpg,obama2_crop.jpg,grace\nobama2_crop.jpg,astronaut.png,obama\n")
    common = ["--weights", w, "--id-model", "none", "--lpips", lp, "--no-figures", "--device", "cpu"]
    runs = {"crops_template": ["--pairs", crops / "pairs.csv", "--faces", "template"],
            "photos_detect": ["--pairs", photos / "pairs.csv", "--faces", "detect"],
            "ffpp": ["--protocol", "ffpp", "--data", _ffpp(r.inputs / "ffpp"), "--split", "test", "--self-recon"]}
    for name, args in runs.items():
        dst = r.outputs / "eval" / name
        r.cli("eval", ["eval", *args, *common, "-o", dst, "--cache", r.inputs / f"eval_cache_{name}"],
              stdout_name=f"{name}.stdout.txt")
        r.normalise_texts(dst)


def environment(threads: int) -> dict:
    import PIL
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "pillow": PIL.__version__, "threads": threads, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "machine": platform.machine(), "processor": platform.processor(),
           "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}}
    for mod in ("cv2", "imageio_ffmpeg"):
        with contextlib.suppress(ImportError):
            env[mod] = __import__(mod).__version__
    with contextlib.suppress(Exception):
        env["ffmpeg"] = subprocess.run([_ffmpeg(), "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return env


def record(out: Path, cases: list[str], threads: int) -> int:
    import logging

    import torch

    torch.set_num_threads(threads)
    os.environ["HIFIFACE_HOME"] = str(out.resolve() / "inputs" / "home")  # never the user's weights
    r = Recorder(out, threads)
    if r.outputs.exists():
        shutil.rmtree(r.outputs)
    r.outputs.mkdir(parents=True)
    r.inputs.mkdir(parents=True, exist_ok=True)
    logging.getLogger("hififace").setLevel(logging.WARNING)
    for name in cases:
        print(f"pin: {name}", file=sys.stderr, flush=True)
        globals()[f"case_{name}"](r)
    manifest = {"cases": cases, "environment": environment(threads), "commands": r.cli_log,
                "files": {str(p.relative_to(r.outputs)): _sha256(p) for p in sorted(r.outputs.rglob("*")) if p.is_file()}}
    (r.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"pin: {len(manifest['files'])} files in {r.outputs}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------------------- compare
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _same_content(a: Path, b: Path) -> tuple[bool, str]:
    """Whether two files whose bytes differ hold the same content, and what differs."""
    suffix = a.suffix.lower()
    if suffix in IMAGES:
        from PIL import Image

        with Image.open(a) as ia, Image.open(b) as ib:
            if ia.mode != ib.mode or ia.size != ib.size:
                return False, f"{ia.mode} {ia.size} vs {ib.mode} {ib.size}"
            pa, pb = np.asarray(ia).astype(np.int16), np.asarray(ib).astype(np.int16)
        d = np.abs(pa - pb)
        if d.max() == 0:
            return True, "pixels identical (metadata differs)"
        return False, f"{int((d > 0).sum())} of {d.size} values differ, max {int(d.max())} levels"
    if suffix == ".npy":
        xa, xb = np.load(a), np.load(b)
        if xa.shape != xb.shape or xa.dtype != xb.dtype:
            return False, f"{xa.dtype} {xa.shape} vs {xb.dtype} {xb.shape}"
        d = np.abs(xa.astype(np.float64) - xb.astype(np.float64))
        return False, f"{int((d > 0).sum())} of {d.size} values differ, max {d.max():g}"
    if suffix == ".safetensors":  # the header's metadata keys come in hash order: compare what they hold
        from safetensors import safe_open

        with safe_open(str(a), "np") as fa, safe_open(str(b), "np") as fb:
            if fa.metadata() != fb.metadata() or set(fa.keys()) != set(fb.keys()):
                return False, "metadata or tensor names differ"
            differ = [k for k in fa.keys() if not np.array_equal(fa.get_tensor(k), fb.get_tensor(k))]
        return (not differ), "same tensors and metadata (header order differs)" if not differ else f"tensors differ: {differ}"
    if suffix in (".json", ".jsonl"):
        try:
            ja = [json.loads(s) for s in a.read_text().splitlines() if s.strip()]
            jb = [json.loads(s) for s in b.read_text().splitlines() if s.strip()]
        except ValueError:
            ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
        if ja == jb:
            return True, "same values (formatting differs)"
        return False, "values differ: " + _first_json_difference(ja, jb)
    if suffix in TEXT:
        la, lb = a.read_text().splitlines(), b.read_text().splitlines()
        first = next((i for i, (x, y) in enumerate(zip(la, lb)) if x != y), min(len(la), len(lb)))
        return False, f"line {first + 1} differs"
    return False, f"bytes differ ({a.stat().st_size} vs {b.stat().st_size} bytes)"


def _first_json_difference(a, b, where: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if a.get(k, KeyError) != b.get(k, KeyError):
                return _first_json_difference(a.get(k), b.get(k), f"{where}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_json_difference(x, y, f"{where}[{i}]")
    return f"{where or '<top>'}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"


def compare(a_dir: Path, b_dir: Path) -> int:
    a_out, b_out = a_dir / "outputs", b_dir / "outputs"
    for d in (a_out, b_out):
        if not d.is_dir():
            print(f"error: {d.parent}: not a folder made by pin_outputs.py", file=sys.stderr)
            return 2
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a_dir, b_dir))
    env_a, env_b = ma["environment"], mb["environment"]
    for k in sorted(set(env_a) | set(env_b)):
        if env_a.get(k) != env_b.get(k):
            print(f"note: environment differs in {k}: {env_a.get(k)!r} vs {env_b.get(k)!r} (results may differ in "
                  f"their last bits for that reason alone)")
    files = sorted({str(p.relative_to(a_out)) for p in a_out.rglob("*") if p.is_file()}
                   | {str(p.relative_to(b_out)) for p in b_out.rglob("*") if p.is_file()})
    counts = {"same": 0, "same-content": 0, "DIFFERENT": 0, "MISSING": 0}
    for rel in files:
        a, b = a_out / rel, b_out / rel
        if not a.exists() or not b.exists():
            status, why = "MISSING", f"only in {'A' if a.exists() else 'B'}"
        elif a.read_bytes() == b.read_bytes():
            status, why = "same", ""
        else:
            ok, why = _same_content(a, b)
            status = "same-content" if ok else "DIFFERENT"
        counts[status] += 1
        print(f"{status:12s} {rel}" + (f"  ({why})" if why else ""))
    print(json.dumps({"files": len(files), **counts}))
    return 0 if counts["DIFFERENT"] == counts["MISSING"] == 0 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, nargs="?", help="record the outputs into this folder")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="compare two recorded folders")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2; use the same for both runs)")
    args = ap.parse_args()
    if (args.folder is None) == (args.compare is None):
        ap.error("give a folder to record into, or --compare A B")
    if args.compare:
        return compare(*args.compare)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}; known: {', '.join(CASES)}")
    return record(args.folder, cases, args.threads)


if __name__ == "__main__":
    sys.exit(main())
