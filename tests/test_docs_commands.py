"""Docs and CLI cannot drift: every `hififace ...` command in README.md and docs/*.md (fenced blocks and inline code)
parses with the real parser, train commands give a valid config, the cheap ones run on a tiny model, and every
Python snippet compiles and imports names that exist."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import shutil
from pathlib import Path

import pytest

from hififace.cli import main as cli_main
from inferkit import SAMPLES, tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
ELLIPSIS = ("...", "…")
#: Shell values the docs use -> something of the same kind.
SHELL = {"$(nproc)": "4", "$SLURM_CPUS_PER_TASK": "8", "$SLURM_ARRAY_TASK_ID": "0"}
#: Commands cheap enough to run on a tiny model in a sandbox (convert/train/preprocess need real files or time).
RUNNABLE = ("swap", "grid", "interpolate", "info", "faces", "demo", "video", "live", "enhance")


def _fenced(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def _commands(path: Path) -> list[tuple[str, str]]:
    """(where, command line) of every hififace command in the file; inline code is marked with backticks."""
    text = path.read_text(encoding="utf-8")
    found = []
    for lang, body in _fenced(text):
        if lang == "python":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            line = line.strip()
            m = re.search(r"(?:^|\s)(hififace (?:-v )?[a-z]+.*)$", line) if not line.startswith("#") else None
            if m and (line.startswith("hififace ") or line.split()[0] in ("srun", "$")):
                found.append((f"{path.name}: {line[:60]}", m.group(1)))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    for span in re.findall(r"`(hififace (?:-v )?[a-z][^`]*)`", prose.replace("\n", " ")):
        found.append((f"{path.name}: `{span[:60]}`", span))
    return found


ALL = [c for doc in DOCS for c in _commands(doc)]


def _tokens(command: str, where: str = "") -> tuple[list[str], bool]:
    """argv after 'hififace', and whether the docs show only part of the command (an ellipsis, or a bare name
    in the prose)."""
    for key, value in SHELL.items():
        command = command.replace(key, value)
    assert "$" not in command, f"unknown shell value in {command!r}: add it to SHELL"
    words = shlex.split(command.replace("\\|", "|"), comments=True)[1:]
    partial = any(w in ELLIPSIS or w.endswith(ELLIPSIS) for w in words) or (len(words) <= 1 and "`" in where)
    argv = []
    for w in words:
        if w in ELLIPSIS:
            if argv and argv[-1].startswith("--"):
                argv.append("PLACEHOLDER")  # '--config ...': some value
            continue
        if "|" in w and not w.startswith("-"):
            w = w.split("|")[0]  # 'identity|3d|all': one of the alternatives
        argv.append(w)
    return argv, partial


def test_the_docs_show_commands_of_every_kind():
    names = {_tokens(c)[0][0] if _tokens(c)[0][0] != "-v" else _tokens(c)[0][1] for _, c in ALL}
    assert {"swap", "grid", "interpolate", "demo", "convert", "info", "faces", "preprocess", "train"} <= names
    assert len(ALL) > 40


@pytest.mark.parametrize("where, command", ALL, ids=[w for w, _ in ALL])
def test_documented_command_parses(where, command, capsys):
    argv, partial = _tokens(command, where)
    parser = cli_main.build_parser()
    if partial:  # what is shown must exist: the command and each option
        args = [a for a in argv if a != "-v"]
        assert args[0] in parser.commands, f"{where}: no command {args[0]!r}"
        known = {s for action in parser.commands[args[0]]._actions for s in action.option_strings}
        unknown = [a for a in args[1:] if a.startswith("-") and a.split("=")[0] not in known]
        assert not unknown, f"{where}: unknown options {unknown}"
        return
    try:
        cli_main._check_long_options(parser, argv)
        args = parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: does not parse: {capsys.readouterr().err.strip()}")
    if args.command == "train" and not args.resume:
        from hififace.training.config import load_config

        overrides = {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("override:")}
        load_config(None if args.config in (None, "PLACEHOLDER") else args.config, overrides)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """The files the documented commands name, with a tiny model where they expect weights."""
    box = tmp_path_factory.mktemp("docs")
    for name, sample in (("a.png", "astronaut"), ("b.png", "grace_hopper"), ("c.png", "cameraman")):
        shutil.copy(SAMPLES / f"{sample}.png", box / name)
    for folder in ("faces", "sources", "targets"):
        (box / folder).mkdir()
        for p in sorted(SAMPLES.glob("*.png"))[: 2 if folder == "sources" else 3]:
            shutil.copy(p, box / folder / p.name)
    photos = ROOT / "tests" / "data" / "photos"
    for name in ("photo.jpg", "me.jpg", "me2.jpg", "t.jpg", "ref.jpg"):
        shutil.copy(photos / "grace_hopper.jpg", box / name)
    for name in ("group.jpg", "group_photo.jpg"):
        shutil.copy(photos / "two_people.jpg", box / name)
    (box / "photos").mkdir()
    shutil.copy(photos / "two_people.jpg", box / "photos" / "group.jpg")
    if importlib.util.find_spec("imageio_ffmpeg") and importlib.util.find_spec("cv2"):
        from videokit import face_frames, make_clip

        make_clip(box / "clip.mp4", face_frames(3))
    for folder in ("DIR", "weights/hififace-256", "weights/my-model", "home/hififace-256"):
        tiny_model_dir(box / folder)
    from hififace.models.restorers import GFPGAN, GFPGANConfig

    GFPGAN.random(GFPGANConfig(out_size=64, narrow=1 / 32)).save_pretrained(box / "weights" / "gfpgan-1.4")
    yield box
    shutil.rmtree(box, ignore_errors=True)  # session folders outlive the module otherwise


def _first_of_each(commands):
    """The first complete documented command of each runnable kind (one run each keeps the suite fast), in the
    docs' order: files one command writes (an identity saved with --save-identity) are there for the next."""
    seen, out = set(), []
    for where, command in commands:
        argv, partial = _tokens(command, where)
        kind = (argv[0], "--save-identity" in argv)  # a saved identity is what later commands read: run one too
        if not partial and argv[0] in RUNNABLE and kind not in seen:
            seen.add(kind)
            out.append((where, command))
    return out


RUNS = _first_of_each(ALL)


def test_some_commands_are_run():
    assert {_tokens(c)[0][0] for _, c in RUNS} >= {"swap", "grid", "interpolate", "info", "faces", "demo", "video",
                                                   "live", "enhance"}


@pytest.mark.parametrize("where, command", RUNS, ids=[w for w, _ in RUNS])
def test_documented_command_runs(where, command, sandbox, monkeypatch, capsys):
    argv, _ = _tokens(command, where)
    if any(a.endswith(".mp4") for a in argv):
        pytest.importorskip("imageio_ffmpeg")
    if argv[0] in ("faces", "enhance"):
        pytest.importorskip("cv2")
    monkeypatch.chdir(sandbox)
    monkeypatch.setenv("HIFIFACE_HOME", str(sandbox / "home"))
    capsys.readouterr()
    rc = cli_main.main(argv)
    err = capsys.readouterr().err
    assert rc == 0, f"{where}: exit {rc}: {err}"


SNIPPETS = [(f"{doc.name} #{i}", body) for doc in DOCS
            for i, (lang, body) in enumerate(_fenced(doc.read_text(encoding="utf-8"))) if lang == "python"]


@pytest.mark.parametrize("where, code", SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_python_snippets_compile_and_import_what_exists(where, code):
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hififace"):
            module = importlib.import_module(node.module)
            missing = [a.name for a in node.names if not hasattr(module, a.name)]
            assert not missing, f"{where}: {node.module} has no {missing}"
