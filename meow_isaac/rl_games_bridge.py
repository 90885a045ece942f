"""Run MEow from an rl_games pipeline (IsaacGymEnvs' ``train.py``, OmniIsaacGymEnvs' ``rlgames_train.py``).

Not Isaac Lab's rl_games ``train.py``: it takes the agent yaml from the task's ``rl_games_cfg_entry_point``
and builds its ``Runner`` inside (README, "Running on Isaac"); on Isaac Lab use ``sim=isaaclab``. An Isaac Lab
env registered by a script of one's own is still found and adapted (:func:`adapt_env`).

rl_games' ``Runner`` builds agents and players by name (``isaac_api.md`` section 4.1). After the script
creates its runner, one call adds MEow::

    runner = Runner(RLGPUAlgoObserver())          # as in isaacgymenvs/train.py, OIGE's rlgames_train.py
    from meow_isaac.rl_games_bridge import register_meow
    register_meow(runner)                         # algo_factory + player_factory builders named "meow"
    runner.load(rlg_config_dict); runner.reset(); runner.run({...})

with a train config whose ``params.algo.name`` is ``meow`` (``cfg/rl_games/AntMEow.yaml``). The env is
created the rl_games way (``vecenv.create_vec_env(env_name, num_actors, **env_config)``, i.e. what the script
registered with ``vecenv.register`` / ``env_configurations.register``); the framework env inside it is found
by following ``.env`` attributes and wrapped in this package's adapter (IsaacGymEnvs ``VecTask``,
``VecEnvRLGames``, or an Isaac Lab gym env), so every quirk of ``meow_isaac/envs/<framework>.py`` is handled.
Any other ``IVecEnv`` is wrapped by :class:`RLGamesVecEnv`. Training uses this package's trainer, replay
buffer, checkpoints (``<train_dir>/<experiment>/nn/<name>.pth``) and TensorBoard writer
(``<train_dir>/<experiment>/summaries``); the rl_games observer is not called.

Config (``params.config``): rl_games keys ``name``, ``env_name``, ``num_actors``, ``env_config``, ``device``,
``train_dir``, ``full_experiment_name``, ``max_epochs`` (vectorised steps: ``train.max_iterations``),
``save_frequency`` (``train.save_interval``), ``reward_shaper`` (required by ``Runner``; applied in full as
rl_games applies it: shift, scale, clip, log; :func:`reward_shaper`); every ``cfg/train/*MEow.yaml`` key
(``alpha``, ``tau``, ``batch_size``, ...); and ``autoreset_mode`` / ``final_obs_fallback`` for
:class:`RLGamesVecEnv`. ``torch_compile`` should be False (MEow compiles nothing; rl_games would wrap the unused
``model`` attribute). Other keys are ignored. The ``sigma`` run argument is refused (:class:`_RLGamesModel`). The
env belongs to the script that registered it: the bridge never closes it (:class:`_ScriptEnv`).
"""

from __future__ import annotations

import datetime
import math
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from meow_isaac.agents import make_agent
from meow_isaac.checkpoint import check_compatible, checkpoint_meta, load_checkpoint
from meow_isaac.config import TrainConfig
from meow_isaac.envs.contract import StepOut
from meow_isaac.envs.isaac_common import EpisodeAccumulator, next_step_out
from meow_isaac.envs.wrappers import SharedSim
from meow_isaac.logger import Logger
from meow_isaac.trainer import Trainer, evaluate

ALGO_NAME = "meow"
RENAMED = {"max_epochs": "max_iterations", "save_frequency": "save_interval"}


def register_meow(runner: Any, name: str = ALGO_NAME) -> None:
    """Register the MEow agent and player with an rl_games ``Runner`` under ``name`` (``params.algo.name``)."""
    runner.algo_factory.register_builder(name, lambda **kwargs: MEowRLGamesAgent(**kwargs))
    runner.player_factory.register_builder(name, lambda **kwargs: MEowRLGamesPlayer(**kwargs))


def train_config(config: Mapping[str, Any]) -> TrainConfig:
    """The ``TrainConfig`` keys of an rl_games ``params.config`` (``max_epochs``/``save_frequency`` renamed).

    Raises:
        ConfigError: an invalid value.
    """
    names = set(TrainConfig.__dataclass_fields__)
    values = {RENAMED.get(k, k): v for k, v in config.items() if RENAMED.get(k, k) in names}
    return TrainConfig.from_mapping(values)


def _as_tensor(x: Any, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(x, device=device)


def _obs(x: Any, device: torch.device) -> torch.Tensor:
    return _as_tensor(x["obs"] if isinstance(x, Mapping) else x, device).to(torch.float32).clone()


class RLGamesVecEnv:
    """``VecEnv`` over a generic rl_games ``IVecEnv`` (``reset() -> obs``, ``step(a) -> (obs, rew, dones,
    infos)``, ``get_env_info()`` with gym ``Box`` spaces).

    ``autoreset_mode``: ``same_step`` (default; rl_games' assumption for Isaac wrappers): every row valid,
    truncation from ``infos["time_outs"]``, final obs from ``infos["final_observation"]`` or else the
    ``final_obs_fallback`` (``prev_obs``: bootstrap from ``s_t``; ``terminal``). ``next_step``: the obs
    returned with done is the final obs and the next row is invalid (as IsaacGymEnvs).
    """

    def __init__(self, vec_env: Any, device: torch.device, num_envs: int, autoreset_mode: str = "same_step",
                 final_obs_fallback: str = "prev_obs", max_episode_length: int = 1000) -> None:
        if autoreset_mode not in ("same_step", "next_step") or final_obs_fallback not in ("prev_obs", "terminal"):
            raise ValueError(f"autoreset_mode={autoreset_mode!r} / final_obs_fallback={final_obs_fallback!r}; "
                             "accepted: same_step|next_step / prev_obs|terminal")
        info = vec_env.get_env_info()
        obs_space = info["observation_space"]
        self.vec_env, self.device, self.num_envs = vec_env, torch.device(device), int(num_envs)
        self.obs_dim = int((obs_space["obs"] if isinstance(obs_space, Mapping) else obs_space).shape[-1])
        self.action_dim = int(info["action_space"].shape[-1])
        self.max_episode_length = int(max_episode_length)
        self.autoreset_mode, self.final_obs_fallback = autoreset_mode, final_obs_fallback
        self._episodes = EpisodeAccumulator(self.num_envs, self.device)
        self._prev_done = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        self._last_obs = torch.zeros(self.num_envs, self.obs_dim, device=self.device)

    def reset(self) -> torch.Tensor:
        """Reset every env; returns the ``(N, obs_dim)`` obs."""
        self._last_obs = _obs(self.vec_env.reset(), self.device)
        self._episodes.reset()
        self._prev_done.fill_(False)
        return self._last_obs

    def step(self, action: torch.Tensor) -> StepOut:
        """Step with ``action`` ``(N, action_dim)`` clamped to ``[-1, 1]``."""
        obs, rew, dones, infos = self.vec_env.step(action.detach().to(self.device).clamp(-1.0, 1.0))
        obs = _obs(obs, self.device)
        reward = _as_tensor(rew, self.device).to(torch.float32).reshape(-1).clone()
        done = _as_tensor(dones, self.device).reshape(-1).bool().clone()
        infos = infos if isinstance(infos, Mapping) else {}
        time_outs = infos.get("time_outs")
        truncated = (_as_tensor(time_outs, self.device).reshape(-1).bool().clone() & done if time_outs is not None
                     else torch.zeros_like(done))
        if self.autoreset_mode == "next_step":
            out = next_step_out(obs, reward, done, truncated, self._prev_done, False, self._episodes)
            self._prev_done = done
            return out
        terminated = done & ~truncated
        final = infos.get("final_observation")
        if final is not None:
            final_obs = torch.where(done[:, None], _obs(final, self.device), obs)
        elif self.final_obs_fallback == "prev_obs":
            final_obs = torch.where(truncated[:, None], self._last_obs, obs)
        else:
            terminated, truncated, final_obs = done, torch.zeros_like(done), obs
        ep_ret, ep_len = self._episodes.update(reward, torch.ones_like(done), done)
        self._last_obs = obs
        return StepOut(obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=final_obs,
                       valid=torch.ones_like(done), episode_return=ep_ret, episode_length=ep_len)

    def close(self) -> None:
        """Close the wrapped env when it can be closed."""
        fn = getattr(self.vec_env, "close", None) or getattr(getattr(self.vec_env, "env", None), "close", None)
        if callable(fn):
            fn()


def adapt_env(vec_env: Any, device: torch.device, config: Mapping[str, Any]) -> Any:
    """Wrap what rl_games' ``create_vec_env`` returned: the framework env found along ``.env`` gets its
    meow-isaac adapter; anything else becomes an :class:`RLGamesVecEnv`."""
    obj: Any = vec_env
    for _ in range(6):
        if obj is None:
            break
        raw = getattr(obj, "unwrapped", None)
        if hasattr(obj, "zero_actions") and hasattr(obj, "reset_buf") and hasattr(obj, "num_obs"):
            from meow_isaac.envs.isaacgym import IsaacGymEnv

            return IsaacGymEnv(obj, device, reset_in_pre_physics=bool(config.get("reset_in_pre_physics", False)))
        if hasattr(obj, "set_task") and getattr(obj, "task", None) is not None:
            from meow_isaac.envs.omniisaacgym import OmniIsaacGymEnv

            return OmniIsaacGymEnv(obj, device)
        if (raw is not None and hasattr(raw, "episode_length_buf") and hasattr(raw, "single_action_space")
                and not hasattr(obj, "get_env_info")):  # a gym env (5-tuple step), not Isaac Lab's rl_games wrapper
            from meow_isaac.envs.isaaclab import IsaacLabEnv

            return IsaacLabEnv(obj, device, str(config.get("final_obs_fallback", "prev_obs")))
        obj = getattr(obj, "env", None)
    return RLGamesVecEnv(vec_env, device, int(config.get("num_actors", 1)),
                         str(config.get("autoreset_mode", "same_step")),
                         str(config.get("final_obs_fallback", "prev_obs")),
                         int(config.get("max_env_steps", 1000)))


def make_env(config: Mapping[str, Any], device: torch.device) -> Any:
    """``vecenv.create_vec_env(env_name, num_actors, **env_config)`` wrapped by :func:`adapt_env`."""
    from rl_games.common import vecenv

    vec_env = vecenv.create_vec_env(config["env_name"], int(config.get("num_actors", 1)),
                                    **dict(config.get("env_config") or {}))
    return adapt_env(vec_env, device, config)


SHAPER_KEYS = ("scale_value", "shift_value", "min_val", "max_val", "log_val", "is_torch")


def reward_shaper(config: Mapping[str, Any]) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
    """rl_games' ``reward_shaper`` (``common/tr_helpers.py`` ``DefaultRewardsShaper``, rl-games 1.6.5) as a torch
    function, or None when it is the identity.

    ``config["reward_shaper"]`` is a dict (before ``Runner.load``) or the ``DefaultRewardsShaper`` that
    ``Runner.load_config`` made of it. Applied as rl_games does: ``r = (r + shift_value) * scale_value``, clamped
    to ``[min_val, max_val]``, then ``log(r)`` when ``log_val``; ``is_torch`` only picks rl_games' array library.

    Raises:
        ValueError: a key other than ``SHAPER_KEYS`` in a dict shaper.
    """
    shaper = config.get("reward_shaper") or {}
    if isinstance(shaper, Mapping):
        unknown = sorted(set(shaper) - set(SHAPER_KEYS))
        if unknown:
            raise ValueError(f"reward_shaper keys {unknown} unknown; accepted: {list(SHAPER_KEYS)}")
        get = shaper.get
    else:
        def get(key: str, default: Any) -> Any:
            return getattr(shaper, key, default)
    scale, shift = float(get("scale_value", 1.0)), float(get("shift_value", 0.0))
    low, high, log = float(get("min_val", -math.inf)), float(get("max_val", math.inf)), bool(get("log_val", False))
    if (scale, shift, low, high, log) == (1.0, 0.0, -math.inf, math.inf, False):
        return None

    def shape(reward: torch.Tensor) -> torch.Tensor:
        reward = ((reward + shift) * scale).clamp(low, high)
        return reward.log() if log else reward

    return shape


class _ScriptEnv:
    """The env as the rl_games script made it: rewards shaped by ``reward_shaper`` (episode returns stay raw, as
    rl_games reports them), and ``close()`` a no-op, because the script that created the env closes it
    (OmniIsaacGymEnvs' ``rlgames_train.py`` and Isaac Lab's ``train.py`` call ``env.close()`` after
    ``runner.run``; rl_games' own agents never close their env)."""

    def __init__(self, env: Any, shaper: Optional[Callable[[torch.Tensor], torch.Tensor]]) -> None:
        self.env, self.shaper = env, shaper

    def __getattr__(self, name: str) -> Any:
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self) -> torch.Tensor:
        return self.env.reset()

    def step(self, action: torch.Tensor) -> StepOut:
        out = self.env.step(action)
        return out if self.shaper is None else out._replace(reward=self.shaper(out.reward))

    def close(self) -> None:
        """Nothing: the script owns the env."""


class _RLGamesModel(torch.nn.Module):
    """``agent.model`` / ``player.model`` as rl_games' ``Runner`` sees them: the MEow policy (what ``run_train``
    would ``torch.compile``; MEow never calls it through this attribute).

    rl_games' ``sigma`` run argument (``torch_runner._override_sigma``: ``agent.model.a2c_network.sigma.fill_``,
    the fixed action std of its PPO network) has no MEow counterpart: the flow's prior scale is learned and
    state-dependent. Reaching ``a2c_network`` therefore raises one clear error instead of an AttributeError.
    """

    def __init__(self, policy: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.policy(*args, **kwargs)

    @property
    def a2c_network(self) -> Any:
        raise ValueError("a `sigma` override (rl_games' fixed action std of its PPO a2c_network) has no meaning "
                         "for MEow, whose action scale is the flow's learned state-dependent prior: run without "
                         "sigma (train.py --sigma / cfg.sigma)")


def _device(config: Mapping[str, Any]) -> torch.device:
    return torch.device(config.get("device") or ("cuda:0" if torch.cuda.is_available() else "cpu"))


class MEowRLGamesAgent:
    """rl_games algo builder target: ``MEowRLGamesAgent(base_name=..., params=...)``; ``train()``, ``restore()``."""

    def __init__(self, base_name: str, params: Dict[str, Any]) -> None:
        config = params["config"]
        self.config, self.device = config, _device(config)
        tcfg = train_config(config)
        env = make_env(config, self.device)
        shared = SharedSim(_ScriptEnv(env, reward_shaper(config)))
        self.env = shared.handle()
        self.agent = make_agent(env.obs_dim, env.action_dim, self.device, tcfg)
        self.model = _RLGamesModel(getattr(self.agent, "policy", None) or self.agent.actor)
        name = str(config.get("name", "MEow"))
        experiment = config.get("full_experiment_name") or f"{name}_{datetime.datetime.now():%d-%H-%M-%S}"
        self.run_dir = Path(config.get("train_dir", "runs")) / str(experiment)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.trainer = Trainer(self.env, shared.handle, self.agent, tcfg, self.run_dir, Logger(self.run_dir), name,
                               self.device, config_dict={"rl_games_params": _plain(params)},
                               show_progress=bool(config.get("print_stats", False)))

    def restore(self, fn: str) -> None:
        """Resume from a meow-isaac checkpoint."""
        self.trainer.load(Path(fn))

    def train(self) -> Dict[str, float]:
        """Train for ``max_epochs`` vectorised steps; returns the last logged scalars."""
        try:
            return self.trainer.train()
        finally:
            self.trainer.close()


class MEowRLGamesPlayer:
    """rl_games player builder target: ``MEowRLGamesPlayer(params=...)``; ``restore()``, ``run()``."""

    def __init__(self, params: Dict[str, Any]) -> None:
        config = params["config"]
        self.device = _device(config)
        self.env = _ScriptEnv(make_env(config, self.device), None)
        self.tcfg = train_config(config)
        self.agent = make_agent(self.env.obs_dim, self.env.action_dim, self.device, self.tcfg)
        self.model = _RLGamesModel(getattr(self.agent, "policy", None) or self.agent.actor)
        self.last_returns: Optional[torch.Tensor] = None

    def restore(self, fn: str) -> None:
        """Load the policy (and normaliser) of a meow-isaac checkpoint.

        Raises:
            FileNotFoundError, CheckpointError: as :meth:`Trainer.load` (``meow_isaac/checkpoint.py``): a file of
                another algorithm, env size or network (``train.activation``) is refused in one line, before
                anything is loaded.
        """
        state = load_checkpoint(fn, map_location=self.device)
        meta = checkpoint_meta(self.tcfg.algo, None, self.env.obs_dim, self.env.action_dim, self.tcfg.activation)
        check_compatible(state, fn, meta, self.agent.state_dict())
        self.agent.load_state_dict(state["agent"])

    def run(self) -> torch.Tensor:
        """One deterministic episode per env; prints and returns the ``(N,)`` returns."""
        self.last_returns = evaluate(self.agent, self.env)
        print(f"[meow-isaac] rl_games play: mean return {float(self.last_returns.mean()):.2f} over "
              f"{self.last_returns.numel()} deterministic episodes")
        return self.last_returns


def _plain(value: Any) -> Any:
    """A yaml-safe copy of rl_games params (objects such as the observer become their type name)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return type(value).__name__
