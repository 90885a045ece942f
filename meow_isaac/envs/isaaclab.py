"""Isaac Lab 2.x / 3.x (``DirectRLEnv`` / ``ManagerBasedRLEnv``) behind the ``StepOut`` contract.

API followed: ``shared/reference/isaac_api.md`` section 3 (env API, gym ids, launching) and section 6.
Quirks handled:
    * The simulation runtime starts before the task package is imported: 2.x ``AppLauncher(headless=,
      device=).app`` then ``import isaaclab_tasks``; 3.x ``import isaaclab_tasks``, ``parse_env_cfg`` and
      ``with isaaclab.app.launch_simulation(env_cfg, launcher_args)`` (entered for the adapter's lifetime).
      The 2.x PyPI wheel's ``isaaclab/__init__.py`` replaces ``isaaclab.app`` by an empty module and registers
      ``sys.modules["isaaclab.app.AppLauncher"]``: only ``from isaaclab.app import AppLauncher`` reaches it.
    * 3.x physics backend: ``physics`` / ``presets`` of the section become ``parse_env_cfg(..., overrides=
      ["physics=NAME", "presets=A,B"])`` (``isaaclab_tasks/utils/hydra.py`` ``register_task``); empty = the
      task's own default (``newton_mjwarp`` for the core tasks, kit-less).
    * Gym ids differ between 2.x (``Isaac-Ant-Direct-v0``) and 3.x (``Isaac-Ant-Direct``): the task yaml
      lists both, and the first one registered in the installed version is used (logged).
    * ``step`` returns ``(obs_dict, reward, terminated, truncated, extras)``; obs = ``obs_dict["policy"]``;
      ``terminated`` and ``truncated`` may both be set: ``truncated &= ~terminated``.
    * Same-step auto-reset: the obs of a done row is already post-reset, every row is valid. The true final
      obs is ``extras["final_obs"]["policy"]`` when the env cfg has ``compute_final_obs`` (3.x; set to True
      here). 3.x writes it only on steps where some env resets, into the env's one persistent ``extras`` dict,
      and never clears it (``DirectRLEnv._reset_envs_from_buffer``, ``ManagerBasedRLEnv.step``): a step uses
      it only when it is a new object since the previous step (an identity check, no host sync), else it is
      stale. Without it (2.x) the final obs is lost; ``final_obs_fallback`` (logged once) decides:
      ``prev_obs`` (default): bootstrap truncations from ``s_t``, the obs the action was taken in, as rl_games
      2.0 does; ``terminal``: treat truncations as terminations (no bootstrap).
    * Reward / done buffers are reused in place by the env: everything returned is copied. The action space
      is ``Box(-inf, inf)``: actions are clamped to ``[-1, 1]`` here.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from meow_isaac.envs.contract import StepOut
from meow_isaac.envs.isaac_common import EpisodeAccumulator, FrameworkError, import_framework, log_once

FINAL_OBS_FALLBACKS = ("prev_obs", "terminal")


def _policy_obs(obs: Any) -> torch.Tensor:
    return obs["policy"] if isinstance(obs, Mapping) else obs


class IsaacLabEnv:
    """``VecEnv`` over a gymnasium-made Isaac Lab env.

    Args:
        env: the env from ``gym.make(id, cfg=env_cfg)`` (``env.unwrapped``: ``num_envs``, ``device``,
            ``max_episode_length``, ``single_observation_space["policy"]``, ``single_action_space``).
        device: where tensors are returned (default: the env's device; no copy when equal).
        final_obs_fallback: ``prev_obs`` or ``terminal``, used only when ``extras`` has no ``final_obs``.
        on_close: called after ``env.close()`` (closes the simulation app).

    Tensors: obs ``(N, obs_dim)`` float32, actions ``(N, action_dim)`` in ``[-1, 1]``.

    Raises:
        FrameworkError: unknown ``final_obs_fallback``.
    """

    autoreset = "same_step"

    def __init__(self, env: Any, device: Union[str, torch.device, None] = None, final_obs_fallback: str = "prev_obs",
                 on_close: Optional[Callable[[], Any]] = None) -> None:
        if final_obs_fallback not in FINAL_OBS_FALLBACKS:
            raise FrameworkError(f"isaaclab.final_obs_fallback={final_obs_fallback!r}; accepted: "
                                 f"{', '.join(FINAL_OBS_FALLBACKS)}")
        raw = env.unwrapped
        self.env = env
        self.num_envs = int(raw.num_envs)
        self.obs_dim = int(_policy_obs(raw.single_observation_space).shape[-1])
        self.action_dim = int(raw.single_action_space.shape[-1])
        self.sim_device = torch.device(raw.device)
        self.device = torch.device(device) if device is not None else self.sim_device
        self.max_episode_length = int(raw.max_episode_length)
        self.final_obs_fallback = final_obs_fallback
        self._on_close = on_close
        self._last_obs = torch.zeros(self.num_envs, self.obs_dim, device=self.device)
        self._episodes = EpisodeAccumulator(self.num_envs, self.device)
        self._all = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        # 3.x with compute_final_obs: extras["final_obs"] on every step with a reset (else the 2.x fallback)
        self.writes_final_obs = bool(getattr(getattr(raw, "cfg", None), "compute_final_obs", False))
        self._seen_final: Any = None  # the extras["final_obs"] object of an earlier step (stale if seen again)
        if not self.writes_final_obs:
            what = ("time-outs bootstrap from the last obs before the time-out" if final_obs_fallback == "prev_obs"
                    else "time-outs are treated as terminations")
            log_once("isaaclab-final-obs", "isaaclab: the env cfg has no compute_final_obs (Isaac Lab 2.x), so "
                     f"extras['final_obs'] does not exist: {what} (task.isaaclab.final_obs_fallback="
                     f"{final_obs_fallback})")

    def _obs(self, obs: Any) -> torch.Tensor:
        return _policy_obs(obs).to(self.device, torch.float32).clone()

    def reset(self) -> torch.Tensor:
        """Reset every env; returns the ``(N, obs_dim)`` observation."""
        obs_dict, extras = self.env.reset()
        self._seen_final = extras.get("final_obs") if isinstance(extras, Mapping) else None
        self._last_obs = self._obs(obs_dict)
        self._episodes.reset()
        return self._last_obs

    def _fresh_final_obs(self, extras: Any) -> Any:
        """``extras["final_obs"]`` if this step wrote it (a new object), else None (absent, or left over)."""
        final = extras.get("final_obs") if isinstance(extras, Mapping) else None
        if final is None or final is self._seen_final:
            return None
        self._seen_final = final
        return final

    def step(self, action: torch.Tensor) -> StepOut:
        """Step with ``action`` ``(N, action_dim)`` (any device; clamped to ``[-1, 1]``)."""
        obs_dict, rew, terminated, truncated, extras = self.env.step(
            action.detach().to(self.sim_device).clamp(-1.0, 1.0))
        obs = self._obs(obs_dict)
        reward = rew.to(self.device, torch.float32).reshape(-1).clone()
        terminated = terminated.to(self.device).reshape(-1).bool().clone()
        truncated = truncated.to(self.device).reshape(-1).bool().clone() & ~terminated
        done = terminated | truncated
        final = self._fresh_final_obs(extras)
        if final is not None:
            final_obs = torch.where(done[:, None], self._obs(final), obs)
        elif self.final_obs_fallback == "prev_obs":  # 2.x, or a 3.x step without a reset (no done row: a no-op)
            final_obs = torch.where(truncated[:, None], self._last_obs, obs)
        else:
            terminated, truncated, final_obs = done, torch.zeros_like(done), obs
        ep_ret, ep_len = self._episodes.update(reward, self._all, done)
        self._last_obs = obs
        return StepOut(obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=final_obs,
                       valid=self._all.clone(), episode_return=ep_ret, episode_length=ep_len)

    def close(self) -> None:
        """Close the env, then the simulation app."""
        try:
            self.env.close()
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None


def pick_gym_id(spec: Any, registry: Mapping[str, Any]) -> str:
    """The first id of ``spec`` (a string, a list, or a mapping such as ``{v3: ..., v2: ...}``) in ``registry``.

    Raises:
        FrameworkError: none of them is registered.
    """
    ids: Sequence[str] = ([spec] if isinstance(spec, str) else list(spec.values()) if isinstance(spec, Mapping)
                          else list(spec or []))
    for gym_id in ids:
        if gym_id in registry:
            return str(gym_id)
    raise FrameworkError(f"none of the Isaac Lab gym ids {list(ids)} is registered in this Isaac Lab install "
                         "(task.isaaclab.gym_id)")


def _set_path(obj: Any, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        obj = getattr(obj, name)
    if not hasattr(obj, last):
        raise FrameworkError(f"task.isaaclab.env_cfg: the env cfg has no attribute {dotted!r}")
    setattr(obj, last, value)


def preset_overrides(section: Mapping[str, Any]) -> List[str]:
    """The ``parse_env_cfg`` overrides (Isaac Lab 3.x presets) of the section's ``physics`` and ``presets``.

    ``physics: NAME`` -> ``"physics=NAME"`` (a typed selector: it must name a physics preset of the task, e.g.
    ``physx``, ``isaacsim_physx``, ``ovphysx``, ``newton_mjwarp``); ``presets: [A, B]`` -> ``"presets=A,B"``
    (global presets). Empty (the default) -> ``[]``: the task's own default backend.

    Raises:
        FrameworkError: ``physics`` is not a string, or ``presets`` not a list of strings.
    """
    physics = section.get("physics") or ""
    presets = section.get("presets") or []
    if not isinstance(physics, str) or any(c in physics for c in "=, "):
        raise FrameworkError(f"task.isaaclab.physics={physics!r}; accepted: '' (the task's default) or one preset "
                             "name, e.g. newton_mjwarp, physx, isaacsim_physx, ovphysx")
    if isinstance(presets, str) or not all(isinstance(p, str) and p and "=" not in p for p in presets):
        raise FrameworkError(f"task.isaaclab.presets={presets!r}; accepted: a list of preset names, e.g. [inference]")
    return ([f"physics={physics}"] if physics else []) + ([f"presets={','.join(presets)}"] if presets else [])


def _env_cfg(section: Mapping[str, Any], num_envs: int, seed: int, device: torch.device) -> Tuple[Any, str]:
    for module in ["isaaclab_tasks"] + list(section.get("import_modules") or []):
        import_framework(module)  # registers the gym ids
    gym = importlib.import_module("gymnasium")
    gym_id = pick_gym_id(section.get("gym_id"), gym.registry)
    try:
        parse_env_cfg = import_framework("isaaclab_tasks.utils.parse_cfg").parse_env_cfg
    except FrameworkError:
        parse_env_cfg = import_framework("isaaclab_tasks.utils").parse_env_cfg
    overrides = preset_overrides(section)
    if overrides:
        if "overrides" not in inspect.signature(parse_env_cfg).parameters:
            raise FrameworkError(f"task.isaaclab: {' '.join(overrides)} needs Isaac Lab 3.x (its parse_env_cfg "
                                 "takes preset overrides); this Isaac Lab has none: leave physics/presets empty")
        try:
            env_cfg = parse_env_cfg(gym_id, device=str(device), num_envs=num_envs, overrides=overrides)
        except ValueError as err:  # unknown preset: Isaac Lab lists the available ones
            raise FrameworkError(f"task.isaaclab: {gym_id} rejects {' '.join(overrides)}: {err}") from err
    else:
        env_cfg = parse_env_cfg(gym_id, device=str(device), num_envs=num_envs)
    env_cfg.seed = seed
    for dotted, value in dict(section.get("env_cfg") or {}).items():
        _set_path(env_cfg, str(dotted), value)
    if hasattr(env_cfg, "compute_final_obs"):
        env_cfg.compute_final_obs = True
    log_once(f"isaaclab-id-{gym_id}", f"isaaclab: gym id {gym_id} (compute_final_obs: "
             f"{'yes' if hasattr(env_cfg, 'compute_final_obs') else 'not in this version'})")
    return env_cfg, gym_id


def _launch_simulation() -> Optional[Callable[..., Any]]:
    """3.x ``isaaclab.app.launch_simulation`` (a lazy export), or None on 2.x.

    Raises:
        FrameworkError: Isaac Lab is not importable, or its ``launch_simulation`` fails to import.
    """
    app_mod = import_framework("isaaclab.app")
    try:
        return getattr(app_mod, "launch_simulation", None)
    except ImportError as err:
        raise FrameworkError(f"cannot import isaaclab.app.launch_simulation: {err}") from err


def _app_launcher() -> Any:
    """2.x ``AppLauncher``. The PyPI wheel's ``isaaclab/__init__.py`` puts an empty ``isaaclab.app`` module in
    ``sys.modules`` and the class under ``sys.modules["isaaclab.app.AppLauncher"]``, which only the
    ``from isaaclab.app import AppLauncher`` statement (its submodule fallback) finds.

    Raises:
        FrameworkError: neither layout provides it.
    """
    try:
        from isaaclab.app import AppLauncher
    except ImportError as err:
        raise FrameworkError(f"cannot import AppLauncher from isaaclab.app: {err}") from err
    return AppLauncher


def make(section: Mapping[str, Any], num_envs: int, seed: int, device: torch.device,
         headless: bool = True) -> IsaacLabEnv:
    """Launch the runtime and ``gym.make`` the task of the ``isaaclab:`` section of ``cfg/task/<Task>.yaml``.

    Section keys: ``gym_id`` (string, list, or ``{v3: ..., v2: ...}``: the first registered one is used),
    ``env_cfg`` (``{dotted.attr: value}`` set on the parsed env cfg), ``import_modules`` (your packages that
    register extra gym ids), ``final_obs_fallback`` (``prev_obs`` | ``terminal``), ``physics`` / ``presets``
    (3.x preset overrides, :func:`preset_overrides`).

    Raises:
        FrameworkError: Isaac Lab not importable, no registered id, bad ``env_cfg`` key, unknown preset, a
            runtime that cannot start.
    """
    launch_simulation = _launch_simulation()
    stack = contextlib.ExitStack()
    try:
        if launch_simulation is not None:  # 3.x: the env cfg tells which runtime to start
            env_cfg, gym_id = _env_cfg(section, num_envs, seed, device)
            try:
                stack.enter_context(launch_simulation(env_cfg, {"headless": headless, "device": str(device)}))
            except (ImportError, ValueError, SystemExit) as err:
                # 3.0 prints "Isaac Sim is not installed" and exits 1 when the presets need Kit (PhysX) without it
                why = (f"exit {err.code}: a preset that needs Isaac Sim's Kit (e.g. isaacsim_physx) without Isaac "
                       "Sim installed; kit-less: physics=newton_mjwarp" if isinstance(err, SystemExit) else err)
                raise FrameworkError(f"isaaclab.app.launch_simulation cannot start the runtime of {gym_id} "
                                     f"({' '.join(preset_overrides(section)) or 'the task default presets'}): "
                                     f"{why}") from None
        else:  # 2.x: the Kit app must run before isaaclab_tasks is imported
            app = _app_launcher()(headless=headless, device=str(device)).app
            stack.callback(app.close)
            env_cfg, gym_id = _env_cfg(section, num_envs, seed, device)
        env = importlib.import_module("gymnasium").make(gym_id, cfg=env_cfg, render_mode=None)
    except BaseException:
        stack.close()
        raise
    return IsaacLabEnv(env, device, str(section.get("final_obs_fallback") or "prev_obs"), on_close=stack.close)
