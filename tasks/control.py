"""Shared joint-control and reset-noise helpers of the embedded Isaac tasks (batched torch, any float dtype).

PD control on MuJoCo: a task's stiff PD drive is a ``position`` actuator (``kp``, ``kv``, ``forcerange``) in its
MJCF, so MuJoCo integrates the damping implicitly (``implicitfast``) at every substep; the task writes the
targets into ``ctrl``. This module holds the pieces around that, written once:

* :func:`usd_angular_drive_gains`: Isaac Sim USD angular-drive gains (per degree) -> SI (per radian).
* :func:`pd_torque`: the PD law a position servo applies, ``clamp(kp (q* - q) - kd q̇, ±limit)`` (reference
  for tests, and for tasks that apply explicit joint torques).
* :func:`integrate_targets`: OIGE relative control, ``clamp(q*_{t-1} + scale * dt * a, lo, hi)``.
* :func:`position_servo_gains`: ``(kp, kd, limit)`` of a model's position actuators (to check an MJCF).
* :func:`sample_uniform`: ``U(low_j, high_j)`` per column from a seeded generator (reset noise, commands, goals).
* :func:`absolute_targets`: OIGE absolute control, ``clamp(α scale(a, lo, hi) + (1 − α) q*_{t-1}, lo, hi)``.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import mujoco
import numpy as np
import torch

from tasks.torch_utils import scale

Bound = Union[float, Sequence[float], torch.Tensor]


def usd_angular_drive_gains(stiffness: float, damping: float) -> Tuple[float, float]:
    """SI gains ``(kp [N m/rad], kd [N m s/rad])`` of a USD angular drive whose gains are per degree.

    Isaac Sim's ``UsdPhysics.DriveAPI`` angular stiffness/damping are torque per degree (per degree/s), so
    ``kp = stiffness * 180/pi`` and ``kd = damping * 180/pi`` (``isaac_tasks.md`` section 4.3).
    """
    deg = 180.0 / math.pi
    return stiffness * deg, damping * deg


def pd_torque(q: torch.Tensor, qd: torch.Tensor, target: torch.Tensor, kp: Bound, kd: Bound,
              limit: Bound = math.inf) -> torch.Tensor:
    """Joint torque ``clamp(kp (target - q) - kd qd, -limit, limit)`` (all ``(..., n)``; gains broadcast)."""
    tau = torch.as_tensor(kp, dtype=q.dtype) * (target - q) - torch.as_tensor(kd, dtype=q.dtype) * qd
    limit = torch.as_tensor(limit, dtype=q.dtype)
    return torch.maximum(torch.minimum(tau, limit), -limit)


def integrate_targets(targets: torch.Tensor, actions: torch.Tensor, scale: float, dt: float,
                      lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """OIGE relative PD targets: ``clamp(targets + scale * actions * dt, lower, upper)`` ``(N, n)``."""
    return torch.clamp(targets + scale * dt * actions.to(targets.dtype), lower, upper)


def position_servo_gains(model: mujoco.MjModel) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(kp, kd, limit)`` ``(nu,)`` of ``model``'s position servos (``inf`` where not force-limited).

    Raises:
        ValueError: an actuator is not a position servo (``gain = kp``, ``bias = -kp q - kd q̇``).
    """
    kp = model.actuator_gainprm[:, 0].copy()
    bias = model.actuator_biasprm[:, :3]
    ok = ((model.actuator_gaintype == mujoco.mjtGain.mjGAIN_FIXED)
          & (model.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE)
          & (bias[:, 0] == 0) & (bias[:, 1] == -kp))
    if not ok.all():
        raise ValueError(f"actuators {np.flatnonzero(~ok).tolist()} are not position servos")
    limit = np.where(model.actuator_forcelimited.astype(bool),
                     np.minimum(-model.actuator_forcerange[:, 0], model.actuator_forcerange[:, 1]), np.inf)
    return kp, -bias[:, 2].copy(), limit


def sample_uniform(generator: torch.Generator, low: Bound, high: Bound, num: int,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(num, d)`` samples, column ``j`` from ``U(low_j, high_j)`` (``low``/``high``: scalars or ``(d,)``).

    Drawn in float64 on the generator's device and returned as ``dtype`` there, so the same seed gives the
    same numbers (up to rounding) for every engine dtype.
    """
    f64 = dict(dtype=torch.float64, device=generator.device)
    low_t = torch.atleast_1d(torch.as_tensor(low, **f64))
    high_t = torch.atleast_1d(torch.as_tensor(high, **f64))
    low_t, high_t = torch.broadcast_tensors(low_t, high_t)
    u = torch.rand((num, low_t.shape[0]), generator=generator, **f64)
    return (low_t + (high_t - low_t) * u).to(dtype)


def absolute_targets(actions: torch.Tensor, prev_targets: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor,
                     moving_average: float = 1.0) -> torch.Tensor:
    """OIGE absolute PD targets ``(N, n)`` with the action moving average (``isaac_tasks.md`` section 5.3).

    ``clamp(α (lower + (a + 1)(upper − lower)/2) + (1 − α) prev_targets, lower, upper)``, ``α = moving_average``
    (1 = no smoothing).
    """
    target = scale(actions.to(prev_targets.dtype), lower, upper)
    target = moving_average * target + (1.0 - moving_average) * prev_targets
    return torch.clamp(target, lower, upper)
