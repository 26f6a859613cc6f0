"""The command line refuses typos (no prefix matching), names the sub-command's usage with a close match, reports
commands whose extra is missing, turns unforeseen failures into one line and leaves logging as it found it."""
from __future__ import annotations

import logging
import os
import warnings

import pytest

from hififace.cli import main as cli_main
from hififace.cli.main import build_parser, main
from inferkit import assert_one_error, run_cli


@pytest.mark.parametrize("argv, wrong, right", [
    (["train", "--trainer.max_step", "4"], "--trainer.max_step", "--trainer.max_steps"),
    (["train", "--trainer.max", "4"], "--trainer.max", "--trainer.max_steps"),
    (["train", "--data.image", "DIR"], "--data.image", "--data.images"),
    (["swap", "--sourc", "a.png", "--target", "b.png", "-o", "o.png"], "--sourc", "--source"),
    (["preprocess", "raw", "out", "--worker", "2"], "--worker", "--workers"),
])
def test_prefixes_are_not_accepted_and_the_subcommand_usage_names_a_close_match(argv, wrong, right, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: hififace {argv[0]} "), err  # the sub-command's usage, not the top-level one
    assert f"{wrong}: did you mean {right}?" in err and "Traceback" not in err


def test_a_typo_of_a_top_level_option_is_the_top_levels(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--verbos", "info"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: hififace [-h]") and "--verbos: did you mean --verbose?" in err, err


def test_an_unknown_export_format_is_named_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", "tflite", "--weights", "w"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "invalid choice: 'tflite' (choose from 'onnx')" in err, err


def test_every_parser_refuses_abbreviations():
    parser = build_parser()
    assert parser.allow_abbrev is False
    assert all(p.allow_abbrev is False for p in parser.commands.values())


def test_train_help_lists_each_override_once(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert out.count("--trainer.max_steps V") == 1 and out.count("--data.images V") == 1
    assert "--SECTION.KEY VALUE" in out.splitlines()[0]


def test_a_command_whose_module_cannot_be_imported_says_what_to_install(monkeypatch, capsys):
    real = cli_main.importlib.import_module

    def fake(name, package=None):
        if name == ".train":
            raise ModuleNotFoundError("No module named 'lightning'", name="lightning")
        return real(name, package)

    monkeypatch.setattr(cli_main.importlib, "import_module", fake)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "pip install 'hififace[train]'" in " ".join(capsys.readouterr().out.split())  # listed, not dropped
    rc, _, err = run_cli(["train", "--config", "x"], capsys)
    assert_one_error(rc, err, "hififace train is unavailable", "lightning is not installed", "hififace[train]")


def test_an_unforeseen_error_is_one_line_and_the_traceback_needs_v(monkeypatch, capsys):
    from hififace.cli import info

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(info, "run", boom)
    rc, _, err = run_cli(["info", "somewhere"], capsys)
    assert rc == 1
    assert_one_error(rc, err, "unexpected ZeroDivisionError: division by zero", "-v")
    rc, _, err = run_cli(["-v", "info", "somewhere"], capsys)
    assert rc == 1 and any("Traceback" in line for line in err)


def test_logging_and_warnings_are_restored_after_a_command(tmp_path, capsys):
    root = logging.getLogger()
    before = (root.level, list(root.handlers), logging.getLogger("hififace").level, list(warnings.filters),
              warnings.showwarning, os.environ.get("OPENCV_LOG_LEVEL"))
    for argv in (["info", str(tmp_path)], ["-v", "info", str(tmp_path)]):
        run_cli(argv, capsys)
        after = (root.level, list(root.handlers), logging.getLogger("hififace").level, list(warnings.filters),
                 warnings.showwarning, os.environ.get("OPENCV_LOG_LEVEL"))
        assert after == before


def test_verbose_hides_pil_chunk_dumps_but_shows_library_debug(capsys):
    from hififace.utils.logs import cli_logging

    logging.getLogger("somelib").setLevel(logging.INFO)  # as Lightning sets its own loggers
    with cli_logging(verbose=True):
        logging.getLogger("PIL.PngImagePlugin").debug("STREAM b'IHDR' 16 13")
        logging.getLogger("somelib").info("GPU available: False")
        logging.getLogger("hififace").debug("ours")
    err = capsys.readouterr().err
    assert "STREAM" not in err and "GPU available" in err and "ours" in err
    with cli_logging(verbose=False):
        logging.getLogger("somelib").info("GPU available: False")
        logging.getLogger("hififace").info("ours")
    err = capsys.readouterr().err
    assert "GPU available" not in err and "hififace: ours" in err
