"""`hififace swap` on whole photos and folders from the command line (tiny random model), and its bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from face_helpers import PHOTOS
from hififace.media.labels import read_label
from inferkit import assert_one_error, leftovers, run_cli

pytest.importorskip("cv2")
pytestmark = pytest.mark.usefixtures("isolated_home")


def test_folder_of_photos_with_progress_skips_and_lists_what_it_cannot_use(tmp_path, tiny_weights, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("two_people.jpg", "cameraman.png"):
        (src / name).write_bytes((PHOTOS / name).read_bytes())
    (src / "notes.txt").write_text("not a photo")
    (src / "clip.mp4").write_bytes(b"\0" * 64)
    (src / "broken.jpg").write_bytes((PHOTOS / "grace_hopper.jpg").read_bytes()[:3000])
    Image.new("RGB", (320, 240), (90, 100, 110)).save(src / "wall.png")
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["swap", "--source", PHOTOS / "grace_hopper.jpg", "--target", src, "-o", out,
                               "--weights", tiny_weights, "--align-passes", "0"], capsys)
    assert rc == 2 and stdout == ""
    assert any("skipping 2 file(s) that are not images: clip.mp4, notes.txt" in line for line in err), err
    assert any("broken.jpg" in line and "truncated" in line for line in err), err
    assert any("wall.png: no face found" in line for line in err), err
    assert err[-1].startswith("error: ") and "2 of 4 image(s) not swapped (broken.jpg, wall.png)" in err[-1]
    assert sorted(p.name for p in out.iterdir()) == ["cameraman.png", "two_people.jpg"]  # names and formats kept
    with Image.open(out / "cameraman.png") as a, Image.open(src / "cameraman.png") as b:
        assert a.mode == b.mode == "L" and a.size == b.size
    assert "hififace:command=swap" in read_label(out / "two_people.jpg")["UserComment"]
    assert leftovers(out) == []


def test_save_identity_from_two_sources_then_swap_a_chosen_face(tmp_path, tiny_weights, capsys):
    ident = tmp_path / "me.safetensors"
    rc, _, err = run_cli(["swap", "-s", PHOTOS / "grace_hopper.jpg", "-s", PHOTOS / "astronaut.png",
                          "--save-identity", ident, "--weights", tiny_weights], capsys)
    assert rc == 0, err
    assert any("identity of 2 source photo(s)" in line for line in err)
    rc, _, err = run_cli(["swap", "--source", ident, "--target", PHOTOS / "two_people.jpg", "-o", tmp_path / "o.png",
                          "--face", "1", "--weights", tiny_weights, "--color-match"], capsys)
    assert rc == 0, err
    assert any("1 of 2 face(s) swapped" in line for line in err), err
    out = np.asarray(Image.open(tmp_path / "o.png").convert("RGB"))
    orig = np.asarray(Image.open(PHOTOS / "two_people.jpg").convert("RGB"))
    changed = (out != orig).any(axis=2)
    assert changed[:, 563:].sum() > 0 and changed[:, :563].sum() == 0  # only the right-hand face


@pytest.mark.parametrize("case", ["face_out_of_range", "no_face", "target_without_output", "identity_ext",
                                  "missing_identity", "bad_option_value", "video_target", "video_source",
                                  "video_match", "output_is_target", "output_under_a_file", "identity_is_a_folder",
                                  "identity_under_a_file", "bad_threshold"])
def test_bad_photo_inputs_give_one_error_line(tmp_path, tiny_weights, capsys, case):
    Image.new("RGB", (320, 240), (90, 100, 110)).save(tmp_path / "wall.png")
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    target = tmp_path / "t.jpg"
    target.write_bytes((PHOTOS / "two_people.jpg").read_bytes())
    base = ["swap", "--source", PHOTOS / "grace_hopper.jpg", "--weights", tiny_weights]
    args, needles = {
        "face_out_of_range": (["--target", PHOTOS / "two_people.jpg", "-o", tmp_path / "o.png", "--face", "2"],
                              ["no face #2", "2 face(s) found", "hififace faces"]),
        "no_face": (["--target", tmp_path / "wall.png", "-o", tmp_path / "o.png"], ["wall.png", "no face found"]),
        "target_without_output": (["--target", PHOTOS / "two_people.jpg"], ["-o/--output"]),
        "identity_ext": (["--save-identity", tmp_path / "me.npz"], ["me.npz", ".safetensors"]),
        "missing_identity": (["--source", tmp_path / "nobody.safetensors", "--target", PHOTOS / "two_people.jpg",
                              "-o", tmp_path / "o.png"], ["nobody.safetensors", "not found"]),
        "bad_option_value": (["--target", PHOTOS / "two_people.jpg", "-o", tmp_path / "o.png", "--min-face", "-3"],
                             ["--min-face", "0 or more"]),
        "video_target": (["--target", tmp_path / "clip.mp4", "-o", tmp_path / "o.png"], ["clip.mp4", "hififace video"]),
        "video_source": (["--source", tmp_path / "clip.mp4", "--target", target, "-o", tmp_path / "o.png"],
                         ["clip.mp4", "is a video", "--source takes a photo"]),
        "video_match": (["--match", tmp_path / "clip.mp4", "--target", target, "-o", tmp_path / "o.png"],
                        ["clip.mp4", "is a video", "--match takes a photo"]),
        "output_is_target": (["--target", target, "-o", tmp_path / "." / "t.jpg"],
                             ["t.jpg", "is the target photo", "another file"]),
        "output_under_a_file": (["--target", target, "-o", tmp_path / "wall.png" / "o.png"],
                                ["wall.png/o.png", "is a file, not a folder", "choose another -o"]),
        "bad_threshold": (["--target", target, "-o", tmp_path / "o.png", "--threshold", "2"],
                          ["--threshold 2", "between 0 and 1"]),
        "identity_is_a_folder": (["--save-identity", tmp_path / "sub.safetensors"], ["sub.safetensors", "is a folder"]),
        "identity_under_a_file": (["--save-identity", tmp_path / "wall.png" / "me.safetensors"],
                                  ["wall.png", "is a file, not a folder"]),
    }[case]
    (tmp_path / "sub.safetensors").mkdir()
    rc, out, err = run_cli(base + args, capsys)
    assert_one_error(rc, err, *needles)
    assert out == "" and not (tmp_path / "o.png").exists() and leftovers(tmp_path) == []
    assert target.read_bytes() == (PHOTOS / "two_people.jpg").read_bytes()  # the input is never touched


def test_swap_help_shows_the_photo_options(capsys):
    from hififace.cli.main import main

    with pytest.raises(SystemExit):
        main(["swap", "--help"])
    text = capsys.readouterr().out
    for opt in ("--face", "--all-faces", "--match", "--aligned", "--detect", "--min-face", "--color-match",
                "--save-identity", "--target photos/ -o out_dir/"):
        assert opt in text


def test_swap_says_how_much_of_each_face_was_replaced_and_warns_when_nothing(tmp_path, tiny_weights, capsys):
    """A random network's own mask m_r is ~0: the swap pastes nothing. Said (share replaced per face, a warning
    naming the cause and --no-model-mask), and --no-model-mask pastes the whole face region."""
    base = ["swap", "--source", PHOTOS / "grace_hopper.jpg", "--target", PHOTOS / "obama_crop.jpg",
            "--weights", tiny_weights, "--align-passes", "0"]
    rc, _, err = run_cli([*base, "-o", tmp_path / "a.png"], capsys)
    assert rc == 0, err

    def share(name: str) -> int:
        said = [line for line in err if f"{name}: share of the face region replaced: face #0 " in line]
        assert len(said) == 1, err
        return int(said[0].rsplit("#0 ", 1)[1].split(" %")[0])

    assert share("a.png") < 5
    warning = [line for line in err if "of the face replaced" in line]
    assert len(warning) == 1 and "face #0: only" in warning[0] and "--no-model-mask" in warning[0], err
    assert "m_r" in warning[0] and "collapsed" in warning[0] and "random weights" in warning[0]
    rc, _, err = run_cli([*base, "-o", tmp_path / "b.png", "--no-model-mask"], capsys)
    assert rc == 0, err
    assert share("b.png") > 50 and not any("of the face replaced" in line for line in err), err
    orig = np.asarray(Image.open(PHOTOS / "obama_crop.jpg").convert("RGB")).astype(int)
    for name, lo, hi in (("a.png", 0, 2), ("b.png", 20, 255)):
        diff = np.abs(np.asarray(Image.open(tmp_path / name).convert("RGB")).astype(int) - orig)
        assert lo <= diff[110:210, 110:210].mean() <= hi, (name, diff[110:210, 110:210].mean())
