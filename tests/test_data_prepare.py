"""`hififace preprocess` on a tiny identity-folder tree: layout, index, skips, idempotence, resume, shards, CLI."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from face_helpers import photo, photo_transform
from hififace.errors import ConfigError, HifiFaceError
from hififace.data.prepare import PreprocessConfig, list_tasks, parse_shard, preprocess, read_index, shard_of

cv2 = pytest.importorskip("cv2")
from PIL import Image  # noqa: E402

EXPECTED = {  # source -> status or skip reason
    "alice/a1.png": "ok", "alice/a2.jpg": "ok",
    "bob/g1.jpg": "ok", "bob/g2.jpg": "ok", "bob/broken.jpg": "unreadable", "bob/blank.png": "no_face",
    "bob/notes.txt": "not_an_image",
    "carol/two.jpg": "ok", "carol/g1.jpg": "ok", "carol/g1.png": "duplicate_name",
    "dave/tiny.png": "face_too_small",
    "loose.jpg": "not_in_identity_folder",
}


def _save(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, quality=92) if path.suffix == ".jpg" else Image.fromarray(rgb).save(path)


def make_tree(root: Path) -> Path:
    astro = cv2.resize(photo("astronaut.png"), (320, 320), interpolation=cv2.INTER_AREA)
    grace = cv2.resize(photo("grace_hopper.jpg"), (256, 300), interpolation=cv2.INTER_AREA)
    two = cv2.resize(photo("two_people.jpg"), (563, 330), interpolation=cv2.INTER_AREA)
    _save(root / "alice/a1.png", astro)
    _save(root / "alice/a2.jpg", np.ascontiguousarray(astro[:, ::-1]))
    _save(root / "bob/g1.jpg", grace)
    _save(root / "bob/g2.jpg", photo_transform(grace, angle=10.0)[0])
    (root / "bob/broken.jpg").write_bytes((root / "bob/g1.jpg").read_bytes()[:2000])
    _save(root / "bob/blank.png", np.full((200, 180, 3), 120, np.uint8))
    (root / "bob/notes.txt").write_text("not a photo\n")
    _save(root / "carol/two.jpg", two)
    _save(root / "carol/g1.png", grace)
    _save(root / "carol/g1.jpg", grace)  # same stem as g1.png: only one crop may be named g1.png
    _save(root / "dave/tiny.png", cv2.resize(grace, (100, 117), interpolation=cv2.INTER_AREA))  # face ~30 px
    _save(root / "loose.jpg", grace)
    return root


def config(**kw) -> PreprocessConfig:
    base = dict(parsing="landmarks", landmarks68="none", refine_passes=1, size=128)
    base.update(kw)
    return PreprocessConfig(**base)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("raw"))


@pytest.fixture(scope="module")
def first_run(tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    result = preprocess(tree, out, config())
    return out, result


def _outputs(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.rglob("*.png"))}


def test_layout_index_and_skip_reasons(first_run):
    out, result = first_run
    index = read_index(out / "index.jsonl")
    assert set(index) == set(EXPECTED)
    for source, want in EXPECTED.items():
        rec = index[source]
        assert (rec["status"] if rec["status"] == "ok" else rec["reason"]) == want, (source, rec)
    ok = [r for r in index.values() if r["status"] == "ok"]
    assert result.summary["ok"] == len(ok) == 6
    assert result.summary["skipped"] == 6 and result.summary["skip_reasons"]["unreadable"] == 1
    # exactly one crop and one parsing map per usable photo, named after it
    images = sorted(p.relative_to(out / "images").as_posix() for p in (out / "images").rglob("*"))
    images = [p for p in images if p.endswith(".png")]
    assert images == sorted(f"{r['identity']}/{Path(r['source']).stem}.png" for r in ok)
    parsing = sorted(p.relative_to(out / "parsing").as_posix() for p in (out / "parsing").rglob("*.png"))
    assert parsing == images
    assert not list(out.rglob("*.tmp"))
    for r in ok:
        for key in ("image", "parsing", "size", "align", "parser", "box", "score", "landmarks5", "landmarks5_detector",
                    "landmarks68", "matrix", "photo_size", "faces"):
            assert key in r, key
        crop = np.asarray(Image.open(out / r["image"]))
        assert crop.shape == (128, 128, 3)
        m = np.asarray(r["matrix"])
        lm = np.asarray(r["landmarks5"]) @ m[:, :2].T + m[:, 2]  # landmarks land near the ArcFace template
        from hififace.face.align import template_points

        assert np.abs(lm - template_points("arcface", 128)).max() < 8
        assert r["parser"] == "landmarks"
    assert index["carol/two.jpg"]["faces"] == 2
    lines = (out / "index.jsonl").read_text().splitlines()
    assert [json.loads(x)["source"] for x in lines] == sorted(EXPECTED)


def test_reference_dataset_code_can_pair_and_mask(first_run):
    """What mindslab-ai/hififace's dataset.py does: glob both roots, sort, pair by stem, mask by exact colours."""
    out, _ = first_run
    exts = ["png", "PNG", "jpg", "JPG", "jpeg", "JPEG"]
    imgs = sorted(p for e in exts for p in (out / "images").glob(f"**/*.{e}"))
    pars = sorted(p for e in exts for p in (out / "parsing").glob(f"**/*.{e}"))
    assert len(imgs) == len(pars) == 6
    assert [p.stem for p in imgs] == [p.stem for p in pars]
    face_colors = [(76, 153, 0), (204, 0, 204), (51, 51, 255), (204, 0, 0), (255, 204, 204), (0, 255, 255),
                   (255, 255, 0), (102, 204, 0), (0, 0, 153), (255, 0, 0), (102, 51, 0)]
    for p in pars:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        mask = np.zeros(rgb.shape[:2], bool)
        for c in face_colors:
            mask |= np.all(rgb == c, axis=-1)
        assert mask[64, 64] and not mask[0, 0]
        assert 0.2 < mask.mean() < 0.9


def test_second_run_is_idempotent(tree, first_run):
    out, _ = first_run
    before_files = _outputs(out)
    before_index = (out / "index.jsonl").read_bytes()
    result = preprocess(tree, out, config())
    assert result.processed == 0 and result.already_done == len(EXPECTED)
    assert _outputs(out) == before_files
    assert (out / "index.jsonl").read_bytes() == before_index


def test_resume_after_interruption(tree, first_run, tmp_path):
    out0, _ = first_run
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    # simulate a run killed mid-way: one crop missing, its temporary left behind, the index's last line torn
    (out / "images/bob/g2.png").unlink()
    (out / "images/bob/.g2.png.abc123.tmp").write_bytes(b"partial")
    lines = (out / "index.jsonl").read_text().splitlines(keepends=True)
    kept = [x for x in lines if '"bob/g2.jpg"' not in x]
    (out / "index.jsonl").write_text("".join(kept) + '{"source": "bob/g2.jpg", "sta')
    untouched = {k: v for k, v in _outputs(out).items() if "g2" not in k}
    result = preprocess(tree, out, config())
    assert result.processed == 1
    assert (out / "images/bob/g2.png").is_file()
    assert not list(out.rglob("*.tmp"))
    after = _outputs(out)
    assert {k: after[k] for k in untouched} == untouched  # finished files left untouched
    assert read_index(out / "index.jsonl") == read_index(out0 / "index.jsonl")


def test_shards_partition_the_work_exactly(tree, first_run, tmp_path):
    out0, _ = first_run
    out = tmp_path / "sharded"
    n = 3
    seen: list[set[str]] = []
    for i in range(n):
        r = preprocess(tree, out, config(shard=(i, n)))
        seen.append(set(read_index(out / f"index.shard-{i:05d}-of-{n:05d}.jsonl")))
        assert (r.merged is not None) == (i == n - 1)  # the shard that completes the set merges
    assert set().union(*seen) == set(EXPECTED)
    assert sum(len(s) for s in seen) == len(EXPECTED)
    assert read_index(out / "index.jsonl") == read_index(out0 / "index.jsonl")
    assert json.loads((out / "summary.json").read_text())["ok"] == 6
    assert _outputs(out).keys() == _outputs(out0).keys()


def test_shard_assignment_is_stable_and_covers_all():
    names = [f"id{i:04d}/{j:04d}_01.jpg" for i in range(20) for j in range(10)]
    counts = np.bincount([shard_of(s, 8) for s in names], minlength=8)
    assert counts.sum() == 200 and counts.min() > 10  # balanced enough
    assert [shard_of(s, 8) for s in names] == [shard_of(s, 8) for s in names]
    assert parse_shard("3/64") == (3, 64)
    for bad in ("64/64", "-1/4", "3", "a/b", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_other_options_on_the_same_folder_are_refused(tree, first_run):
    out, _ = first_run
    with pytest.raises(ConfigError, match="size"):
        preprocess(tree, out, config(size=256))


def test_multi_face_skip_and_filters(tmp_path):
    from hififace.face.cropper import Skip
    from hififace.data.prepare import Preparer

    two = cv2.resize(photo("two_people.jpg"), (563, 330), interpolation=cv2.INTER_AREA)
    res = Preparer(config(multi_face="skip")).analyse(two)
    assert isinstance(res, Skip) and res.reason == "several_faces"
    pipeline = Preparer(config())
    res = pipeline.analyse(two)
    assert not isinstance(res, Skip) and pipeline.record(two, res)["faces"] == 2
    largest = max(pipeline.cropper.detector.detect(two), key=lambda f: f.area)  # the largest face is chosen
    np.testing.assert_allclose(pipeline.record(two, res)["box"], largest.box, atol=0.01)
    res = Preparer(config(min_score=0.99)).analyse(two)
    assert isinstance(res, Skip) and res.reason == "low_score"


def test_list_tasks_reports_unreadable_folders(tmp_path):
    raw = tmp_path / "raw"
    (raw / "ok").mkdir(parents=True)
    locked = raw / "locked"
    locked.mkdir()
    (locked / "x.jpg").write_bytes(b"x")
    locked.chmod(0)
    try:
        tasks = list_tasks(raw)
        import os

        if os.access(locked, os.R_OK):  # running as root: permissions do not apply
            pytest.skip("permissions are not enforced for this user")
        assert [(t.source, t.skip) for t in tasks] == [("locked/", "unreadable_folder")]
    finally:
        locked.chmod(0o755)


def test_cli_preprocess_and_errors(tmp_path, monkeypatch, capsys):
    from hififace.cli.main import main

    monkeypatch.setattr("hififace.weights.resolve.search_roots", lambda: [tmp_path / "home"])
    raw = tmp_path / "raw"
    _save(raw / "x/a.jpg", cv2.resize(photo("grace_hopper.jpg"), (256, 300), interpolation=cv2.INTER_AREA))
    (raw / "x/b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    rc = main(["preprocess", str(raw), str(out), "--size", "128", "--parsing", "landmarks", "--landmarks68", "none",
               "--align-passes", "0", "--no-progress", "--json"])
    assert rc == 0  # skipped files are counted, not errors
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ok"] == 1 and summary["skip_reasons"] == {"unreadable": 1}
    rc = main(["preprocess", str(raw), str(tmp_path / "out2"), "--parsing", "bisenet", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "79999_iter.pth" in err and "Traceback" not in err
    assert not (tmp_path / "out2").exists()  # nothing written before the error
    rc = main(["preprocess", str(tmp_path / "missing"), str(out), "--no-progress"])
    assert rc == 2 and "input folder not found" in capsys.readouterr().err
    rc = main(["preprocess", str(raw), str(out), "--shard", "5/4"])
    assert rc == 2 and "shard" in capsys.readouterr().err


def test_parallel_workers_give_the_same_records(tmp_path):
    raw = tmp_path / "raw"
    grace = cv2.resize(photo("grace_hopper.jpg"), (256, 300), interpolation=cv2.INTER_AREA)
    _save(raw / "p/a.png", grace)
    _save(raw / "p/b.png", np.ascontiguousarray(grace[:, ::-1]))
    _save(raw / "q/c.png", np.full((64, 64, 3), 9, np.uint8))
    serial = preprocess(raw, tmp_path / "serial", config())
    parallel = preprocess(raw, tmp_path / "parallel", config(workers=2))
    assert read_index(serial.index_path) == read_index(parallel.index_path)
    for rel in ("images/p/a.png", "parsing/p/b.png"):
        assert (tmp_path / "serial" / rel).read_bytes() == (tmp_path / "parallel" / rel).read_bytes()


def test_resume_remakes_empty_truncated_or_unrecorded_broken_outputs(tree, first_run, tmp_path):
    """A zero-byte or truncated PNG (a crash after the rename but before the data reached the disk, a copy cut
    short) is never trusted as done: recorded sizes are checked, older records without sizes are checked for the
    PNG end marker, and outputs of a run killed before it recorded them are kept only when complete."""
    out0, _ = first_run
    out = tmp_path / "out"
    shutil.copytree(out0, out)
    index = read_index(out / "index.jsonl")
    ok = sorted(s for s, r in index.items() if r["status"] == "ok")
    for source in ok:
        rec = index[source]
        assert rec["image_bytes"] == (out / rec["image"]).stat().st_size > 0
        assert rec["parsing_bytes"] == (out / rec["parsing"]).stat().st_size > 0
    empty, cut, legacy, unrecorded = (index[s] for s in ok[:4])
    (out / empty["image"]).write_bytes(b"")
    data = (out / cut["parsing"]).read_bytes()
    (out / cut["parsing"]).write_bytes(data[: len(data) // 2])
    data = (out / legacy["image"]).read_bytes()
    (out / legacy["image"]).write_bytes(data[:-20])  # an older index has no sizes: the end marker is checked
    (out / unrecorded["image"]).write_bytes(b"")  # written (zero bytes) by a run killed before recording it
    lines = [json.loads(x) for x in (out / "index.jsonl").read_text().splitlines()]
    for rec in lines:
        if rec["source"] == legacy["source"]:
            del rec["image_bytes"], rec["parsing_bytes"]
    kept = [json.dumps(r, sort_keys=True) + "\n" for r in lines if r["source"] != unrecorded["source"]]
    (out / "index.jsonl").write_text("".join(kept))
    untouched = {k: v for k, v in _outputs(out).items()
                 if k not in {empty["image"], cut["parsing"], legacy["image"], unrecorded["image"]}}
    result = preprocess(tree, out, config())
    assert result.processed == 4
    assert read_index(out / "index.jsonl") == index
    for rel in (empty["image"], cut["parsing"], legacy["image"], unrecorded["image"]):
        assert (out / rel).read_bytes() == (out0 / rel).read_bytes()
    after = _outputs(out)
    assert {k: after[k] for k in untouched} == untouched


def test_crops_masks_and_index_are_synced_before_they_are_renamed(tree, tmp_path, monkeypatch):
    from hififace.utils import atomic

    synced = []
    real = atomic.fsync_path
    monkeypatch.setattr(atomic, "fsync_path", lambda p: (synced.append(Path(p).parent.name), real(p)))
    raw = tmp_path / "raw"
    shutil.copytree(tree / "alice", raw / "alice")
    preprocess(raw, tmp_path / "out", config())
    assert synced.count("alice") == 4  # 2 crops + 2 masks
    assert synced.count("out") >= 3  # preprocess.json, index.jsonl, summary.json


def test_a_second_run_on_the_same_folder_is_refused_in_one_line(tree, tmp_path, capsys):
    """Two runs on one folder used to delete each other's temporaries; now the second one stops before any work."""
    import os
    import subprocess
    import sys

    from hififace.data.prepare import lock_output
    from inferkit import assert_one_error, run_cli

    out = tmp_path / "out"
    out.mkdir()
    argv = ["preprocess", tree, out, "--size", "128", "--parsing", "landmarks", "--landmarks68", "none",
            "--align-passes", "0", "--no-progress"]
    with lock_output(out):  # held by this process, as a running preprocess would
        rc, _, err = run_cli(argv, capsys)
    assert_one_error(rc, err, f"another preprocess run is writing to {out} (pid {os.getpid()})",
                     "wait for it to finish or choose another folder")
    assert sorted(p.name for p in out.iterdir()) == [".locks"]  # nothing else was written
    # the shards of one sharded run share the folder, but not a shard, and not with a whole run
    with lock_output(out, (0, 2)):
        with lock_output(out, (1, 2)):
            with pytest.raises(HifiFaceError, match=r"another run of shard 1/2 is writing"):
                with lock_output(out, (1, 2)):
                    pass
            with pytest.raises(HifiFaceError, match="another preprocess run is writing"):
                with lock_output(out):
                    pass
    # another process holding the lock (and the lock going away with it)
    code = ("import sys, time; from pathlib import Path; from hififace.data.prepare import lock_output\n"
            "with lock_output(Path(sys.argv[1])):\n    print('held', flush=True); sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(HifiFaceError, match=f"pid {proc.pid}"):
            with lock_output(out):
                pass
    finally:
        proc.kill()
        proc.wait()
    with lock_output(out):  # a killed holder leaves no lock behind
        pass


def test_skip_reasons_are_the_documented_ones():
    import re

    from hififace.data.prepare import SKIP_REASONS

    root = Path(__file__).resolve().parents[1]
    docs = (root / "docs" / "preprocessing.md").read_text(encoding="utf-8")
    row = next(line for line in docs.splitlines() if line.startswith("| `reason` |"))
    assert set(re.findall(r"`(\w+)`", row.split("|")[3])) == set(SKIP_REASONS)
    made = set(re.findall(r'Skip\("(\w+)"', (root / "src/hififace/face/cropper.py").read_text()))
    assert made == {"no_face", "low_score", "face_too_small", "several_faces"} and made <= set(SKIP_REASONS)
