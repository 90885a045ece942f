"""``torch.compile`` for the update and the acting path, with a switch and an eager fallback.

``train.compile``: ``auto`` compiles on CUDA (``mode="reduce-overhead"``: CUDA graphs, the technique of FastTD3
and LeanRL) and stays eager on CPU, ``True`` compiles on any device (CPU: inductor's C++ code, no CUDA graphs),
``False`` never compiles. ``train.amp``: ``none`` or ``bf16`` (``torch.autocast`` around the loss).

On this project's 2-core CPU the compiled loss is faster than eager once warm (``benchmarks/bench_update.py``)
but compiling takes about 20 s per process, which short CPU runs and the test suite would pay again and again;
hence ``auto`` leaves CPU runs eager and long CPU runs can opt in with ``train.compile=True``.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, ContextManager, Optional, TypeVar, Union

import torch

F = TypeVar("F", bound=Callable[..., Any])
COMPILE_CHOICES = ("auto", "True", "False")
AMP_CHOICES = ("none", "bf16")


def resolve_compile(setting: Union[str, bool], device: torch.device) -> bool:
    """Whether to compile for ``train.compile=setting`` on ``device`` (``auto``: only on CUDA).

    Raises:
        ValueError: ``setting`` is not one of ``auto``, ``True``, ``False`` (bool or string).
    """
    text = str(setting)
    if text not in COMPILE_CHOICES and text.lower() not in ("true", "false"):
        raise ValueError(f"train.compile={setting!r} is invalid; accepted: auto, True, False")
    if text == "auto":
        return torch.device(device).type == "cuda"
    return text.lower() == "true"


def autocast(amp: str, device: torch.device) -> ContextManager[Any]:
    """``torch.autocast(device.type, torch.bfloat16)`` for ``amp="bf16"``, a no-op context for ``"none"``.

    Raises:
        ValueError: ``amp`` is not ``none`` or ``bf16``.
    """
    if amp not in AMP_CHOICES:
        raise ValueError(f"train.amp={amp!r} is invalid; accepted: {', '.join(AMP_CHOICES)}")
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def cpu_has_native_bf16() -> Optional[bool]:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX, as oneDNN reports it); None if this
    torch build cannot tell (``torch.ops.mkldnn._is_mkldnn_bf16_supported``)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return None


def warn_if_bf16_is_emulated(amp: str, device: torch.device) -> bool:
    """One stderr line when ``train.amp=bf16`` runs on a CPU without native bf16: there the bf16 matmuls are
    emulated and the update is several times slower than float32 (8x on this project's AVX2 CI machine,
    ``benchmarks/README.md``). Returns True if it warned. The run goes on: the setting is the user's choice."""
    if amp != "bf16" or torch.device(device).type != "cpu" or cpu_has_native_bf16() is not False:
        return False
    print("[meow-isaac] train.amp=bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 matmuls are "
          "emulated and the update runs several times slower than with train.amp=none", file=sys.stderr)
    return True


class Compiled:
    """``fn`` compiled with ``torch.compile`` on first call; if compiling fails (no C++ compiler, an unsupported
    op), one warning line on stderr and ``fn`` runs eagerly from then on, so a missing toolchain never stops a run.

    On CUDA the mode is ``reduce-overhead`` (CUDA graphs) and every call first marks a new graph step
    (``torch.compiler.cudagraph_mark_step_begin``), so outputs of the previous call may be overwritten: callers
    consume them before the next call (the trainer adds the metrics into its own device sums at once).

    Args:
        fn: the function to compile. device: where it runs (picks the mode). name: for the warning.
    """

    def __init__(self, fn: Callable[..., Any], device: torch.device, name: str) -> None:
        self.fn, self.name = fn, name
        self.cuda = torch.device(device).type == "cuda"
        self.compiled: Optional[Callable[..., Any]] = torch.compile(
            fn, mode="reduce-overhead" if self.cuda else None, dynamic=False)

    @property
    def active(self) -> bool:
        """False once compiling failed and ``fn`` runs eagerly."""
        return self.compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)  # torch >= 2.1
        if self.cuda and mark_step is not None:
            mark_step()
        try:
            return self.compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back to eager, once, loudly
            if not _is_compile_failure(err):
                raise
            print(f"[meow-isaac] train.compile: compiling {self.name} failed ({type(err).__name__}: "
                  f"{str(err).splitlines()[0] if str(err) else ''}); running it eagerly", file=sys.stderr)
            self.compiled = None
            return self.fn(*args, **kwargs)


def _is_compile_failure(err: BaseException) -> bool:
    """True for errors raised by dynamo/inductor themselves (not by the user's code inside the function)."""
    module = type(err).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor")) or "CppCompileError" in type(err).__name__
