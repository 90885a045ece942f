"""Small batched quaternion / angle helpers for the task code (pure torch, any device and float dtype).

Quaternions are scalar-first ``(w, x, y, z)`` and unit-norm, as in MuJoCo and Omniverse Isaac Gym; the
formulas restate ``shared/reference/isaac_tasks.md`` section 1 (Isaac Sim ``torch.rotations``).
"""

from __future__ import annotations

import math
from typing import Tuple

import torch


def quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate ``v`` (..., 3) by unit quaternion ``q`` (..., 4): ``R(q) v``."""
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * torch.cross(u, v, dim=-1)
    return v + w * t + torch.cross(u, t, dim=-1)


def quat_rotate_inverse(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate ``v`` (..., 3) by the inverse of unit quaternion ``q`` (..., 4): ``R(q)^T v`` (world -> body)."""
    w, u = q[..., :1], q[..., 1:]
    t = 2.0 * torch.cross(u, v, dim=-1)
    return v - w * t + torch.cross(u, t, dim=-1)


def get_euler_xyz(q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Roll, pitch, yaw (each (...,), rad, in ``[0, 2*pi)``) of ``q`` (..., 4), ZYX convention.

    ``roll = atan2(2(wx+yz), w²−x²−y²+z²)``, ``pitch = asin(2(wy−zx))`` (±pi/2 when saturated),
    ``yaw = atan2(2(wz+xy), w²+x²−y²−z²)``, each taken mod 2*pi as Isaac's ``get_euler_xyz`` does.
    """
    w, x, y, z = q.unbind(-1)
    roll = torch.atan2(2.0 * (w * x + y * z), w * w - x * x - y * y + z * z)
    sin_p = 2.0 * (w * y - z * x)
    pitch = torch.where(sin_p.abs() >= 1.0, torch.copysign(torch.full_like(sin_p, math.pi / 2), sin_p),
                        torch.asin(sin_p.clamp(-1.0, 1.0)))
    yaw = torch.atan2(2.0 * (w * z + x * y), w * w + x * x - y * y - z * z)
    two_pi = 2.0 * math.pi
    return roll % two_pi, pitch % two_pi, yaw % two_pi


def normalize_angle(x: torch.Tensor) -> torch.Tensor:
    """Wrap angles (rad) to ``(-pi, pi]``: ``atan2(sin x, cos x)``."""
    return torch.atan2(torch.sin(x), torch.cos(x))


def unscale(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Map ``x`` in ``[lower, upper]`` to ``[-1, 1]``: ``(2x − upper − lower) / (upper − lower)``."""
    return (2.0 * x - upper - lower) / (upper - lower)
