"""The interface every agent offers the trainer, runner, checkpoints and export."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
from torch import nn

from meow_isaac.distributed import all_reduce_sum
from meow_isaac.normalization import RunningObsNormalizer
from meow_isaac.replay import Batch

try:
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore


class Agent(Protocol):
    """An off-policy agent; an ``nn.Module`` whose ``state_dict`` holds every network and the normaliser.

    ``world_size`` > 1 means gradients are averaged over torchrun ranks inside ``update``.
    """

    normalizer: RunningObsNormalizer
    world_size: int
    faults: "UpdateFaults"  # optional: device counters of skipped updates (read by the trainer at log intervals)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions ``(N, action_dim)`` in ``[-1, 1]`` for raw observations ``(N, obs_dim)`` (no grad)."""

    def update(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """One gradient step (all nets) on a raw-observation minibatch; 0-dim metric tensors keyed by their
        TensorBoard names (e.g. ``losses/loss``). Must not read tensors on the host. A step whose loss or
        gradient norm is non-finite is skipped (:func:`adam_step_if_finite`, :func:`polyak_if_finite`) and
        reported as ``faults/update_skipped`` = 1.0 (else 0.0)."""

    def optimizer_state_dict(self) -> Dict[str, Any]:
        """State of every optimizer (for exact resume)."""

    def load_optimizer_state_dict(self, state: Dict[str, Any]) -> None:
        """Inverse of :meth:`optimizer_state_dict`."""

    def deterministic_actor(self) -> nn.Module:
        """Module mapping *normalised* obs ``(B, obs_dim)`` to the deterministic action (for export)."""

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> Any: ...


# ---------------------------------------------------------------------------------------------- update faults
class NonFiniteUpdatesError(RuntimeError):
    """``train.max_bad_updates`` consecutive updates had a non-finite loss or gradient: the trainer saved the
    last good state and stopped. The message is one line; the runner prints it and exits with ``exit_code``."""

    exit_code = 4


class UpdateFaults:
    """Device counters of skipped updates (0-dim int64, no host sync): ``skipped`` (total), ``streak`` (current
    run of consecutive skipped updates), ``peak`` (longest run since the trainer last read it, see
    :meth:`reset_peak`). Not part of the agent's ``state_dict``."""

    def __init__(self, device: torch.device) -> None:
        self.skipped, self.streak, self.peak = (torch.zeros((), dtype=torch.long, device=device) for _ in range(3))

    def record(self, finite: torch.Tensor) -> None:
        """Count one update; ``finite`` is its 0-dim bool flag (False: skipped)."""
        if self.skipped.device != finite.device:  # the agent was moved after construction
            self.skipped, self.streak, self.peak = (t.to(finite.device) for t in (self.skipped, self.streak,
                                                                                 self.peak))
        bad = (~finite).long()
        self.skipped += bad
        self.streak.add_(1).mul_(bad)  # +1 if skipped, else back to 0
        torch.maximum(self.peak, self.streak, out=self.peak)

    def reset_peak(self) -> None:
        """Start a new window for :attr:`peak` (it keeps the current streak)."""
        self.peak.copy_(self.streak)


def update_is_finite(loss: torch.Tensor, grad_norm: torch.Tensor, world_size: int = 1) -> torch.Tensor:
    """0-dim bool: ``loss`` and the (all-reduced) gradient norm are finite. Under torchrun the loss flags of all
    ranks are summed (one tiny all-reduce) so every rank takes the same decision."""
    loss_bad = (~torch.isfinite(loss.detach())).to(torch.float32).reshape(1)
    if world_size > 1:
        all_reduce_sum(loss_bad)
    return (loss_bad[0] == 0) & torch.isfinite(grad_norm.detach())


def adam_step_if_finite(optimizer: torch.optim.Optimizer, finite: torch.Tensor) -> None:
    """``optimizer.step()`` that leaves the parameters and the whole optimizer state (moments and the step
    counter) bit-identical when the 0-dim bool ``finite`` is False; no host sync.

    Fused Adam (CUDA; CPU since torch 2.4): ``found_inf`` is passed as torch's ``GradScaler`` does
    (``optimizer.found_inf``): the fused kernel skips the update and ``torch.optim.adam._fused_adam`` takes back
    its step increment (``step -= found_inf``; exact while steps < 2**24, the float32 step counter's own limit).
    Other implementations (foreach / for-loop, which reject ``found_inf``): the parameters and the state are
    copied before the step and restored with ``torch.where`` after it (state created by a skipped first step
    is zeroed).
    """
    if all(group.get("fused") for group in optimizer.param_groups):
        optimizer.found_inf = (~finite).to(torch.float32)  # type: ignore[attr-defined]
        try:
            optimizer.step()
        finally:
            del optimizer.found_inf  # type: ignore[attr-defined]
        return
    params: List[torch.Tensor] = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    saved: List[Optional[Dict[str, Any]]] = []
    for p in params:
        state = optimizer.state.get(p)
        saved.append({k: v.clone() for k, v in state.items() if isinstance(v, torch.Tensor)} if state else None)
    before = [p.detach().clone() for p in params]
    optimizer.step()
    with torch.no_grad():
        for p, old, state_before in zip(params, before, saved):
            p.copy_(torch.where(finite.to(p.device), p, old))
            for key, value in optimizer.state[p].items():
                if isinstance(value, torch.Tensor):
                    prev = state_before[key] if state_before is not None else torch.zeros_like(value)
                    value.copy_(torch.where(finite.to(value.device), value, prev))


def polyak_if_finite(target: List[torch.Tensor], source: List[torch.Tensor], tau: float,
                     finite: torch.Tensor) -> None:
    """``target <- lerp(target, source, tau * finite)`` in place: the Polyak update, with weight 0 (target left
    unchanged) when the update was skipped; no host sync.

    CPU: ``_foreach_lerp_`` with a 0-dim tensor weight per tensor, bit-identical to the scalar
    ``_foreach_lerp_(target, source, tau)`` and as fast (CPU foreach ops loop over the tensors anyway). Other
    devices: ``target += (source - target) * weight`` in three multi-tensor kernels (a tensor-list lerp weight
    would leave the fused multi-tensor path there); same update up to float rounding.
    """
    with torch.no_grad():
        weight = finite.to(target[0].dtype) * tau
        if target[0].device.type == "cpu":
            torch._foreach_lerp_(target, source, [weight] * len(target))
            return
        delta = torch._foreach_sub(source, target)
        try:
            torch._foreach_mul_(delta, weight)
        except (TypeError, RuntimeError):  # torch < 2.1: no Tensor overload of _foreach_mul_
            for d in delta:
                d.mul_(weight)
        torch._foreach_add_(target, delta)
