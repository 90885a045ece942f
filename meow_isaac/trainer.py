"""The MEow training loop: act -> step -> store -> update(s) -> log -> evaluate -> checkpoint.

Tensors stay on the training device from simulator to update. The only host reads are at log intervals
(episode statistics and update metrics accumulate on the device), at evaluations and at checkpoints.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch
from tqdm import tqdm

from meow_isaac.agents.base import Agent
from meow_isaac.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from meow_isaac.config import TrainConfig
from meow_isaac.envs.contract import StepOut, VecEnv
from meow_isaac.logger import Logger
from meow_isaac.replay import ReplayBuffer


class EpisodeStats:
    """Device-side sums of finished episodes' returns and lengths, read at log intervals."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # return, length, count

    def record(self, out: StepOut) -> None:
        """Add the episodes that ended (and are valid) in ``out``."""
        ended = (out.done & out.valid).to(torch.float64)
        self.sums += torch.stack(((out.episode_return * ended).sum(), (out.episode_length * ended).sum(),
                                  ended.sum()))

    def pop(self) -> Optional[Dict[str, float]]:
        """Means since the last pop (one host read), or None if no episode ended."""
        ret, length, count = self.sums.tolist()
        self.sums.zero_()
        if count == 0:
            return None
        return {"episode/return": ret / count, "episode/length": length / count, "episode/count": count}


@torch.no_grad()
def evaluate(agent: Agent, env: VecEnv, deterministic: bool = True) -> torch.Tensor:
    """Run one episode in each of ``env.num_envs`` envs; returns their ``(num_envs,)`` float32 returns (CPU).

    Actions are deterministic (``z0 = 0``, spec section 5) unless ``deterministic=False``.
    """
    device = agent.normalizer.mean.device
    obs = env.reset().to(device)
    returns = torch.zeros(env.num_envs, device=device)
    finished = torch.zeros(env.num_envs, dtype=torch.bool, device=device)
    for _ in range(env.max_episode_length + 1):
        out = env.step(agent.act(obs, deterministic=deterministic).to(env.device))
        first_end = out.done.to(device) & out.valid.to(device) & ~finished
        returns = torch.where(first_end, out.episode_return.to(device), returns)
        finished |= first_end
        if bool(finished.all()):
            break
        obs = out.obs.to(device)
    return returns.cpu()


class Trainer:
    """Owns the env, the agent, the replay buffer and the counters of one run.

    Args:
        env: training ``VecEnv``. make_eval_env: builds the evaluation ``VecEnv`` (separate instances),
            called lazily. agent: the agent (MEow or SAC). cfg: trainer/agent hyperparameters. run_dir: the run folder
            (``nn/`` checkpoints, ``summaries/``). logger: scalar sink. name: checkpoint file stem.
        device: training device.
    """

    def __init__(self, env: VecEnv, make_eval_env: Callable[[], VecEnv], agent: Agent, cfg: TrainConfig,
                 run_dir: Path, logger: Optional[Logger], name: str, device: torch.device,
                 config_dict: Optional[Dict[str, Any]] = None, show_progress: bool = True,
                 is_main: bool = True) -> None:
        self.env, self.make_eval_env, self.agent, self.cfg = env, make_eval_env, agent, cfg
        self.run_dir, self.logger, self.name, self.device = Path(run_dir), logger, name, device
        self.config_dict = config_dict or {}
        self.show_progress = show_progress and is_main
        self.is_main = is_main  # under torchrun only rank 0 evaluates and writes checkpoints
        self.replay = ReplayBuffer(env.num_envs, cfg.replay_size_per_env, env.obs_dim, env.action_dim, device)
        self.stats = EpisodeStats(device)
        self.iteration = 0          # vectorised steps done
        self.updates = 0            # gradient updates done
        self.best_return = float("-inf")
        self.last_eval: Optional[float] = None
        self._last_eval_iteration = -1
        self.stop_requested = False  # set by signal handlers: checkpoint and leave the loop
        self.stop_signal: Optional[int] = None  # the signal that stopped the run (passed on after the checkpoint)
        self.video_freq, self.video_len = 0, 1000  # capture_video_freq (vectorised steps; 0 = off), frames
        self._eval_env: Optional[VecEnv] = None
        self._metric_sums: Dict[str, torch.Tensor] = {}
        self._metric_count = 0
        self._timers = {"env": 0.0, "update": 0.0}

    @property
    def frames(self) -> int:
        """Environment transitions collected so far (``iteration * num_envs``)."""
        return self.iteration * self.env.num_envs

    # ------------------------------------------------------------------ main loop
    def train(self) -> Dict[str, float]:
        """Run until ``cfg.max_iterations`` vectorised steps; returns the last logged scalars."""
        cfg, env, agent = self.cfg, self.env, self.agent
        obs = env.reset().to(self.device)
        agent.normalizer.update(obs)
        scalars: Dict[str, float] = {}
        bar = tqdm(total=cfg.max_iterations, initial=self.iteration, unit="it", dynamic_ncols=True,
                   disable=not self.show_progress, desc=self.name, mininterval=1.0)
        start, start_frames = time.perf_counter(), self.frames
        self._timers = {"env": 0.0, "update": 0.0}
        while self.iteration < cfg.max_iterations and not self.stop_requested:
            t0 = time.perf_counter()
            if self.iteration < cfg.random_steps:
                action = torch.rand(env.num_envs, env.action_dim, device=self.device) * 2.0 - 1.0
            else:
                action = agent.act(obs)
            out = env.step(action)
            t1 = time.perf_counter()
            self.replay.add(obs, action, out.reward, out.final_obs, out.terminated, out.valid)
            agent.normalizer.update(out.obs)
            self.stats.record(out)
            obs = out.obs
            self.iteration += 1
            # After a resume without the saved replay, updates wait until the buffer is refilled as much.
            if self.replay.num_adds >= max(1, cfg.learning_starts):
                for _ in range(cfg.updates_per_step):
                    self._accumulate(agent.update(self.replay.sample(cfg.batch_size)))
                self.updates += cfg.updates_per_step
            t2 = time.perf_counter()
            self._timers["env"] += t1 - t0
            self._timers["update"] += t2 - t1
            bar.update(1)
            if self.iteration % cfg.log_interval == 0:
                scalars = self._log(start, start_frames)
                bar.set_postfix(frames=self.frames, fps=int(scalars["performance/total_fps"]),
                                ret=f"{scalars.get('episode/return', float('nan')):.1f}")
            if cfg.eval_interval and self.iteration % cfg.eval_interval == 0:
                self.evaluate_and_save_best()
            if self.video_freq and self.iteration % self.video_freq == 0:
                self.record_video(f"iter_{self.iteration}")
            if self.iteration % cfg.save_interval == 0:
                self.save(self.checkpoint_path("last"))
        bar.close()
        if not self.stop_requested and self._last_eval_iteration != self.iteration:
            self.evaluate_and_save_best()
        self.save(self.checkpoint_path("last"))
        return scalars

    # ------------------------------------------------------------------ pieces
    def _accumulate(self, metrics: Dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self._metric_sums[key] = self._metric_sums.get(key, 0) + value
        self._metric_count += 1

    def _log(self, start: float, start_frames: int) -> Dict[str, float]:
        elapsed = max(time.perf_counter() - start, 1e-9)
        steps = (self.frames - start_frames)
        scalars: Dict[str, float] = {
            "performance/total_fps": steps / elapsed,
            "performance/env_fps": steps / max(self._timers["env"], 1e-9),
            "performance/update_per_s": (self._metric_count / max(self._timers["update"], 1e-9)),
            "info/updates": float(self.updates),
            "info/iteration": float(self.iteration),
        }
        episodes = self.stats.pop()
        if episodes:
            scalars.update(episodes)
        if self._metric_count:
            names = sorted(self._metric_sums)
            values = torch.stack([self._metric_sums[k].float() for k in names]).tolist()
            scalars.update({k: v / self._metric_count for k, v in zip(names, values)})
            self._metric_sums, self._metric_count = {}, 0
            self._timers["update"] = 0.0
        if self.logger is not None:
            self.logger.log(scalars, self.frames)
        return scalars

    def evaluate_and_save_best(self) -> float:
        """Deterministic evaluation on separate env instances; saves the best checkpoint. Returns the mean."""
        if not self.is_main:
            return float("nan")
        if self._eval_env is None:
            self._eval_env = self.make_eval_env()
        returns = evaluate(self.agent, self._eval_env)
        mean = float(returns.mean())
        self.last_eval, self._last_eval_iteration = mean, self.iteration
        if self.logger is not None:
            self.logger.log({"eval/return": mean, "eval/return_std": float(returns.std(unbiased=False))},
                            self.frames)
        tqdm.write(f"[eval] iteration {self.iteration} frames {self.frames}: return {mean:.2f} "
                   f"+- {float(returns.std(unbiased=False)):.2f} over {returns.numel()} episodes")
        if mean > self.best_return:
            self.best_return = mean
            self.save(self.checkpoint_path("best"))
        return mean

    def record_video(self, tag: str) -> Optional[Path]:
        """Record one deterministic episode of the eval env to ``<run_dir>/videos/<tag>.mp4`` (rank 0; MuJoCo
        envs only); logs it to wandb when active. Returns the path, or None if the env cannot render."""
        from meow_isaac.video import can_render, record_episode

        if not self.is_main:
            return None
        if self._eval_env is None:
            self._eval_env = self.make_eval_env()
        if not can_render(self._eval_env):
            tqdm.write("[meow-isaac] capture_video: this env cannot render offscreen; no video")
            self.video_freq = 0
            return None
        path = record_episode(self.agent, self._eval_env, self.run_dir / "videos" / f"{tag}.mp4", self.video_len)
        tqdm.write(f"[meow-isaac] video: {path}")
        if self.logger is not None:
            self.logger.log_video(path, self.frames)
        return path

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_path(self, kind: str) -> Path:
        """``<run_dir>/nn/<name>.pth`` (last) or ``<run_dir>/nn/<name>_best.pth``."""
        return self.run_dir / "nn" / (f"{self.name}.pth" if kind == "last" else f"{self.name}_best.pth")

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue: nets, target, normaliser, optimizer, RNG states, counters, config."""
        state: Dict[str, Any] = {
            "agent": self.agent.state_dict(),
            "optimizer": self.agent.optimizer_state_dict(),
            "counters": {"iteration": self.iteration, "updates": self.updates, "frames": self.frames,
                         "best_return": self.best_return},
            "rng": rng_state(),
            "config": self.config_dict,
        }
        generator = getattr(self.env, "generator", None)
        if isinstance(generator, torch.Generator):
            state["env_rng"] = generator.get_state()
        if self.cfg.save_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def save(self, path: Path) -> Path:
        """Atomically write :meth:`state_dict` to ``path`` (rank 0 only under torchrun)."""
        return save_checkpoint(path, self.state_dict()) if self.is_main else path

    def load(self, path: Path) -> None:
        """Resume from a checkpoint written by :meth:`save` (counters, nets, optimizer, RNG, replay if saved).

        Raises:
            FileNotFoundError, ValueError: see :func:`~meow_isaac.checkpoint.load_checkpoint`.
        """
        state = load_checkpoint(path, map_location=self.device)
        self.agent.load_state_dict(state["agent"])
        self.agent.load_optimizer_state_dict(state["optimizer"])
        counters = state["counters"]
        self.iteration, self.updates = int(counters["iteration"]), int(counters["updates"])
        self.best_return = float(counters["best_return"])
        set_rng_state(state["rng"])
        generator = getattr(self.env, "generator", None)
        if "env_rng" in state and isinstance(generator, torch.Generator):
            generator.set_state(state["env_rng"])
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])

    def close(self) -> None:
        """Close the envs and the logger."""
        for env in (self.env, self._eval_env):
            if env is not None:
                env.close()
        if self.logger is not None:
            self.logger.close()
