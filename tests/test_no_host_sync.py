"""The training loop issues no device-to-host read between log intervals (issue 5, item 3), and no host-to-device
call that synchronises a CUDA device without a Python-level read (:class:`DeviceSyncOps`; one was found on
the GPU machine on 2026-12-04).

On CPU there is no CUDA sync to catch, so every Python-level way of reading a tensor's value on the host
(``item``, ``tolist``, ``cpu``, ``numpy``, ``__bool__``, ``__float__``, ``__int__``, ``__index__``) is counted
while the trainer runs on a synthetic device env. With a GPU, the same loop can be checked with
``torch.cuda.set_sync_debug_mode("error")``.
"""

import contextlib
import traceback
from pathlib import Path
from typing import Iterator, Tuple

import pytest
import torch
from torch.overrides import TorchFunctionMode

from meow_isaac.agents.meow import MEowAgent
from meow_isaac.config import TrainConfig
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.trainer import Trainer

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class ReadCounter:
    """Counts the host reads (:data:`READS`) of any tensor while ``monkeypatch`` holds; ``active``: a callable
    deciding per read whether it counts (e.g. not inside a framework's own calls)."""

    def __init__(self, monkeypatch, active=lambda: True):
        self.count = 0
        for name in READS:
            original = getattr(torch.Tensor, name)

            def wrapper(tensor, *args, _original=original, **kwargs):
                self.count += bool(active())
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, wrapper)


def _trainer(tmp_path: Path, log_interval: int) -> Trainer:
    env = SyntheticVecEnv(8, obs_dim=6, action_dim=2, max_episode_length=20)
    cfg = TrainConfig(batch_size=32, replay_size_per_env=100, random_steps=5, learning_starts=5,
                      max_iterations=10**9, log_interval=log_interval, eval_interval=0, save_interval=10**9,
                      normalize_input=True, updates_per_step=2)
    agent = MEowAgent(6, 2, torch.device("cpu"), normalize_input=True)
    return Trainer(env, lambda: SyntheticVecEnv(2, 6, 2, 20), agent, cfg, tmp_path, None, "sync", torch.device("cpu"),
                   show_progress=False)


def test_no_host_reads_between_log_intervals(tmp_path, monkeypatch):
    """200 vectorised steps (random phase, then acting + 2 updates per step) with no log interval inside."""
    trainer = _trainer(tmp_path, log_interval=10**9)
    original_add = trainer.replay.add

    def add_then_stop(*args):
        original_add(*args)
        trainer.stop_requested = trainer.replay.num_adds >= 200

    trainer.replay.add = add_then_stop  # type: ignore[assignment]
    trainer._log = lambda *a: pytest.fail("log interval reached")  # type: ignore[assignment]
    trainer.save = lambda path: path  # type: ignore[assignment]  # the final checkpoint is not the hot loop
    counter = ReadCounter(monkeypatch)
    with DeviceSyncOps() as ops:
        trainer.train()
    assert trainer.iteration == 200 and trainer.updates == 2 * (200 - 5 + 1)
    assert counter.count == 0, f"{counter.count} host reads in the training loop"
    assert not ops.syncs, f"CUDA-synchronising calls in the training loop: {sorted(set(ops.syncs))}"


def test_the_counter_sees_a_host_read(monkeypatch):
    counter = ReadCounter(monkeypatch)
    x = torch.ones(3)
    before = counter.count
    if x.sum() > 0:  # __bool__: a host sync on a device tensor
        pass
    x.max().item()
    assert counter.count - before >= 2


_DATA_DEPENDENT = {torch.nonzero, torch.Tensor.nonzero, torch.argwhere, torch.Tensor.argwhere, torch.masked_select,
                   torch.Tensor.masked_select, torch.unique, torch.Tensor.unique, torch.unique_consecutive}


class DeviceSyncOps(TorchFunctionMode):
    """Records the torch calls that synchronise a CUDA device without any Python-level read of a tensor (which
    :class:`ReadCounter` counts), so that the CPU can find them:

    * ``tensor[index] = number`` with a tensor in ``index``: torch wraps the number in a CPU tensor and
      ``index_put_`` copies it to the device with a blocking host-to-device copy (``set_sync_debug_mode("error")``
      raised it in ``ReplayBuffer.add`` on the GPU machine, 2026-12-04); ``index_fill_``/``masked_fill_`` or a
      device tensor as the value do not copy;
    * ``torch.tensor``/``torch.as_tensor`` of Python or NumPy data with a ``device``: the data are copied from
      pageable host memory with a blocking copy (make such constants once, outside the loop);
    * indexing (read or write) with a bool tensor, and ``nonzero``/``argwhere``/``masked_select``/``unique``/
      one-argument ``torch.where``: the result's size depends on the data, which the host must wait for.

    ``raise_on_sync``: raise ``RuntimeError`` at the call instead of recording it. ``active``: a callable deciding
    per call whether it counts (e.g. not inside the physics engine's own calls)."""

    def __init__(self, raise_on_sync: bool = False, active=lambda: True) -> None:
        super().__init__()
        self.raise_on_sync, self.active, self.syncs = raise_on_sync, active, []

    @staticmethod
    def _why(func, args, kwargs) -> str:
        if func in (torch.Tensor.__setitem__, torch.Tensor.__getitem__):
            parts = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
                return "indexing with a bool mask (data-dependent size)"
            if (func is torch.Tensor.__setitem__ and any(isinstance(p, torch.Tensor) for p in parts)
                    and not isinstance(args[2], torch.Tensor)):
                return "a host scalar written by tensor index (blocking host-to-device copy)"
        elif func in _DATA_DEPENDENT or (func is torch.where and len(args) == 1):
            return f"{getattr(func, '__name__', func)} (data-dependent size)"
        elif func in (torch.tensor, torch.as_tensor) and args and not isinstance(args[0], torch.Tensor) \
                and (kwargs or {}).get("device") is not None:
            return f"torch.{func.__name__} of host data onto a device (blocking host-to-device copy)"
        return ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        why = self._why(func, args, kwargs) if self.active() else ""
        if why:
            caller = traceback.extract_stack(limit=2)[0]
            where = f"{Path(caller.filename).name}:{caller.lineno} `{caller.line}`: {why}"
            if self.raise_on_sync:
                raise RuntimeError(f"CUDA-synchronising call while the host-sync guard is on, at {where}")
            self.syncs.append(where)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def host_syncs_outside(*calls: Tuple[object, str]) -> Iterator[dict]:
    """Inside, count the host reads (:class:`ReadCounter`) and record the :class:`DeviceSyncOps` calls made anywhere
    but inside ``getattr(obj, name)`` for each ``(obj, name)`` of ``calls`` (a framework's or physics engine's own
    calls, which are not this project's code). Yields ``{"reads": int, "syncs": list}``, filled on exit."""
    state = {"inside": 0}
    result: dict = {"reads": 0, "syncs": []}

    def counted_inside(original):
        def call(*args, **kwargs):
            state["inside"] += 1
            try:
                return original(*args, **kwargs)
            finally:
                state["inside"] -= 1
        return call

    outside = lambda: state["inside"] == 0  # noqa: E731
    patch = pytest.MonkeyPatch()
    try:
        for obj, name in calls:
            patch.setattr(obj, name, counted_inside(getattr(obj, name)))
        counter = ReadCounter(patch, active=outside)
        with DeviceSyncOps(active=outside) as ops:
            yield result
    finally:
        patch.undo()
    result["reads"], result["syncs"] = counter.count, ops.syncs


def step_without_host_syncs(env, actions, *calls: Tuple[object, str]) -> torch.Tensor:
    """``env.step`` each of ``actions`` under :func:`host_syncs_outside` (``calls``: the framework's or engine's
    own); asserts that no host read and no :class:`DeviceSyncOps` call happened outside them. Returns the number of
    episode ends (0-dim int64 tensor), so that a test can check that resets were among the steps."""
    dones = torch.zeros((), dtype=torch.long)
    with host_syncs_outside(*calls) as found:
        for action in actions:
            dones += env.step(action).done.sum()  # a tensor sum: not a host read
    assert found["reads"] == 0, f"{found['reads']} host reads in step"
    assert not found["syncs"], f"CUDA-synchronising calls in step: {sorted(set(found['syncs']))}"
    return dones


def test_the_recorder_sees_the_calls_that_synchronise_a_cuda_device():
    x, ids, mask = torch.zeros(4), torch.tensor([1, 2]), torch.tensor([False, True, True, False])
    with DeviceSyncOps() as ops:
        x[ids] = 1.0  # recorded: a host scalar by tensor index
        x[1:3] = 2.0  # a slice: fill_, no copy
        x[ids] = torch.ones(2)  # a tensor value: no host scalar
        x.index_fill_(0, ids, 3.0)
        x.masked_fill_(mask, 4.0)
        y = torch.where(mask, x, -x)  # three arguments: elementwise
        _ = x[mask]  # recorded: bool mask
        _ = mask.nonzero()  # recorded
        _ = torch.tensor([1.0, 2.0], device=x.device)  # recorded: host data onto a device
        _ = torch.as_tensor(x, device=x.device) + torch.as_tensor(2.0)  # a tensor; a CPU scalar (no device)
    assert [line.rsplit("`: ", 1)[1] for line in ops.syncs] == [
        "a host scalar written by tensor index (blocking host-to-device copy)",
        "indexing with a bool mask (data-dependent size)", "nonzero (data-dependent size)",
        "torch.tensor of host data onto a device (blocking host-to-device copy)"]
    assert "x[ids] = 1.0" in ops.syncs[0]
    assert x.tolist() == [0.0, 4.0, 4.0, 0.0] and y.tolist() == [-0.0, 4.0, 4.0, -0.0]
