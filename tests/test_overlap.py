"""train.overlap_env: the simulator steps on a worker thread while the update runs (CPU env + CPU device)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import List

import torch

from meow_isaac.agents.meow import MEowAgent
from meow_isaac.config import TrainConfig
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.trainer import Trainer


class ThreadRecordingEnv(SyntheticVecEnv):
    """Synthetic env that records which thread ran each step."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.threads: List[str] = []

    def step(self, action):
        self.threads.append(threading.current_thread().name)
        return super().step(action)


def _run(tmp_path: Path, overlap: bool, seed: int = 0):
    torch.manual_seed(seed)
    env = ThreadRecordingEnv(4, obs_dim=6, action_dim=2, max_episode_length=15)
    cfg = TrainConfig(batch_size=16, replay_size_per_env=100, random_steps=5, learning_starts=5, max_iterations=40,
                      log_interval=20, eval_interval=0, save_interval=10**9, overlap_env=overlap, dropout=0.0)
    agent = MEowAgent(6, 2, torch.device("cpu"), dropout=0.0)
    trainer = Trainer(env, lambda: SyntheticVecEnv(2, 6, 2, 15), agent, cfg, tmp_path, None, "ov",
                      torch.device("cpu"), show_progress=False)
    trainer.train()
    return trainer, env


def test_overlapped_loop_steps_on_a_worker_thread_and_trains_the_same_schedule(tmp_path):
    seq, seq_env = _run(tmp_path / "seq", overlap=False)
    ov, ov_env = _run(tmp_path / "ov", overlap=True)
    assert all(name == "MainThread" for name in seq_env.threads)
    worker_steps = [name for name in ov_env.threads if name.startswith("meow-isaac-env")]
    # steps from the first update on run on the worker: iterations 4..39 (num_adds >= 5 from iteration 5 on)
    assert len(worker_steps) == 40 - 5
    # sequential: an update after each add from the 5th on (36); overlapped: the update of an iteration
    # runs before its add, so from the 6th iteration on (35)
    assert (seq.iteration, seq.updates) == (40, 40 - 5 + 1)
    assert (ov.iteration, ov.updates) == (40, 40 - 5)
    assert ov.replay.num_adds == seq.replay.num_adds == 40
    # same data collected until the first update; afterwards the update samples one step earlier, so differs
    changed = any(not torch.equal(a, b) for a, b in zip(seq.agent.policy.parameters(), ov.agent.policy.parameters()))
    assert changed
    for p in ov.agent.policy.parameters():
        assert torch.isfinite(p).all()


def test_overlapped_runs_are_deterministic(tmp_path):
    first, _ = _run(tmp_path / "a", overlap=True, seed=3)
    second, _ = _run(tmp_path / "b", overlap=True, seed=3)
    for a, b in zip(first.agent.policy.parameters(), second.agent.policy.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(first.agent.target.parameters(), second.agent.target.parameters()):
        assert torch.equal(a, b)
    obs_a, obs_b = first.replay.state_dict()["obs"], second.replay.state_dict()["obs"]
    assert obs_a.shape[:2] == (101, 4)  # per-env rings: (replay_size_per_env + 1, num_envs, obs_dim)
    assert torch.equal(obs_a[:40], obs_b[:40])
