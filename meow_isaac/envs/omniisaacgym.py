"""Omniverse Isaac Gym (OmniIsaacGymEnvs on Isaac Sim 2023.1.x) behind the ``StepOut`` contract.

API followed: ``shared/reference/isaac_api.md`` section 2 (``VecEnvBase``/``VecEnvRLGames``, ``RLTask``,
``initialize_task``, ``scripts/rlgames_train.py``) and section 6. Quirks handled:
    * ``VecEnvRLGames(...)`` starts the ``SimulationApp``; it is built before anything imports ``omni.isaac.*``
      (``omniisaacgymenvs.utils.task_util`` and the tasks do), exactly in ``rlgames_train.py``'s order.
    * ``VecEnvBase.__init__`` registers a SIGINT handler, which Python forbids off the main thread: off the
      main thread the env is built with ``enable_signal=False`` when the installed ``VecEnvBase`` has MEow's
      patch (``skrl/thirdparty/vec_env_base.py``), else with ``signal.signal`` made a no-op for the call.
    * Obs dict ``{"obs", "states"}``: ``obs`` is used. Next-step auto-reset (every task resets flagged envs at
      the start of the next ``pre_physics_step``, then applies the action to the fresh state): ``final_obs =
      obs`` at a done row, ``valid = ~prev_done``, and the reset row's reward opens the new episode.
    * No ``time_outs`` in ``extras``: truncation is rebuilt as ``resets & (task.progress_buf >= max_len - 1)``
      (done envs keep their terminal ``progress_buf`` until the next step), ``max_len`` =
      ``task._max_episode_length`` (locomotion, Franka, Ingenuity) or ``task.max_episode_length`` (Anymal,
      in-hand manipulation). A death on the last step counts as a time-out, as in IsaacGymEnvs.
    * ``rew_buf`` / ``reset_buf`` are returned by reference: copied here. Actions are clamped to ``[-1, 1]``.
    * :meth:`OmniIsaacGymEnv.reset` is ``VecEnvRLGames.reset()`` unrolled (``task.reset()`` + one zero-action
      step) so that the first step's reward and done flags are not lost.
"""

from __future__ import annotations

import inspect
import signal
import threading
from typing import Any, Callable, Mapping, Optional, Union

import torch

from meow_isaac.envs.contract import StepOut
from meow_isaac.envs.isaac_common import (EpisodeAccumulator, FrameworkError, framework_config, import_framework,
                                          next_step_out, resolve_dotted, torch_device_parts)


def episode_limit(task: Any) -> int:
    """The task's time limit in agent steps: ``_max_episode_length`` or ``max_episode_length``.

    Raises:
        FrameworkError: the task has neither attribute.
    """
    for name in ("_max_episode_length", "max_episode_length"):
        value = getattr(task, name, None)
        if value:
            return int(value)
    raise FrameworkError(f"OIGE task {type(task).__name__} has no _max_episode_length / max_episode_length: set "
                         "max_episode_length in the omniisaacgym section")


class OmniIsaacGymEnv:
    """``VecEnv`` over a ``VecEnvRLGames`` whose task is set (``env.task`` / ``env._task``).

    Args:
        env: the ``VecEnvRLGames`` (``step(actions) -> (obs_dict, rew, resets, extras)``).
        device: where tensors are returned (default: the task's ``rl_device``; no copy when equal).
        task: the ``RLTask`` (default ``env.task``); needs ``progress_buf``, ``reset()`` and the episode limit.
        max_episode_length: override of the task's episode limit (agent steps).

    Tensors: obs ``(N, num_observations)`` float32, actions ``(N, num_actions)`` in ``[-1, 1]``.
    """

    autoreset = "next_step"

    def __init__(self, env: Any, device: Union[str, torch.device, None] = None, task: Any = None,
                 max_episode_length: Optional[int] = None) -> None:
        self.env = env
        self.task = task if task is not None else getattr(env, "task", None) or env._task
        self.num_envs = int(env.num_envs)
        self.obs_dim = int(env.observation_space.shape[0])
        self.action_dim = int(env.action_space.shape[0])
        self.device = torch.device(device if device is not None else self.task.rl_device)
        self.max_episode_length = int(max_episode_length or episode_limit(self.task))
        self._prev_done = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._episodes = EpisodeAccumulator(self.num_envs, self.device)

    def reset(self) -> torch.Tensor:
        """Reset every env (``task.reset()`` + one zero-action step); returns the ``(N, obs_dim)`` obs."""
        self.task.reset()
        self._prev_done.fill_(True)
        self._episodes.reset()
        zeros = torch.zeros(self.num_envs, self.action_dim, device=self.device)
        return self._step(zeros).obs

    def step(self, action: torch.Tensor) -> StepOut:
        """Step with ``action`` ``(N, action_dim)`` (any device; clamped to ``[-1, 1]``)."""
        return self._step(action.detach().to(self.device).clamp(-1.0, 1.0))

    def _step(self, action: torch.Tensor) -> StepOut:
        obs_dict, rew, resets, extras = self.env.step(action)
        obs = obs_dict["obs"].to(self.device, torch.float32)       # fresh tensor (clamp in _process_data)
        reward = rew.to(self.device, torch.float32).clone()
        done = resets.to(self.device).bool()
        time_outs = extras.get("time_outs") if isinstance(extras, Mapping) else None
        if time_outs is not None:
            truncated = time_outs.to(self.device).bool().clone()
        else:
            progress = self.task.progress_buf.to(self.device)
            truncated = progress >= self.max_episode_length - 1
        out = next_step_out(obs, reward, done, truncated, self._prev_done, True, self._episodes)
        self._prev_done = done
        return out

    def close(self) -> None:
        """Close the env (and with it the ``SimulationApp``)."""
        self.env.close()


def build_vec_env(cls: Callable[..., Any], **kwargs: Any) -> Any:
    """``cls(**kwargs)`` (a ``VecEnvBase`` subclass), with the SIGINT handler off when not on the main thread."""
    if threading.current_thread() is threading.main_thread():
        return cls(**kwargs)
    if "enable_signal" in inspect.signature(cls.__init__).parameters:
        return cls(enable_signal=False, **kwargs)
    original = signal.signal
    signal.signal = lambda *args, **kw: None  # type: ignore[assignment]
    try:
        return cls(**kwargs)
    finally:
        signal.signal = original  # type: ignore[assignment]


def make(section: Mapping[str, Any], num_envs: int, seed: int, device: torch.device,
         headless: bool = True) -> OmniIsaacGymEnv:
    """Build an OIGE task from the ``omniisaacgym:`` section of ``cfg/task/<Task>.yaml``.

    Section keys: ``task`` (``import_tasks()`` key = ``omniisaacgymenvs/cfg/task/<task>.yaml``), ``overrides``
    (merged into that task config), ``cfg_file`` (a task yaml of your own instead), ``task_class``
    (``"pkg.module:Class"``: an ``RLTask`` subclass of your own, built like ``initialize_task`` does),
    ``max_episode_length`` (override), ``config`` (extra top-level OIGE config keys, e.g. ``warp: True``).

    Raises:
        FrameworkError: omniisaacgymenvs not importable (not Isaac Sim's python), bad section, unknown task.
    """
    oige = import_framework("omniisaacgymenvs")
    vec_env_cls = import_framework("omniisaacgymenvs.envs.vec_env_rlgames").VecEnvRLGames
    task = section.get("task")
    if not task and not section.get("task_class"):
        raise FrameworkError("the omniisaacgym section needs `task:` (an OIGE task key) or `task_class:`")
    _, device_id, pipeline = torch_device_parts(torch.device(device))
    # The SimulationApp starts here, before any omni.isaac.* import (rlgames_train.py order).
    env = build_vec_env(vec_env_cls, headless=headless, sim_device=device_id, enable_livestream=False,
                        enable_viewport=False)
    root = dict({"num_envs": num_envs, "seed": seed, "headless": headless, "rl_device": str(device),
                 "sim_device": "gpu" if pipeline == "gpu" else "cpu", "device_id": device_id, "pipeline": pipeline,
                 "test": False, "warp": False}, **dict(section.get("config") or {}))
    cfg = framework_config(oige, str(task or "custom"), section.get("cfg_file"), root, section.get("overrides"))
    cfg.task.env.numEnvs = num_envs
    from omegaconf import OmegaConf

    cfg_dict = OmegaConf.to_container(cfg, resolve=True)
    try:
        if section.get("task_class"):
            sim_config_cls = import_framework("omniisaacgymenvs.utils.config_utils.sim_config").SimConfig
            sim_config = sim_config_cls(cfg_dict)
            task_obj = resolve_dotted(section["task_class"])(name=cfg_dict["task_name"], sim_config=sim_config,
                                                             env=env)
            params = sim_config.get_physics_params()
            env.set_task(task=task_obj, sim_params=params, backend="torch", init_sim=True,
                         rendering_dt=params["rendering_dt"])
        else:
            initialize_task = import_framework("omniisaacgymenvs.utils.task_util").initialize_task
            task_obj = initialize_task(cfg_dict, env)
    except KeyError as err:
        env.close()
        raise FrameworkError(f"OmniIsaacGymEnvs has no task {task!r} (import_tasks() key): {err}") from err
    except BaseException:
        env.close()
        raise
    return OmniIsaacGymEnv(env, device, task=task_obj, max_episode_length=section.get("max_episode_length"))
