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


def _crowd(rows: int = 3, per_row: int = 10, size: tuple[int, int] = (1000, 420)) -> list:
    """A group photo's detections: rows of small faces, each row half a step to the side of the one in front and
    a little below it, as people stand on steps (30 boxes by default)."""
    from hififace.face.detect import Face

    faces = []
    for r in range(rows):
        for k in range(per_row):
            w, h = 34 + 4 * r, 42 + 5 * r  # the front rows are nearer: larger
            x = 40 + k * 92 + (46 if r % 2 else 0)
            y = 90 + r * 58
            lm = np.array([[x + w / 2, y + h / 2]] * 5, np.float32)
            faces.append(Face(np.array([x, y, x + w, y + h], np.float32), 0.9 - 0.01 * k, lm))
    faces.sort(key=lambda f: f.box[0])  # numbered left to right, as detectors give them
    assert len(faces) == rows * per_row and size[0] > max(f.box[2] for f in faces)
    return faces


def test_preview_labels_cover_no_face_and_no_other_label():
    """A crowded 30-face layout: every label lies inside the picture, outside every face box and apart from every
    other label, and the drawing leaves the inside of every box as it was (landmark dots aside)."""
    from hififace.face.draw import draw_faces, label_layout

    faces = _crowd()
    hw = (420, 1000)
    layout = label_layout(faces, hw)
    rects = [r for _, _, r in layout]
    boxes = [tuple(float(v) for v in f.box) for f in faces]

    def apart(a, b):
        return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]

    for i, r in enumerate(rects):
        assert 0 <= r[0] and 0 <= r[1] and r[2] <= hw[1] and r[3] <= hw[0], (i, r)
        assert all(apart(r, b) for b in boxes), (i, r)
        assert all(apart(r, q) for j, q in enumerate(rects) if j != i), (i, r)
    assert all(text.startswith(f"#{i}") for i, (text, _, _) in enumerate(layout))
    image = np.full((*hw, 3), 128, np.uint8)
    drawn = draw_faces(image, faces).astype(int)
    for f in faces:
        x0, y0, x1, y1 = (int(v) for v in f.box)
        inside = np.abs(drawn[y0 + 3 : y1 - 2, x0 + 3 : x1 - 2] - 128).sum(-1) > 0
        yy, xx = np.mgrid[y0 + 3 : y1 - 2, x0 + 3 : x1 - 2]
        dots = np.hypot(xx - f.landmarks[0, 0], yy - f.landmarks[0, 1]) < 5
        assert not (inside & ~dots).any(), f.box


def test_preview_labels_scale_with_the_face():
    from hififace.face.detect import Face
    from hififace.face.draw import label_layout

    small = Face(np.array([100, 100, 140, 150], np.float32), 0.9, np.zeros((5, 2), np.float32))
    large = Face(np.array([400, 100, 700, 480], np.float32), 0.9, np.zeros((5, 2), np.float32))
    (_, s_small, r_small), (_, s_large, r_large) = label_layout([small, large], (800, 1000))
    assert s_large > 2 * s_small and (r_large[3] - r_large[1]) > 2 * (r_small[3] - r_small[1])
