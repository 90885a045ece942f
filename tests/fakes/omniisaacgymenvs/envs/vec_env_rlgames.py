"""Fake ``omniisaacgymenvs/envs/vec_env_rlgames.py`` (isaac_api.md 2.2)."""

import torch
from omni.isaac.gym.vec_env import VecEnvBase


class VecEnvRLGames(VecEnvBase):
    def set_task(self, task, backend="numpy", sim_params=None, init_sim=True, rendering_dt=1.0 / 60.0):
        super().set_task(task, backend, sim_params, init_sim, rendering_dt)
        self.num_states = task.num_states

    def _process_data(self):
        self._obs = torch.clamp(self._obs, -self._task.clip_obs, self._task.clip_obs).to(self._task.rl_device)
        self._states = torch.clamp(self._states, -self._task.clip_obs, self._task.clip_obs).to(self._task.rl_device)
        self._rew = self._rew.to(self._task.rl_device)
        self._resets = self._resets.to(self._task.rl_device)
        self._extras = self._extras

    def step(self, actions):
        actions = torch.clamp(actions, -self._task.clip_actions, self._task.clip_actions).to(self._task.device)
        self._task.pre_physics_step(actions)
        for _ in range(self._task.control_frequency_inv):
            self._task.world_step()
        self._obs, self._rew, self._resets, self._extras = self._task.post_physics_step()
        self._states = self._task.get_states()
        self._process_data()
        return {"obs": self._obs, "states": self._states}, self._rew, self._resets, self._extras

    def reset(self, seed=None, options=None):
        self._task.reset()
        actions = torch.zeros((self.num_envs, self._task.num_actions), device=self._task.rl_device)
        obs_dict, _, _, _ = self.step(actions)
        return obs_dict
