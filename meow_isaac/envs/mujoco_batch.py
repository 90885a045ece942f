"""Embedded CPU backend: N MuJoCo simulations stepped by ``mujoco.batch.Batch`` (mujoco >= 4.0).

Physics runs in the MuJoCo C engine on the batch's thread pool; everything else (observations, rewards,
terminations, reset noise) is task code written in batched torch over live ``(N, dim)`` state views
(``torch.from_numpy`` shares memory with the batch), so the same task code can later run on a GPU physics
engine whose state arrives as device tensors.

A task subclasses :class:`MujocoBatchEnv` and implements four hooks: ``_reset_state``, ``_apply_action``,
``_observe`` and ``_reward_terminated`` (plus optionally ``_before_physics``). This class owns the step
pipeline, same-step auto-reset, the true final observation, time limits and episode statistics, and maps
them onto :class:`~meow_isaac.envs.contract.StepOut`.
"""

from __future__ import annotations

import warnings
from typing import Dict, Optional, Tuple, Union

import mujoco
import numpy as np
import torch
from mujoco import batch as mj_batch

from meow_isaac.envs.contract import StepOut

STAGE_NONE = int(mujoco.mjtStage.mjSTAGE_NONE)
STAGE_POS = int(mujoco.mjtStage.mjSTAGE_POS)
STAGE_VEL = int(mujoco.mjtStage.mjSTAGE_VEL)
STAGE_ACC = int(mujoco.mjtStage.mjSTAGE_ACC)


class MujocoBatchEnv:
    """Base class of the embedded MuJoCo tasks; implements the ``VecEnv`` protocol of ``DESIGN.md``.

    Args:
        model: compiled MuJoCo model (one copy per simulation is made by ``mujoco.batch.Batch``).
        num_envs: number of parallel simulations ``N`` (>= 1).
        obs_dim: observation size.
        action_dim: action size; actions are ``(N, action_dim)`` in ``[-1, 1]``.
        frame_skip: physics substeps (``mj_step`` calls) per agent step.
        max_episode_length: time limit in agent steps; an episode reaching it is truncated.
        seed: seed of the task's torch generator (reset noise); equal seeds give equal episodes.
        num_threads: threads of the physics thread pool (0 = all CPUs).
        device: where returned tensors live (physics and task math run on the CPU).
        step_stage: ``mjtStage`` computed after each step. ``STAGE_NONE`` (default) leaves derived fields
            one substep behind the state, exactly as after ``mj_step`` (Gymnasium semantics).
        persistent: keep one ``MjData`` per simulation (``mujoco.batch.Batch(persistent=True)``), so that
            ``batch.get_data(i)`` returns simulation ``i``'s whole ``MjData`` (contacts, constraint forces)
            for per-simulation post-processing; costs about 0.2 MB of memory per simulation.

    Raises:
        ValueError: ``num_envs < 1``, ``frame_skip < 1`` or ``max_episode_length < 1``.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        num_envs: int,
        obs_dim: int,
        action_dim: int,
        frame_skip: int,
        max_episode_length: int,
        seed: int = 0,
        num_threads: int = 0,
        device: Union[str, torch.device] = "cpu",
        step_stage: int = STAGE_NONE,
        persistent: bool = False,
    ) -> None:
        for key, value in (("num_envs", num_envs), ("frame_skip", frame_skip),
                           ("max_episode_length", max_episode_length)):
            if int(value) < 1:
                raise ValueError(f"{key}={value} is invalid: expected an integer >= 1")
        self.model = model
        self.num_envs = int(num_envs)
        self.obs_dim = int(obs_dim)
        self.action_dim = int(action_dim)
        self.frame_skip = int(frame_skip)
        self.max_episode_length = int(max_episode_length)
        self.device = torch.device(device)
        self.step_stage = int(step_stage)
        self.batch = mj_batch.Batch(model, self.num_envs, nthread=int(num_threads), persistent=bool(persistent))
        self.generator = torch.Generator().manual_seed(int(seed))
        self._views: Dict[str, torch.Tensor] = {}
        self.qpos = self.view("qpos")
        self.qvel = self.view("qvel")
        self.ctrl = self.view("ctrl") if model.nu > 0 else torch.zeros(self.num_envs, 0, dtype=torch.float64)
        n = self.num_envs
        self.progress = torch.zeros(n, dtype=torch.long)
        self.episode_return_acc = torch.zeros(n, dtype=torch.float64)
        self._all_ids = np.arange(n)

    # ------------------------------------------------------------------ state views
    def view(self, name: str) -> torch.Tensor:
        """Live ``(N, ...)`` float64 CPU tensor over the MjData field ``name`` (shares memory, cached).

        State fields (qpos, qvel, ctrl, ...) are writable; derived fields (xpos, cfrc_ext, ...) are
        read-only outputs refreshed after every batch call.
        """
        if name not in self._views:
            with warnings.catch_warnings():
                # Derived fields are read-only outputs; torch warns but shares the memory all the same.
                warnings.simplefilter("ignore", UserWarning)
                self._views[name] = torch.from_numpy(self.batch.bind(name))
        return self._views[name]

    @property
    def dt(self) -> float:
        """Control period in seconds: ``model.opt.timestep * frame_skip``."""
        return float(self.model.opt.timestep) * self.frame_skip

    # ------------------------------------------------------------------ task hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        """Write the initial ``qpos``/``qvel`` (and task state) of envs ``ids`` (int64, CPU).

        Called after those simulations were reset to the model defaults; ``self.qpos[ids]`` holds ``qpos0``.
        """
        raise NotImplementedError

    def _apply_action(self, action: torch.Tensor) -> None:
        """Write controls for ``action`` ``(N, action_dim)`` float32 in ``[-1, 1]`` (CPU)."""
        self.ctrl.copy_(action.to(torch.float64))

    def _before_physics(self) -> None:
        """Record anything the reward needs from before the physics step (e.g. the x position)."""

    def _observe(self) -> torch.Tensor:
        """Return the ``(N, obs_dim)`` observation (any float dtype, CPU) of the current state."""
        raise NotImplementedError

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(reward (N,) float, terminated (N,) bool)`` of the step just simulated."""
        raise NotImplementedError

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> torch.Tensor:
        """Reset every environment; returns the ``(N, obs_dim)`` float32 observation on ``device``."""
        self._reset_ids(torch.arange(self.num_envs))
        return self._observe().to(self.device, torch.float32)

    def _reset_ids(self, ids: torch.Tensor) -> None:
        ids_np = ids.numpy()
        self.batch.reset(ids_np, stage=STAGE_NONE)
        self._reset_state(ids)
        self.batch.forward(ids_np)
        self.progress[ids] = 0
        self.episode_return_acc[ids] = 0.0

    def step(self, action: torch.Tensor) -> StepOut:
        """Advance all envs one agent step with ``action`` ``(N, action_dim)``; auto-reset finished ones.

        Raises:
            ValueError: ``action`` has the wrong shape.
            RuntimeError: a simulation became unstable (MuJoCo reported an error).
        """
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"action shape {tuple(action.shape)} != expected {(self.num_envs, self.action_dim)}")
        action = action.detach().to("cpu", torch.float32).clamp(-1.0, 1.0)
        self._before_physics()
        self._apply_action(action)
        self.batch.step(nstep=self.frame_skip, stage=self.step_stage)
        self.progress += 1
        reward, terminated = self._reward_terminated(action)
        terminated = terminated.to(torch.bool)
        truncated = (self.progress >= self.max_episode_length) & ~terminated
        obs = self._observe().to(torch.float32)
        final_obs = obs
        self.episode_return_acc += reward
        done = terminated | truncated
        ep_ret = torch.where(done, self.episode_return_acc, torch.zeros_like(self.episode_return_acc))
        ep_len = torch.where(done, self.progress, torch.zeros_like(self.progress))
        if bool(done.any()):
            ids = done.nonzero().squeeze(1)
            final_obs = obs.clone()
            self._reset_ids(ids)
            obs[ids] = self._observe()[ids].to(torch.float32)
        dev = self.device
        return StepOut(
            obs=obs.to(dev),
            reward=reward.to(dev, torch.float32),
            terminated=terminated.to(dev),
            truncated=truncated.to(dev),
            final_obs=final_obs.to(dev),
            valid=torch.ones(self.num_envs, dtype=torch.bool, device=dev),
            episode_return=ep_ret.to(dev, torch.float32),
            episode_length=ep_len.to(dev),
        )

    def close(self) -> None:
        """Release the batch (its threads and memory)."""
        self._views.clear()
        self.batch = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ helpers for tasks
    def uniform(self, low: float, high: float, shape: Tuple[int, ...]) -> torch.Tensor:
        """``U(low, high)`` float64 CPU noise of ``shape`` from the task's seeded generator."""
        return low + (high - low) * torch.rand(shape, generator=self.generator, dtype=torch.float64)

    def normal(self, std: float, shape: Tuple[int, ...]) -> torch.Tensor:
        """``N(0, std^2)`` float64 CPU noise of ``shape`` from the task's seeded generator."""
        return std * torch.randn(shape, generator=self.generator, dtype=torch.float64)

    def render_frame(self, sim: int = 0, width: int = 320, height: int = 240,
                     camera: Optional[Union[int, str]] = -1) -> np.ndarray:
        """Render simulation ``sim`` offscreen; returns ``(height, width, 3)`` uint8 RGB."""
        model = self.batch.get_model(sim)
        data = self.batch.get_data(sim)
        mujoco.mj_forward(model, data)
        with mujoco.Renderer(model, height=height, width=width) as renderer:
            renderer.update_scene(data, camera=camera)
            return renderer.render().copy()

