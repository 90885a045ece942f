"""Fake ``DirectRLEnv`` (isaac_api.md 3.1) over fake dynamics.

Quirks reproduced: 5-tuple step, obs dict ``{"policy": ...}``, same-step reset (returned obs of done envs is
post-reset), ``terminated``/``time_outs`` independent (both may be set), buffers written in place and returned
by reference, action space ``Box(-inf, inf)``, one persistent ``extras`` dict returned by ``reset`` and every
``step``. 3.x only: with ``cfg.compute_final_obs``, ``extras["final_obs"]`` is written (a new dict) only on
steps where some env resets, and never cleared (``DirectRLEnv._reset_envs_from_buffer`` of 3.0);
``cfg.sim.physics`` names the physics preset (default ``newton_mjwarp``, as the 3.0 core tasks).
Sizes, episode lengths, ``sim.dt`` and ``decimation`` are the real ones of each version's task.
"""

import math
import types

import gymnasium as gym
import torch
from fake_dynamics import FakeDynamics
from isaaclab import VERSION
from isaaclab.app import Runtime

PHYSICS_PRESETS = ("newton_mjwarp", "physx", "isaacsim_physx", "ovphysx")  # 3.0 core tasks (AntPhysicsCfg, ...)


class DirectRLEnvCfg:
    obs_dim = 0
    act_dim = 0
    episode_length_s = 15.0
    decimation = 2
    dt = 1.0 / 120.0
    physics_presets = PHYSICS_PRESETS

    def __init__(self):
        physics = self.physics_presets[0] if VERSION >= 3 else "physx"
        self.sim = types.SimpleNamespace(dt=self.dt, device="cuda:0", physics=physics)
        self.scene = types.SimpleNamespace(num_envs=4096)
        self.seed = None
        if VERSION >= 3:
            self.compute_final_obs = False


def _cfg(name, obs, act, seconds, decimation=2, dt=1.0 / 120.0, presets=PHYSICS_PRESETS):
    return type(name, (DirectRLEnvCfg,), {"obs_dim": obs, "act_dim": act, "episode_length_s": seconds,
                                          "decimation": decimation, "dt": dt, "physics_presets": presets})


if VERSION >= 3:
    AntEnvCfg = _cfg("AntEnvCfg", 60, 8, 16.0)
    HumanoidEnvCfg = _cfg("HumanoidEnvCfg", 75, 21, 16.0)
    AnymalFlatEnvCfg = _cfg("AnymalDFlatEnvCfg", 48, 12, 20.0, 4, 0.005)  # manager-based in 3.0, same step API
    AnymalCContribEnvCfg = _cfg("AnymalCFlatEnvCfg", 48, 12, 20.0, 4, 0.005, presets=("isaacsim_physx",))
    AllegroHandEnvCfg = _cfg("AllegroHandEnvCfg", 124, 16, 10.0, 4)
    FrankaCabinetEnvCfg = _cfg("FrankaCabinetDirectEnvCfg", 23, 9, 16.0, 10, 1.0 / 600.0)
else:
    AntEnvCfg = _cfg("AntEnvCfg", 36, 8, 15.0)
    HumanoidEnvCfg = _cfg("HumanoidEnvCfg", 75, 21, 15.0)
    AnymalFlatEnvCfg = _cfg("AnymalCFlatEnvCfg", 48, 12, 20.0, 4, 0.005)
    AllegroHandEnvCfg = _cfg("AllegroHandEnvCfg", 124, 16, 10.0, 4)
    FrankaCabinetEnvCfg = _cfg("FrankaCabinetEnvCfg", 23, 9, 8.3333)


class FakeDirectRLEnv(gym.Env):
    metadata = {"render_modes": [None]}
    is_vector_env = True

    def __init__(self, cfg, render_mode=None, **kwargs):
        if not Runtime.running:
            raise RuntimeError("fake DirectRLEnv: no simulation runtime (AppLauncher / launch_simulation)")
        self.cfg = cfg
        self.num_envs = int(cfg.scene.num_envs)
        self.device = cfg.sim.device
        self.step_dt = cfg.sim.dt * cfg.decimation
        self.max_episode_length = math.ceil(cfg.episode_length_s / self.step_dt)
        self.single_observation_space = gym.spaces.Dict(
            {"policy": gym.spaces.Box(-math.inf, math.inf, (cfg.obs_dim,))})
        self.single_action_space = gym.spaces.Box(-math.inf, math.inf, (cfg.act_dim,))
        n = self.num_envs
        self.reward_buf = torch.zeros(n, device=self.device)
        self.reset_terminated = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.reset_time_outs = torch.zeros(n, dtype=torch.bool, device=self.device)
        self.episode_length_buf = torch.zeros(n, dtype=torch.long, device=self.device)
        self.dyn = FakeDynamics(n, cfg.obs_dim, cfg.act_dim, self.device, seed=int(cfg.seed or 0))
        self.extras = {}
        self.closed = False

    def _reset_idx(self, ids):
        self.dyn.reset_idx(ids)
        self.episode_length_buf[ids] = 0

    def reset(self, seed=None, options=None):
        self._reset_idx(torch.arange(self.num_envs, device=self.device))
        return {"policy": self.dyn.state.clone()}, self.extras

    def step(self, action):
        self.dyn.physics(action)
        self.episode_length_buf += 1
        self.reset_terminated[:] = self.dyn.terminated()
        self.reset_time_outs[:] = self.episode_length_buf >= self.max_episode_length - 1
        self.reward_buf[:] = self.dyn.reward()
        done = self.reset_terminated | self.reset_time_outs
        self.dyn.record(torch.ones_like(done), self.reward_buf, done, self.reset_time_outs)
        ids = done.nonzero().reshape(-1)
        if ids.numel():
            if getattr(self.cfg, "compute_final_obs", False):
                self.extras["final_obs"] = {"policy": self.dyn.state.clone()}
            self._reset_idx(ids)
        return ({"policy": self.dyn.state.clone()}, self.reward_buf, self.reset_terminated, self.reset_time_outs,
                self.extras)

    def close(self):
        self.closed = True
