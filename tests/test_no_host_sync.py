"""The training loop issues no device-to-host read between log intervals (issue 5, item 3).

On CPU there is no CUDA sync to catch, so every Python-level way of reading a tensor's value on the host
(``item``, ``tolist``, ``cpu``, ``numpy``, ``__bool__``, ``__float__``, ``__int__``, ``__index__``) is counted
while the trainer runs on a synthetic device env. With a GPU, the same loop can be checked with
``torch.cuda.set_sync_debug_mode("error")``.
"""

from pathlib import Path

import pytest
import torch

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
    trainer.train()
    assert trainer.iteration == 200 and trainer.updates == 2 * (200 - 5 + 1)
    assert counter.count == 0, f"{counter.count} host reads in the training loop"


def test_the_counter_sees_a_host_read(monkeypatch):
    counter = ReadCounter(monkeypatch)
    x = torch.ones(3)
    before = counter.count
    if x.sum() > 0:  # __bool__: a host sync on a device tensor
        pass
    x.max().item()
    assert counter.count - before >= 2
