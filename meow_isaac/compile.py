"""``torch.compile`` for the update and the acting path, with a switch and an eager fallback.

``train.compile``: ``auto`` compiles on CUDA (``mode="reduce-overhead"``: CUDA graphs, the technique of FastTD3
and LeanRL) and on CPU for long runs (:func:`resolve_compile`), ``True`` compiles on any device (CPU: inductor's
C++ code, no CUDA graphs), ``False`` never compiles. ``train.amp``: ``none`` or ``bf16`` (``torch.autocast``
around the loss).

On this project's 2-core CPU the compiled update is 1.5-1.7x the eager one at batch 256
(``benchmarks/bench_update.py``) but compiling takes 20-70 s per process, which short CPU runs and the test suite
would pay again and again; hence ``auto`` compiles a CPU run only when it plans enough updates to win that back.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
import types
from typing import Any, Callable, ContextManager, Dict, List, Optional, Sequence, TypeVar, Union

import torch

F = TypeVar("F", bound=Callable[..., Any])
COMPILE_CHOICES = ("auto", "True", "False")
AMP_CHOICES = ("none", "bf16")


CPU_AUTO_COMPILE_UPDATES = 50_000  # train.compile=auto compiles a CPU run that plans at least this many updates


def resolve_compile(setting: Union[str, bool], device: torch.device, planned_updates: Optional[int] = None) -> bool:
    """Whether to compile for ``train.compile=setting`` on ``device``.

    ``auto``: always on CUDA; on CPU only for runs that plan at least :data:`CPU_AUTO_COMPILE_UPDATES` updates
    (``planned_updates``; None = unknown = no). The compiled CPU update is 1.5-1.7x the eager one at batch 256
    (``benchmarks/README.md``), which pays back its 20-70 s of compiling within a few thousand updates; short runs
    and the test suite stay eager.

    Raises:
        ValueError: ``setting`` is not one of ``auto``, ``True``, ``False`` (bool or string).
    """
    text = str(setting)
    if text not in COMPILE_CHOICES and text.lower() not in ("true", "false"):
        raise ValueError(f"train.compile={setting!r} is invalid; accepted: auto, True, False")
    if text == "auto":
        kind = torch.device(device).type
        return kind == "cuda" or (kind == "cpu" and (planned_updates or 0) >= CPU_AUTO_COMPILE_UPDATES)
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


GUARD_FILTER_SUPPORTED = hasattr(getattr(torch, "compiler", None), "skip_guard_on_all_nn_modules_unsafe")  # 2.7+


def private_copy(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its own code object: dynamo caches compiled graphs (and checks their guards) per code object, so
    a private copy keeps one caller's graphs, and the guards it dropped (:func:`guards_without`), away from every
    other caller of ``fn``. Plain functions only (no bound methods)."""
    return types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def guards_without(fixed_args: Sequence[str]) -> Callable[[Sequence[Any]], List[bool]]:
    """A ``torch.compile`` ``guard_filter_fn`` (``torch.compiler`` API, torch >= 2.7) that drops the guards on
    arguments the caller never changes between calls (the nn.Module tree, a list of parameter names, ...): their
    type, attribute, key and parameter guards, about 1000 checks and 0.3-0.5 ms per call for the MEow update on
    this project's CPU. Kept: every guard on other arguments (values of float arguments, shapes, dtypes and strides
    of tensors), the global-state guards, and the shape/dtype guards of non-parameter tensors held by the fixed
    arguments (buffers such as predrawn dropout masks). Use with :func:`private_copy` (``Compiled(fixed_args=)``).
    """
    # a guard's source names its root argument first or inside a wrapper: "names[0]", "views.__self__.shapes",
    # "type(loss_module).__mro__", "list(dict.keys(loss_module._modules))" (older torch: "L['names'][0]")
    fixed = re.compile(r"(?:^|\()(?:L\[')?(?:" + "|".join(map(re.escape, fixed_args)) + r")(?:'\])?(?:[.\[)]|$)")

    def keep(entries: Sequence[Any]) -> List[bool]:
        return [not fixed.search(entry.name)
                or (entry.guard_type == "TENSOR_MATCH" and not isinstance(entry.value, torch.nn.Parameter))
                for entry in entries]
    return keep


class Compiled:
    """``fn`` compiled with ``torch.compile`` on first call; if compiling fails (no C++ compiler, an unsupported
    op), one warning line on stderr and ``fn`` runs eagerly from then on, so a missing toolchain never stops a run.

    On CUDA the mode is ``reduce-overhead`` (CUDA graphs) and every call first marks a new graph step
    (``torch.compiler.cudagraph_mark_step_begin``), so outputs of the previous call may be overwritten: callers
    consume them before the next call (the trainer adds the metrics into its own device sums at once).

    Args:
        fn: the function to compile. device: where it runs (picks the mode). name: for the warning.
        fixed_args: names of ``fn``'s arguments that the caller passes unchanged (the same objects, never mutated
            in structure) on every call: ``fn`` is then compiled as a :func:`private_copy` whose guards on them
            are dropped (:func:`guards_without`; torch >= 2.7, else ignored). The caller owns this promise.
        cpp_wrapper: on CPU, inductor's C++ wrapper (``cpp_wrapper``) instead of its Python one: the ~100 kernel
            and matmul calls of a graph are made from C++ (0.3-0.4 ms less per MEow update on this project's CPU;
            compiling takes longer).
        cudagraphs: on CUDA, run the compiled graphs as CUDA graphs (``reduce-overhead``, the default); False:
            inductor's kernels launched one by one (``benchmarks/bench_update.py``'s ``compiled_nograph`` variant
            measures what the CUDA graphs add). No effect on CPU.
    """

    def __init__(self, fn: Callable[..., Any], device: torch.device, name: str, fixed_args: Sequence[str] = (),
                 cpp_wrapper: bool = False, cudagraphs: bool = True) -> None:
        self.fn, self.name = fn, name
        self.cuda = torch.device(device).type == "cuda"
        self.cudagraphs = self.cuda and bool(cudagraphs)
        options: Dict[str, Any] = {}
        target = fn
        if fixed_args and GUARD_FILTER_SUPPORTED:
            target = private_copy(fn)
            options["guard_filter_fn"] = guards_without(fixed_args)
        if cpp_wrapper and not self.cuda:
            options["cpp_wrapper"] = True
        mode = "reduce-overhead" if self.cudagraphs else None
        if options and mode is not None:  # torch.compile takes a mode or options, not both
            options["triton.cudagraphs"], mode = True, None  # what mode="reduce-overhead" sets
        self.compiled: Optional[Callable[..., Any]] = torch.compile(
            target, mode=mode, dynamic=False, options=options or None)
        self.called = False  # the first call compiles (and says so)

    @property
    def active(self) -> bool:
        """False once compiling failed and ``fn`` runs eagerly."""
        return self.compiled is not None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args, **kwargs)
        mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)  # torch >= 2.1
        if self.cudagraphs and mark_step is not None:
            mark_step()
        first = not self.called
        if first:  # the first call compiles: tens of seconds, so say so before the run seems to hang
            print(f"[meow-isaac] train.compile: compiling {self.name} (first call; tens of seconds)", flush=True)
            self.called, start = True, time.perf_counter()
        try:
            out = self.compiled(*args, **kwargs)
            if first:
                print(f"[meow-isaac] train.compile: {self.name} compiled in {time.perf_counter() - start:.1f} s",
                      flush=True)
            return out
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
