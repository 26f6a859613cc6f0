"""Strict loaders for the face parsers' released files (docs/formats.md#bisenet-face-parser and
docs/formats.md#psfrgan-parser-and-the-parsing-palette)."""
from __future__ import annotations

from pathlib import Path

from ..errors import WeightsError
from ..utils.text import printable
from ..weights.io import load_into, load_legacy, load_safetensors


def load_parser_state(net, weights: str | Path, what: str) -> None:
    """Load a face parser's released file into ``net`` (BiSeNet ``79999_iter.pth`` or PSFRGAN
    ``parse_multi_iter_90000.pth``, also wrapped in ``{"state_dict": ...}`` or saved from DataParallel, or our
    safetensors); the other parser's file is named as such, anything else stops naming the keys."""
    path = Path(weights)
    state = load_safetensors(path, what) if path.suffix == ".safetensors" else load_legacy(path, what)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: expected a state_dict for the {what}, found {printable(type(state).__name__)}")
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    looks_psfrgan = "encoder.0.conv2d.weight" in state
    looks_bisenet = "cp.resnet.conv1.weight" in state
    wanted_bisenet = type(net).__name__ == "BiSeNet"
    if wanted_bisenet and looks_psfrgan:
        raise WeightsError(f"{path}: this is PSFRGAN's ParseNet file, not BiSeNet's; use --parsing psfrgan")
    if not wanted_bisenet and looks_bisenet:
        raise WeightsError(f"{path}: this is BiSeNet's file, not PSFRGAN's ParseNet; use --parsing bisenet")
    load_into(net, state, path)
