"""The FID Inception-v3: TensorFlow's 2015-12-05 Inception graph as ported to PyTorch for FID, written here.

It loads the standard FID weight file ``pt_inception-2015-12-05-6726825d.pth`` (the file pytorch-fid downloads;
users bring it, nothing is downloaded). Its keys are those of torchvision's ``Inception3`` built with
``aux_logits=False`` and ``num_classes=1008`` (``Conv2d_1a_3x3.conv.weight``, ``Conv2d_1a_3x3.bn.running_var``,
``Mixed_5b.branch1x1.conv.weight`` ... ``Mixed_7c.branch_pool.bn.num_batches_tracked``, ``fc.weight``,
``fc.bias``): 23,850,960 parameters. Facts from mseitzer/pytorch-fid ``inception.py`` and torchvision's Inception3
layout (written independently; no torchvision):

- every conv is bias-free and followed by BatchNorm (eps 0.001) and ReLU;
- the FID variant differs from torchvision's in its pools: the average pools of the A, C and first E blocks
  (``Mixed_5b-d``, ``Mixed_6b-e``, ``Mixed_7b``) exclude the zero padding (``count_include_pad=False``, as
  TensorFlow), and the last E block (``Mixed_7c``) max-pools instead;
- input: images in [0, 1], resized to 299 x 299 (bilinear, ``align_corners=False``, no antialiasing), scaled to
  [-1, 1]; features: the 2048-d global average pool after ``Mixed_7c`` (pytorch-fid's block 3).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..converters.keys import build_uninitialised, strip_module_prefix
from ..errors import WeightsError
from ..models.frozen import FrozenModule
from ..weights.io import load_into, load_legacy, load_safetensors
from ..weights import resolve  # resolve.search_roots() at call time: one place to point at other folders

log = logging.getLogger(__name__)

WEIGHT_NAME = "pt_inception-2015-12-05-6726825d.pth"
WHAT = f"FID Inception weights ({WEIGHT_NAME})"
N_CLASSES = 1008
INPUT_SIZE = 299
BN_EPS = 0.001


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _chain(x: torch.Tensor, *convs: nn.Module) -> torch.Tensor:
    for conv in convs:
        x = conv(x)
    return x


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int, s):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, s(64), 1)
        self.branch5x5_1 = BasicConv2d(cin, s(48), 1)
        self.branch5x5_2 = BasicConv2d(s(48), s(64), 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, s(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)
        self.out_channels = s(64) + s(64) + s(96) + pool_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), _chain(x, self.branch5x5_1, self.branch5x5_2),
                          _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          self.branch_pool(pool)], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int, s):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, s(384), 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, s(64), 1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), 3, stride=2)
        self.out_channels = s(384) + s(96) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          F.max_pool2d(x, 3, 2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int, s):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, s(192), 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, s(192), (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, s(192), (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, s(192), 1)
        self.out_channels = 4 * s(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
                          _chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                                 self.branch7x7dbl_4, self.branch7x7dbl_5),
                          self.branch_pool(pool)], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int, s):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, s(192), 1)
        self.branch3x3_2 = BasicConv2d(s(192), s(320), 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, s(192), 1)
        self.branch7x7x3_2 = BasicConv2d(s(192), s(192), (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(s(192), s(192), (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(s(192), s(192), 3, stride=2)
        self.out_channels = s(320) + s(192) + cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([_chain(x, self.branch3x3_1, self.branch3x3_2),
                          _chain(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4),
                          F.max_pool2d(x, 3, 2)], 1)


class InceptionE(nn.Module):
    """``max_pool``: the FID graph's last block max-pools; the one before it average-pools without the padding."""

    def __init__(self, cin: int, s, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, s(320), 1)
        self.branch3x3_1 = BasicConv2d(cin, s(384), 1)
        self.branch3x3_2a = BasicConv2d(s(384), s(384), (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(s(384), s(384), (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, s(448), 1)
        self.branch3x3dbl_2 = BasicConv2d(s(448), s(384), 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(s(384), s(384), (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(s(384), s(384), (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, s(192), 1)
        self.out_channels = s(320) + 4 * s(384) + s(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, 1, 1) if self.max_pool else F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3), self.branch_pool(pool)], 1)


class FIDInceptionV3(FrozenModule):
    """Images N x 3 x H x W in [0, 1] -> N x 2048 pool features (``features``) or 1008 logits (``forward``).

    ``width`` scales every width and ``input_size`` replaces the 299 input, for tiny test networks only (75 is the
    smallest size the stride-2 stages take); FID values need the real file at width 1.0 and 299.
    """

    def __init__(self, width: float = 1.0, input_size: int = INPUT_SIZE):
        super().__init__()
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        if input_size < 75:
            raise ValueError(f"input_size must be at least 75, got {input_size}")
        self.width = float(width)
        self.input_size = int(input_size)

        def s(c: int) -> int:
            return max(1, int(round(c * width)))

        self.Conv2d_1a_3x3 = BasicConv2d(3, s(32), 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(s(32), s(32), 3)
        self.Conv2d_2b_3x3 = BasicConv2d(s(32), s(64), 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(s(64), s(80), 1)
        self.Conv2d_4a_3x3 = BasicConv2d(s(80), s(192), 3)
        self.Mixed_5b = InceptionA(s(192), s(32), s)
        self.Mixed_5c = InceptionA(self.Mixed_5b.out_channels, s(64), s)
        self.Mixed_5d = InceptionA(self.Mixed_5c.out_channels, s(64), s)
        self.Mixed_6a = InceptionB(self.Mixed_5d.out_channels, s)
        c = self.Mixed_6a.out_channels
        self.Mixed_6b = InceptionC(c, s(128), s)
        self.Mixed_6c = InceptionC(c, s(160), s)
        self.Mixed_6d = InceptionC(c, s(160), s)
        self.Mixed_6e = InceptionC(c, s(192), s)
        self.Mixed_7a = InceptionD(self.Mixed_6e.out_channels, s)
        self.Mixed_7b = InceptionE(self.Mixed_7a.out_channels, s, max_pool=False)
        self.Mixed_7c = InceptionE(self.Mixed_7b.out_channels, s, max_pool=True)
        self.feature_dim = self.Mixed_7c.out_channels
        self.fc = nn.Linear(self.feature_dim, N_CLASSES)
        self.freeze()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, 2)))
        x = F.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e",
                     "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def load_fid_inception(path: str | Path) -> FIDInceptionV3:
    """A frozen :class:`FIDInceptionV3` with the weights of ``pt_inception-2015-12-05-6726825d.pth`` (strict)."""
    path = Path(path)
    obj = load_safetensors(path, WHAT) if path.suffix == ".safetensors" else load_legacy(path, WHAT)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state_dict of tensors; expected {WEIGHT_NAME} (pytorch-fid's FID Inception)")
    state = strip_module_prefix(obj, path)
    if "Mixed_7c.branch_pool.conv.weight" not in state:
        raise WeightsError(f"{path}: not the FID Inception-v3 (no Mixed_7c keys); expected {WEIGHT_NAME}")
    model = build_uninitialised(FIDInceptionV3)
    load_into(model, state, path)
    log.info("FID Inception-v3 loaded from %s", path)
    return model


def find_fid_inception(extra_roots: Sequence[Path] = ()) -> Path | None:
    """``pt_inception-2015-12-05-6726825d.pth`` in $HIFIFACE_HOME, ~/.cache/hififace or torch hub's checkpoint folder
    (where pytorch-fid stores it), or None."""
    roots = list(extra_roots) + resolve.search_roots()
    hub = Path(os.environ.get("TORCH_HOME", Path("~/.cache/torch").expanduser())) / "hub" / "checkpoints"
    roots.append(hub)
    for root in roots:
        if (root / WEIGHT_NAME).is_file():
            return root / WEIGHT_NAME
    return None
