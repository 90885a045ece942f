"""Embedded CPU backend: N MuJoCo simulations stepped by ``mujoco.batch.Batch`` (mujoco >= 4.0).

Physics runs in the MuJoCo C engine on the batch's thread pool; everything else (observations, rewards,
terminations, reset noise) is task code written in batched torch over live ``(N, dim)`` state views
(``torch.from_numpy`` shares memory with the batch), so the same task code can later run on a GPU physics
engine whose state arrives as device tensors.

A task subclasses :class:`MujocoBatchEnv` and implements four hooks: ``_reset_state``, ``_apply_action``,
``_observe`` and ``_reward_terminated`` (plus optionally ``_before_physics``). This class owns the step
pipeline, same-step auto-reset, the true final observation, time limits and episode statistics, and maps
them onto :class:`~meow_isaac.envs.contract.StepOut`.

Physics engines: the hooks never touch the engine directly; they read and write the state views
(:meth:`MujocoBatchEnv.view`) and build their tensors with :attr:`MujocoBatchEnv.float_kw` (the engine's float
dtype and device). ``sim="mujoco"`` (default) is :class:`CBatchPhysics` (this module: float64 CPU views of a
``mujoco.batch.Batch``); ``sim="mjwarp"`` is ``meow_isaac.envs.mjwarp.WarpPhysics`` (MuJoCo Warp: float32 views
of warp arrays on the training device, no host sync in ``step``). Same task code, same hooks, either engine.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import mujoco
import numpy as np
import torch
from mujoco import batch as mj_batch

from meow_isaac.envs.contract import StepOut

SIM_ENGINES = ("mujoco", "mjwarp")  #: values of ``MujocoBatchEnv(sim=...)``

STAGE_NONE = int(mujoco.mjtStage.mjSTAGE_NONE)
STAGE_POS = int(mujoco.mjtStage.mjSTAGE_POS)
STAGE_VEL = int(mujoco.mjtStage.mjSTAGE_VEL)
STAGE_ACC = int(mujoco.mjtStage.mjSTAGE_ACC)


class CBatchPhysics:
    """The MuJoCo C engine behind :class:`MujocoBatchEnv` (``sim="mujoco"``): N simulations of one model in a
    ``mujoco.batch.Batch`` (``mujoco >= 4.0``, ``mujoco/batch``), stepped on its thread pool.

    Engine interface (shared with ``meow_isaac.envs.mjwarp.WarpPhysics``): ``device``, ``dtype``,
    ``view(name)``, ``reset(ids)``, ``reset_mask(mask)``, ``forward(ids)``, ``forward_masked(mask)``,
    ``step(nstep, stage)``, ``post_constraint()``,
    ``host_data(sim)``, ``close()``, ``masked_resets``. State views are float64 CPU tensors sharing the batch's
    memory. ``masked_resets`` False: the env resets finished simulations by index after one host read of ``done``
    (cheap on the CPU); an engine with True resets by mask on its device, without that read.
    """

    name = "mujoco"
    masked_resets = False
    device = torch.device("cpu")
    dtype = torch.float64

    def __init__(self, model: mujoco.MjModel, num_envs: int, num_threads: int = 0, persistent: bool = False,
                 device: Union[str, torch.device] = "cpu") -> None:
        self.model = model
        self.num_envs = int(num_envs)
        self.persistent = bool(persistent)
        self.batch = mj_batch.Batch(model, self.num_envs, nthread=int(num_threads), persistent=self.persistent)
        self._cfrc_ext: Optional[torch.Tensor] = None
        self._scratch: Optional[mujoco.MjData] = None

    def view(self, name: str) -> torch.Tensor:
        """``(N, ...)`` float64 CPU tensor sharing memory with the batch field ``name`` (``Batch.bind``)."""
        with warnings.catch_warnings():
            # Derived fields are read-only outputs; torch warns but shares the memory all the same.
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(self.batch.bind(name))

    def reset(self, ids: torch.Tensor) -> None:
        """``mj_resetData`` of simulations ``ids`` (int64)."""
        self.batch.reset(ids.cpu().numpy(), stage=STAGE_NONE)

    def forward(self, ids: Optional[torch.Tensor] = None) -> None:
        """``mj_forward`` of simulations ``ids`` (all if None); the others are untouched."""
        if ids is None:
            self.batch.forward()
        else:
            self.batch.forward(ids.cpu().numpy())

    def reset_mask(self, mask: torch.Tensor) -> None:
        """``mj_resetData`` of the simulations where ``mask`` ``(N,)`` bool is True."""
        self.reset(mask.cpu().nonzero().squeeze(1))

    def forward_masked(self, mask: torch.Tensor) -> None:
        """``mj_forward`` of the simulations where ``mask`` ``(N,)`` bool is True."""
        self.forward(mask.cpu().nonzero().squeeze(1))

    def step(self, nstep: int, stage: int) -> None:
        """``nstep`` ``mj_step`` calls of every simulation, then the forward pass up to ``stage``."""
        self.batch.step(nstep=nstep, stage=stage)

    def post_constraint(self) -> torch.Tensor:
        """``cfrc_ext`` ``(N, nbody, 6)`` float64 as ``mj_rnePostConstraint`` gives it after the step.

        ``mujoco.batch`` never calls it and binds no contacts, so this is a per-simulation fallback on a
        persistent batch: ``get_data(i)`` into a scratch ``MjData``, then ``mj_rnePostConstraint`` (serial,
        about 30 us per simulation). The returned buffer is reused by the next call.

        Raises:
            RuntimeError: the batch is not persistent.
        """
        if not self.persistent:
            raise RuntimeError("post_constraint needs a persistent batch (MujocoBatchEnv(persistent=True))")
        if self._cfrc_ext is None:
            self._cfrc_ext = torch.zeros(self.num_envs, self.model.nbody, 6, dtype=torch.float64)
            self._scratch = mujoco.MjData(self.model)
        out = self._cfrc_ext.numpy()
        for i in range(self.num_envs):
            self.batch.get_data(i, self._scratch)
            mujoco.mj_rnePostConstraint(self.model, self._scratch)
            out[i] = self._scratch.cfrc_ext
        return self._cfrc_ext

    def host_data(self, sim: int) -> Tuple[mujoco.MjModel, mujoco.MjData]:
        """``(MjModel, MjData)`` of simulation ``sim`` on the host (for rendering)."""
        return self.batch.get_model(sim), self.batch.get_data(sim)

    def close(self) -> None:
        self.batch = None  # type: ignore[assignment]


def make_physics(sim: str, model: mujoco.MjModel, num_envs: int, num_threads: int, persistent: bool,
                 device: Union[str, torch.device]):
    """The engine of ``sim`` (:data:`SIM_ENGINES`) for ``num_envs`` copies of ``model``.

    ``mjwarp`` runs on ``device`` (warp's ``cuda:i`` for a CUDA device, its CPU device otherwise).

    Raises:
        ValueError: unknown ``sim``.
        ImportError: ``sim="mjwarp"`` without ``mujoco-warp`` / ``warp-lang`` (``pip install -e ".[mjwarp]"``).
    """
    if sim == "mujoco":
        return CBatchPhysics(model, num_envs, num_threads=num_threads, persistent=persistent)
    if sim == "mjwarp":
        from meow_isaac.envs.mjwarp import WarpPhysics

        return WarpPhysics(model, num_envs, device=device)
    raise ValueError(f"sim={sim!r} is invalid for an embedded MuJoCo task; accepted: {', '.join(SIM_ENGINES)}")


class MujocoBatchEnv:
    """Base class of the embedded MuJoCo tasks; implements the ``VecEnv`` protocol of ``DESIGN.md``.

    Args:
        model: compiled MuJoCo model (copied once per simulation by the engine).
        num_envs: number of parallel simulations ``N`` (>= 1).
        obs_dim: observation size.
        action_dim: action size; actions are ``(N, action_dim)`` in ``[-1, 1]``.
        frame_skip: physics substeps (``mj_step`` calls) per agent step.
        max_episode_length: time limit in agent steps; an episode reaching it is truncated.
        seed: seed of the task's torch generator (reset noise); equal seeds give equal episodes.
        num_threads: threads of the physics thread pool (0 = all CPUs; C engine only).
        device: where returned tensors live. C engine: physics and task math run on the CPU. ``mjwarp``:
            physics, state views and task math run on this device (warp's CPU device for ``cpu``).
        step_stage: ``mjtStage`` computed after each step. ``STAGE_NONE`` (default) leaves derived fields
            one substep behind the state, exactly as after ``mj_step`` (Gymnasium semantics).
        persistent: keep one ``MjData`` per simulation (``mujoco.batch.Batch(persistent=True)``), so that
            ``batch.get_data(i)`` returns simulation ``i``'s whole ``MjData`` (contacts, constraint forces)
            for per-simulation post-processing; costs about 0.2 MB of memory per simulation (C engine only;
            MuJoCo Warp keeps every world's whole data anyway).
        sim: physics engine, one of :data:`SIM_ENGINES` (``mujoco``: the C engine; ``mjwarp``: MuJoCo Warp).

    Raises:
        ValueError: ``num_envs < 1``, ``frame_skip < 1``, ``max_episode_length < 1`` or an unknown ``sim``.
        ImportError: ``sim="mjwarp"`` without its packages.
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
        sim: str = "mujoco",
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
        self.sim = str(sim)
        self.physics = make_physics(self.sim, model, self.num_envs, num_threads, persistent, self.device)
        self.batch = getattr(self.physics, "batch", None)  # the mujoco.batch.Batch of the C engine
        self.sim_device: torch.device = self.physics.device  #: where state views and task tensors live
        self.dtype: torch.dtype = self.physics.dtype  #: float dtype of the state views and task math
        self.float_kw = dict(dtype=self.dtype, device=self.sim_device)  #: ``torch.zeros(..., **float_kw)``
        self.generator = torch.Generator(device=self.sim_device).manual_seed(int(seed))
        # the sync-free auto-reset (device engines) and the NaN guard's reset_envs draw noise for all N envs: their
        # own stream, so that resets by index (reset(), _reset_ids) draw what the C engine draws from the same
        # seed. Both generators are checkpointed (Trainer.state_dict: env_rng, env_rng_masked).
        self.masked_generator = torch.Generator(device=self.sim_device).manual_seed(int(seed) + 7919)
        self._views: Dict[str, torch.Tensor] = {}
        self.qpos = self.view("qpos")
        self.qvel = self.view("qvel")
        self.ctrl = self.view("ctrl") if model.nu > 0 else torch.zeros(self.num_envs, 0, **self.float_kw)
        n = self.num_envs
        self.progress = torch.zeros(n, dtype=torch.long, device=self.sim_device)
        self.episode_return_acc = torch.zeros(n, dtype=torch.float64, device=self.sim_device)
        self._all_ids = torch.arange(n, device=self.sim_device)
        if self.physics.masked_resets:
            # Sync-free partial reset for the NaN guard (meow_isaac/envs/guard.py, strategy 1).
            self.reset_envs = self._reset_envs

    # ------------------------------------------------------------------ state views
    def view(self, name: str) -> torch.Tensor:
        """Live ``(N, ...)`` tensor over the engine's data field ``name`` (shares memory, cached): float64 CPU
        (C engine) or ``dtype`` on ``sim_device`` (MuJoCo Warp).

        State fields (qpos, qvel, ctrl, mocap_pos, xfrc_applied, ...) are writable; derived fields (xpos,
        cfrc_ext, ...) are read-only outputs refreshed after every step / forward pass.
        """
        if name not in self._views:
            self._views[name] = self.physics.view(name)
        return self._views[name]

    @property
    def dt(self) -> float:
        """Control period in seconds: ``model.opt.timestep * frame_skip``."""
        return float(self.model.opt.timestep) * self.frame_skip

    # ------------------------------------------------------------------ task hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        """Write the initial ``qpos``/``qvel`` (and task state) of envs ``ids`` (int64, on ``sim_device``).

        Called after those simulations were reset to the model defaults; ``self.qpos[ids]`` holds ``qpos0``.
        On MuJoCo Warp's sync-free auto-reset ``ids`` is every env and the rows of envs that did not finish
        are restored afterwards (:meth:`_reset_masked`), so a hook must only write rows ``ids`` of its state.
        """
        raise NotImplementedError

    def _apply_action(self, action: torch.Tensor) -> None:
        """Write controls for ``action`` ``(N, action_dim)`` float32 in ``[-1, 1]`` (on ``sim_device``)."""
        self.ctrl.copy_(action.to(self.dtype))

    def _before_physics(self) -> None:
        """Record anything the reward needs from before the physics step (e.g. the x position)."""

    def _observe(self) -> torch.Tensor:
        """Return the ``(N, obs_dim)`` observation (any float dtype, ``sim_device``) of the current state."""
        raise NotImplementedError

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Return ``(reward (N,) float, terminated (N,) bool)`` of the step just simulated."""
        raise NotImplementedError

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> torch.Tensor:
        """Reset every environment; returns the ``(N, obs_dim)`` float32 observation on ``device``."""
        self._reset_ids(self._all_ids)
        return self._observe().to(self.device, torch.float32)

    def _reset_ids(self, ids: torch.Tensor) -> None:
        """Reset envs ``ids`` (int64): model defaults, the task's ``_reset_state``, a forward pass of them."""
        ids = ids.to(self.sim_device)
        self.physics.reset(ids)
        self._reset_state(ids)
        self.physics.forward(ids)
        self.progress.index_fill_(0, ids, 0)
        self.episode_return_acc.index_fill_(0, ids, 0.0)

    def _task_tensors(self) -> Dict[str, torch.Tensor]:
        """The task's per-env state: tensor attributes with ``N`` rows that are not engine views."""
        views = {id(v) for v in self._views.values()}
        skip = {"progress", "episode_return_acc", "_all_ids"}
        return {k: v for k, v in vars(self).items()
                if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == self.num_envs
                and id(v) not in views and k not in skip}

    @contextlib.contextmanager
    def masked_stream(self) -> Iterator[None]:
        """Inside, ``self.generator`` is ``masked_generator``: draws made for all N envs and kept by a mask (the
        device engines' sync-free resets and goal re-sampling) come from their own stream, so that draws by index
        stay those of the C engine for the same seed."""
        self.generator, self.masked_generator = self.masked_generator, self.generator
        try:
            yield
        finally:
            self.generator, self.masked_generator = self.masked_generator, self.generator

    def _reset_masked(self, mask: torch.Tensor) -> None:
        """Reset the envs where ``mask`` ``(N,)`` bool is True without reading ``mask`` on the host.

        Every env goes through reset and ``_reset_state`` (noise is drawn for all ``N``, from a second seeded
        generator so that resets by index keep the C engine's random stream), then the rows of
        the other envs are restored: engine views (state and derived fields) and the task's per-env tensors
        (:meth:`_task_tensors`). Used by the MuJoCo Warp engine, where ``done.nonzero()`` would be a host sync.
        """
        keep_views = {name: v.clone() for name, v in self._views.items()}
        keep_task = {k: v.clone() for k, v in self._task_tensors().items()}
        self.physics.reset_mask(mask)
        with self.masked_stream():
            self._reset_state(self._all_ids)
        self.physics.forward_masked(mask)  # skipped on the device when no env is done
        for name, v in self._views.items():
            v.copy_(torch.where(mask.view((-1,) + (1,) * (v.dim() - 1)), v, keep_views[name]))
        for k, old in keep_task.items():
            new = getattr(self, k)
            if isinstance(new, torch.Tensor) and new.shape == old.shape:
                setattr(self, k, torch.where(mask.view((-1,) + (1,) * (old.dim() - 1)), new, old))
        self.progress.masked_fill_(mask, 0)
        self.episode_return_acc.masked_fill_(mask, 0.0)

    def _reset_envs(self, mask: torch.Tensor) -> torch.Tensor:
        """Optional ``VecEnv.reset_envs`` (NaN guard): reset envs ``mask`` ``(N,)`` bool sync-free; returns the
        ``(N, obs_dim)`` float32 observation on ``device`` (post-reset in the masked rows)."""
        mask = mask.to(self.sim_device, torch.bool)
        obs = self._observe().to(torch.float32)
        self._reset_masked(mask)
        obs = torch.where(mask[:, None], self._observe().to(torch.float32), obs)
        return obs.to(self.device)

    def step(self, action: torch.Tensor) -> StepOut:
        """Advance all envs one agent step with ``action`` ``(N, action_dim)``; auto-reset finished ones.

        Raises:
            ValueError: ``action`` has the wrong shape.
            RuntimeError: a simulation became unstable (MuJoCo reported an error).
        """
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"action shape {tuple(action.shape)} != expected {(self.num_envs, self.action_dim)}")
        action = action.detach().to(self.sim_device, torch.float32).clamp(-1.0, 1.0)
        self._before_physics()
        self._apply_action(action)
        self.physics.step(self.frame_skip, self.step_stage)
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
        if self.physics.masked_resets:  # device engine: no host read of ``done``
            final_obs = obs.clone()
            self._reset_masked(done)
            obs = torch.where(done[:, None], self._observe().to(torch.float32), obs)
        elif bool(done.any()):
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
        """Release the engine (its threads and memory)."""
        self._views.clear()
        if self.physics is not None:
            self.physics.close()
        self.physics = None  # type: ignore[assignment]
        self.batch = None  # type: ignore[assignment]

    # ------------------------------------------------------------------ helpers for tasks
    @staticmethod
    def fill_at(tensor: torch.Tensor, index: Any, value: float = 0.0) -> None:
        """``tensor[index] = value`` for a tensor ``index`` (ids, or a tuple of ids and columns) without a host copy.

        The plain ``tensor[ids] = 0.0`` makes torch wrap the Python number in a CPU tensor that ``index_put_``
        copies to a CUDA ``tensor`` with a blocking host-to-device copy: a host sync in every reset hook, so in
        every step of MuJoCo Warp's auto-reset. Here the value is made on ``tensor``'s device (a fill kernel).
        """
        tensor[index] = torch.full((), value, dtype=tensor.dtype, device=tensor.device)

    def uniform(self, low: float, high: float, shape: Tuple[int, ...]) -> torch.Tensor:
        """``U(low, high)`` noise of ``shape`` (``dtype`` on ``sim_device``) from the task's seeded generator.

        Drawn in float64 and then cast, so the C engine and MuJoCo Warp on the CPU see the same numbers.
        """
        u = torch.rand(shape, generator=self.generator, dtype=torch.float64, device=self.sim_device)
        return (low + (high - low) * u).to(self.dtype)

    def normal(self, std: float, shape: Tuple[int, ...]) -> torch.Tensor:
        """``N(0, std^2)`` noise of ``shape`` (``dtype`` on ``sim_device``) from the task's seeded generator."""
        z = torch.randn(shape, generator=self.generator, dtype=torch.float64, device=self.sim_device)
        return (std * z).to(self.dtype)

    def render_frame(self, sim: int = 0, width: int = 320, height: int = 240,
                     camera: Optional[Union[int, str]] = -1) -> np.ndarray:
        """Render simulation ``sim`` offscreen; returns ``(height, width, 3)`` uint8 RGB."""
        model, data = self.physics.host_data(sim)
        mujoco.mj_forward(model, data)
        with mujoco.Renderer(model, height=height, width=width) as renderer:
            renderer.update_scene(data, camera=camera)
            return renderer.render().copy()
