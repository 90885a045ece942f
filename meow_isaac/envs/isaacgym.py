"""IsaacGymEnvs (Isaac Gym Preview 4) behind the :class:`~meow_isaac.envs.contract.StepOut` contract.

API followed: ``shared/reference/isaac_api.md`` section 1 (``VecTask``, ``isaacgymenvs.make``) and section 6.
Quirks handled:
    * ``import isaacgym`` must precede ``import torch``: ``meow_isaac/runner.py`` imports it before torch
      when ``sim=isaacgym`` (or ``sim=auto`` picks it); otherwise :func:`make` raises one clear line.
    * The first ``reset()`` returns zeros (it computes no observation): :meth:`IsaacGymEnv.reset` does the
      documented warm-up instead, ``reset_buf.fill_(1)`` + one ``step(zero_actions())``, and returns that
      step's (post-reset) observation.
    * Next-step auto-reset: the obs returned with ``reset_buf=1`` is the true terminal obs, the next row is
      garbage -> ``final_obs = obs`` and ``valid = ~prev_done`` (see
      :func:`~meow_isaac.envs.isaac_common.next_step_out` for the exact mapping).
    * Truncation = ``extras["time_outs"]``; ``terminated = reset_buf & ~time_outs`` (a death on the last
      step is reported as a time-out by the framework; nothing can separate the two).
    * ``rew_buf`` is reused in place and ``reset_buf`` is zeroed in place: both are copied before returning.
    * Actions are clamped to ``[-1, 1]`` here (``clipActions`` defaults to inf in ``VecTask``).
    * ``isaacgymenvs.make(cfg=None)`` inside a hydra app replaces the task by the app's hydra task choice and
      clears the global hydra: :func:`make` always passes a composed ``cfg``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Mapping, Optional, Union

import torch

from meow_isaac.envs.contract import StepOut
from meow_isaac.envs.isaac_common import (EpisodeAccumulator, FrameworkError, framework_config, import_framework,
                                          next_step_out, resolve_dotted, torch_device_parts)


class IsaacGymEnv:
    """``VecEnv`` over an IsaacGymEnvs ``VecTask`` built with ``rl_device == device``.

    Args:
        env: the ``VecTask`` (``num_envs``, ``num_obs``, ``num_actions``, ``max_episode_length``,
            ``reset_buf``, ``zero_actions()``, ``step(actions) -> (obs_dict, rew, reset, extras)``).
        device: where tensors are returned (default: the task's ``rl_device``; no copy when equal).
        reset_in_pre_physics: the task resets flagged envs at the start of ``pre_physics_step`` (AllegroHand),
            so the row after a done starts from the reset state and its reward opens the new episode.
        max_episode_length: override of ``env.max_episode_length`` (agent steps).

    Tensors: obs ``(N, num_obs)`` float32, actions ``(N, num_actions)`` in ``[-1, 1]``.
    """

    autoreset = "next_step"

    def __init__(self, env: Any, device: Union[str, torch.device, None] = None, reset_in_pre_physics: bool = False,
                 max_episode_length: Optional[int] = None) -> None:
        self.env = env
        self.num_envs = int(env.num_envs)
        self.obs_dim = int(env.num_obs)
        self.action_dim = int(env.num_actions)
        self.device = torch.device(device if device is not None else env.rl_device)
        self.max_episode_length = int(max_episode_length or env.max_episode_length)
        self.reset_in_pre_physics = bool(reset_in_pre_physics)
        self._prev_done = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._episodes = EpisodeAccumulator(self.num_envs, self.device)

    def reset(self) -> torch.Tensor:
        """Reset every env through the documented warm-up step; returns the ``(N, obs_dim)`` post-reset obs."""
        self.env.reset_buf.fill_(1)
        self._prev_done.fill_(True)
        self._episodes.reset()
        return self._step(self.env.zero_actions()).obs

    def step(self, action: torch.Tensor) -> StepOut:
        """Step with ``action`` ``(N, action_dim)`` (any device; clamped to ``[-1, 1]``)."""
        return self._step(action.detach().to(self.device).clamp(-1.0, 1.0))

    def _step(self, action: torch.Tensor) -> StepOut:
        obs_dict, rew, reset, extras = self.env.step(action)
        obs = obs_dict["obs"].to(self.device, torch.float32)      # fresh tensor (torch.clamp in VecTask.step)
        reward = rew.to(self.device, torch.float32).clone()        # rew_buf is written in place
        done = reset.to(self.device).bool()                        # .bool() of the long reset_buf copies
        time_outs = extras.get("time_outs") if isinstance(extras, Mapping) else None
        truncated = (time_outs.to(self.device).bool().clone() if time_outs is not None
                     else torch.zeros_like(done))
        out = next_step_out(obs, reward, done, truncated, self._prev_done, self.reset_in_pre_physics,
                            self._episodes)
        self._prev_done = done
        return out

    def close(self) -> None:
        """Close the task when it offers ``close()`` (``VecTask`` itself keeps its sim until exit)."""
        fn = getattr(self.env, "close", None)
        if callable(fn):
            fn()


def make(section: Mapping[str, Any], num_envs: int, seed: int, device: torch.device,
         headless: bool = True) -> IsaacGymEnv:
    """Build an IsaacGymEnvs task from the ``isaacgym:`` section of ``cfg/task/<Task>.yaml``.

    Section keys: ``task`` (``isaacgym_task_map`` key = ``isaacgymenvs/cfg/task/<task>.yaml``), ``overrides``
    (merged into that task config), ``cfg_file`` (a task yaml of your own instead), ``task_class``
    (``"pkg.module:Class"``: a ``VecTask`` subclass of your own, called like ``isaacgym_task_map`` entries),
    ``sim_device`` (default: the training device), ``graphics_device_id`` (0), ``reset_in_pre_physics``.

    Raises:
        FrameworkError: isaacgym not importable (e.g. torch imported first), bad section, unknown task.
    """
    if "isaacgym" not in sys.modules:
        try:
            importlib.import_module("isaacgym")
        except ImportError as err:
            raise FrameworkError(
                f"sim=isaacgym: import isaacgym failed ({err}); Isaac Gym must be imported before torch: start "
                "through `python runner.py ... sim=isaacgym` or `meow-isaac`, which import it first, or put "
                "`import isaacgym` at the top of your script") from err
    igenvs = import_framework("isaacgymenvs")
    task = section.get("task")
    if not task and not section.get("task_class"):
        raise FrameworkError("the isaacgym section needs `task:` (an IsaacGymEnvs task key) or `task_class:`")
    sim_device, _, pipeline = torch_device_parts(torch.device(section.get("sim_device") or device))
    root = {"num_envs": num_envs, "seed": seed, "headless": headless, "sim_device": sim_device,
            "rl_device": str(device), "pipeline": pipeline}
    cfg = framework_config(igenvs, str(task or "custom"), section.get("cfg_file"), root, section.get("overrides"))
    cfg.task.env.numEnvs = num_envs
    gfx = int(section.get("graphics_device_id", 0))
    if section.get("task_class"):
        from omegaconf import OmegaConf

        cls = resolve_dotted(section["task_class"])
        env = cls(cfg=OmegaConf.to_container(cfg.task, resolve=True), rl_device=str(device), sim_device=sim_device,
                  graphics_device_id=gfx, headless=headless, virtual_screen_capture=False, force_render=not headless)
    else:
        try:
            env = igenvs.make(seed=seed, task=str(task), num_envs=num_envs, sim_device=sim_device,
                              rl_device=str(device), graphics_device_id=gfx, headless=headless,
                              force_render=not headless, cfg=cfg)
        except KeyError as err:
            raise FrameworkError(f"IsaacGymEnvs has no task {task!r} (isaacgym_task_map key): {err}") from err
    return IsaacGymEnv(env, device, reset_in_pre_physics=bool(section.get("reset_in_pre_physics", False)))
