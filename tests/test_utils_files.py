"""hififace.utils.files: every reader of a user file refuses a FIFO or a device in one line instead of hanging."""
from __future__ import annotations

import os
import sys
import threading

import pytest

from hififace.errors import HifiFaceError

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")


def _outcome(fn, fifo, seconds: float = 30.0) -> BaseException | None:
    """Run ``fn`` in a thread; fail (after unblocking it) if it is still waiting on ``fifo`` after ``seconds``."""
    result: dict = {}

    def run() -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 (handed to the test)
            result["err"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():  # a writer that closes at once gives the blocked reader EOF
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"{fn} waited on the FIFO {fifo}")
    return result.get("err")


def _readers():
    from hififace.config import HifiFaceConfig
    from hififace.media.images import read_crop, read_photo
    from hififace.models.frozen.bfm import load_bfm_mat
    from hififace.weights.io import load_legacy, load_safetensors, read_safetensors_header

    return {"weights.safetensors": load_safetensors, "header.safetensors": read_safetensors_header,
            "config.json": HifiFaceConfig.load, "backbone.pth": load_legacy,
            "crop.png": read_crop, "photo.jpg": read_photo, "BFM_model_front.mat": load_bfm_mat}


@pytest.mark.parametrize("name", list(_readers()))
def test_a_fifo_in_place_of_a_user_file_is_one_line(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    err = _outcome(lambda: _readers()[name](fifo), fifo)
    assert isinstance(err, HifiFaceError), repr(err)
    assert str(err).startswith(f"{fifo}: is a named pipe (FIFO), not a regular file;"), str(err)


def test_a_fifo_video_is_refused_before_ffmpeg_sees_it(tmp_path):
    from hififace.media.video import probe

    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    err = _outcome(lambda: probe(fifo), fifo)
    assert isinstance(err, HifiFaceError) and "named pipe (FIFO)" in str(err), repr(err)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_a_device_is_refused_not_read_forever():
    from hififace.weights.io import load_safetensors

    with pytest.raises(HifiFaceError, match="/dev/zero: is a character device, not a regular file"):
        load_safetensors("/dev/zero")


def test_info_and_swap_on_a_folder_with_a_fifo_weight_file(tmp_path, capsys):
    from hififace.cli.main import main as cli
    from inferkit import tiny_model_dir

    folder = tiny_model_dir(tmp_path / "m")
    gen = folder / "generator.safetensors"
    gen.unlink()
    os.mkfifo(gen)
    for argv in (["info", str(folder)], ["swap", "--source", str(tmp_path / "a.png"), "--target",
                                         str(tmp_path / "b.png"), "-o", str(tmp_path / "o.png"), "--weights", str(folder)]):
        if argv[0] == "swap":
            from PIL import Image

            for p in ("a.png", "b.png"):
                Image.new("RGB", (256, 256), (120, 110, 100)).save(tmp_path / p)
        capsys.readouterr()
        err = _outcome(lambda: sys.exit(cli(argv)), gen)
        assert isinstance(err, SystemExit) and err.code == 2, repr(err)
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and "generator.safetensors: is a named pipe (FIFO)" in lines[0], lines
