"""Training configs: shipped YAML files load, bad values give one clear error, the CLI reports them cleanly."""
from __future__ import annotations

from pathlib import Path

import pytest

from hififace.cli.main import main
from hififace.errors import ConfigError
from hififace.training.config import SHIPPED_CONFIGS as CONFIGS
from hififace.training.config import load_config, shipped_configs
from trainkit import make_dataset



@pytest.mark.parametrize("name", ["hififace_256_reference", "hififace_512_reference", "hififace_256_paper",
                                  "hififace_512_paper", "hififace_tiny"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.image_size == (512 if "512" in name else 256)
    losses = cfg.loss_config()
    if "paper" in name:
        assert cfg.model.variant == "paper" and losses.adversarial == "nonsaturating" and losses.r1 > 0
        assert cfg.optim.optimizer == "adam" and cfg.optim.betas == [0.0, 0.99]
    else:
        assert losses.adversarial == "hinge" and cfg.optim.betas[1] == pytest.approx(0.999)
    assert all(isinstance(b, float) for b in cfg.optim.betas)  # integer 0 from YAML becomes 0.0


def test_shipped_configs_are_package_data_and_named_by_name(tmp_path):
    import tomllib

    assert shipped_configs() == ["hififace_256_paper", "hififace_256_reference", "hififace_512_paper",
                                 "hififace_512_reference", "hififace_tiny"]
    assert CONFIGS.parent == Path(__import__("hififace").__file__).parent  # inside the package: wheels carry them
    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "configs/*.yaml" in data["tool"]["setuptools"]["package-data"]["hififace"]
    assert load_config("hififace_tiny") == load_config("hififace_tiny.yaml") == load_config(CONFIGS / "hififace_tiny.yaml")
    local = tmp_path / "hififace_tiny.yaml"  # a path wins over the shipped config of the same name
    local.write_text("trainer:\n  max_steps: 3\n")
    assert load_config(local).trainer.max_steps == 3
    with pytest.raises(ConfigError, match="hififace_256_reference, hififace_512_paper") as err:
        load_config("hififace_257_reference")
    assert "\n" not in str(err.value)


def test_yaml_quirks_are_accepted(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim:\n  g_lr: 1e-4\n  betas: [0, 0.99]\n")  # '1e-4' is a string for YAML 1.1
    cfg = load_config(p, {"trainer.devices": "8", "trainer.precision": "bf16-mixed", "model.init": "null"})
    assert cfg.optim.g_lr == 1e-4 and cfg.trainer.devices == 8 and cfg.model.init is None


@pytest.mark.parametrize("overrides, match", [
    ({"model.image_size": "300"}, "image_size"),
    ({"model.variant": "v2"}, "variant"),
    ({"optim.betas": "[0, 1.5]"}, "optim.betas"),
    ({"optim.g_lr": "fast"}, "optim.g_lr"),
    ({"data.same_rate": "2"}, "data.same_rate"),
    ({"data.pair_mode": "random"}, "data.pair_mode"),
    ({"trainer.precision": "fp8"}, "trainer.precision"),
    ({"trainer.max_steps": "0"}, "trainer.max_steps"),
    ({"losses.seg": "-1"}, "losses.seg"),
    ({"losses.bogus": "1"}, "losses.bogus"),
    ({"data.colour": "1"}, "data.colour"),
])
def test_bad_values_give_one_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_config(CONFIGS / "hififace_tiny.yaml", overrides)
    assert "\n" not in str(err.value)


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    tiny = str(CONFIGS / "hififace_tiny.yaml")
    assert main(["train", "--config", tiny, "--optim.betas", "[0, 2]"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: optim.betas") and "Traceback" not in err
    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    # no data given / a data set with no usable pair: one clear error before any network is built
    assert main(["train", "--config", tiny, "--checkpoint.dir", str(tmp_path / "run")]) == 2
    assert "no training data" in capsys.readouterr().err
    images, parsing = make_dataset(tmp_path / "d", identities=1, per_identity=1, size=16)
    for given, missing in (("images", "parsing"), ("parsing", "images")):  # half of the pair: the other one named
        path = str(images if given == "images" else parsing)
        assert main(["train", "--config", tiny, "--checkpoint.dir", str(tmp_path / "run"), f"--data.{given}", path]) == 2
        err = capsys.readouterr().err
        assert f"--data.{given} is given but not --data.{missing}" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
    assert main(["train", "--config", tiny, "--data.images", str(images), "--data.parsing", str(parsing),
                 "--checkpoint.dir", str(tmp_path / "run")]) == 2
    assert "no usable training pair" in capsys.readouterr().err
    assert main(["train", "--config", tiny, "--print-config", "--data.batch_size", "3"]) == 0
    assert "batch_size: 3" in capsys.readouterr().out


def test_model_init_folder_lpips_file_is_loaded_frozen_without_a_random_weights_warning(tmp_path, caplog):
    """model.init with an lpips.safetensors (full width, as 'hififace convert' writes it): those weights, frozen, and
    no 'random ones' warning; without the file (tiny lpips_width), random LPIPS with the warning."""
    import logging

    import torch
    from safetensors.torch import save_file

    from hififace.losses.lpips import LPIPS
    from hififace.models.hififace import LPIPS_FILE
    from hififace.training.build import build_networks
    from inferkit import tiny_model_dir

    folder = tiny_model_dir(tmp_path / "init")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LPIPS().state_dict().items()}
    g = torch.Generator().manual_seed(1)
    state = {k: torch.rand(s, generator=g) for k, s in shapes.items()}
    save_file(state, folder / LPIPS_FILE)
    for with_file in (True, False):
        if not with_file:
            (folder / LPIPS_FILE).unlink()
        width = "1.0" if with_file else "0.0625"
        cfg = load_config("hififace_tiny", {"model.init": str(folder), "weights.lpips_width": width})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="hififace"):
            lpips = build_networks(cfg)[2]
        warned = [r.getMessage() for r in caplog.records if "LPIPS" in r.getMessage()]
        assert not lpips.training and not any(p.requires_grad for p in lpips.parameters())
        if with_file:
            assert lpips.pretrained and not warned
            assert all(torch.equal(v, state[k]) for k, v in lpips.state_dict().items())
        else:
            assert not lpips.pretrained and len(warned) == 1 and "random ones" in warned[0]


@pytest.mark.parametrize("yaml_text, needles", [
    ("data:\n  batch_size: sixteen\n", ("data.batch_size must be an integer", "'sixteen'")),
    ("data:\n  batch_size: 2.5\n", ("data.batch_size must be an integer", "2.5")),
    ("optim:\n  g_lr: [0.1, 0.2]\n", ("optim.g_lr must be a number", "[0.1, 0.2]")),
    ("optim:\n  betas: 0.9\n", ("optim.betas must be a list",)),
    ("model:\n  variant: null\n", ("model.variant must be a string", "None")),
    ("trainer:\n  deterministic: maybe\n", ("trainer.deterministic must be true or false",)),
    ("trainer: 5\n", ("trainer must be a mapping",)),
    ("losses:\n  seg: high\n", ("losses.seg must be a number",)),
    ("data:\n  colour: 1\n  7: 2\n", ("unknown key(s) data.7, data.colour", "known: batch_size")),
    ("model:\n  \"\\e[2Jname\": 1\n", ("unknown key(s) model.\\x1b[2Jname",)),
])
def test_wrong_types_in_the_file_name_the_file_key_and_type(tmp_path, capsys, yaml_text, needles):
    p = tmp_path / "my config.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(p)
    line = str(err.value)
    assert line.startswith(f"{p}: ") and "\n" not in line and "\x1b" not in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    assert main(["train", "--config", str(p), "--print-config"]) == 2
    out = capsys.readouterr()
    assert out.err == f"error: {line}\n" and out.out == ""


def test_an_oversized_or_special_config_file_is_one_line(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="over 1 MiB"):
        load_config(big)
