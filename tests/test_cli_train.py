"""`hififace train` as a user meets it: runs never mix, resuming uses the checkpoint's own config, failures are one
line and leave no folder, Lightning's chatter stays out, and a tiny model converts back to the reference layout."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from inferkit import assert_one_error, run_cli
from trainkit import make_dataset


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("traincli")
    images, parsing = make_dataset(tmp / "data", identities=2, per_identity=2, size=32)
    return tmp, ["--data.images", str(images), "--data.parsing", str(parsing), "--trainer.val_every", "0",
                 "--trainer.image_every", "0", "--logging.tensorboard", "false", "--checkpoint.every", "1"]


@pytest.fixture(scope="module")
def run(data):
    """One finished tiny run (1 iteration), started through the CLI; its stderr."""
    tmp, args = data
    from io import StringIO  # a module-scoped fixture cannot use capsys

    from hififace.cli.main import main

    err, old = StringIO(), sys.stderr
    sys.stderr = err
    try:
        rc = main(["train", "--config", "hififace_tiny", "--checkpoint.dir", str(tmp / "run"),
                   "--trainer.max_steps", "1", *args])
    finally:
        sys.stderr = old
    assert rc == 0, err.getvalue()
    return tmp / "run", err.getvalue()


def test_lightning_chatter_is_quiet_and_the_end_is_in_iterations(run):
    _, err = run
    assert "litlogger" not in err and "Trainer.fit" not in err and "GPU available" not in err
    assert "finished at iteration 1 (trainer.max_steps=1)" in err


def test_a_fresh_run_into_a_folder_holding_a_run_is_refused(run, data, capsys):
    run_dir, _ = run
    tmp, args = data
    before = _tree(run_dir)
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--checkpoint.dir", run_dir, *args], capsys)
    assert_one_error(rc, err, "already holds a run", f"--resume {run_dir / 'checkpoints' / 'last.ckpt'}",
                     "--checkpoint.overwrite")
    assert _tree(run_dir) == before  # nothing touched


def test_resume_reached_max_steps_and_config_mismatch_are_one_line(run, data, capsys):
    run_dir, _ = run
    _, args = data
    last = run_dir / "checkpoints" / "last.ckpt"
    before = _tree(run_dir)
    rc, _, err = run_cli(["train", "--resume", last], capsys)
    assert_one_error(rc, err, "already reached iteration 1", "trainer.max_steps=1", "larger --trainer.max_steps")
    rc, _, err = run_cli(["train", "--config", "hififace_256_reference", "--resume", last, *args], capsys)
    assert_one_error(rc, err, "model.channel_multiplier=0.0625", "model.channel_multiplier=1.0",
                     "resume without --config")
    rc, _, err = run_cli(["train", "--resume", last, "--model.channel_multiplier", "0.125"], capsys)
    assert_one_error(rc, err, "model.channel_multiplier=0.125")
    rc, _, err = run_cli(["train", "--resume", run_dir / "frozen" / "config.json"], capsys)
    assert_one_error(rc, err, "config.json")
    assert _tree(run_dir) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
@pytest.mark.parametrize("extra", [["--trainer.accelerator", "gpu"], ["--trainer.accelerator", "cuda"],
                                   ["--resume", "nowhere/last.ckpt"], ["--data.images", "nowhere"]])
def test_failed_runs_are_one_line_and_leave_no_folder(data, extra, capsys, monkeypatch):
    tmp, args = data
    monkeypatch.chdir(tmp)
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--checkpoint.dir", "runs/new/x", *args, *extra], capsys)
    assert_one_error(rc, err, *(["no CUDA GPU", "--trainer.accelerator cpu"] if "gpu" in extra or "cuda" in extra else []))
    assert not (tmp / "runs").exists()


def test_a_failure_after_set_up_removes_what_the_run_wrote(data, monkeypatch, capsys):
    """A crash in Lightning before the first checkpoint: frozen/, config.yaml, the data index all go."""
    from hififace.training import build

    tmp, args = data
    run_dir = tmp / "crash"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")  # a user's file in an existing folder stays

    def crash(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(build, "_fit_takes_weights_only", crash)
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--checkpoint.dir", run_dir, *args], capsys)
    assert rc == 1 and err[-1].startswith("error: unexpected RuntimeError: simulated crash")
    assert not any("Traceback" in line for line in err)
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]


def test_resume_without_config_continues_with_the_checkpoints_config(run, data, tmp_path, capsys):
    import shutil

    run_dir, _ = run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    rc, _, err = run_cli(["-v", "train", "--resume", copy / "checkpoints" / "last.ckpt", "--trainer.max_steps", "2",
                          "--checkpoint.dir", copy], capsys)
    text = "\n".join(err)
    assert rc == 0, text
    assert "finished at iteration 2" in text and "Traceback" not in text
    assert text.count("GPU available") == 1 and "litlogger" not in text  # Lightning's lines once, no advert
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == ["iter00000001.ckpt", "iter00000002.ckpt", "last.ckpt"]
    ckpt = torch.load(copy / "checkpoints" / "last.ckpt", weights_only=True, mmap=True)
    assert ckpt["hififace"]["iteration"] == 2 and ckpt["hififace"]["model_config"]["channel_multiplier"] == 0.0625


def test_overwrite_replaces_the_old_run(data, tmp_path, capsys):
    tmp, args = data
    run_dir = tmp_path / "run"
    for name in ("checkpoints/last.ckpt", "export/step-00000009/config.json", "config.yaml"):
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("old run")
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--checkpoint.dir", run_dir, "--trainer.max_steps", "1",
                          "--checkpoint.overwrite", *args], capsys)
    assert rc == 0, err
    assert any("deleting the previous run" in line for line in err)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["iter00000001.ckpt", "last.ckpt"]
    assert sorted(p.name for p in (run_dir / "export").iterdir()) == ["step-00000001"]
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hififace"]["iteration"] == 1


def test_tiny_model_converts_to_the_reference_layout_and_back(run, tmp_path, capsys):
    from hififace.weights.io import load_safetensors

    run_dir, _ = run
    folder = run_dir / "export" / "step-00000001"
    rc, _, err = run_cli(["convert", folder, "--to", "reference", "-o", tmp_path / "back.ckpt"], capsys)
    assert rc == 0, err
    assert any("smaller shapes" in line for line in err)  # it says the reference code cannot load it
    ckpt = torch.load(tmp_path / "back.ckpt", weights_only=True)
    assert ckpt["state_dict"]["discriminator.layer2.0.weight"].shape == (8, 3, 4, 4)  # the folder's widths
    rc, _, err = run_cli(["convert", tmp_path / "back.ckpt", "-o", tmp_path / "again"], capsys)
    assert rc == 0, err
    assert not any(".partial" in line for line in err)
    for name in ("generator", "arcface", "recon3d", "discriminator"):
        a = load_safetensors(folder / f"{name}.safetensors")
        b = load_safetensors(tmp_path / "again" / f"{name}.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_the_progress_bar_goes_to_stderr_and_only_to_a_terminal(monkeypatch, capsys):
    from hififace.training.build import build_trainer
    from hififace.training.callbacks import StderrProgressBar
    from hififace.training.config import load_config

    cfg = load_config("hififace_tiny", {"trainer.progress_bar": "true", "logging.tensorboard": "false",
                                        "logging.csv": "false"})
    trainer = build_trainer(cfg, enable_checkpointing=False)
    assert not any(isinstance(c, StderrProgressBar) for c in trainer.callbacks)  # pytest's stderr is no terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    trainer = build_trainer(cfg, enable_checkpointing=False)
    bars = [c for c in trainer.callbacks if isinstance(c, StderrProgressBar)]
    assert len(bars) == 1
    capsys.readouterr()
    bar = bars[0].init_train_tqdm()
    bar.update(1)
    bar.close()
    out = capsys.readouterr()
    assert out.out == "" and "Training" in out.err


@pytest.mark.parametrize("env, spawned", [({}, False), ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, False),
                                          ({"LOCAL_RANK": "1"}, True), ({"SLURM_PROCID": "3"}, True),
                                          ({"LOCAL_RANK": "0", "SLURM_PROCID": "5"}, False),
                                          ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, True), ({"RANK": "2"}, True)])
def test_only_the_first_process_of_a_distributed_run_judges_the_run_folder(data, tmp_path, monkeypatch, capsys,
                                                                          env, spawned):
    """Lightning's DDP launcher starts ranks 1.. by running the same command again, after rank 0 has written
    config.yaml and frozen/: they must not refuse the folder as 'holding a run' (which killed every rank), and they
    write nothing there themselves."""
    from hififace.training import build

    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert build.started_by_a_launcher() is spawned
    tmp, args = data
    run_dir = tmp_path / "run"
    (run_dir / "frozen").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("rank 0 wrote this")

    def past_the_check(*a, **k):
        raise RuntimeError("past the check")

    monkeypatch.setattr(build, "_fit_takes_weights_only", past_the_check)  # just before trainer.fit
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--checkpoint.dir", run_dir, *args], capsys)
    assert rc != 0 and ("past the check" in err[-1]) is spawned and ("already holds a run" in err[-1]) is not spawned
    assert not spawned or not any("data index" in line or "training images" in line for line in err)  # rank 0's
    assert (run_dir / "config.yaml").read_text() == "rank 0 wrote this"  # only rank 0 writes config.yaml, frozen/
    assert not any((run_dir / "frozen").iterdir())  # (under srun it may be an old run that rank 0 refused)


def test_resume_goes_on_in_the_checkpoints_own_run_folder(run, data, tmp_path):
    """A moved run, or a --config whose checkpoint.dir is another run's folder: the resumed run writes beside its
    checkpoint, never into the folder the stored or given config names (unless --checkpoint.dir says so)."""
    import shutil

    from hififace.training.resume import resume_config

    run_dir, _ = run
    _, args = data
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    last = moved / "checkpoints" / "last.ckpt"
    more = {"trainer.max_steps": "2"}
    assert resume_config(last, None, more).checkpoint.dir == str(moved)  # not run_dir, which the checkpoint names
    given = dict(zip(args[::2], args[1::2]))
    given = {k[2:]: v for k, v in given.items()}
    assert resume_config(last, "hififace_tiny", {**given, **more}).checkpoint.dir == str(moved)  # not runs/tiny
    assert resume_config(last, None, {**more, "checkpoint.dir": str(tmp_path / "b")}).checkpoint.dir == str(tmp_path / "b")
    loose = tmp_path / "loose.ckpt"
    shutil.copy(last, loose)
    assert resume_config(loose, None, more).checkpoint.dir == str(run_dir)  # no run folder around it: the config's


def test_sigterm_stops_a_run_with_143_in_one_line_and_it_resumes(data, tmp_path, capsys, monkeypatch):
    """SIGTERM (how schedulers and services stop a job) during training: one 'terminated' line and exit 143, as every
    other command, not Lightning's interrupt path (exit 1); the last checkpoint is complete and the run resumes.
    The signal is sent to this process in the middle of the third iteration, through the command's own handler."""
    import os
    import signal

    import lightning as L

    from hififace.training import build

    class SendSigterm(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if pl_module.iteration == 2:  # iterations 1 and 2 are checkpointed (checkpoint.every 1)
                os.kill(os.getpid(), signal.SIGTERM)

    real = build.build_trainer
    monkeypatch.setattr(build, "build_trainer", lambda cfg, extra=(), **kw: real(cfg, (*extra, SendSigterm()), **kw))
    _, args = data
    run_dir = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)
    rc, _, err = run_cli(["train", "--config", "hififace_tiny", "--checkpoint.dir", run_dir,
                          "--trainer.max_steps", "100", "--trainer.progress_bar", "false", *args], capsys)
    assert rc == 143 and err[-1] == "error: terminated (SIGTERM)", (rc, err)
    assert not [ln for ln in err if "error" in ln.lower() or "interrupt" in ln.lower()][:-1], err
    assert signal.getsignal(signal.SIGINT) is before  # Lightning's SIG_IGN for SIGINT is undone
    last = run_dir / "checkpoints" / "last.ckpt"
    assert sorted(p.name for p in last.parent.glob("iter*.ckpt")) == ["iter00000001.ckpt", "iter00000002.ckpt"]
    torch.load(last, map_location="cpu", weights_only=True)  # complete
    monkeypatch.setattr(build, "build_trainer", real)
    rc, _, err = run_cli(["train", "--resume", last, "--trainer.max_steps", "3"], capsys)
    assert rc == 0, err
    assert "finished at iteration 3" in err[-1]
