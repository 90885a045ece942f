"""The whole MEow update (loss, gradient, clipping, Adam, Polyak, non-finite skip) as one function of flat
tensors, which ``torch.compile`` turns into one graph: the compiled CPU update of :class:`MEowAgent`.

The default compiled update (:mod:`meow_isaac.compile`) compiles the loss; its backward then runs through the
autograd engine (64 ``AccumulateGrad`` nodes; 52 with ``train.activation=relu``), and clipping, Adam and Polyak are
eager calls with their own Python and dispatch cost. At batch 256 those costs are as large as the arithmetic on this
project's CPU. Here the gradient comes from ``torch.func.grad_and_value`` with respect to the flat parameter buffer
(:mod:`meow_isaac.flat`; ``torch.func.functional_call`` puts its views into the policy), and the optimizer step is
written out, so inductor fuses the elementwise tail of the backward, the gradient norm, Adam and Polyak into a few
C++ loops (``benchmarks/README.md`` has the measurement).

Numerically it is the eager update: :func:`meow_isaac.agents.meow.meow_loss`, ``clip_grad_norm_`` (norm of all
gradients, ``max_norm / (norm + 1e-6)`` capped at 1), ``torch.optim.Adam`` (Kingma & Ba, Alg. 1, with PyTorch's
bias correction and ``eps`` added after the square root) and ``target <- lerp(target, policy, tau)``; when the loss
or the gradient norm is non-finite, parameters, Adam moments, the step counter and the target stay as they were
(as :func:`meow_isaac.agents.base.adam_step_if_finite` does). The Adam state lives in the agent's
``torch.optim.Adam`` (``optimizer.state``), so checkpoints, resume and the eager path see the same state.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from meow_isaac.compile import Compiled, autocast
from meow_isaac.flat import FlatParams
from meow_isaac.replay import Batch

CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_: max_norm / (total_norm + 1e-6)


class _LossModule(nn.Module):
    """``forward`` = :func:`meow_loss` of (policy, target), so ``functional_call`` can swap both nets' weights."""

    def __init__(self, policy: nn.Module, target: nn.Module, loss_fn: Any) -> None:
        super().__init__()
        self.policy, self.target, self.loss_fn = policy, target, loss_fn

    def forward(self, batch: Batch, alpha: float, gamma: float) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        return self.loss_fn(self.policy, self.target, batch, alpha, gamma)


def adam_scalars(step: torch.Tensor, lr: float, beta1: float, beta2: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """Adam's bias-corrected step size ``lr / (1 - beta1^t)`` and ``sqrt(1 - beta2^t)`` for the next step
    ``t = step + 1`` (``step``: Adam's 0-dim float32 step counter), as 0-dim tensors on its device.

    Computed outside the compiled graph on purpose: inside it, inductor inlines these scalar ``pow`` calls into
    the vectorised loop over the parameters, once per 8 elements (about 0.5 ms of a 256-row update on this
    project's CPU). A skipped update discards the step it would have taken, so ``t`` is always ``step + 1``.
    """
    t = step + 1.0
    return lr / (1.0 - torch.pow(beta1, t)), torch.sqrt(1.0 - torch.pow(beta2, t))


def adam_math(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
              step_size: torch.Tensor, bias_correction2_sqrt: torch.Tensor, beta1: float, beta2: float,
              eps: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Adam step, out of place, as ``torch.optim.Adam`` (no weight decay, no amsgrad) computes it.

    Args:
        param, grad, exp_avg, exp_avg_sq: ``(P,)`` float32. step_size, bias_correction2_sqrt: 0-dim float32
            from :func:`adam_scalars` (tensors, so a changed learning rate needs no recompile).

    Returns:
        ``(param, exp_avg, exp_avg_sq)`` after the step.
    """
    exp_avg = torch.lerp(exp_avg, grad, 1.0 - beta1)
    exp_avg_sq = exp_avg_sq * beta2 + (1.0 - beta2) * grad * grad
    denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
    return param - step_size * exp_avg / denom, exp_avg, exp_avg_sq


def fused_meow_update(loss_module: _LossModule, names: List[str], views: Callable[[torch.Tensor], List[torch.Tensor]],
                      flat: torch.Tensor, grad_out: torch.Tensor, target_flat: torch.Tensor,
                      exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, step: torch.Tensor,
                      step_size: torch.Tensor, bias_correction2_sqrt: torch.Tensor, batch: Batch, alpha: float,
                      gamma: float, tau: float, max_grad_norm: float, beta1: float, beta2: float, eps: float,
                      amp: str) -> Dict[str, torch.Tensor]:
    """One MEow update on flat tensors, in place (the function :class:`FusedUpdate` compiles).

    Args:
        loss_module: the policy and target behind :func:`meow_loss`. names: the policy's (and the target's:
            same structure) parameter names in :class:`FlatParams` order. views: :meth:`FlatParams.views`.
        flat: ``(P,)`` policy parameters (updated). grad_out: ``(P,)`` receives the clipped gradient, as
            ``.grad`` holds it after the eager update. target_flat: ``(P,)`` target parameters (Polyak).
        exp_avg, exp_avg_sq, step: Adam's state (updated). step_size, bias_correction2_sqrt: 0-dim, from
            :func:`adam_scalars`.
        batch: normalised minibatch. alpha, gamma, tau, max_grad_norm, beta1, beta2, eps: hyperparameters.
        amp: ``none`` | ``bf16`` (autocast of the loss).

    Returns:
        0-dim metrics: ``losses/loss``, ``losses/grad_norm`` (before clipping), the loss's ``values/*``, and
        ``finite`` (bool: the update was applied).
    """
    def loss_of(params: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        weights = {f"policy.{n}": v for n, v in zip(names, views(params))}
        weights.update({f"target.{n}": v for n, v in zip(names, views(target_flat))})
        with autocast(amp, flat.device):
            loss, metrics = torch.func.functional_call(loss_module, weights, (batch, alpha, gamma))
        return loss.float(), metrics

    grad, (loss, metrics) = torch.func.grad_and_value(loss_of, has_aux=True)(flat)
    grad_norm = torch.linalg.vector_norm(grad)
    grad = grad * torch.clamp(max_grad_norm / (grad_norm + CLIP_EPS), max=1.0)
    finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
    new_step = step + finite.to(step.dtype)
    new_flat, new_avg, new_avg_sq = adam_math(flat, grad, exp_avg, exp_avg_sq, step_size, bias_correction2_sqrt,
                                              beta1, beta2, eps)
    new_flat = torch.where(finite, new_flat, flat)
    exp_avg.copy_(torch.where(finite, new_avg, exp_avg))
    exp_avg_sq.copy_(torch.where(finite, new_avg_sq, exp_avg_sq))
    step.copy_(new_step)
    flat.copy_(new_flat)
    grad_out.copy_(grad)
    target_flat.lerp_(new_flat, finite.to(flat.dtype) * tau)
    metrics = dict(metrics)
    metrics.update({"losses/loss": loss, "losses/grad_norm": grad_norm, "finite": finite})
    return metrics


def supports_fused(optimizer: torch.optim.Optimizer, flat: FlatParams) -> Optional[str]:
    """None if ``optimizer`` is an Adam the fused update reproduces (one group over ``flat.param``, no weight
    decay, amsgrad, maximize or differentiable), else the reason it is not."""
    if not isinstance(optimizer, torch.optim.Adam):
        return f"optimizer is {type(optimizer).__name__}, not Adam"
    groups = optimizer.param_groups
    if len(groups) != 1 or len(groups[0]["params"]) != 1 or groups[0]["params"][0] is not flat.param:
        return "optimizer does not hold exactly the flat policy buffer"
    group = groups[0]
    for key in ("weight_decay", "amsgrad", "maximize", "differentiable"):
        if group.get(key):
            return f"Adam {key}={group[key]}"
    return None


class FusedUpdate:
    """``torch.compile`` (:class:`~meow_isaac.compile.Compiled`) of :func:`fused_meow_update` bound to an
    agent's networks and flat buffers: a private copy per instance with dynamo's guards on the fixed arguments
    (``loss_module``, ``names``, ``views``) dropped and inductor's C++ wrapper (``benchmarks/README.md``, 2026-12-03).

    Module hooks on the policy's parameters do not run (the gradient is taken with ``torch.func``).

    Args:
        policy, target: the EBFlows (same structure). flat, target_flat: their :class:`FlatParams`.
        loss_fn: :func:`meow_loss`. amp: ``none`` | ``bf16``.
    """

    def __init__(self, policy: nn.Module, target: nn.Module, flat: FlatParams, target_flat: FlatParams,
                 loss_fn: Any, amp: str) -> None:
        self.loss_module = _LossModule(policy, target, loss_fn)
        self.names = [name for name, _ in policy.named_parameters()]
        self.flat, self.target_flat, self.amp = flat, target_flat, amp
        self.compiled = Compiled(fused_meow_update, flat.data.device, "the fused MEow update",
                                 fixed_args=("loss_module", "names", "views"), cpp_wrapper=True)

    @property
    def active(self) -> bool:
        """False once compiling failed (that call ran eagerly; the agent then takes its unfused path)."""
        return self.compiled.active

    def _adam_state(self, optimizer: torch.optim.Optimizer) -> Dict[str, torch.Tensor]:
        """``optimizer``'s state for the flat buffer, created as ``torch.optim.Adam`` creates it (fused or
        capturable: a float32 device step counter; zero moments) before the first step."""
        state = optimizer.state[self.flat.param]
        if not state:
            data = self.flat.data
            state["step"] = torch.zeros((), dtype=torch.float32, device=data.device)
            state["exp_avg"] = torch.zeros_like(data, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(data, memory_format=torch.preserve_format)
        return state

    def __call__(self, optimizer: torch.optim.Optimizer, batch: Batch, alpha: float, gamma: float, tau: float,
                 max_grad_norm: float) -> Dict[str, torch.Tensor]:
        """One update (see :func:`fused_meow_update`) stepping ``optimizer``, an Adam the caller has checked
        with :func:`supports_fused` (its ``state`` is read and written, its ``lr``, ``betas`` and ``eps`` read);
        returns its metrics."""
        group = optimizer.param_groups[0]
        state = self._adam_state(optimizer)
        beta1, beta2 = (float(b) for b in group["betas"])
        step_size, bias_correction2_sqrt = adam_scalars(state["step"], float(group["lr"]), beta1, beta2)
        return self.compiled(self.loss_module, self.names, self.flat.views, self.flat.data,
                             self.flat.grad, self.target_flat.data, state["exp_avg"], state["exp_avg_sq"],
                             state["step"], step_size, bias_correction2_sqrt, batch, alpha, gamma, tau,
                             max_grad_norm, beta1, beta2, float(group["eps"]), self.amp)
