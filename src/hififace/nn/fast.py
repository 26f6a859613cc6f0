"""Speed and memory paths of the residual blocks in :mod:`hififace.nn.blocks`: same numbers, less memory, fused kernels.

Two kinds of path, both called by the plain blocks:

- **Memory paths** (always on under autograd; outputs and gradients bit-identical to the plain PyTorch ops, checked
  by ``tests/test_nn_fast.py``): a 2x2 average pool whose backward keeps only its input's shape
  (:func:`avg_pool_2x2`), an instance norm whose result is not a view (:func:`instance_norm`), and the activation
  between a norm and a conv recomputed in the backward instead of kept (:func:`norm_act_conv`, :func:`adain`).
- **The fused norm** (:func:`norm_act`: fp32 statistics, the AdaIN affine and the LeakyReLU in one expression, which
  ``torch.compile`` turns into one reduction and one pointwise pass): within float rounding of the plain path, not
  bit-identical. Where it runs is this module's one switch, :func:`set_fused_norm` (default from the environment
  variable ``HIFIFACE_FUSED_NORM``, read once at import): ``auto`` (default) inside compiled graphs and in eager
  mode on CUDA with Triton; ``on`` also in eager mode on CPU; ``off`` never. Eager CPU keeps the plain path, which
  is bit-identical to the reference implementation.

A norm is given to these functions as its tensors (``std``/``mean`` of AdaIN, none for the plain instance norm), so
nothing here depends on the classes of :mod:`hififace.nn.blocks`.
"""
from __future__ import annotations

import contextlib
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

LRELU_SLOPE = 0.2  # the reference's LeakyReLU slope
IN_EPS = 1e-5  # torch's InstanceNorm2d / F.instance_norm default, as in the reference
FUSED_MODES = ("auto", "on", "off")


# ---------------------------------------------------------------------------------------------- 2x2 pool
class _AvgPool2x2(torch.autograd.Function):
    """``F.avg_pool2d(x, 2)`` whose backward keeps only the input's shape.

    Autograd's own avg_pool2d keeps its whole input for the backward although it only reads the shape; in the
    encoder that input is a full-resolution conv output (the largest activations of a training step). The gradient
    is the same: each input pixel of a window gets grad / 4 (x * 0.25 and x / 4 round identically).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.in_shape = x.shape
        return _pool_2x2(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        n, c, h, w = grad.shape
        # each output gradient spread over its 2x2 window: one pass writing the full-size tensor
        g = (grad * 0.25)[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)
        if not grad.is_contiguous() and grad.is_contiguous(memory_format=torch.channels_last):
            g = g.contiguous(memory_format=torch.channels_last)
        in_h, in_w = ctx.in_shape[-2:]
        if (in_h, in_w) != (2 * h, 2 * w):  # odd sizes: the last row / column took no part in any window
            g = F.pad(g, (0, in_w - 2 * w, 0, in_h - 2 * h))
        return g


def avg_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling; under autograd without keeping the input alive for the backward."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _AvgPool2x2.apply(x)
    return _pool_2x2(x)


def _pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.avg_pool2d(x, 2)``, through :func:`avg_pool_2x2_slices` where that is the faster kernel (channels_last
    on CUDA, where avg_pool2d's kernel is slow); the numbers are the same."""
    if x.is_cuda and x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return avg_pool_2x2_slices(x)
    return F.avg_pool2d(x, 2)


def avg_pool_2x2_slices(x: torch.Tensor) -> torch.Tensor:
    """2x2 average pooling as the mean of the four strided slices: the numbers of ``F.avg_pool2d(x, 2)``.

    avg_pool2d adds the window's four elements in row-major order in the accumulation type (float32 for
    bf16/fp16) starting from 0 and divides by 4; so does this (0 + a == a, and x * 0.25 rounds as x / 4). Each
    slice of a channels_last tensor reads whole pixels (C contiguous values), so this is fast in that layout.
    Odd sizes drop the last row / column, as avg_pool2d does.
    """
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    acc = x[..., 0:h:2, 0:w:2]
    if acc.dtype in (torch.float16, torch.bfloat16):
        acc = acc.float()
    out = ((acc + x[..., 0:h:2, 1:w:2]) + x[..., 1:h:2, 0:w:2]) + x[..., 1:h:2, 1:w:2]
    return (out * 0.25).to(x.dtype)


# ---------------------------------------------------------------------------------------------- norms
def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Instance normalisation without affine parameters (statistics in fp32 for low-precision inputs)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return F.instance_norm(x.float(), eps=IN_EPS).to(x.dtype)
    if torch.is_grad_enabled() and x.requires_grad and x.dim() == 4 and not torch.compiler.is_compiling():
        # What F.instance_norm does (batch norm over N*C channels, aten::instance_norm), but the result is not a
        # view: the in-place LeakyReLU that follows would otherwise make autograd copy the gradient (CopySlices).
        n, c, h, w = x.shape
        y = torch.batch_norm(x.contiguous().view(1, n * c, h, w), None, None, None, None, True, 0.1, IN_EPS,
                             torch.backends.cudnn.enabled)
        return torch.ops.aten._unsafe_view(y, (n, c, h, w))
    return F.instance_norm(x, eps=IN_EPS)


def adain(x: torch.Tensor, std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``std * IN(x) + mean`` (``std``/``mean`` N x C); IN(x) is recomputed for the backward instead of kept.

    d/d std needs IN(x): it is recomputed from ``x`` (which the norm keeps anyway) instead of keeping a second tensor.
    """
    x_ = x.detach()
    std, mean = std[:, :, None, None], mean[:, :, None, None]
    return _apply_recomputing(lambda n: std * n + mean, instance_norm(x), lambda: instance_norm(x_))


def lrelu_(x: torch.Tensor) -> torch.Tensor:
    """LeakyReLU(0.2) in place, for tensors nothing else uses (a fresh norm or conv output).

    In place, autograd keeps one tensor (the result, which the next conv keeps anyway) instead of two.
    """
    return F.leaky_relu(x, LRELU_SLOPE, inplace=True)


def norm_act_conv(conv: nn.Module, x: torch.Tensor, std: torch.Tensor | None = None,
                  mean: torch.Tensor | None = None) -> torch.Tensor:
    """``conv(LeakyReLU(IN(x)))``, or ``conv(LeakyReLU(std * IN(x) + mean))`` with AdaIN's ``std``/``mean``
    (N x C); the activation is recomputed in the backward instead of kept.

    Where the switch says so (:func:`set_fused_norm`), norm and activation run as one :func:`norm_act`.
    """
    # the recipe must not hold the inputs' autograd history
    x_ = x.detach()
    std_, mean_ = (None, None) if std is None else (std.detach(), mean.detach())
    if _fused_wanted(x):
        return _apply_recomputing(conv, _run_fused(x, std, mean), lambda: _run_fused(x_, std_, mean_))

    def norm(t, s, m):
        return instance_norm(t) if s is None else adain(t, s, m)

    return _apply_recomputing(lambda n: conv(lrelu_(n)), norm(x, std, mean), lambda: lrelu_(norm(x_, std_, mean_)))


# ---------------------------------------------------------------------------------------------- recompute
class _Recompute:
    """Saved-tensor hooks that keep a recipe instead of one tensor: ``fn()`` recomputes it for the backward.

    Autograd saves the activation between a norm and a conv twice over (the LeakyReLU's result and the conv's
    input, one tensor); recomputing it from the norm's input (kept anyway) costs a norm and a LeakyReLU, a few
    percent of the conv. The recomputed tensor is cached until every saved reference has been unpacked.

    As ``torch.utils.checkpoint`` does, the recipe runs under the autocast state of the forward (device type,
    dtype, enabled, cache): the backward may run outside the ``autocast`` block (PyTorch's documented AMP
    pattern), and the AdaIN affine must give the same dtype as in the forward. The recomputed tensor is
    checked against the saved one's dtype and shape.
    """

    def __init__(self, like: torch.Tensor, fn):
        self.ptr, self.shape, self.dtype, self.fn = like.data_ptr(), like.shape, like.dtype, fn
        self.packed = self.unpacked = 0
        self.cache = None
        self.device_type = like.device.type
        self.autocast = {t: _autocast_state(t) for t in {self.device_type, "cpu"}}

    def pack(self, t: torch.Tensor):
        if t.data_ptr() == self.ptr and t.shape == self.shape:
            self.packed += 1
            return self
        return t

    def unpack(self, p):
        if p is not self:
            return p
        if self.cache is None:
            with torch.no_grad(), contextlib.ExitStack() as stack:
                for device_type, state in self.autocast.items():
                    stack.enter_context(torch.autocast(device_type, **state))
                self.cache = self.fn()
            if self.cache.dtype != self.dtype or self.cache.shape != self.shape:
                raise RuntimeError(f"recomputed activation is {self.cache.dtype} {tuple(self.cache.shape)}, the "
                                   f"forward saved {self.dtype} {tuple(self.shape)}")
        out = self.cache
        self.unpacked += 1
        if self.unpacked == self.packed:  # all references served: free it (a retained graph recomputes again)
            self.cache, self.unpacked = None, 0
        return out


def _autocast_state(device_type: str) -> dict:
    """Keyword arguments of ``torch.autocast`` that re-enter the current autocast state of ``device_type``."""
    return {"enabled": torch.is_autocast_enabled(device_type), "dtype": torch.get_autocast_dtype(device_type),
            "cache_enabled": torch.is_autocast_cache_enabled()}


def _apply_recomputing(op, t: torch.Tensor, recompute) -> torch.Tensor:
    """``op(t)``, where autograd keeps ``recompute`` (which gives ``t`` again) for the backward instead of ``t``."""
    if not (torch.is_grad_enabled() and t.requires_grad) or torch.compiler.is_compiling():
        return op(t)
    recipe = _Recompute(t, recompute)
    with torch.autograd.graph.saved_tensors_hooks(recipe.pack, recipe.unpack):
        return op(t)


# ---------------------------------------------------------------------------------------------- fused norm
def norm_act(x: torch.Tensor, std: torch.Tensor | None = None, mean: torch.Tensor | None = None) -> torch.Tensor:
    """``LeakyReLU(std * IN(x) + mean)`` (``LeakyReLU(IN(x))`` without ``std``/``mean``) in one expression.

    Statistics, affine and activation in float32, rounded once to ``x``'s dtype. Eager PyTorch runs it as several
    kernels (with an fp32 copy for low-precision ``x``); ``torch.compile`` fuses it into a reduction and one
    pointwise pass that reads ``x`` in its own dtype and layout. ``std``/``mean`` are N x C.
    Within float rounding of the plain path (:func:`instance_norm`, the affine, LeakyReLU), not bit-identical.
    """
    xf = x.float()
    var, mu = torch.var_mean(xf, dim=(-2, -1), keepdim=True, correction=0)
    y = (xf - mu) * torch.rsqrt(var + IN_EPS)
    if std is not None:
        y = y * std.float()[:, :, None, None] + mean.float()[:, :, None, None]
    return F.leaky_relu(y, LRELU_SLOPE).to(x.dtype)


def _in_act(x: torch.Tensor) -> torch.Tensor:
    return norm_act(x)


def _adain_act(x: torch.Tensor, std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return norm_act(x, std, mean)


# The switch's state. "fn": the compiled _in_act / _adain_act (two functions, so that each has its own
# torch.compile cache: dtype x layout x grad mode variants each); "failed": compiling them failed once.
_fused = {"mode": os.environ.get("HIFIFACE_FUSED_NORM", "auto").strip().lower(), "fn": {}, "failed": False}


def set_fused_norm(mode: str | bool) -> None:
    """The one switch of this module: where norm -> LeakyReLU runs as the fused :func:`norm_act`.

    ``"auto"`` (default; or ``$HIFIFACE_FUSED_NORM``): inside ``torch.compile`` graphs (not ``torch.export``: exported
    graphs keep the plain instance norm, which ONNX has an operator for), and in eager mode for CUDA
    tensors when Triton is importable (through a small compiled function, compiled on first use). ``"on"``: also
    in eager mode on CPU (inductor's C++ backend; for tests). ``"off"``: never, not even inside compiled graphs.
    The plain path stays the default for eager CPU: it is bit-identical to the reference implementation.
    If compiling the small function fails, a warning is logged once and the plain path is used from then on.
    The memory paths do not depend on it (they give the plain path's numbers).
    """
    mode = {True: "on", False: "off"}.get(mode, mode) if isinstance(mode, bool) else str(mode).strip().lower()
    if mode not in FUSED_MODES:
        raise ValueError(f"fused norm mode must be one of {', '.join(FUSED_MODES)}, got {mode!r}")
    _fused["mode"], _fused["failed"] = mode, False


def _is_exporting() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", None)  # torch >= 2.6
    return bool(is_exporting and is_exporting())


def _triton_available() -> bool:
    try:
        from torch.utils._triton import has_triton

        return bool(has_triton())
    except Exception:  # noqa: BLE001 - a broken triton install means: no triton
        return False


def _compiled(fn):
    """The compiled version of ``fn`` (``_in_act`` / ``_adain_act``), compiled once, shape-generic."""
    if fn not in _fused["fn"]:
        _fused["fn"][fn] = torch.compile(fn, dynamic=True, fullgraph=True)
    return _fused["fn"][fn]


def _fused_wanted(x: torch.Tensor) -> bool:
    """Whether norm -> LeakyReLU of ``x`` runs fused (see :func:`set_fused_norm`)."""
    mode = _fused["mode"]
    if mode == "off" or x.dim() != 4:
        return False
    if torch.compiler.is_compiling():  # torch.export (ONNX) keeps the plain ops: they map to InstanceNormalization
        return not _is_exporting()
    if _fused["failed"]:
        return False
    return mode == "on" or (x.is_cuda and _triton_available())


def _run_fused(x: torch.Tensor, std: torch.Tensor | None, mean: torch.Tensor | None) -> torch.Tensor:
    """norm_act: inline inside a graph being compiled, else through its compiled function."""
    if torch.compiler.is_compiling():
        return norm_act(x, std, mean)
    try:
        return _compiled(_in_act)(x) if std is None else _compiled(_adain_act)(x, std, mean)
    except Exception as err:  # noqa: BLE001 - no compiler / triton: the plain formulation, and stop trying
        _fused["failed"] = True
        log.warning("fused instance norm unavailable (%s: %s); using the plain PyTorch path",
                    type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return norm_act(x, std, mean)
