"""A unimodal baseline for the multi-goal test: a small SAC with a tanh-Gaussian actor (Haarnoja et al., 2018).

Same MaxEnt objective as MEow (fixed temperature ``alpha``, discount ``gamma``), twin Q critics with Polyak
targets, uniform random actions for the first ``random_steps`` steps, one update per vectorised step after
``learning_starts``. Only the policy class differs: ``a = tanh(mu(s) + sigma(s) * eps)``, one mode per state.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from meow_isaac.flows import mlp
from meow_isaac.replay import Batch, ReplayBuffer

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class GaussianSAC(nn.Module):
    """Tanh-Gaussian actor ``obs_dim -> hidden -> hidden -> 2 * action_dim`` and two Q critics
    ``obs_dim + action_dim -> hidden -> hidden -> 1`` with Polyak target copies."""

    def __init__(self, obs_dim: int, action_dim: int, alpha: float, gamma: float, tau: float = 0.005,
                 learning_rate: float = 1e-3, hidden: int = 64) -> None:
        super().__init__()
        self.alpha, self.gamma, self.tau = alpha, gamma, tau
        self.actor = mlp(obs_dim, hidden, 2 * action_dim)
        self.critics = nn.ModuleList(mlp(obs_dim + action_dim, hidden, 1) for _ in range(2))
        self.targets = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=learning_rate)
        self.critic_opt = torch.optim.Adam(self.critics.parameters(), lr=learning_rate)

    def sample(self, obs: torch.Tensor, deterministic: bool = False):
        """Actions ``(B, d)`` in ``(-1, 1)`` and their log-densities ``(B,)`` (tanh change of variables)."""
        mean, log_std = self.actor(obs).chunk(2, dim=-1)
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        u = mean if deterministic else mean + std * torch.randn_like(mean)
        a = torch.tanh(u)
        log_prob = torch.distributions.Normal(mean, std).log_prob(u) - torch.log(1.0 - a.square() + 1e-6)
        return a, log_prob.sum(-1)

    def q(self, nets: nn.ModuleList, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Both critics' values ``(B, 2)``."""
        x = torch.cat((obs, action), -1)
        return torch.cat([net(x) for net in nets], -1)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Policy actions ``(B, d)`` for observations ``(B, obs_dim)``."""
        return self.sample(obs, deterministic)[0]

    def update(self, batch: Batch) -> None:
        """One critic step (soft Bellman target, clipped double Q), one actor step, Polyak update."""
        with torch.no_grad():
            next_a, next_logp = self.sample(batch.next_obs)
            next_v = self.q(self.targets, batch.next_obs, next_a).min(-1).values - self.alpha * next_logp
            y = batch.reward + self.gamma * (1.0 - batch.terminated) * next_v
        critic_loss = (self.q(self.critics, batch.obs, batch.action) - y.unsqueeze(-1)).square().mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        a, logp = self.sample(batch.obs)
        actor_loss = (self.alpha * logp - self.q(self.critics, batch.obs, a).min(-1).values).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.targets.parameters()), list(self.critics.parameters()), self.tau)


def train_sac(make_env: Callable[[], object], agent: GaussianSAC, steps: int, random_steps: int,
              learning_starts: int, batch_size: int, updates_per_step: int = 1) -> GaussianSAC:
    """Train ``agent`` for ``steps`` vectorised steps of ``make_env()`` (the MEow trainer's schedule)."""
    env = make_env()
    replay = ReplayBuffer(env.num_envs, steps, env.obs_dim, env.action_dim, torch.device("cpu"))
    obs = env.reset()
    for step in range(steps):
        if step < random_steps:
            action = torch.rand(env.num_envs, env.action_dim) * 2.0 - 1.0
        else:
            action = agent.act(obs)
        out = env.step(action)
        replay.add(obs, action, out.reward, out.final_obs, out.terminated, out.valid)
        obs = out.obs
        if replay.num_adds >= learning_starts:
            for _ in range(updates_per_step):
                agent.update(replay.sample(batch_size))
    return agent
