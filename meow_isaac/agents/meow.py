"""The MEow update: soft Bellman error on the EBFlow, Adam, gradient clipping, Polyak target.

Paper: Chao et al., NeurIPS 2024, Sec. 3.2 (soft Bellman objective, Eq. 12) and Sec. 3.3 (shifting-based
clipped double Q, SCDQ). Spec: ``shared/reference/meow_algorithm.md`` section 4.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from meow_isaac.agents.base import UpdateFaults, adam_step_if_finite, polyak_if_finite, update_is_finite
from meow_isaac.agents.fused_step import FusedUpdate, supports_fused
from meow_isaac.compile import Compiled, autocast, resolve_compile, warn_if_bf16_is_emulated
from meow_isaac.distributed import all_reduce_gradients
from meow_isaac.flat import FlatParams, adam_state_from_per_param, adam_state_to_per_param
from meow_isaac.flows import EBFlowPolicy
from meow_isaac.normalization import RunningObsNormalizer
from meow_isaac.replay import Batch


def meow_loss(policy: EBFlowPolicy, target: EBFlowPolicy, batch: Batch, alpha: float, gamma: float,
              two_pass: bool = False) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """Soft Bellman error of both shift heads (pure function of nets, batch and hyperparameters).

    ``y = r + gamma (1 - terminated) min_j Vbar_j(s')`` with the target's exact soft V (sigma network and
    shift heads only, no coupling pass); ``L = mean_{batch, j} (Q_j(s, a) - y)^2``.

    Args:
        policy: the trained flow (train mode: coupling dropout active).
        target: Polyak copy (eval mode), used without gradients.
        batch: normalised minibatch (``obs``/``next_obs`` ``(B, obs_dim)``, ``reward``/``terminated`` ``(B,)``).
        alpha: temperature (> 0). gamma: discount in ``[0, 1]``.
        two_pass: reproduce the reference formulation's two flow passes (one per head, independent dropout
            masks) instead of one shared pass.

    Returns:
        ``(loss, metrics)``: 0-dim loss; metrics are detached 0-dim tensors (``values/q``, ``values/target_v``,
        ``values/target_y``), read only at log intervals.
    """
    with torch.no_grad():
        next_v = target.soft_v(batch.next_obs, alpha).min(-1).values
        y = batch.reward + gamma * (1.0 - batch.terminated) * next_v
    if two_pass:
        q = torch.stack([policy.soft_q(batch.obs, batch.action, alpha)[:, j] for j in range(2)], dim=-1)
    else:
        q = policy.soft_q(batch.obs, batch.action, alpha)
    loss = (q - y.unsqueeze(-1)).square().mean()
    metrics = {"values/q": q.detach().mean(), "values/target_v": next_v.mean(), "values/target_y": y.mean()}
    return loss, metrics


def flow_action(normalizer: RunningObsNormalizer, policy: EBFlowPolicy, obs: torch.Tensor,
                z0: torch.Tensor) -> torch.Tensor:
    """The flow's action ``(N, action_dim)`` for raw ``obs (N, obs_dim)`` and noise ``z0 (N, action_dim)`` (the
    function :meth:`MEowAgent.act` compiles; a plain function of its modules, so that the compiled copy can drop
    the guards on them: ``Compiled(fixed_args=)``)."""
    return policy.generate(normalizer(obs), z0)


class DeterministicFlowActor(nn.Module):
    """``obs (B, obs_dim)`` (normalised) -> the flow's deterministic action ``(B, action_dim)``."""

    def __init__(self, policy: EBFlowPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z0 = torch.zeros(obs.shape[0], self.policy.action_dim, dtype=obs.dtype, device=obs.device)
        return self.policy.generate(obs, z0)


def make_adam(params: List[nn.Parameter], learning_rate: float) -> torch.optim.Adam:
    """Adam with the fused kernel where the device supports it (CUDA, and CPU since torch 2.4; 3x faster
    than foreach on CPU here), else the foreach implementation."""
    try:
        return torch.optim.Adam(params, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=learning_rate, foreach=True)


class MEowAgent(nn.Module):
    """Policy + target flow + observation normaliser + Adam: acting and the MEow update.

    Args:
        obs_dim, action_dim: sizes. device: training device.
        alpha: temperature; tau: Polyak rate; gamma: discount; learning_rate: Adam step size;
        grad_norm: max gradient norm (clip); sigma_max/sigma_min: flow prior bounds;
        normalize_input: use the running observation normaliser; two_pass: reference formulation (see
        :func:`meow_loss`); dropout: coupling dropout; activation: ``swish`` (the authors' network) or ``relu``
        (this project's earlier network), ``train.activation`` (:class:`~meow_isaac.flows.EBFlowPolicy`).
        compile: ``auto`` | ``True`` | ``False`` (``train.compile``, :mod:`meow_isaac.compile`): compile the loss
            (forward and backward) and the acting path; ``auto`` = on CUDA (CUDA graphs), and on CPU when
            ``planned_updates`` reaches :data:`~meow_isaac.compile.CPU_AUTO_COMPILE_UPDATES`. On CPU the whole
            update (loss, gradient, clipping, Adam, Polyak) is compiled as one graph
            (:mod:`meow_isaac.agents.fused_step`), except under torchrun or with ``two_pass``.
        amp: ``none`` | ``bf16``: bf16 autocast of the loss (parameters, Adam and the target stay float32).
        planned_updates: updates the run will make (for ``compile=auto`` on CPU); None = unknown.

    Raises:
        ValueError: non-positive alpha/learning_rate/grad_norm, tau/gamma outside ``[0, 1]``, or an unknown
            compile/amp/activation value.
    """

    def __init__(self, obs_dim: int, action_dim: int, device: torch.device, alpha: float = 0.2,
                 tau: float = 0.005, gamma: float = 0.99, learning_rate: float = 1e-3, grad_norm: float = 30.0,
                 sigma_max: float = -0.3, sigma_min: float = -5.0, normalize_input: bool = False,
                 two_pass: bool = False, dropout: float = 0.1, compile: Any = "auto", amp: str = "none",
                 planned_updates: Optional[int] = None, activation: str = "swish") -> None:
        super().__init__()
        for key, value in (("alpha", alpha), ("learning_rate", learning_rate), ("grad_norm", grad_norm)):
            if not value > 0:
                raise ValueError(f"{key}={value} is invalid: expected a positive number")
        for key, value in (("tau", tau), ("gamma", gamma)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{key}={value} is invalid: expected a number in [0, 1]")
        self.alpha, self.tau, self.gamma = float(alpha), float(tau), float(gamma)
        self.grad_norm, self.two_pass = float(grad_norm), bool(two_pass)
        self.world_size = 1  # > 1 under torchrun: gradients are averaged over ranks (meow_isaac.distributed)
        self.policy = EBFlowPolicy(obs_dim, action_dim, sigma_max, sigma_min, dropout=dropout,
                                   activation=activation).to(device)
        self.target = copy.deepcopy(self.policy).requires_grad_(False).eval()
        self.normalizer = RunningObsNormalizer(obs_dim, enabled=normalize_input).to(device)
        self.learning_rate = float(learning_rate)
        self._flatten()
        self.optimizer = make_adam(self._params, self.learning_rate)
        self.faults = UpdateFaults(device)
        self.device, self.amp = torch.device(device), str(amp)
        autocast(self.amp, self.device)  # validates amp
        warn_if_bf16_is_emulated(self.amp, self.device)
        self.compiled = resolve_compile(compile, self.device, planned_updates)
        self._loss_fn = Compiled(meow_loss, self.device, "the MEow loss", fixed_args=("policy", "target")) \
            if self.compiled else meow_loss
        self._act_fn = Compiled(flow_action, self.device, "the acting path", fixed_args=("normalizer", "policy"),
                                cpp_wrapper=True) if self.compiled else flow_action
        self._fused = self._make_fused()

    def _make_fused(self) -> Optional[FusedUpdate]:
        """The one-graph update (:mod:`meow_isaac.agents.fused_step`) where it is used: compiled, on CPU (on CUDA
        the loss runs as CUDA graphs instead), one shared flow pass. :meth:`update` takes it while the optimizer is
        a plain Adam over the flat buffer and there is one process."""
        if not (self.compiled and self.device.type == "cpu" and not self.two_pass):
            return None
        return FusedUpdate(self.policy, self.target, self._flat, self._target_flat, meow_loss, self.amp)

    def _flatten(self) -> None:
        """Policy and target parameters as views of one flat buffer each (:mod:`meow_isaac.flat`): Adam,
        clipping, zeroing and Polyak are then one op each. ``self._params`` is what the optimizer steps."""
        self._flat = FlatParams(list(self.policy.parameters()))
        self._target_flat = FlatParams(list(self.target.parameters()), with_grad=False)
        self._params: List[nn.Parameter] = [self._flat.param]

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> "MEowAgent":
        """``Module.to``/``cuda``/``float``: moves the parameters, then rebuilds the flat buffers and Adam (its
        state carried over), which the move would otherwise leave pointing at the old storage."""
        optimizer = getattr(self, "optimizer", None)
        state = self.optimizer_state_dict() if optimizer is not None else None
        super()._apply(fn, *args, **kwargs)
        if optimizer is not None and not self._flat.is_intact():
            self._flatten()
            self.optimizer = make_adam(self._params, self.learning_rate)
            self.load_optimizer_state_dict(state)
            self._fused = self._make_fused()
        return self

    @torch.no_grad()
    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions ``(N, action_dim)`` in ``(-1, 1)`` for raw observations ``(N, obs_dim)``.

        The policy acts without coupling dropout (:meth:`EBFlowPolicy.generate`, eval-mode semantics, whatever
        the module's mode); stochasticity comes from ``z0`` only.
        """
        shape = (obs.shape[0], self.policy.action_dim)
        z0 = torch.zeros(shape, device=obs.device) if deterministic else torch.randn(shape, device=obs.device)
        return self._act_fn(self.normalizer, self.policy, obs, z0)

    def update(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """One gradient step on a raw-observation minibatch, then the Polyak update. No host sync.

        If the loss or the gradient norm is non-finite, the update is skipped: parameters, Adam state (step
        counter included) and target stay bit-identical (device-side flag, no host read), and
        :attr:`faults` counts it.

        Returns detached 0-dim metric tensors keyed by TensorBoard name (``losses/loss``, ``losses/grad_norm``,
        ``values/q``, ``values/target_v``, ``values/target_y``, ``faults/update_skipped``).
        """
        batch = batch._replace(obs=self.normalizer(batch.obs), next_obs=self.normalizer(batch.next_obs))
        if not self.policy.training:  # act() does not switch modes; train() walks all 40 submodules
            self.policy.train()
        if self._fused is not None and self._fused.active and self.world_size == 1 \
                and supports_fused(self.optimizer, self._flat) is None:
            self.policy.predraw_dropout(batch.obs.shape[0])  # the eager draws, applied inside the graph
            metrics = self._fused(self.optimizer, batch, self.alpha, self.gamma, self.tau, self.grad_norm)
            finite = metrics.pop("finite")
            self.faults.record(finite)
            metrics["faults/update_skipped"] = (~finite).to(torch.float32)
            return metrics
        if isinstance(self._loss_fn, Compiled) and self._loss_fn.active and not self.two_pass \
                and self.device.type == "cpu":
            self.policy.predraw_dropout(batch.obs.shape[0])  # the eager draws, applied inside the graph
        with autocast(self.amp, self.device):
            loss, metrics = self._loss_fn(self.policy, self.target, batch, self.alpha, self.gamma, self.two_pass)
        loss = loss.float()
        self._flat.zero_grad()  # one fill; the per-parameter .grad views stay attached
        loss.backward()
        if self.world_size > 1:
            all_reduce_gradients(self._params, self.world_size)
        grad_norm = nn.utils.clip_grad_norm_(self._params, self.grad_norm, foreach=True)
        finite = update_is_finite(loss, grad_norm, self.world_size)
        adam_step_if_finite(self.optimizer, finite)
        polyak_if_finite([self._target_flat.data], [self._flat.data], self.tau, finite)
        self.faults.record(finite)
        metrics["losses/loss"] = loss.detach()
        metrics["losses/grad_norm"] = grad_norm.detach()
        metrics["faults/update_skipped"] = (~finite).to(torch.float32)
        return metrics

    def optimizer_state_dict(self) -> Dict[str, Any]:
        """Adam's state (for exact resume), per policy parameter (``policy.parameters()`` order), as
        ``torch.optim.Adam.state_dict()`` over those parameters would give it: the format does not depend on the
        flat buffer."""
        return adam_state_to_per_param(self.optimizer, self._flat)

    def load_optimizer_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore Adam's state from :meth:`optimizer_state_dict`'s format.

        Raises:
            ValueError: the state does not fit the policy's parameters (count or shapes).
        """
        self.optimizer.load_state_dict(adam_state_from_per_param(state, self._flat))

    def deterministic_actor(self) -> nn.Module:
        """Normalised obs -> deterministic flow action (``z0 = 0``, spec section 5)."""
        return DeterministicFlowActor(self.policy)
