"""The web app without a browser: SwapService (uploads in, labelled output out, one-line errors) and `hififace app`.

The page itself is driven in a real browser by tests/test_app_browser.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hififace.app.service import SwapService
from hififace.errors import ConfigError, InputImageError
from hififace.media.images import read_crop
from hififace.media.labels import read_label
from inferkit import assert_one_error, run_cli, tiny_model

PHOTOS = Path(__file__).parent / "data" / "photos"


def label_text(path) -> str:
    """The synthetic-content label of a file as `key=value` text, whatever its container (JPEG keeps it in one
    EXIF comment, PNG in separate text chunks)."""
    return " ".join(f"{k}={v}" for k, v in read_label(path).items())


@pytest.fixture(scope="module")
def model():
    m = tiny_model()
    m.config.notes.pop("weights")  # stands in for trained weights: outputs not labelled random
    return m


@pytest.fixture
def uploads(tmp_path):
    """Files as Gradio hands them over: each in its own temporary folder."""

    def put(name: str, data: bytes | None = None, image: np.ndarray | None = None) -> str:
        folder = tmp_path / "gradio" / f"{abs(hash(name)):x}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        if image is not None:
            Image.fromarray(image).save(path)
        else:
            path.write_bytes((PHOTOS / name).read_bytes() if data is None else data)
        return str(path)

    return put


def test_photo_swap_writes_a_labelled_output(model, uploads, tmp_path):
    # the pipeline's options pass through; without the model's mask (near 0 in an untrained net) the swap shows
    service = SwapService(model, workdir=tmp_path / "out", model_mask=False)
    steps = []
    out = service.run([uploads("astronaut.png")], uploads("two_people.jpg"), "all",
                      progress=lambda f, what: steps.append(f))
    assert out.kind == "image" and out.message == "2 of 2 face(s) swapped"
    assert out.path.name == "two_people_swapped.jpg" and out.path.parent.parent == tmp_path / "out"
    with Image.open(out.path) as img:
        assert img.format == "JPEG"
    label = label_text(out.path)
    assert "AI-Generated=true" in label and "hififace:command=app" in label and "hififace:weights" not in label
    before, after = read_crop(PHOTOS / "two_people.jpg"), read_crop(out.path)
    assert before.shape == after.shape and np.abs(before.astype(int) - after).max() > 40  # faces replaced
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)


def test_face_choice_by_number_swaps_one_face(model, uploads, tmp_path):
    service = SwapService(model, workdir=tmp_path)
    out = service.run([uploads("astronaut.png")], uploads("two_people.jpg"), "index", 1.0)
    assert out.message == "1 of 2 face(s) swapped"
    preview = service.faces_preview(uploads("two_people.jpg"))
    assert preview.shape == read_crop(PHOTOS / "two_people.jpg").shape
    assert service.faces_preview(uploads("clip.mp4", data=b"x")) is None


def test_random_weights_are_said_everywhere(uploads, tmp_path):
    service = SwapService(tiny_model(), workdir=tmp_path)  # HifiFace.random records that it is random
    assert service.random and "RANDOM" in service.describe()
    out = service.run([uploads("astronaut.png")], uploads("grace_hopper.jpg"), watermark=False)
    assert out.path.name == "grace_hopper_swapped_random_weights.jpg"
    assert "hififace:weights=random" in label_text(out.path)
    # the visible mark is drawn even though it was not asked for: white text in the bottom-right corner, far from
    # the face (the rest of that corner's rows stays as it was, up to JPEG noise)
    before, after = read_crop(PHOTOS / "grace_hopper.jpg").astype(int), read_crop(out.path).astype(int)
    h, w = after.shape[:2]
    rows = slice(h - h // 20, h - 4)
    assert (after[rows, w - w // 4 : w - 4] > 200).mean() > 0.05 > (before[rows, w - w // 4 : w - 4] > 200).mean()
    assert np.abs(after[rows, : w // 2] - before[rows, : w // 2]).mean() < 3


def test_service_removes_its_own_folder_only(model, tmp_path):
    own = SwapService(model)
    assert own.workdir.is_dir()
    own.close()
    assert not own.workdir.exists()
    given = SwapService(model, workdir=tmp_path / "keep")
    given.close()
    assert (tmp_path / "keep").is_dir()


@pytest.mark.parametrize("case, kind, needles", [
    ("no face", InputImageError, ["flat.png", "no face found"]),
    ("bad file", InputImageError, ["notes.jpg", "not an image"]),
    ("faceless source", InputImageError, ["flat.png", "no face found in this source"]),
    ("no source", ConfigError, ["source photo"]),
    ("no target", ConfigError, ["target photo or video"]),
    ("unsupported", InputImageError, ["notes.txt", "unsupported file type .txt"]),
    ("source type", InputImageError, ["clip.mp4", "not a photo"]),
    ("face number", InputImageError, ["two_people.jpg", "no face #5", "2 face(s) found"]),
    ("negative number", ConfigError, ["face number -1"]),
    ("match without reference", ConfigError, ["reference photo"]),
    ("bad video", InputImageError, ["clip.mp4"]),
])
def test_errors_are_one_line_naming_the_uploaded_file(case, kind, needles, model, uploads, tmp_path):
    service = SwapService(model, workdir=tmp_path / "out")
    flat = uploads("flat.png", image=np.full((200, 240, 3), 128, np.uint8))
    src, tgt = [uploads("astronaut.png")], uploads("grace_hopper.jpg")
    args = {
        "no face": (src, flat),
        "bad file": (src, uploads("notes.jpg", data=b"not a picture")),
        "faceless source": ([flat], tgt),
        "no source": ([], tgt),
        "no target": (src, None),
        "unsupported": (src, uploads("notes.txt", data=b"text")),
        "source type": ([uploads("clip.mp4", data=b"x")], tgt),
        "face number": (src, uploads("two_people.jpg"), "index", 5),
        "negative number": (src, tgt, "index", -1),
        "match without reference": (src, tgt, "match", 0, None),
        "bad video": (src, uploads("clip.mp4", data=b"\x00\x00\x00\x18ftypmp42 truncated")),
    }[case]
    with pytest.raises(kind) as info:
        service.run(*args)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) not in message  # the upload's name, not the server's path
    for needle in needles:
        assert needle in message, (needle, message)
    assert list((tmp_path / "out").iterdir()) == []  # nothing half-written, not even an empty request folder


def test_video_swap_through_the_service(model, uploads, tmp_path, monkeypatch):
    """A video reports its progress frame by frame through a tqdm bar: the page's gr.Progress(track_tqdm=True)
    shows that bar (even where the server's stderr is no terminal and tqdm draws nothing)."""
    pytest.importorskip("imageio_ffmpeg")
    import tqdm

    from videokit import face_frames, make_clip

    clip = make_clip(tmp_path / "clip.mp4", face_frames(4), audio=False)
    service = SwapService(model, workdir=tmp_path / "out")
    bars, counted, init, update = {}, [], tqdm.tqdm.__init__, tqdm.tqdm.update

    def spy_init(bar, *args, **kw):  # what gr.Progress(track_tqdm=True) reads: the arguments, not the drawn bar
        bars[id(bar)] = (kw.get("desc"), kw.get("total"))
        init(bar, *args, **kw)

    monkeypatch.setattr(tqdm.tqdm, "__init__", spy_init)
    monkeypatch.setattr(tqdm.tqdm, "update", lambda bar, n=1: counted.append((*bars[id(bar)], n)) or update(bar, n))
    steps = []
    out = service.run([uploads("astronaut.png")], str(clip), progress=lambda f, what: steps.append(f))
    assert out.kind == "video" and out.path.suffix == ".mp4" and out.message.startswith("4 frames")
    frames = [(total, n) for desc, total, n in counted if desc == "video"]
    assert sum(n for _, n in frames) == 4 and {total for total, _ in frames} == {4}, counted
    assert steps[0] == 0.0 and steps[-1] == 1.0
    assert "AI-Generated=true" in label_text(out.path)


# ---------------------------------------------------------------------- the command
def test_app_without_gradio_is_one_line_naming_the_extra(tiny_weights, isolated_home, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    rc, _, err = run_cli(["app", "--weights", tiny_weights], capsys)
    assert_one_error(rc, err, "gradio", "pip install 'hififace[app]'")


def test_app_port_out_of_range(isolated_home, capsys):
    rc, _, err = run_cli(["app", "--port", "70000"], capsys)
    assert_one_error(rc, err, "--port 70000", "1 to 65535")


def test_app_options(capsys):
    from hififace.cli.main import build_parser

    args = build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share) == ("127.0.0.1", 7860, "off")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["app", "--share", "yes"])


@pytest.fixture
def fake_launch(monkeypatch):
    """Gradio's launch and wait replaced: the keyword arguments the app would serve with."""
    gr = pytest.importorskip("gradio")
    seen = {}

    def launch(self, **kw):
        seen.update(kw)
        self.share_url = "https://example.gradio.live" if kw.get("share") else None

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda self: None)
    return seen


def test_app_listens_on_localhost_only_by_default(tiny_weights, isolated_home, fake_launch, capsys):
    rc, out, err = run_cli(["app", "--weights", tiny_weights], capsys)
    assert rc == 0, err
    assert fake_launch["server_name"] == "127.0.0.1" and fake_launch["server_port"] == 7860
    assert fake_launch["share"] is False
    assert "http://127.0.0.1:7860" in out and not any("anyone" in line for line in err)


def test_app_host_and_share_are_warned_about(tiny_weights, isolated_home, fake_launch, capsys):
    rc, out, err = run_cli(["app", "--weights", tiny_weights, "--host", "0.0.0.0", "--port", "8080", "--share", "on"],
                           capsys)
    assert rc == 0, err
    assert (fake_launch["server_name"], fake_launch["server_port"], fake_launch["share"]) == ("0.0.0.0", 8080, True)
    assert sum("anyone" in line for line in err) == 2 and "example.gradio.live" in out


def test_app_without_weights_runs_random_and_says_so(isolated_home, fake_launch, monkeypatch, capsys):
    from hififace import HifiFaceConfig
    from hififace.app import ui
    from hififace.cli import demo
    from inferkit import TINY

    monkeypatch.setattr(demo, "smoke_config", lambda: HifiFaceConfig(**TINY))  # the full-size one is slow to build
    pages, original = [], ui.build_ui
    monkeypatch.setattr(ui, "build_ui", lambda service, random_reason="": pages.append(random_reason) or
                        original(service, random_reason))
    rc, _, err = run_cli(["app"], capsys)
    assert rc == 0, err
    assert sum("RANDOM weights" in line for line in err) == 1
    assert pages and pages[0].startswith("No trained weights were found in")


def test_a_taken_port_is_one_line(tiny_weights, isolated_home, monkeypatch, capsys):
    gr = pytest.importorskip("gradio")

    def taken(self, **kw):
        raise OSError(f"Cannot find empty port in range: {kw['server_port']}-{kw['server_port']}.")

    monkeypatch.setattr(gr.Blocks, "launch", taken)
    rc, _, err = run_cli(["app", "--weights", tiny_weights, "--port", "7999"], capsys)
    assert_one_error(rc, err, "127.0.0.1:7999", "pick another --port")


def test_a_swap_that_replaced_nothing_says_so_and_no_model_mask_is_offered(model, uploads, tmp_path, capsys):
    """The tiny network's own mask is ~0, so with it nothing is pasted: the outcome carries a warning naming
    --no-model-mask (which `hififace app` offers); without the model's mask there is none."""
    out = SwapService(model, workdir=tmp_path / "a").run([uploads("astronaut.png")], uploads("two_people.jpg"))
    assert out.message == "1 of 2 face(s) swapped"
    assert "almost nothing of face #" in out.warning and "--no-model-mask" in out.warning
    out = SwapService(model, workdir=tmp_path / "b", model_mask=False).run([uploads("astronaut.png")],
                                                                          uploads("two_people.jpg"))
    assert out.warning == ""
    with pytest.raises(SystemExit):
        run_cli(["app", "--help"], capsys)
    assert "--no-model-mask" in capsys.readouterr().out


def test_quality_report_is_written_beside_the_output_and_removed_with_it(model, uploads, tmp_path):
    """report=True: the JSON (format, faces, summary) and its PNG plot land in the request's own private folder,
    name uploads by their file name only, and go when the result's lifetime is over; report=False writes neither."""
    import json
    import stat

    service = SwapService(model, workdir=tmp_path / "out", model_mask=False, result_seconds=600)
    plain = service.run([uploads("astronaut.png")], uploads("two_people.jpg"), "all")
    assert (plain.report, plain.plot, plain.summary) == (None, None, "")
    assert [p.name for p in plain.path.parent.iterdir()] == [plain.path.name]  # nothing extra

    out = service.run([uploads("astronaut.png")], uploads("two_people.jpg"), "all", report=True)
    assert out.report.parent == out.plot.parent == out.path.parent and out.path.parent.parent == tmp_path / "out"
    assert sorted(p.name for p in out.path.parent.iterdir()) == sorted(
        [out.path.name, "two_people_swapped_quality.json", "two_people_swapped_quality.png"])
    data = json.loads(out.report.read_text())
    assert {"format", "faces", "summary"} <= set(data) and data["kind"] == "photo" and len(data["faces"]) == 2
    assert data["target"] == "two_people.jpg" and data["sources"] == ["astronaut.png"] and str(tmp_path) not in str(data)
    with Image.open(out.plot) as img:
        assert img.format == "PNG"
    for p in (out.report, out.plot):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert out.summary.startswith("2 face(s) measured, mean identity similarity ") and "flagged" in out.summary
    assert service.prune(now=out.path.parent.stat().st_mtime + 601) == 2  # both requests, report and all
    assert not out.path.parent.exists() and list((tmp_path / "out").iterdir()) == []


def test_the_page_builds_with_tabs_and_the_report_controls(model, tmp_path):
    pytest.importorskip("gradio")
    from hififace.app.ui import build_ui

    page = build_ui(SwapService(model, workdir=tmp_path))
    ids = {getattr(b, "elem_id", None): b for b in page.blocks.values()}
    assert {"swap-tab", "verify-tab", "quality-report", "quality-summary", "quality-plot", "quality-files", "swap",
            "sources", "target", "result-image", "result-video", "download", "verify-file", "verify-report"} <= set(ids)
    assert ids["quality-report"].value is False and ids["quality-plot"].visible is False
    assert [ids[k].label for k in ("swap-tab", "verify-tab")] == ["Swap", "Verify"]
