"""A costless synthetic ``VecEnv`` on any device: measures framework overhead and proves the loop sync-free.

Linear-Gaussian dynamics ``s' = 0.9 s + B a + 0.1 eps``, reward ``-|s|^2/obs_dim - 0.01 |a|^2``, a fixed
time limit and a rare random termination. Everything is tensor ops on ``device`` with same-step auto-reset via
``torch.where``: no Python branch on tensor values, hence no host synchronisation.
"""

from __future__ import annotations

from typing import Union

import torch

from meow_isaac.envs.contract import StepOut


class SyntheticVecEnv:
    """``num_envs`` synthetic environments implementing the ``VecEnv`` protocol of ``DESIGN.md``.

    Args:
        num_envs, obs_dim, action_dim: sizes (>= 1). max_episode_length: time limit (agent steps).
        device: where everything lives. seed: generator seed. terminate_prob: per-step termination chance.

    Raises:
        ValueError: a size < 1.
    """

    def __init__(self, num_envs: int, obs_dim: int = 32, action_dim: int = 8, max_episode_length: int = 200,
                 device: Union[str, torch.device] = "cpu", seed: int = 0, terminate_prob: float = 0.002) -> None:
        for key, value in (("num_envs", num_envs), ("obs_dim", obs_dim), ("action_dim", action_dim),
                           ("max_episode_length", max_episode_length)):
            if value < 1:
                raise ValueError(f"{key}={value} is invalid: expected an integer >= 1")
        self.num_envs, self.obs_dim, self.action_dim = num_envs, obs_dim, action_dim
        self.max_episode_length = max_episode_length
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.terminate_prob = terminate_prob
        self.mix = torch.randn(action_dim, obs_dim, generator=self.generator, device=self.device) / action_dim
        self.state = torch.zeros(num_envs, obs_dim, device=self.device)
        self.progress = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.returns = torch.zeros(num_envs, device=self.device)

    def _initial(self) -> torch.Tensor:
        return torch.randn(self.num_envs, self.obs_dim, generator=self.generator, device=self.device)

    def reset(self) -> torch.Tensor:
        """Reset all envs; returns ``(N, obs_dim)`` float32."""
        self.state = self._initial()
        self.progress.zero_()
        self.returns.zero_()
        return self.state.clone()

    def step(self, action: torch.Tensor) -> StepOut:
        """One vectorised step (same-step auto-reset)."""
        action = action.clamp(-1.0, 1.0)
        noise = torch.randn(self.state.shape, generator=self.generator, device=self.device)
        nxt = 0.9 * self.state + action @ self.mix + 0.1 * noise
        reward = -nxt.square().mean(1) - 0.01 * action.square().sum(1)
        self.progress += 1
        u = torch.rand(self.num_envs, generator=self.generator, device=self.device)
        terminated = u < self.terminate_prob
        truncated = (self.progress >= self.max_episode_length) & ~terminated
        done = terminated | truncated
        self.returns += reward
        episode_return = torch.where(done, self.returns, torch.zeros_like(self.returns))
        episode_length = torch.where(done, self.progress, torch.zeros_like(self.progress))
        self.state = torch.where(done.unsqueeze(1), self._initial(), nxt)
        self.progress = torch.where(done, torch.zeros_like(self.progress), self.progress)
        self.returns = torch.where(done, torch.zeros_like(self.returns), self.returns)
        return StepOut(obs=self.state.clone(), reward=reward, terminated=terminated, truncated=truncated,
                       final_obs=nxt, valid=torch.ones_like(done), episode_return=episode_return,
                       episode_length=episode_length)

    def close(self) -> None:
        """Nothing to release."""


def make_synthetic(env_cfg: dict, num_envs: int, seed: int = 0, device: str = "cpu", num_threads: int = 0
                   ) -> SyntheticVecEnv:
    """Task builder (registry signature) for ``task=Synthetic``; ``env_cfg`` keys: obsDim, actionDim,
    episodeLength, terminateProb.

    Raises:
        ValueError: an unknown ``env_cfg`` key.
    """
    keys = {"obsDim": "obs_dim", "actionDim": "action_dim", "episodeLength": "max_episode_length",
            "terminateProb": "terminate_prob"}
    for key in env_cfg:
        if key not in keys:
            raise ValueError(f"unknown env_cfg key {key!r}; accepted keys: {', '.join(sorted(keys))}")
    return SyntheticVecEnv(num_envs, device=device, seed=seed, **{keys[k]: v for k, v in env_cfg.items()})
