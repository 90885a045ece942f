"""Soft Actor-Critic in the same harness as MEow (replay, normaliser, trainer, checkpoints, export).

Algorithm: Haarnoja et al., "Soft Actor-Critic Algorithms and Applications", 2018 (arXiv:1812.05905):
tanh-squashed Gaussian actor, twin Q critics with Polyak-averaged targets (clipped double Q), temperature
learned towards the target entropy ``-action_dim`` (or fixed). Update as CleanRL ``sac_continuous_action.py``:
critic step, then actor step, then temperature step, then the Polyak update of the target critics.

Simplifications (documented in ``cfg/train/*SAC.yaml``):

* actor, temperature and target are updated on *every* gradient step (CleanRL's ``policy_frequency=2``, which
  does 2 actor steps every 2nd step, gives the same number of actor steps; ``target_network_frequency=1`` is
  CleanRL's default; rl_games v1.6.1 SAC, used by the IsaacGymEnvs configs, also updates all every step);
* the temperature loss reuses the (detached) log-probabilities of the actor step instead of sampling the
  updated actor once more (as rl_games and the authors' softlearning code; saves one actor pass);
* tanh log-det-Jacobian in the exact, stable form ``2 (log 2 - u - softplus(-2u))`` (rl_games'
  ``TanhTransform``) instead of CleanRL's ``log(1 - tanh(u)^2 + 1e-6)``.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from meow_isaac.agents.base import UpdateFaults, adam_step_if_finite, polyak_if_finite, update_is_finite
from meow_isaac.agents.meow import make_adam
from meow_isaac.distributed import all_reduce_gradients
from meow_isaac.normalization import RunningObsNormalizer
from meow_isaac.replay import Batch

LOG_2 = math.log(2.0)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(in_dim: int, units: Sequence[int], out_dim: int) -> nn.Sequential:
    """``in_dim -> units[0] -> ... -> out_dim`` with ReLU between layers (PyTorch's default init, as CleanRL)."""
    layers: List[nn.Module] = []
    for width in units:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


class TanhGaussianActor(nn.Module):
    """``pi(a|s) = tanh(N(mean(s), exp(log_std(s))^2))``; one MLP with a ``2 * action_dim`` head.

    ``log_std`` is squashed into ``[log_std_min, log_std_max]`` with tanh (CleanRL, rl_games
    ``DiagGaussianActor``).
    """

    def __init__(self, obs_dim: int, action_dim: int, units: Sequence[int], log_std_min: float = -5.0,
                 log_std_max: float = 2.0) -> None:
        super().__init__()
        self.action_dim = action_dim
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        self.net = mlp(obs_dim, units, 2 * action_dim)

    def forward(self, obs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``obs (B, obs_dim)`` (normalised) -> ``(mean, log_std)``, each ``(B, action_dim)`` (pre-tanh)."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(log_std) + 1.0)
        return mean, log_std

    def sample(self, obs: torch.Tensor, deterministic: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised ``(action (B, action_dim) in (-1, 1), log_prob (B,))``; deterministic: ``tanh(mean)``
        (its log-prob is that of the mode)."""
        mean, log_std = self(obs)
        eps = torch.zeros_like(mean) if deterministic else torch.randn_like(mean)
        u = mean + log_std.exp() * eps
        # log N(u; mean, std) - log |d tanh(u) / du|, with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        log_prob = (-0.5 * eps.square() - log_std - HALF_LOG_2PI - 2.0 * (LOG_2 - u - F.softplus(-2.0 * u)))
        return torch.tanh(u), log_prob.sum(-1)


class TwinQ(nn.Module):
    """Two independent Q MLPs ``(s, a) -> (B, 2)``, evaluated together with batched matmuls (one kernel per
    layer for both critics). Initialised as ``nn.Linear`` (uniform in ``+-1/sqrt(fan_in)``)."""

    def __init__(self, obs_dim: int, action_dim: int, units: Sequence[int], num: int = 2) -> None:
        super().__init__()
        sizes = [obs_dim + action_dim, *units, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(num, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``obs (B, obs_dim)``, ``action (B, action_dim)`` -> ``Q (B, num)``."""
        x = torch.cat((obs, action), dim=-1).unsqueeze(0).expand(self.weights[0].shape[0], -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x.squeeze(-1).transpose(0, 1)


def sac_critic_loss(critic: TwinQ, target: TwinQ, actor: TanhGaussianActor, batch: Batch, alpha: torch.Tensor,
                    gamma: float) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Soft Bellman error of both critics: ``sum_j mean_B (Q_j(s, a) - y)^2`` (CleanRL ``qf1_loss + qf2_loss``),
    ``y = r + gamma (1 - terminated) (min_j Qbar_j(s', a') - alpha log pi(a'|s'))``, ``a' ~ pi(.|s')``.

    Args:
        critic, target: twin critics (target used without gradients). actor: samples ``a'`` (no gradient).
        batch: normalised minibatch (``obs``/``next_obs`` ``(B, obs_dim)``, ``reward``/``terminated`` ``(B,)``).
        alpha: 0-dim temperature tensor (detached). gamma: discount.

    Returns:
        ``(loss, metrics)`` with 0-dim detached metrics ``values/q``, ``values/target_y``.
    """
    with torch.no_grad():
        next_action, next_log_prob = actor.sample(batch.next_obs)
        next_v = target(batch.next_obs, next_action).min(-1).values - alpha * next_log_prob
        y = batch.reward + gamma * (1.0 - batch.terminated) * next_v
    q = critic(batch.obs, batch.action)
    loss = (q - y.unsqueeze(-1)).square().mean(0).sum()
    return loss, {"values/q": q.detach().mean(), "values/target_y": y.mean()}


def sac_actor_loss(actor: TanhGaussianActor, critic: TwinQ, obs: torch.Tensor,
                   alpha: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``mean_B (alpha log pi(a|s) - min_j Q_j(s, a))``, ``a ~ pi(.|s)`` reparameterised.

    Returns:
        ``(loss, log_prob)``: 0-dim loss and the detached ``(B,)`` log-probabilities (for the temperature).
    """
    action, log_prob = actor.sample(obs)
    q = critic(obs, action).min(-1).values
    return (alpha * log_prob - q).mean(), log_prob.detach()


def sac_alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Temperature loss ``mean_B (-alpha (log pi + H_target))`` (CleanRL; Haarnoja et al. 2018, Eq. 18)."""
    return (-log_alpha.exp() * (log_prob + target_entropy)).mean()


class DeterministicTanhActor(nn.Module):
    """``obs (B, obs_dim)`` (normalised) -> ``tanh(mean(s))`` ``(B, action_dim)`` (for export)."""

    def __init__(self, actor: TanhGaussianActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.actor(obs)[0])


class SACAgent(nn.Module):
    """Actor + twin critics + target critics + temperature + normaliser + Adam optimizers.

    Args:
        obs_dim, action_dim: sizes. device: training device.
        alpha: temperature (initial value when ``learnable_temperature``); tau: Polyak rate of the target
        critics; gamma: discount; actor_lr/critic_lr/alpha_lr: Adam step sizes; grad_norm: max gradient norm of
        the critic and of the actor (``inf``: no clipping, as CleanRL; the norm is still logged);
        units: hidden widths of every MLP; log_std_min/log_std_max: bounds of the actor's log std;
        learnable_temperature: learn ``log alpha`` towards target entropy ``-action_dim``;
        normalize_input: use the running observation normaliser.

    Raises:
        ValueError: non-positive alpha/learning rates/grad_norm, tau/gamma outside ``[0, 1]``, empty or
            non-positive ``units``, or ``log_std_min >= log_std_max``.
    """

    def __init__(self, obs_dim: int, action_dim: int, device: torch.device, alpha: float = 1.0,
                 tau: float = 0.005, gamma: float = 0.99, actor_lr: float = 3e-4, critic_lr: float = 1e-3,
                 alpha_lr: float = 1e-3, grad_norm: float = math.inf, units: Sequence[int] = (256, 256),
                 log_std_min: float = -5.0, log_std_max: float = 2.0, learnable_temperature: bool = True,
                 normalize_input: bool = False) -> None:
        super().__init__()
        for key, value in (("alpha", alpha), ("actor_lr", actor_lr), ("critic_lr", critic_lr),
                           ("alpha_lr", alpha_lr), ("grad_norm", grad_norm)):
            if not value > 0:
                raise ValueError(f"{key}={value} is invalid: expected a positive number")
        for key, value in (("tau", tau), ("gamma", gamma)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key}={value} is invalid: expected a number in [0, 1]")
        if not units or min(units) < 1:
            raise ValueError(f"units={list(units)} is invalid: expected a non-empty list of integers >= 1")
        if not log_std_min < log_std_max:
            raise ValueError(f"log_std_min={log_std_min} is invalid: expected < log_std_max={log_std_max}")
        self.tau, self.gamma, self.grad_norm = float(tau), float(gamma), float(grad_norm)
        self.learnable_temperature = bool(learnable_temperature)
        self.target_entropy = -float(action_dim)
        self.world_size = 1  # > 1 under torchrun: gradients are averaged over ranks (meow_isaac.distributed)
        self.actor = TanhGaussianActor(obs_dim, action_dim, units, log_std_min, log_std_max).to(device)
        self.critic = TwinQ(obs_dim, action_dim, units).to(device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha), device=device),
                                      requires_grad=self.learnable_temperature)
        self.normalizer = RunningObsNormalizer(obs_dim, enabled=normalize_input).to(device)
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self.actor_optimizer = make_adam(self._actor_params, actor_lr)
        self.critic_optimizer = make_adam(self._critic_params, critic_lr)
        self.alpha_optimizer = make_adam([self.log_alpha], alpha_lr) if self.learnable_temperature else None
        self.faults = UpdateFaults(device)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions ``(N, action_dim)`` in ``(-1, 1)`` for raw observations ``(N, obs_dim)``."""
        return self.actor.sample(self.normalizer(obs), deterministic=deterministic)[0]

    def _step(self, loss: torch.Tensor, params: List[nn.Parameter], optimizer: torch.optim.Optimizer,
              clip: bool, gate: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Backward into ``params`` only, all-reduce, clip, Adam step. The step is skipped (params and Adam state
        bit-identical) unless the loss and gradient norm are finite and ``gate`` (0-dim bool) is True.

        Returns ``(grad norm (0 if not clipped), applied (0-dim bool))``.
        """
        optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=params)
        if self.world_size > 1:
            all_reduce_gradients(params, self.world_size)
        # max_norm inf: the norm only (grads are multiplied by exactly 1).
        norm = nn.utils.clip_grad_norm_(params, self.grad_norm if clip else math.inf, foreach=True)
        applied = update_is_finite(loss, norm, self.world_size)
        if gate is not None:
            applied = applied & gate
        adam_step_if_finite(optimizer, applied)
        return (norm if clip else loss.new_zeros(())), applied

    def update(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """Critic step, actor step, temperature step, Polyak update (CleanRL order). No host sync.

        Returns detached 0-dim metric tensors keyed by TensorBoard name: ``losses/critic_loss``,
        ``losses/actor_loss``, ``losses/alpha_loss`` (learnable temperature only), ``losses/critic_grad_norm``,
        ``losses/actor_grad_norm``, ``values/q``, ``values/target_y``, ``values/alpha``, ``values/entropy``
        (``-mean log pi`` of the actor step), ``faults/update_skipped``.

        Non-finite losses or gradients: each step is skipped when its own loss / gradient norm is non-finite or
        an earlier step of this update was skipped, and the Polyak update when any step was; the update then
        counts as skipped (:attr:`faults`). A non-finite batch (or critic) thus skips the whole update; only a
        fault that first appears in the actor or temperature step leaves the critic step of that update applied.
        """
        batch = batch._replace(obs=self.normalizer(batch.obs), next_obs=self.normalizer(batch.next_obs))
        alpha = self.log_alpha.detach().exp()
        critic_loss, metrics = sac_critic_loss(self.critic, self.critic_target, self.actor, batch, alpha,
                                               self.gamma)
        critic_norm, applied = self._step(critic_loss, self._critic_params, self.critic_optimizer, True)
        actor_loss, log_prob = sac_actor_loss(self.actor, self.critic, batch.obs, alpha)
        actor_norm, applied = self._step(actor_loss, self._actor_params, self.actor_optimizer, True, applied)
        if self.alpha_optimizer is not None:
            alpha_loss = sac_alpha_loss(self.log_alpha, log_prob, self.target_entropy)
            _, applied = self._step(alpha_loss, [self.log_alpha], self.alpha_optimizer, False, applied)
            metrics["losses/alpha_loss"] = alpha_loss.detach()
        polyak_if_finite(self._target_params, self._critic_params, self.tau, applied)
        self.faults.record(applied)
        metrics.update({"losses/critic_loss": critic_loss.detach(), "losses/actor_loss": actor_loss.detach(),
                        "losses/critic_grad_norm": critic_norm.detach(), "losses/actor_grad_norm": actor_norm.detach(),
                        "values/alpha": alpha, "values/entropy": -log_prob.mean(),
                        "faults/update_skipped": (~applied).to(torch.float32)})
        return metrics

    def optimizer_state_dict(self) -> Dict[str, Any]:
        """Adam states of actor, critic and temperature (for exact resume)."""
        state = {"actor": self.actor_optimizer.state_dict(), "critic": self.critic_optimizer.state_dict()}
        if self.alpha_optimizer is not None:
            state["alpha"] = self.alpha_optimizer.state_dict()
        return state

    def load_optimizer_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the Adam states written by :meth:`optimizer_state_dict`."""
        self.actor_optimizer.load_state_dict(state["actor"])
        self.critic_optimizer.load_state_dict(state["critic"])
        if self.alpha_optimizer is not None and "alpha" in state:
            self.alpha_optimizer.load_state_dict(state["alpha"])

    def deterministic_actor(self) -> nn.Module:
        """Normalised obs -> ``tanh(mean)`` (the mode of the squashed Gaussian)."""
        return DeterministicTanhActor(self.actor)
