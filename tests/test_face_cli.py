"""`hififace faces`: numbered detections as text/JSON and a preview image; bad input is one error line."""
from __future__ import annotations

import json

import numpy as np
import pytest

from face_helpers import PHOTOS

pytest.importorskip("cv2")


def test_faces_json_and_preview(tmp_path, capsys):
    from PIL import Image

    from hififace.cli.main import main

    out = tmp_path / "preview.png"
    rc = main(["faces", str(PHOTOS / "two_people.jpg"), "-o", str(out), "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert [f["index"] for f in data["faces"]] == [0, 1]
    assert data["faces"][0]["box"][0] < data["faces"][1]["box"][0]
    assert len(data["faces"][0]["landmarks5"]) == 5
    prev = np.asarray(Image.open(out).convert("RGB"))
    orig = np.asarray(Image.open(PHOTOS / "two_people.jpg").convert("RGB"))
    assert prev.shape == orig.shape
    assert (np.abs(prev.astype(int) - orig.astype(int)).sum(-1) > 60).mean() > 0.001  # something was drawn


def test_faces_table_and_bad_input(tmp_path, capsys):
    from hififace.cli.main import main

    assert main(["faces", str(PHOTOS / "astronaut.png")]) == 0
    assert "1 face(s)" in capsys.readouterr().out
    bad = tmp_path / "x.jpg"
    bad.write_text("not an image")
    assert main(["faces", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err


@pytest.mark.parametrize("name,needles", [("preview", ["preview", "unsupported output format"]),
                                          ("preview.xyz", ["preview.xyz", "use .png"]),
                                          ("notes.txt/preview.png", ["notes.txt", "is a file, not a folder"])])
def test_faces_preview_path_is_checked_before_any_work(tmp_path, capsys, name, needles):
    from hififace.cli.main import main
    from inferkit import assert_one_error, leftovers

    (tmp_path / "notes.txt").write_text("a file")
    capsys.readouterr()
    rc = main(["faces", str(PHOTOS / "two_people.jpg"), "-o", str(tmp_path / name)])
    captured = capsys.readouterr()
    assert_one_error(rc, [line for line in captured.err.splitlines() if line.strip()], *needles)
    assert captured.out == "" and leftovers(tmp_path) == []  # refused before detecting: no table printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
