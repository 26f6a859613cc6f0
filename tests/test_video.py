"""`hififace video` and the video pipeline: round trips keep frames, fps, size, rotation and audio; tracking keeps
--face on one person; bad videos give one error line; Ctrl-C leaves nothing behind.

Clips are a few frames made with imageio-ffmpeg's own ffmpeg (a 440 Hz sine audio track). Most runs use the
stand-in engine (``FakeEngine``: inverted colours in the face region); one CLI run uses the tiny random model.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face_helpers import PHOTOS
from hififace.errors import InputImageError
from hififace.face.detect import Face
from hififace.inference.video import swap_video
from inferkit import FakeEngine, assert_one_error, leftovers, run_cli

pytest.importorskip("cv2")
pytestmark = pytest.mark.usefixtures("isolated_home")
pytest.importorskip("imageio_ffmpeg")

from videokit import audio_seconds, decode, face_frames, make_clip  # noqa: E402


@pytest.fixture(scope="module")
def swapper():
    from hififace.inference.pipeline import FaceSwapper

    return FaceSwapper(FakeEngine(), parsing="landmarks", align_passes=0)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "main": make_clip(d / "main.mp4", face_frames(6, blank=(2, 3))),
        "portrait": make_clip(d / "portrait.mp4", face_frames(3, size=(160, 224)), rotation=90),
        "odd": make_clip(d / "odd.mp4", face_frames(2, size=(853, 480)), rate="30000/1001"),
        "one_frame_silent": make_clip(d / "one.mp4", face_frames(1), audio=False),
        "no_face": make_clip(d / "none.mp4", face_frames(2, blank=(0, 1))),
    }


def _run(swapper, clip: Path, out: Path, **kw):
    return swap_video(swapper, PHOTOS / "astronaut.png", clip, out, progress=False, preset="ultrafast", **kw)


# ------------------------------------------------------------------------------------------------ round trips
def test_round_trip_keeps_frames_fps_size_audio_and_labels_it(swapper, clips, tmp_path):
    from hififace.media.video import probe

    out = tmp_path / "out.mp4"
    report = _run(swapper, clips["main"], out, batch_frames=4)
    src, got = probe(clips["main"]), probe(out)
    assert (got.width, got.height, got.rate, got.rotation) == (src.width, src.height, src.rate, src.rotation)
    assert got.audio == ["aac"] and abs(audio_seconds(out) - audio_seconds(clips["main"])) < 0.03
    assert "Synthetic" in got.metadata["comment"] and "hififace:command=swap_video" not in got.metadata["comment"]
    assert (report.frames, report.frames_swapped, report.frames_without_face, report.frames_passed) == (6, 4, 2, 2)
    assert report.faces_swapped == 4 and report.audio
    a, b = decode(clips["main"]), decode(out)
    assert len(b) == 6 and b[0].shape == a[0].shape
    diffs = [np.abs(x.astype(int) - y.astype(int)).mean(axis=2) for x, y in zip(a, b)]
    for k in (2, 3):  # frames without a face: passed through (only the encoder's rounding differs)
        assert diffs[k].mean() < 1.5
    for k in (0, 1, 4, 5):  # frames with the face: the face region changed, the border did not
        assert diffs[k][90:150, 70:130].mean() > 20 and diffs[k][:, :10].mean() < 3
    assert leftovers(tmp_path) == []


def test_portrait_video_with_rotation_metadata_keeps_it(swapper, clips, tmp_path):
    from hififace.media.video import probe

    out = tmp_path / "out.mov"
    report = _run(swapper, clips["portrait"], out)
    src, got = probe(clips["portrait"]), probe(out)
    assert src.rotation == 90 and (src.width, src.height) == (224, 160)  # stored landscape, shown portrait
    assert (got.width, got.height, got.rotation) == (224, 160, 90)
    assert report.size == (160, 224) and report.frames_swapped == 3  # the face was found upright
    a, b = decode(clips["portrait"]), decode(out)
    assert b[0].shape == a[0].shape == (224, 160, 3)
    d = np.abs(a[1].astype(int) - b[1].astype(int)).mean(axis=2)
    face = swapper.detect(a[1])[0]
    x0, y0, x1, y1 = (int(v) for v in face.box)
    assert d[y0:y1, x0:x1].mean() > 5 * d[:, :8].mean() + 10  # changed where the face is, in upright frames


@pytest.mark.parametrize("name,frames,size,audio,faces", [("odd", 2, (853, 480), True, 2),
                                                          ("one_frame_silent", 1, (192, 224), False, 1),
                                                          ("no_face", 2, (192, 224), True, 0)])
def test_odd_size_one_frame_silent_and_faceless_videos(swapper, clips, tmp_path, caplog, name, frames, size, audio,
                                                       faces):
    from hififace.media.video import probe

    out = tmp_path / "out.mkv"
    report = _run(swapper, clips[name], out)
    got = probe(out)
    assert (got.width, got.height) == size and got.has_audio == audio and report.frames == frames
    assert got.rate == probe(clips[name]).rate
    assert len(decode(out)) == frames and report.frames_swapped == faces
    assert report.frames_without_face == frames - faces
    assert "Synthetic" in got.metadata["comment"]
    if not faces:  # passed through, counted, and said
        assert "no face was swapped in any frame" in caplog.text


def test_video_cli_with_the_tiny_model(clips, tmp_path, tiny_weights, capsys):
    rc, out, err = run_cli(["video", "--source", PHOTOS / "grace_hopper.jpg", "--target", clips["main"],
                            "-o", tmp_path / "out.mp4", "--weights", tiny_weights, "--preset", "ultrafast",
                            "--watermark"], capsys)
    assert rc == 0, err
    assert any("2 of 6 frame(s) without a face, passed through" in line for line in err), err
    assert any("wrote" in line and "6 frames" in line and "audio copied" in line for line in err), err
    from hififace.media.video import probe

    meta = probe(tmp_path / "out.mp4").metadata
    assert "hififace:command=video" in meta["comment"] and "hififace:model=reference-256" in meta["comment"]
    assert leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ bad input
def _bad(kind: str, clips, tmp: Path) -> tuple[list, list[str], Path]:
    out = tmp / "out.mp4"
    src = PHOTOS / "grace_hopper.jpg"
    if kind == "not_a_video":
        (tmp / "notes.mp4").write_text("just text")
        return [src, tmp / "notes.mp4", out], ["notes.mp4", "cannot read the video", "not a video"], out
    if kind == "truncated":
        data = clips["main"].read_bytes()
        (tmp / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
        return [src, tmp / "cut.mp4", out], ["cut.mp4", "truncated"], out
    if kind == "truncated_faststart":
        from videokit import ffmpeg

        subprocess.run([ffmpeg(), "-loglevel", "error", "-y", "-i", str(clips["main"]), "-c", "copy", "-movflags",
                        "+faststart", str(tmp / "fs.mp4")], check=True)
        data = (tmp / "fs.mp4").read_bytes()
        (tmp / "fs_cut.mp4").write_bytes(data[: len(data) * 6 // 10])
        return [src, tmp / "fs_cut.mp4", out], ["fs_cut.mp4", "damaged"], out
    if kind == "missing":
        return [src, tmp / "nope.mp4", out], ["nope.mp4", "not found"], out
    if kind == "still_image":
        return [src, PHOTOS / "grace_hopper.jpg", out], ["grace_hopper.jpg", "still image", "hififace swap"], out
    if kind == "face_out_of_range":
        return [src, clips["main"], out, "--face", "1"], ["main.mp4", "no face #1 in frame 0", "--face"], out
    if kind == "bad_extension":
        return [src, clips["main"], tmp / "out.avi"], ["out.avi", "unsupported output format"], tmp / "out.avi"
    if kind == "output_is_target":
        (tmp / "in.mp4").write_bytes(clips["main"].read_bytes())
        return [src, tmp / "in.mp4", tmp / "." / "in.mp4"], ["in.mp4", "is the target video", "another file"], out
    if kind == "output_under_a_file":
        (tmp / "notes.txt").write_text("a file, not a folder")
        return [src, clips["main"], tmp / "notes.txt" / "out.mp4"], ["notes.txt", "is a file, not a folder", "-o"], out
    if kind == "source_is_a_video":
        return [clips["main"], clips["main"], out], ["main.mp4", "is a video", "--source takes a photo"], out
    if kind == "source_without_face":
        Image.new("RGB", (300, 200), (120, 130, 140)).save(tmp / "wall.png")
        return [tmp / "wall.png", clips["main"], out], ["wall.png", "no face found"], out
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not_a_video", "truncated", "truncated_faststart", "missing", "still_image",
                                  "bad_extension", "source_without_face", "face_out_of_range", "output_is_target",
                                  "output_under_a_file", "source_is_a_video"])
def test_bad_videos_give_one_error_line_and_no_output(clips, tmp_path, tiny_weights, capsys, kind):
    (src, target, out, *extra), needles, _ = _bad(kind, clips, tmp_path)
    before = Path(target).read_bytes() if Path(target).is_file() else None
    rc, stdout, err = run_cli(["video", "-s", src, "-t", target, "-o", out, "--weights", tiny_weights, *extra],
                              capsys)
    assert_one_error(rc, err, *needles)
    assert stdout == "" and leftovers(tmp_path) == []
    if kind == "output_is_target":  # refused: the original is kept as it was
        assert Path(target).read_bytes() == before
    else:
        assert not out.exists()


def test_ctrl_c_leaves_no_output_no_temp_files_and_no_ffmpeg(swapper, clips, tmp_path, monkeypatch):
    import hififace.media.video as ff

    started = []
    real_popen = subprocess.Popen

    def popen(*a, **k):
        p = real_popen(*a, **k)
        started.append(p)
        return p

    monkeypatch.setattr(ff.subprocess, "Popen", popen)

    class Interrupting(FakeEngine):
        def swap(self, identity, crops):
            raise KeyboardInterrupt

    from hififace.inference.pipeline import FaceSwapper

    with pytest.raises(KeyboardInterrupt):
        _run(FaceSwapper(Interrupting(), parsing="landmarks", align_passes=0), clips["main"], tmp_path / "out.mp4",
             batch_frames=2)
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []
    assert len(started) >= 2 and all(p.poll() is not None for p in started)  # decoder, encoder (and probe) are gone


def test_ctrl_c_in_the_cli_is_one_line_and_status_130(clips, tmp_path, tiny_weights, capsys, monkeypatch):
    from hififace.inference.pipeline import FaceSwapper

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(FaceSwapper, "swap_crops", interrupt)
    rc, _, err = run_cli(["video", "-s", PHOTOS / "grace_hopper.jpg", "-t", clips["main"], "-o", tmp_path / "o.mp4",
                          "--weights", tiny_weights], capsys)
    assert rc == 130 and err[-1] == "error: interrupted"
    assert not (tmp_path / "o.mp4").exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------------------------------ tracking
def _face(cx: float, cy: float = 100.0, w: float = 80.0) -> Face:
    box = np.array([cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2], np.float32)
    lm = np.array([[cx - 15, cy - 10], [cx + 15, cy - 10], [cx, cy + 5], [cx - 12, cy + 20], [cx + 12, cy + 20]],
                  np.float32)
    return Face(box=box, score=0.9, landmarks=lm)


def test_face_index_follows_the_same_person_when_faces_cross(swapper):
    from hififace.face.detect import sort_left_to_right
    from hififace.face.track import FaceTracker
    from hififace.inference.pipeline import FaceChoice
    from hififace.inference.video import _Chooser

    tracker = FaceTracker(fps=25, smooth=0)
    chooser = _Chooser(swapper, FaceChoice(index=0), tracker, "clip")
    frame = np.zeros((200, 600, 3), np.uint8)
    followed = []
    for i in range(12):  # A starts left and walks right, B the other way; they cross around frame 6
        a, b = _face(100 + 30 * i, 100), _face(450 - 30 * i, 110)
        pairs = tracker.update(i, sort_left_to_right([a, b]))
        picked = chooser.pick(frame, pairs, i)
        assert len(picked) == 1
        followed.append(float(picked[0][1].center[0]))
    assert followed == pytest.approx([100 + 30 * i for i in range(12)], abs=1)  # always A, never B
    # A leaves for longer than a track lives, then comes back near where it was last seen: picked up again
    for i in range(12, 30):
        chooser.pick(frame, tracker.update(i, [_face(100, 110)]), i)
    back = chooser.pick(frame, tracker.update(30, sort_left_to_right([_face(100, 110), _face(440, 100)])), 30)
    assert [float(f.center[0]) for _, f in back] == [440.0]


def test_landmark_smoothing_steadies_a_still_face_and_follows_a_moving_one():
    from hififace.face.track import FaceTracker

    rng = np.random.default_rng(0)
    steady, raw = [], []
    tracker = FaceTracker(fps=25, smooth=1.0)
    for i in range(120):
        f = _face(200, 100)
        f.landmarks = f.landmarks + rng.normal(0, 1.5, f.landmarks.shape).astype(np.float32)
        raw.append(f.landmarks.copy())
        steady.append(tracker.update(i, [f])[0][1].landmarks.copy())
    assert np.std(steady[20:], axis=0).mean() < 0.55 * np.std(raw[20:], axis=0).mean()
    tracker, lag = FaceTracker(fps=25, smooth=1.0), []
    for i in range(60):  # 4 px per frame, 1.25 face widths per second
        f = _face(100 + 4 * i, 100)
        true = f.landmarks.copy()
        f.landmarks = f.landmarks + rng.normal(0, 1.5, f.landmarks.shape).astype(np.float32)
        lag.append(np.abs(tracker.update(i, [f])[0][1].landmarks - true).mean())
    assert np.mean(lag[20:]) < 2.5
    off = FaceTracker(fps=25, smooth=0)
    f = _face(100)
    f.landmarks = f.landmarks + 3
    assert np.array_equal(off.update(0, [f])[0][1].landmarks, f.landmarks)


def test_gpu_paste_path_matches_the_cpu_one(swapper):
    """The torch paste-back (run here on the CPU) gives the numpy one's pixels within rounding, untouched pixels
    exactly."""
    from hififace.face.align import transform_points
    from hififace.face.blend import paste_into
    from hififace.media.images import read_photo
    from hififace.inference.video import _paste_torch

    rgb = read_photo(PHOTOS / "two_people.jpg").rgb
    faces = swapper.detect(rgb)
    crops, mats = swapper.align(rgb, [f.landmarks for f in faces])
    i_r, m_r = swapper.swap_crops(swapper.identity(crops[0]), crops)
    lms = np.stack([transform_points(f.landmarks, m) for f, m in zip(faces, mats)])
    blend = swapper.blend_faces(crops, i_r, m_r, lms)
    swapped, alphas = blend.faces, blend.alphas
    ref = rgb.copy()
    for k in range(len(faces)):
        paste_into(ref, swapped[k], mats[k], alphas[k])
    got = _paste_torch([rgb.copy()], [0, 0], swapped, mats, alphas, "cpu")[0]
    d = np.abs(got.astype(int) - ref.astype(int))
    assert d.max() <= 3 and d.mean() < 0.05
    untouched = (ref == rgb).all(axis=2) & (got == rgb).all(axis=2)
    assert untouched.mean() > 0.8


def test_api_takes_an_existing_pipeline_with_its_own_settings(swapper, clips, tmp_path):
    import hififace

    report = hififace.swap_video(PHOTOS / "astronaut.png", clips["one_frame_silent"], tmp_path / "out.mp4",
                                 model=swapper, progress=False, preset="ultrafast")
    assert report.frames == 1 and report.frames_swapped == 1 and (tmp_path / "out.mp4").exists()
    with pytest.raises(TypeError, match="align_passes"):  # options for a new pipeline are refused, not dropped
        hififace.swap_video(PHOTOS / "astronaut.png", clips["one_frame_silent"], tmp_path / "o2.mp4",
                            model=swapper, align_passes=2)


def test_report_says_how_much_of_the_faces_was_replaced(swapper, clips, tmp_path, caplog):
    """VideoReport.coverage: the mean share of the face regions pasted; an engine whose mask is empty replaces
    nothing, which a warning says (naming --no-model-mask)."""
    import logging

    from hififace.inference.pipeline import FaceSwapper

    report = _run(swapper, clips["one_frame_silent"], tmp_path / "a.mp4")
    assert report.faces_swapped == 1 and 0.6 < report.coverage <= 1.0 and report.faces_low_coverage == 0

    class EmptyMask(FakeEngine):
        def swap(self, identity, crops):
            i_r, m_r = super().swap(identity, crops)
            return i_r, m_r * 0

    with caplog.at_level(logging.WARNING, logger="hififace"):
        report = _run(FaceSwapper(EmptyMask(), parsing="landmarks", align_passes=0), clips["one_frame_silent"],
                      tmp_path / "b.mp4")
    assert report.faces_swapped == 1 and report.coverage == 0.0 and report.faces_low_coverage == 1
    assert any("almost nothing replaced in 1 of 1" in r.getMessage() and "--no-model-mask" in r.getMessage()
               for r in caplog.records), caplog.text


# ------------------------------------------------------------------------------------------------ the one probe
@pytest.fixture(scope="module")
def containers(clips, swapper, tmp_path_factory):
    """Every kind of file the suite hands ffmpeg: the test clips, the other display rotations, the outputs in each
    container, and files that are not videos (name: (path, expected facts or the words of the error))."""
    d = tmp_path_factory.mktemp("containers")
    frames = face_frames(3, size=(96, 64))
    cases = {name: (path, None) for name, path in clips.items()}
    for r in (180, 270):
        cases[f"rotation_{r}"] = (make_clip(d / f"rot{r}.mp4", frames, rotation=r, audio=False), None)
    for ext in ("mp4", "mov", "mkv"):
        cases[f"output_{ext}"] = (_run(swapper, clips["main"], d / f"out.{ext}", meta=LONG).output, None)
    (d / "notes.mp4").write_text("not a video\n" * 40)
    (d / "cut.mp4").write_bytes(clips["main"].read_bytes()[:600])
    Image.fromarray(frames[0]).save(d / "still.png")
    (d / "still.mp4").write_bytes((d / "still.png").read_bytes())
    cases.update(notes=(d / "notes.mp4", "cannot read the video"), cut=(d / "cut.mp4", "cannot read the video"),
                 still=(d / "still.mp4", "is a still image"))
    return cases


LONG = {"hififace:note": "x" * 200}  # a label longer than the 255 characters ffmpeg's text dump shows of a value
EXPECTED = {  # name: (stored width, height, rotation, rate, audio codecs)
    "main": (192, 224, 0, "25", ["aac"]), "portrait": (224, 160, 90, "25", ["aac"]),
    "odd": (853, 480, 0, "30000/1001", ["aac"]), "one_frame_silent": (192, 224, 0, "25", []),
    "no_face": (192, 224, 0, "25", ["aac"]), "rotation_180": (96, 64, 180, "25", []),
    "rotation_270": (64, 96, 270, "25", []), "output_mp4": (192, 224, 0, "25", ["aac"]),
    "output_mov": (192, 224, 0, "25", ["aac"]), "output_mkv": (192, 224, 0, "25", ["aac"]),
}


@pytest.mark.parametrize("name", [*EXPECTED, "notes", "cut", "still"])
def test_probe_facts_on_every_container(containers, name):
    """One probe (ffmpeg's own reading of the header) for every container: size, rotation, exact rate, audio, the
    frame count it estimates against the frames decoded, and our label's tags in full (FFMETADATA: the text dump
    cuts values at 255 characters, and ours are longer)."""
    from hififace.media.video import probe, read_tags

    path, error = containers[name]
    if error is not None:
        with pytest.raises(InputImageError, match=error):
            probe(path)
        return
    info = probe(path)
    assert (info.width, info.height, info.rotation, info.rate, info.audio) == EXPECTED[name]
    assert info.size == ((info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height))
    assert abs(info.frames_estimate - len(decode(path))) <= 1
    tags = read_tags(path)
    if name.startswith("output_"):
        assert tags["comment"].startswith("Synthetic video generated by hififace")
        assert len(tags["comment"]) > 255 and tags["comment"].endswith("; hififace:note=" + "x" * 200)
        if name != "output_mov":  # MOV has no description tag
            assert tags["description"] == "Synthetic video generated by hififace face swapping"
    else:
        assert "comment" not in tags


def test_ffmetadata_escapes():
    from hififace.media.video import parse_ffmetadata

    text = ";FFMETADATA1\ntitle=a\\=b\\;c\\#d\\\\e\nCOMMENT=line one\\\nline two\n;x=comment\n[STREAM]\ntitle=stream\n"
    assert parse_ffmetadata(text) == {"title": "a=b;c#d\\e", "comment": "line one\nline two"}
