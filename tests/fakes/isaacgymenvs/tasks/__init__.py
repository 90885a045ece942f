"""Fake IsaacGymEnvs tasks: ``VecTask`` step/reset semantics (isaac_api.md 1.1) over fake dynamics.

Sizes are the real ones (isaac_api.md 1.5). Quirks reproduced: ``reset()`` returns the zero ``obs_buf``;
``reset_buf`` starts at ones; next-step reset (in ``post_physics_step``, or in ``pre_physics_step`` for
AllegroHand and Ingenuity); ``rew_buf``/``reset_buf`` written in place and returned by reference; ``extras["time_outs"]``.
"""

import isaacgym  # noqa: F401  (upstream tasks import gymapi; enforces the import order)
import torch
from fake_dynamics import FakeDynamics


class FakeVecTask:
    num_obs_ = 0
    num_act_ = 0
    reset_in_pre_physics = False
    limit_key = "episodeLength"

    def __init__(self, cfg, rl_device, sim_device, graphics_device_id, headless, virtual_screen_capture=False,
                 force_render=False):
        self.cfg = cfg
        env = cfg["env"]
        self.num_envs = int(env["numEnvs"])
        self.num_obs = self.num_observations = self.num_obs_
        self.num_actions = self.num_act_
        self.num_states = 0
        self.max_episode_length = self.episode_limit(cfg)
        use_gpu = cfg["sim"]["use_gpu_pipeline"] and ("cuda" in sim_device or "gpu" in sim_device)
        self.device = sim_device if use_gpu else "cpu"
        self.rl_device = rl_device
        self.clip_obs = float(env.get("clipObservations", float("inf")))
        self.clip_actions = float(env.get("clipActions", float("inf")))
        n = self.num_envs
        self.obs_buf = torch.zeros(n, self.num_obs, device=self.device)
        self.rew_buf = torch.zeros(n, device=self.device)
        self.reset_buf = torch.ones(n, dtype=torch.long, device=self.device)
        self.timeout_buf = torch.zeros(n, dtype=torch.long, device=self.device)
        self.progress_buf = torch.zeros(n, dtype=torch.long, device=self.device)
        self.extras = {}
        self.dyn = FakeDynamics(n, self.num_obs, self.num_actions, self.device, seed=int(cfg.get("seed", 0)))
        self.steps = 0

    @classmethod
    def episode_limit(cls, cfg):
        """The real tasks' keys: ``env.episodeLength`` (Ant, Humanoid, AllegroHand, FrankaCabinet),
        ``env.learn.episodeLength_s`` (Anymal: ``int(s / sim.dt + 0.5)``), ``env.maxEpisodeLength`` (Ingenuity)."""
        env = cfg["env"]
        if cls.limit_key == "episodeLength_s":
            return int(float(env["learn"]["episodeLength_s"]) / float(cfg["sim"]["dt"]) + 0.5)
        return int(env[cls.limit_key])

    def zero_actions(self):
        return torch.zeros(self.num_envs, self.num_actions, device=self.rl_device)

    def reset(self):
        """Upstream: 'Doesn't calculate observations' -> zeros on the first call."""
        return {"obs": torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)}

    def reset_idx(self, ids):
        self.dyn.reset_idx(ids)
        self.progress_buf[ids] = 0
        self.reset_buf[ids] = 0

    def pre_physics_step(self, actions):
        if self.reset_in_pre_physics:
            ids = self.reset_buf.nonzero().reshape(-1)
            self.reset_idx(ids)
        self.actions = actions.clone().to(self.device)

    def post_physics_step(self):
        self.progress_buf += 1
        counted = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        if not self.reset_in_pre_physics:
            ids = self.reset_buf.nonzero().reshape(-1)
            self.reset_idx(ids)
            counted[ids] = False  # action spent on the terminal state, reward of the reset state: no episode's
        self.obs_buf[:] = self.dyn.state
        self.rew_buf[:] = self.dyn.reward()
        reset = torch.where(self.dyn.terminated(), torch.ones_like(self.reset_buf), self.reset_buf)
        self.reset_buf[:] = torch.where(self.progress_buf >= self.max_episode_length - 1,
                                        torch.ones_like(reset), reset)
        timeout = (self.progress_buf >= self.max_episode_length - 1) & (self.reset_buf != 0)
        self.dyn.record(counted, self.rew_buf, self.reset_buf, timeout)

    def step(self, actions):
        self.steps += 1
        action_tensor = torch.clamp(actions, -self.clip_actions, self.clip_actions)
        self.pre_physics_step(action_tensor)
        self.dyn.physics(self.actions)  # gym.simulate
        self.post_physics_step()
        self.timeout_buf = (self.progress_buf >= self.max_episode_length - 1) & (self.reset_buf != 0)
        self.extras["time_outs"] = self.timeout_buf.to(self.rl_device)
        obs_dict = {"obs": torch.clamp(self.obs_buf, -self.clip_obs, self.clip_obs).to(self.rl_device)}
        return obs_dict, self.rew_buf.to(self.rl_device), self.reset_buf.to(self.rl_device), self.extras


def _task(name, obs, act, pre=False, limit_key="episodeLength"):
    return type(name, (FakeVecTask,), {"num_obs_": obs, "num_act_": act, "reset_in_pre_physics": pre,
                                       "limit_key": limit_key})


isaacgym_task_map = {
    "Ant": _task("Ant", 60, 8),
    "Humanoid": _task("Humanoid", 108, 21),
    "Anymal": _task("Anymal", 48, 12, limit_key="episodeLength_s"),
    "AllegroHand": _task("AllegroHand", 88, 16, pre=True),
    "FrankaCabinet": _task("FrankaCabinet", 23, 9),
    "Ingenuity": _task("Ingenuity", 13, 6, pre=True, limit_key="maxEpisodeLength"),
}
