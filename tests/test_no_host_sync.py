"""The training loop issues no device-to-host read between log intervals (issue 5, item 3), and no host-to-device
copy of a Python scalar (:class:`ScalarIndexWrites`, found on the GPU machine on 2026-12-04).

On CPU there is no CUDA sync to catch, so every Python-level way of reading a tensor's value on the host
(``item``, ``tolist``, ``cpu``, ``numpy``, ``__bool__``, ``__float__``, ``__int__``, ``__index__``) is counted
while the trainer runs on a synthetic device env. With a GPU, the same loop can be checked with
``torch.cuda.set_sync_debug_mode("error")``.
"""

import traceback
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from meow_isaac.agents.meow import MEowAgent
from meow_isaac.config import TrainConfig
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.trainer import Trainer

READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")


class ReadCounter:
    def __init__(self, monkeypatch):
        self.count = 0
        for name in READS:
            original = getattr(torch.Tensor, name)

            def wrapper(tensor, *args, _original=original, **kwargs):
                self.count += 1
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
    with ScalarIndexWrites() as writes:
        trainer.train()
    assert trainer.iteration == 200 and trainer.updates == 2 * (200 - 5 + 1)
    assert counter.count == 0, f"{counter.count} host reads in the training loop"
    assert not writes.writes, f"host scalars written by tensor index (CUDA syncs): {sorted(set(writes.writes))}"


def test_the_counter_sees_a_host_read(monkeypatch):
    counter = ReadCounter(monkeypatch)
    x = torch.ones(3)
    before = counter.count
    if x.sum() > 0:  # __bool__: a host sync on a device tensor
        pass
    x.max().item()
    assert counter.count - before >= 2


class ScalarIndexWrites(TorchFunctionMode):
    """Records ``tensor[index] = value`` where ``index`` holds a tensor and ``value`` is a Python number: on CUDA,
    torch turns the number into a CPU tensor and ``index_put_`` copies it to the device with a blocking
    host-to-device copy, a synchronisation (``set_sync_debug_mode("error")`` raised it in ``ReplayBuffer.add`` on
    the GPU machine, 2026-12-04). ``index_fill_``/``masked_fill_`` or a device tensor as value do not copy.

    ``raise_on_write``: raise ``RuntimeError`` at the write instead of recording it. ``active``: a callable
    deciding per write whether it counts (e.g. not inside the physics engine's own calls)."""

    def __init__(self, raise_on_write: bool = False, active=lambda: True) -> None:
        super().__init__()
        self.raise_on_write, self.active, self.writes = raise_on_write, active, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.__setitem__ and self.active():
            index, value = args[1], args[2]
            parts = index if isinstance(index, tuple) else (index,)
            if any(isinstance(p, torch.Tensor) for p in parts) and not isinstance(value, torch.Tensor):
                caller = traceback.extract_stack(limit=2)[0]
                where = f"{Path(caller.filename).name}:{caller.lineno} `{caller.line}`"
                if self.raise_on_write:
                    raise RuntimeError(f"host scalar written by tensor index at {where}: a host-to-device copy "
                                       "(synchronising) on CUDA; use index_fill_/masked_fill_")
                self.writes.append(where)
        return func(*args, **(kwargs or {}))


def test_the_write_recorder_sees_a_host_scalar_written_by_tensor_index():
    x, ids = torch.zeros(4), torch.tensor([1, 2])
    with ScalarIndexWrites() as writes:
        x[ids] = 1.0  # recorded
        x[1:3] = 2.0  # a slice: fill_, no copy
        x[ids] = torch.ones(2)  # a tensor value: no host scalar
        x.index_fill_(0, ids, 3.0)
    assert len(writes.writes) == 1 and "x[ids] = 1.0" in writes.writes[0]
    assert x.tolist() == [0.0, 3.0, 3.0, 0.0]
