"""Fake OIGE tasks (``RLTask`` semantics, isaac_api.md 2.2/2.5) over fake dynamics.

Quirks reproduced: flagged envs reset at the start of the next ``pre_physics_step`` (then the action is
applied to the fresh state), ``reset_buf`` mixes terminations and time-outs, no ``time_outs`` in extras, the
limit is ``_max_episode_length`` (Ant, Humanoid, FrankaCabinet, Ingenuity) or ``max_episode_length``
(Anymal, AllegroHand), buffers returned by reference.
"""

import omni.isaac.core  # noqa: F401  (needs the SimulationApp: enforces the start order)
import torch
from fake_dynamics import FakeDynamics
from gymnasium import spaces


class FakeRLTask:
    num_obs_ = 0
    num_act_ = 0
    limit_attr = "_max_episode_length"
    limit_key = "episodeLength"

    def __init__(self, name, sim_config, env, offset=None):
        self.name = name
        cfg = sim_config.task_config
        self._num_envs = int(cfg["env"]["numEnvs"])
        self.num_observations, self.num_actions, self.num_states = self.num_obs_, self.num_act_, 0
        self._device = sim_config.config["sim_device"]
        self.device = self._device
        self.rl_device = sim_config.config.get("rl_device", "cuda:0")
        self.clip_obs = float(cfg["env"].get("clipObservations", float("inf")))
        self.clip_actions = float(cfg["env"].get("clipActions", float("inf")))
        self.control_frequency_inv = int(cfg["env"].get("controlFrequencyInv", 1))
        setattr(self, self.limit_attr, self.episode_limit(cfg))
        self.observation_space = spaces.Box(float("-inf"), float("inf"), (self.num_observations,))
        self.action_space = spaces.Box(-1.0, 1.0, (self.num_actions,))
        n = self._num_envs
        self.obs_buf = torch.zeros(n, self.num_observations, device=self._device)
        self.states_buf = torch.zeros(n, 0, device=self._device)
        self.rew_buf = torch.zeros(n, device=self._device)
        self.reset_buf = torch.ones(n, dtype=torch.long, device=self._device)
        self.progress_buf = torch.zeros(n, dtype=torch.long, device=self._device)
        self.extras = {}
        self.dyn = FakeDynamics(n, self.num_observations, self.num_actions, self._device,
                                seed=int(sim_config.config.get("seed", 0)))

    @classmethod
    def episode_limit(cls, cfg):
        """The real tasks' keys: ``env.episodeLength`` (Ant, Humanoid, AllegroHand, FrankaCabinet),
        ``env.learn.episodeLength_s`` (Anymal: ``int(s / (1/60) + 0.5)``, OIGE's hard-coded dt),
        ``env.maxEpisodeLength`` (Ingenuity)."""
        env = cfg["env"]
        if cls.limit_key == "episodeLength_s":
            return int(float(env["learn"]["episodeLength_s"]) / (1.0 / 60.0) + 0.5)
        return int(env[cls.limit_key])

    @property
    def num_envs(self):
        return self._num_envs

    @property
    def limit(self):
        return getattr(self, self.limit_attr)

    def post_reset(self):
        pass

    def reset(self):
        """Flags all environments for reset (upstream re-assigns the buffer)."""
        self.reset_buf = torch.ones_like(self.reset_buf)

    def reset_idx(self, ids):
        self.dyn.reset_idx(ids)
        self.reset_buf[ids] = 0
        self.progress_buf[ids] = 0

    def pre_physics_step(self, actions):
        ids = self.reset_buf.nonzero(as_tuple=False).squeeze(-1)
        if len(ids) > 0:
            self.reset_idx(ids)
        self.actions = actions.clone().to(self._device)

    def world_step(self):
        self.dyn.physics(self.actions)

    def post_physics_step(self):
        self.progress_buf[:] += 1
        self.obs_buf[:] = self.dyn.state
        self.rew_buf[:] = self.dyn.reward()
        reset = torch.where(self.dyn.terminated(), torch.ones_like(self.reset_buf), self.reset_buf)
        self.reset_buf[:] = torch.where(self.progress_buf >= self.limit - 1, torch.ones_like(reset), reset)
        timeout = (self.progress_buf >= self.limit - 1) & (self.reset_buf != 0)
        self.dyn.record(torch.ones_like(timeout), self.rew_buf, self.reset_buf, timeout)
        return self.obs_buf, self.rew_buf, self.reset_buf, self.extras

    def get_states(self):
        return self.states_buf


def _task(name, obs, act, limit_attr="_max_episode_length", limit_key="episodeLength"):
    return type(name + "Task", (FakeRLTask,), {"num_obs_": obs, "num_act_": act, "limit_attr": limit_attr,
                                               "limit_key": limit_key})


TASKS = {
    "Ant": _task("Ant", 60, 8),
    "Humanoid": _task("Humanoid", 87, 21),
    "Anymal": _task("Anymal", 48, 12, "max_episode_length", "episodeLength_s"),
    "AllegroHand": _task("AllegroHand", 72, 16, "max_episode_length"),
    "FrankaCabinet": _task("FrankaCabinet", 23, 9),
    "Ingenuity": _task("Ingenuity", 13, 6, limit_key="maxEpisodeLength"),
}
