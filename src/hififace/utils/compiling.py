"""``torch.compile`` for methods the inference API calls, in place (state_dict keys and ``isinstance`` unchanged).

``model.generator = torch.compile(model.generator)`` does nothing for ``HifiFace.swap``, which calls
``generator.encoder`` and ``generator.decode`` directly, and it renames every state_dict key (``_orig_mod.``).
:func:`compile_method` instead replaces one bound method of one module instance by a compiled version of it, so
that every caller of that method goes through the compiled graph.

With CUDA graphs (``mode="reduce-overhead"`` or ``"max-autotune"``) a graph's outputs live in memory that its next
replay overwrites. The inference API keeps outputs across calls (a :class:`~hififace.models.hififace.PreparedTarget`
holds the encoder's, a result is handed to the caller), so each call starts a new CUDA-graph step and its CUDA
outputs are cloned out of the graph's pool (one copy of each output, small next to the network).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ..errors import HifiFaceError

#: compile modes that record CUDA graphs on CUDA (torch.compile's own names)
CUDAGRAPH_MODES = ("reduce-overhead", "max-autotune")
MODES = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class CompiledMethod:
    """A compiled bound method; on CUDA-graph modes, every call is its own graph step and CUDA outputs are cloned."""

    def __init__(self, method: Callable, mode: str | None = None, dynamic: bool | None = None, **kwargs: Any):
        self.original = method
        self.options = dict(mode=mode, dynamic=dynamic, **kwargs)
        self.cudagraphs = mode in CUDAGRAPH_MODES
        self.compiled = torch.compile(method, mode=mode, dynamic=dynamic, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            if self.cudagraphs:
                torch.compiler.cudagraph_mark_step_begin()
                return _clone_cuda(self.compiled(*args, **kwargs))
            return self.compiled(*args, **kwargs)
        except torch._dynamo.exc.BackendCompilerFailed as err:  # e.g. no C++ compiler, no working Triton
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise HifiFaceError(f"torch.compile failed ({reason}); run without --compile "
                                "(or call model.uncompile())") from err

    def __deepcopy__(self, memo) -> "CompiledMethod":
        # A deep copy of the module must not run this module's graph: compile the copy's own method (copy.deepcopy
        # has put the new module in ``memo`` before copying its __dict__).
        owner, name = self.original.__self__, self.original.__func__.__name__
        copy = memo.get(id(owner))
        if copy is None:
            raise TypeError("a CompiledMethod can only be deep-copied with the module that owns it")
        return CompiledMethod(getattr(type(copy), name).__get__(copy), **self.options)


def _clone_cuda(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.clone() if out.is_cuda else out
    if isinstance(out, tuple):
        items = [_clone_cuda(o) for o in out]
        return type(out)(*items) if hasattr(out, "_fields") else tuple(items)
    if isinstance(out, list):
        return [_clone_cuda(o) for o in out]
    return out


def compile_method(module: nn.Module, name: str = "forward", **kwargs: Any) -> CompiledMethod:
    """Replace ``module.<name>`` (a method of its class) by a compiled version; returns the wrapper.

    Compiling again first restores the class's method, so modes can be switched. ``kwargs`` go to ``torch.compile``.
    """
    uncompile_method(module, name)
    wrapper = CompiledMethod(getattr(module, name), **kwargs)
    object.__setattr__(module, name, wrapper)  # an instance attribute shadows the class's method
    return wrapper


def uncompile_method(module: nn.Module, name: str = "forward") -> None:
    if isinstance(module.__dict__.get(name), CompiledMethod):
        del module.__dict__[name]


def check_mode(mode: str | None) -> None:
    if mode not in MODES:
        raise ValueError(f"compile mode must be one of {', '.join(str(m) for m in MODES)}, got {mode!r}")
