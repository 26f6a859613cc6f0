"""Issue 21's options end to end on the tiny random model: --keep-mouth, --identity-strength/--shape-strength,
--source-weighting and --report in `hififace swap` and `hififace video`, the Python API and the app service; bad
values are one `error:` line before any work."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from face_helpers import PHOTOS
from inferkit import assert_one_error, leftovers, run_cli, tiny_model

pytest.importorskip("cv2")
pytestmark = pytest.mark.usefixtures("isolated_home")

REPORT_KEYS = {"format", "kind", "fps", "faces", "summary", "thresholds", "flagged", "flagged_frames", "models",
               "units", "higher_is_better", "skipped", "notes", "output", "target", "sources", "created",
               "hififace_version"}
ROW_KEYS = {"frame", "face", "id_similarity", "id_similarity_independent", "pose_error", "expression_error",
            "shape_error", "flicker"}


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A source photo and its mirror image (opposite yaw): two sources for pose weighting."""
    path = tmp_path_factory.mktemp("src") / "mirror.jpg"
    Image.open(PHOTOS / "obama_crop.jpg").transpose(Image.FLIP_LEFT_RIGHT).save(path)
    return path


def _check_report(path: Path, kind: str, rows: int) -> dict:
    data = json.loads(path.read_text())
    assert REPORT_KEYS <= set(data), REPORT_KEYS - set(data)
    assert data["format"] == "hififace-quality/1" and data["kind"] == kind and len(data["faces"]) == rows
    for row in data["faces"]:
        assert set(row) == ROW_KEYS
        assert -1.0 <= row["id_similarity"] <= 1.0 and row["pose_error"] >= 0 and row["shape_error"] >= 0
    measured = [r["id_similarity_independent"] for r in data["faces"]]  # dlib's, with the eval extra installed
    assert "id_similarity_independent" in data["skipped"] or all(m is not None for m in measured)
    assert path.with_suffix(".png").stat().st_size > 0
    with Image.open(path.with_suffix(".png")) as img:
        assert img.format == "PNG"
    return data


def test_photo_swap_with_every_option_and_a_report(tmp_path, tiny_weights, mirror, capsys):
    out, report = tmp_path / "out.jpg", tmp_path / "quality.json"
    rc, _, err = run_cli(["swap", "--source", PHOTOS / "obama_crop.jpg", "--source", mirror, "--target",
                          PHOTOS / "grace_hopper.jpg", "-o", out, "--weights", tiny_weights,
                          "--keep-mouth", "--identity-strength", "0.5", "--shape-strength", "0.2",
                          "--source-weighting", "nearest", "--report", report], capsys)
    assert rc == 0, err
    data = _check_report(report, "photo", 1)
    assert data["fps"] is None and [r["face"] for r in data["faces"]] == [0]
    assert all(r["frame"] == 0 and r["flicker"] is None for r in data["faces"])
    assert data["target"] == str(PHOTOS / "grace_hopper.jpg") and data["output"] == str(out)
    assert data["options"]["keep_mouth"] is True and data["options"]["source_weighting"] == "nearest"
    assert any(f"wrote {report}" in line for line in err), err
    assert leftovers(tmp_path) == []


def test_video_report_has_flicker_for_each_frame(tmp_path, tiny_weights, mirror, capsys):
    pytest.importorskip("imageio_ffmpeg")
    from videokit import face_frames, make_clip

    clip = make_clip(tmp_path / "clip.mp4", face_frames(3), audio=False)
    report = tmp_path / "clip.json"
    rc, _, err = run_cli(["video", "--source", PHOTOS / "grace_hopper.jpg", "--source", mirror, "--target", clip,
                          "-o", tmp_path / "out.mp4", "--weights", tiny_weights, "--preset", "ultrafast",
                          "--source-weighting", "pose", "--keep-mouth", "--identity-strength", "0.8",
                          "--report", report], capsys)
    assert rc == 0, err
    data = _check_report(report, "video", 3)
    assert data["fps"] == pytest.approx(25.0) and [r["frame"] for r in data["faces"]] == [0, 1, 2]
    assert data["faces"][0]["flicker"] is None and all(r["flicker"] >= 0 for r in data["faces"][1:])
    assert isinstance(data["flagged_frames"], list) and "flicker" in data["summary"]


@pytest.mark.parametrize("extra, needles", [
    (["--report", "{tmp}/r.txt"], ["r.txt", "unsupported output format", ".json"]),
    (["--report", "{tmp}/out.json"], ["out.png would replace the output"]),
    (["--report", "{tmp}"], ["is a folder"]),
    (["--identity-strength", "1.5"], ["--identity-strength 1.5: use a number from 0 to 1"]),
    (["--shape-strength", "-1"], ["--shape-strength -1: use a number from 0 to 1"]),
    (["--pose-temperature", "0"], ["--pose-temperature 0"]),
    (["--source", "{tmp}/me.safetensors", "--source-weighting", "pose"], ["me.safetensors", "holds no head pose"]),
])
def test_bad_values_are_one_line_before_any_work(tmp_path, extra, needles, capsys, monkeypatch):
    import hififace.cli._common as common

    def no_model(args):
        raise AssertionError("the model loaded before the options were checked")

    monkeypatch.setattr(common, "load_model", no_model)
    (tmp_path / "me.safetensors").write_bytes(b"")
    argv = ["swap", "--source", PHOTOS / "obama_crop.jpg", "--target", PHOTOS / "two_people.jpg",
            "-o", tmp_path / "out.png", *[a.format(tmp=tmp_path) for a in extra]]
    rc, _, err = run_cli(argv, capsys)
    assert_one_error(rc, err, *needles)
    assert not (tmp_path / "out.png").exists() and leftovers(tmp_path) == []


def test_report_of_a_folder_is_refused(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    rc, _, err = run_cli(["swap", "--source", PHOTOS / "obama_crop.jpg", "--target", tmp_path / "in", "-o",
                          tmp_path / "o", "--report", tmp_path / "r.json"], capsys)
    assert_one_error(rc, err, "--report", "one --target photo")


def test_api_writes_the_report_and_takes_the_options(tmp_path):
    import hififace
    from inferkit import SAMPLES

    model = tiny_model()
    target = SAMPLES / "astronaut.png"
    plain = hififace.swap_image(SAMPLES / "grace_hopper.png", target, model=model)
    result = hififace.swap_image(SAMPLES / "grace_hopper.png", target, tmp_path / "o.png", model=model,
                                 keep_mouth=True, identity_strength=0.9, report=tmp_path / "r.json")
    assert result.aligned and not np.array_equal(result.image, plain.image)
    data = _check_report(tmp_path / "r.json", "photo", 1)
    assert data["output"] == str(tmp_path / "o.png")
    with pytest.raises(hififace.HifiFaceError, match="unsupported output format"):
        hififace.swap_image(SAMPLES / "grace_hopper.png", target, model=model, report=tmp_path / "r.csv")


def test_app_service_takes_mouth_strength_and_weighting(tmp_path):
    from hififace.app.service import SwapService
    from hififace.errors import ConfigError

    model = tiny_model()
    model.config.notes.pop("weights")
    service = SwapService(model, workdir=tmp_path / "out", model_mask=False)
    out = service.run([str(PHOTOS / "obama_crop.jpg")], str(PHOTOS / "grace_hopper.jpg"), keep_mouth=True,
                      identity_strength=0.5, shape_strength=0.0, source_weighting="pose")
    assert out.kind == "image" and out.path.is_file()
    with pytest.raises(ConfigError, match="identity strength 2: use a number from 0 to 1"):
        service.run([str(PHOTOS / "obama_crop.jpg")], str(PHOTOS / "grace_hopper.jpg"), identity_strength=2)
