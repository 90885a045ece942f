"""Agents behind one interface (:class:`~meow_isaac.agents.base.Agent`): MEow, and SAC for comparisons."""

from __future__ import annotations

from typing import Any, Optional

import torch

from meow_isaac.agents.base import Agent
from meow_isaac.config import ALGOS


def make_agent(obs_dim: int, action_dim: int, device: torch.device, cfg: Any,
               planned_updates: Optional[int] = None) -> Agent:
    """Build the agent named by ``cfg.algo`` from a :class:`~meow_isaac.config.TrainConfig`; ``planned_updates``
    (the updates the run will make; None = unknown) decides MEow's ``train.compile=auto`` on CPU.

    Raises:
        ValueError: unknown ``cfg.algo``.
    """
    if cfg.algo == "meow":
        from meow_isaac.agents.meow import MEowAgent

        return MEowAgent(obs_dim, action_dim, device, alpha=cfg.alpha, tau=cfg.tau, gamma=cfg.gamma,
                         learning_rate=cfg.learning_rate, grad_norm=cfg.grad_norm, sigma_max=cfg.sigma_max,
                         sigma_min=cfg.sigma_min, normalize_input=cfg.normalize_input, two_pass=cfg.two_pass,
                         dropout=cfg.dropout, compile=cfg.compile, amp=cfg.amp,
                         planned_updates=planned_updates, activation=cfg.activation)
    if cfg.algo == "sac":
        from meow_isaac.agents.sac import SACAgent

        return SACAgent(obs_dim, action_dim, device, alpha=cfg.alpha, tau=cfg.tau, gamma=cfg.gamma,
                        actor_lr=cfg.actor_lr, critic_lr=cfg.critic_lr, alpha_lr=cfg.alpha_lr,
                        grad_norm=cfg.grad_norm, units=cfg.units, log_std_min=cfg.log_std_min,
                        log_std_max=cfg.log_std_max, learnable_temperature=cfg.learnable_temperature,
                        normalize_input=cfg.normalize_input)
    raise ValueError(f"train.algo={cfg.algo!r} is invalid; accepted: {', '.join(ALGOS)}")
