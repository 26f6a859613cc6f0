"""Atomic writes (hififace.utils.atomic) and the folder swap of `hififace convert`: a full disk, a quota or a
read-only place is one line naming the folder with nothing left behind; temporary names fit any legal output name;
data reach the disk before the rename; `convert --overwrite -o LINK` replaces the folder the link points to."""
from __future__ import annotations

import errno
import os

import pytest
from PIL import Image

from hififace.errors import OutputError, WeightsError
from hififace.utils import atomic
from hififace.utils.atomic import TMP_PREFIX, atomic_path, atomic_write_text, storage_error
from hififace.converters import convert as conv
from inferkit import SAMPLES, assert_one_error, run_cli, tiny_model, tiny_model_dir

ALIGNED = SAMPLES / "grace_hopper.png"  # 256 x 256: the tiny model's size, so swap takes it as an aligned crop


def _disk_full_on_save(monkeypatch):
    """PIL writes part of the file, then the disk is full (as a real ENOSPC in the middle of a write)."""

    def save(self, fp, *args, **kwargs):
        with open(fp, "wb") as fh:
            fh.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", save)


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "no space left on"), (errno.EDQUOT, "disk quota exceeded on"),
                                          (errno.EROFS, "read-only file system")])
def test_atomic_path_turns_storage_errors_into_one_line_naming_the_folder(tmp_path, code, needle):
    out = tmp_path / "sub" / "x.json"
    with pytest.raises(OutputError) as info:
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise OSError(code, os.strerror(code))
    text = str(info.value)
    assert needle in text and str(out.parent) in text and "\n" not in text
    assert not out.exists() and os.listdir(out.parent) == []  # nothing left behind
    # other errors pass through unchanged
    with pytest.raises(PermissionError):
        with atomic_path(out):
            raise PermissionError(errno.EACCES, "denied")
    assert storage_error(OSError(errno.EACCES, "denied")) is None


def test_a_full_disk_during_fsync_is_reported_and_the_old_file_kept(tmp_path, monkeypatch):
    """Delayed allocation reports ENOSPC at fsync: that is before the rename, so the previous file stays."""
    out = tmp_path / "index.jsonl"
    out.write_text("old\n")

    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "fsync_path", full)
    with pytest.raises(OutputError, match=f"no space left on {tmp_path}"):
        atomic_write_text(out, "new\n")
    assert out.read_text() == "old\n" and os.listdir(tmp_path) == ["index.jsonl"]


def test_data_are_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    monkeypatch.setattr(atomic, "fsync_path", lambda p: events.append(("file", os.path.exists(tmp_path / "a.txt"))))
    monkeypatch.setattr(atomic, "fsync_dir", lambda d: events.append(("dir", os.path.exists(tmp_path / "a.txt"))))
    atomic_write_text(tmp_path / "a.txt", "x")
    assert events == [("file", False), ("dir", True)]


def test_swap_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    weights = tiny_model_dir(tmp_path / "w")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    _disk_full_on_save(monkeypatch)
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", ALIGNED, "-o", out_dir / "x.png",
                          "--weights", weights], capsys)
    line = assert_one_error(rc, err, f"no space left on {out_dir}", "choose another output location")
    assert "unexpected" not in line
    assert os.listdir(out_dir) == []


def test_cli_maps_storage_errors_raised_outside_atomic_writes(tmp_path, monkeypatch, capsys):
    """A write we do not wrap (a library's own file) still gives one line, naming the folder of the file."""
    from hififace.cli import info

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "logs" / "x.log"))

    monkeypatch.setattr(info, "run", full)
    rc, _, err = run_cli(["info", tmp_path], capsys)
    line = assert_one_error(rc, err, f"no space left on {tmp_path / 'logs'}")
    assert "unexpected" not in line


def test_temporary_names_fit_a_244_character_output_name(tmp_path, capsys):
    """The longest legal name (255 bytes) minus nothing: the temporary must not append to it."""
    weights = tiny_model_dir(tmp_path / "w")
    name = "a" * 240 + ".png"
    assert len(name) == 244
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", ALIGNED, "-o", tmp_path / name,
                          "--weights", weights], capsys)
    assert rc == 0, err
    assert sorted(os.listdir(tmp_path)) == [name, "w"]
    longest = "b" * 251 + ".png"  # 255 bytes: still fine
    atomic_write_text(tmp_path / longest, "x")
    assert (tmp_path / longest).read_text() == "x"
    with atomic_path(tmp_path / ("c." + "d" * 40)) as tmp:  # an absurd "extension" is not kept on the temporary
        assert tmp.name.startswith(TMP_PREFIX) and len(tmp.name) < 32


def test_a_name_too_long_for_the_file_system_is_one_line(tmp_path, capsys):
    weights = tiny_model_dir(tmp_path / "w")
    rc, _, err = run_cli(["swap", "-s", SAMPLES / "astronaut.png", "-t", ALIGNED, "-o", tmp_path / ("a" * 300 + ".png"),
                          "--weights", weights], capsys)
    line = assert_one_error(rc, err, "file name too long", "choose a shorter output name")
    assert len(line) < 400 and "unexpected" not in line


# ---------------------------------------------------------------------------------------------- convert -o
@pytest.fixture
def fake_reference(monkeypatch):
    """`convert` of a reference checkpoint without one: the loader and the converter write a tiny model."""
    from hififace.converters import reference

    calls = {"fail": None}

    def convert_reference_checkpoint(path, out, obj=None):
        tiny_model().save_pretrained(out)
        if calls["fail"] is not None:
            raise OSError(calls["fail"], os.strerror(calls["fail"]))

    monkeypatch.setattr(conv, "load_legacy", lambda path, expected: {"state_dict": {reference.GEN + "id_extractor.x": 0}})
    monkeypatch.setattr(conv, "convert_reference_checkpoint", convert_reference_checkpoint)
    return calls


def _ckpt(tmp_path):
    p = tmp_path / "ref.ckpt"
    p.write_bytes(b"stand-in")
    return p


def test_convert_overwrite_through_a_link_replaces_the_folder_it_points_to(tmp_path, fake_reference, capsys):
    real = tiny_model_dir(tmp_path / "disk" / "model")
    (real / "stale.txt").write_text("from the old folder")
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    rc, _, err = run_cli(["convert", _ckpt(tmp_path), "-o", link, "--overwrite"], capsys)
    assert rc == 0, err
    assert link.is_symlink() and os.path.realpath(link) == str(real)  # the link stays, pointing at the new folder
    assert (real / "config.json").is_file() and not (real / "stale.txt").exists()
    assert sorted(os.listdir(tmp_path / "disk")) == ["model"]  # no temporary or old copy left


def test_convert_refuses_links_to_nothing_and_overwriting_non_model_folders(tmp_path, fake_reference, capsys):
    ckpt = _ckpt(tmp_path)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    rc, _, err = run_cli(["convert", ckpt, "-o", dangling, "--overwrite"], capsys)
    assert_one_error(rc, err, "dangling", "symbolic link", "does not exist")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()

    docs = tmp_path / "documents"
    docs.mkdir()
    (docs / "thesis.tex").write_text("precious")
    link = tmp_path / "to-docs"
    link.symlink_to(docs)
    for out in (docs, link):
        rc, _, err = run_cli(["convert", ckpt, "-o", out, "--overwrite"], capsys)
        assert_one_error(rc, err, "not a model folder", "config.json", "choose another -o")
        assert (docs / "thesis.tex").read_text() == "precious"


def test_convert_on_a_full_disk_names_the_output_folder_and_keeps_the_old_one(tmp_path, fake_reference, capsys):
    old = tiny_model_dir(tmp_path / "out" / "model")
    before = sorted(os.listdir(old))
    fake_reference["fail"] = errno.ENOSPC
    rc, _, err = run_cli(["convert", _ckpt(tmp_path), "-o", old, "--overwrite"], capsys)
    line = assert_one_error(rc, err, f"no space left on {old}")
    assert TMP_PREFIX not in line
    assert sorted(os.listdir(old)) == before and sorted(os.listdir(tmp_path / "out")) == ["model"]


def test_atomic_folder_puts_the_old_folder_back_when_the_final_rename_fails(tmp_path, monkeypatch):
    old = tiny_model_dir(tmp_path / "model")
    real_rename = os.rename

    def rename(src, dst):
        if str(src).endswith(".partial"):
            raise OSError(errno.EXDEV, "cross-device link")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError):
        with conv.atomic_folder(old, overwrite=True) as tmp:
            (tmp / "config.json").write_text("{}")
    assert (old / "generator.safetensors").is_file() and sorted(os.listdir(tmp_path)) == ["model"]
    with pytest.raises(WeightsError, match="pass --overwrite"):
        with conv.atomic_folder(old):
            pass
