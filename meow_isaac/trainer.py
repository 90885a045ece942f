"""The MEow training loop: act -> step -> store -> update(s) -> log -> evaluate -> checkpoint.

Tensors stay on the training device from simulator to update. The only host reads are at log intervals
(episode statistics and update metrics accumulate on the device), at evaluations and at checkpoints.
"""

from __future__ import annotations

import copy
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from tqdm import tqdm

from meow_isaac.agents.base import Agent, NonFiniteUpdatesError
from meow_isaac.checkpoint import (FORMAT_VERSION, CheckpointError, CheckpointWriteError, check_compatible,
                                   checkpoint_meta, load_checkpoint, rng_state, save_checkpoint, set_rng_state)
from meow_isaac.config import TrainConfig
from meow_isaac.distributed import all_reduce_sum, world_size
from meow_isaac.envs.contract import StepOut, VecEnv
from meow_isaac.envs.guard import NonFiniteGuard
from meow_isaac.logger import Logger
from meow_isaac.replay import ReplayBuffer

# the env's random generators the checkpoint keeps: (checkpoint key, env attribute)
ENV_GENERATORS = (("env_rng", "generator"), ("env_rng_masked", "masked_generator"))


class EpisodeStats:
    """Device-side sums of finished episodes' returns and lengths, read at log intervals."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # return, length, count

    def record(self, out: StepOut) -> None:
        """Add the episodes that ended (and are valid) in ``out``; an episode whose return is not finite (a
        simulator fault inside it) is left out."""
        ended = out.done & out.valid & torch.isfinite(out.episode_return)
        ret = torch.where(ended, out.episode_return, torch.zeros_like(out.episode_return))
        length = torch.where(ended, out.episode_length, torch.zeros_like(out.episode_length))
        self.sums += torch.stack((ret.sum().to(torch.float64), length.sum().to(torch.float64),
                                  ended.sum().to(torch.float64)))

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
        self._write_error: Optional[str] = None  # torchrun + checkpoint_error=stop: rank 0's failed write
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
        """Run until ``cfg.max_iterations`` vectorised steps; returns the last logged scalars.

        The env is stepped through a :class:`~meow_isaac.envs.guard.NonFiniteGuard` (``self.guard``): NaN/Inf
        rows are dropped, their envs reset, and counted. Updates with a non-finite loss or gradient are skipped
        by the agent; at a log interval where ``cfg.max_bad_updates`` consecutive updates were skipped, the
        (untouched, last good) state is saved as the 'last' checkpoint and the run stops.

        Raises:
            NonFiniteUpdatesError: ``cfg.max_bad_updates`` consecutive updates were skipped.
        """
        cfg, agent = self.cfg, self.agent
        if getattr(self, "guard", None) is None:
            self.guard = NonFiniteGuard(self.env)
        env = self.guard
        obs = env.reset().to(self.device)
        agent.normalizer.update(obs)
        scalars: Dict[str, float] = {}
        bar = tqdm(total=cfg.max_iterations, initial=self.iteration, unit="it", dynamic_ncols=True,
                   disable=not self.show_progress, desc=self.name, mininterval=1.0)
        start, start_frames = time.perf_counter(), self.frames
        self._timers = {"env": 0.0, "update": 0.0}
        pool = self._overlap_pool()
        while self.iteration < cfg.max_iterations and not self.stop_requested:
            if self.iteration < cfg.random_steps:
                action = torch.rand(env.num_envs, env.action_dim, device=self.device) * 2.0 - 1.0
            else:
                action = agent.act(obs)
            # After a resume without the saved replay, updates wait until the buffer is refilled as much.
            overlapped = pool is not None and self.replay.num_adds >= max(1, cfg.learning_starts)
            if overlapped:  # physics on the worker thread while the update runs here
                future = pool.submit(self._timed_step, env, action)
                self._run_updates()
                out = future.result()
            else:
                out = self._timed_step(env, action)
            self.replay.add(obs, action, out.reward, out.final_obs, out.terminated, out.valid)
            agent.normalizer.update(out.obs)
            self.stats.record(out)
            obs = out.obs
            self.iteration += 1
            if pool is None and self.replay.num_adds >= max(1, cfg.learning_starts):
                self._run_updates()
            bar.update(1)
            if self.iteration % cfg.log_interval == 0:
                scalars = self._log(start, start_frames)
                bar.set_postfix(frames=self.frames, fps=int(scalars["performance/total_fps"]),
                                ret=f"{scalars.get('episode/return', float('nan')):.1f}")
                if scalars.get("faults/max_consecutive_skipped", 0) >= cfg.max_bad_updates:
                    bar.close()
                    path = self.save(self.checkpoint_path("last"))
                    raise NonFiniteUpdatesError(
                        f"training stopped at iteration {self.iteration}: "
                        f"{int(scalars['faults/max_consecutive_skipped'])} consecutive updates had a non-finite "
                        f"loss or gradient and were skipped (train.max_bad_updates={cfg.max_bad_updates}); "
                        f"the last good state was saved to {path}")
            if cfg.eval_interval and self.iteration % cfg.eval_interval == 0:
                self.evaluate_and_save_best()
            if self.video_freq and self.iteration % self.video_freq == 0:
                self.record_video(f"iter_{self.iteration}")
            if self.iteration % cfg.save_interval == 0:
                self.save(self.checkpoint_path("last"))
            if self.iteration % cfg.save_interval == 0 or (cfg.eval_interval and
                                                           self.iteration % cfg.eval_interval == 0):
                self._stop_every_rank_on_write_error(bar, pool)
        bar.close()
        if pool is not None:
            pool.shutdown()
        if not self.stop_requested and self._last_eval_iteration != self.iteration:
            self.evaluate_and_save_best()
        self.save(self.checkpoint_path("last"))
        self._stop_every_rank_on_write_error(bar, None)
        return scalars

    # ------------------------------------------------------------------ pieces
    def _overlap_pool(self) -> Optional[ThreadPoolExecutor]:
        """A one-thread pool that steps the simulator during the update (``train.overlap_env``), or None.

        Only where both the env and the training device are the CPU (the embedded MuJoCo backend): its physics
        runs in MuJoCo's C threads and its torch ops release the GIL, so stepping and updating overlap on the
        cores; on CUDA the simulator and the update are already asynchronous kernels on the device. The update
        of an iteration then samples the replay buffer before that iteration's transitions are added (the
        sequential loop adds them first); acting is unchanged (the action is chosen before either).
        """
        env_device = torch.device(getattr(self.env, "device", "cpu"))
        if not self.cfg.overlap_env or env_device.type != "cpu" or self.device.type != "cpu":
            return None
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="meow-isaac-env")

    def _timed_step(self, env: Any, action: torch.Tensor) -> StepOut:
        t0 = time.perf_counter()
        out = env.step(action)
        self._timers["env"] += time.perf_counter() - t0
        return out

    def _run_updates(self) -> None:
        """``cfg.updates_per_step`` updates on minibatches from the replay buffer (no host reads)."""
        t0 = time.perf_counter()
        for _ in range(self.cfg.updates_per_step):
            self._accumulate(self.agent.update(self.replay.sample(self.cfg.batch_size)))
        self.updates += self.cfg.updates_per_step
        self._timers["update"] += time.perf_counter() - t0

    def _accumulate(self, metrics: Dict[str, torch.Tensor]) -> None:
        """Add one update's metrics to the device sums. With ``faults/update_skipped`` (1.0: skipped), the other
        metrics are summed over applied updates only (a skipped update's NaN loss does not hide the others)."""
        skipped = metrics.get("faults/update_skipped")
        applied = None if skipped is None else skipped == 0
        for key, value in metrics.items():
            if applied is not None and key != "faults/update_skipped":
                value = torch.where(applied, value, torch.zeros_like(value))
            self._metric_sums[key] = self._metric_sums.get(key, 0) + value
        if applied is not None:
            # internal key: applied updates since the last log (popped by _log)
            self._metric_sums["_applied"] = self._metric_sums.get("_applied", 0) + applied.to(torch.float32)
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
        # One host read for the update metrics and the fault counters.
        names = sorted(self._metric_sums) if self._metric_count else []
        faults = {"faults/nonfinite_env_steps": getattr(getattr(self, "guard", None), "nonfinite_env_steps", None)}
        agent_faults = getattr(self.agent, "faults", None)
        if agent_faults is not None:
            faults.update({"faults/skipped_updates": agent_faults.skipped,
                           "faults/max_consecutive_skipped": agent_faults.peak})
        faults = {k: v for k, v in faults.items() if isinstance(v, torch.Tensor)}
        tensors = [self._metric_sums[k] for k in names] + list(faults.values())
        values = (torch.stack([t.to(self.device, torch.float64) for t in tensors]).tolist() if tensors else [])
        scalars.update(zip(faults, values[len(names):]))
        if agent_faults is not None:
            agent_faults.reset_peak()
        if self._metric_count:
            sums = dict(zip(names, values))
            applied = sums.pop("_applied", float(self._metric_count))
            for key, total in sums.items():
                if key == "faults/update_skipped":
                    scalars[key] = total / self._metric_count  # fraction of this interval's updates skipped
                elif applied > 0:
                    scalars[key] = total / applied
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

    def run_meta(self) -> Dict[str, Any]:
        """The checkpoint ``meta`` block of this run: ``algo``, ``task`` (from the run config; None without one),
        ``obs_dim``, ``action_dim``, ``activation`` (MEow)."""
        task = self.config_dict.get("task")
        return checkpoint_meta(self.cfg.algo, task.get("name") if isinstance(task, dict) else None,
                               self.env.obs_dim, self.env.action_dim, self.cfg.activation)

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue: format version, meta, nets, target, normaliser, optimizer, RNG states,
        counters, config; tensors and plain containers only (loadable with ``weights_only=True``)."""
        state: Dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "meta": self.run_meta(),
            "agent": self.agent.state_dict(),
            "optimizer": self.agent.optimizer_state_dict(),
            "counters": {"iteration": self.iteration, "updates": self.updates, "frames": self.frames,
                         "best_return": self.best_return},
            "rng": rng_state(),
            "config": self.config_dict,
        }
        for key, generator in self._env_generators().items():
            state[key] = generator.get_state()
            state["env_rng_device"] = generator.device.type  # CPU (mt19937) and CUDA (Philox) states differ in size
        if self.cfg.save_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def save(self, path: Path) -> Path:
        """Atomically write :meth:`state_dict` to ``path`` (rank 0 only under torchrun).

        A write that fails with an OS error (disk full, file too large, unwritable folder) leaves the previous
        file at ``path`` intact and no temp file. ``self.checkpoint_error`` (config key ``checkpoint_error``)
        decides what follows: ``'warn'`` (default) prints one line on stderr (path, OS error) and returns, and
        training goes on; ``'stop'`` raises (under torchrun at the iteration's save point, on every rank:
        :meth:`_stop_every_rank_on_write_error`).

        Raises:
            CheckpointWriteError: the write failed and ``checkpoint_error='stop'`` (single process).
        """
        if not self.is_main:
            return path
        try:
            return save_checkpoint(path, self.state_dict())
        except OSError as err:
            message = (f"could not write checkpoint {path} at iteration {self.iteration}: [Errno {err.errno}] "
                       f"{err.strerror or err}; " + ("the previous checkpoint file is intact" if Path(path).is_file()
                                                      else "no checkpoint file was written"))
            if getattr(self, "checkpoint_error", "warn") == "stop":
                if world_size() > 1:  # the line now (torchrun stops the other ranks as soon as one exits); every
                    if self._write_error is None:  # rank raises at this iteration's save point
                        tqdm.write(f"error: {message}; stopped (checkpoint_error=stop)", file=sys.stderr)
                        self._write_error = message
                    return path
                raise CheckpointWriteError(f"{message}; stopped (checkpoint_error=stop)") from err
            tqdm.write(f"[meow-isaac] error: {message}; training continues (checkpoint_error=warn)", file=sys.stderr)
            return path

    def _stop_every_rank_on_write_error(self, bar: Any, pool: Optional[ThreadPoolExecutor]) -> None:
        """Under torchrun, after the save points of an iteration (every rank reaches them at the same iteration):
        one all-reduce tells every rank whether rank 0 failed a write with ``checkpoint_error=stop``; if so, all
        ranks raise together a quiet error (rank 0 printed the one line when the write failed), so none is left
        waiting in the next gradient all-reduce. Single process: nothing (``save`` raised already).

        Raises:
            CheckpointWriteError: a rank failed a checkpoint write with ``checkpoint_error=stop``.
        """
        if world_size() <= 1:
            return
        import torch.distributed as dist

        error = self._write_error
        failed = all_reduce_sum(torch.tensor([0.0 if error is None else 1.0], device=self.device))
        if float(failed) == 0.0:  # one host read per save point, not per step
            return
        bar.close()
        if pool is not None:
            pool.shutdown()
        raise CheckpointWriteError(error or f"rank {dist.get_rank()}: stopped at iteration {self.iteration}: rank 0 "
                                   "could not write a checkpoint (checkpoint_error=stop)", quiet=True)

    def _env_generators(self) -> Dict[str, torch.Generator]:
        """The env's ``torch.Generator`` s by checkpoint key: ``env_rng`` (``env.generator``) and, for the embedded
        engines, ``env_rng_masked`` (``env.masked_generator``, the stream of the resets by mask)."""
        found = {key: getattr(self.env, name, None) for key, name in ENV_GENERATORS}
        return {key: g for key, g in found.items() if isinstance(g, torch.Generator)}

    def _checked_env_rngs(self, state: Mapping[str, Any], path: Path) -> List[Tuple[torch.Generator, torch.Tensor]]:
        """``(generator, saved state)`` pairs to restore, checked (nothing is assigned here).

        A checkpoint of another device kind (e.g. CUDA, resumed on the CPU: a Philox state of 16 bytes cannot
        seed an mt19937 generator) restores none of them and says so in one line: the env's streams restart
        from this run's seed.

        Raises:
            CheckpointError: a saved state that does not fit this env's generator.
        """
        generators = self._env_generators()
        saved_on = state.get("env_rng_device")
        if generators and saved_on is not None and any(g.device.type != saved_on for g in generators.values()):
            print(f"[meow-isaac] checkpoint={path}: the env's random generator was on {saved_on}, this run's is on "
                  f"{next(iter(generators.values())).device.type}: its state is not restored (the env's stream "
                  "restarts from the seed)")
            return []
        pairs = []
        for key, generator in generators.items():
            saved = state.get(key)
            if saved is None:
                continue
            if (not isinstance(saved, torch.Tensor) or saved.dtype != torch.uint8
                    or saved.shape != generator.get_state().shape):
                raise CheckpointError(f"invalid config: checkpoint={str(path)!r}: {key}: expected a tensor of shape "
                                      f"{tuple(generator.get_state().shape)}, found {saved!r:.80}; accepted: a "
                                      "checkpoint of the same task")
            pairs.append((generator, saved))
        return pairs

    def load(self, path: Path) -> None:
        """Resume from a checkpoint written by :meth:`save` (counters, nets, optimizer, RNG, replay if saved).

        Everything is checked before anything is assigned (format, meta, state-dict keys and shapes, replay
        shapes, counters, RNG states); the optimizer state is loaded last among the nets and rolled back with
        them if it does not fit: on error the trainer is unchanged.

        Raises:
            FileNotFoundError: see :func:`~meow_isaac.checkpoint.load_checkpoint`.
            CheckpointError: unreadable, untrusted or incompatible checkpoint (one line: expected vs found).
        """
        state = load_checkpoint(path, map_location=self.device)
        check_compatible(state, path, self.run_meta(), self.agent.state_dict(), self.replay.state_dict())
        env_rngs = self._checked_env_rngs(state, path)
        before = copy.deepcopy((self.agent.state_dict(), self.agent.optimizer_state_dict()))
        try:
            self.agent.load_state_dict(state["agent"])
            self.agent.load_optimizer_state_dict(state["optimizer"])
            _check_optimizer_shapes(self.agent)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            self.agent.load_state_dict(before[0])
            self.agent.load_optimizer_state_dict(before[1])
            raise CheckpointError(f"invalid config: checkpoint={str(path)!r}: optimizer state does not fit this "
                                  f"model ({' '.join(str(err).split())[:200]}); accepted: a checkpoint of the same "
                                  "algorithm, task and model as this run") from None
        counters = state["counters"]
        self.iteration, self.updates = int(counters["iteration"]), int(counters["updates"])
        self.best_return = float(counters["best_return"])
        set_rng_state(state["rng"])
        for generator, env_rng in env_rngs:
            generator.set_state(env_rng.cpu())
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])

    def close(self) -> None:
        """Close the envs and the logger."""
        for env in (self.env, self._eval_env):
            if env is not None:
                env.close()
        if self.logger is not None:
            self.logger.close()




def _check_optimizer_shapes(agent: Any) -> None:
    """Every optimizer state tensor (Adam moments) of ``agent`` has its parameter's shape.

    Raises:
        ValueError: the first one that does not.
    """
    for name, opt in vars(agent).items():
        if not isinstance(opt, torch.optim.Optimizer):
            continue
        for group in opt.param_groups:
            for i, param in enumerate(group["params"]):
                for key, value in opt.state.get(param, {}).items():
                    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                        raise ValueError(f"{name} parameter {i} {key}: expected shape {tuple(param.shape)}, "
                                         f"found {tuple(value.shape)}")
