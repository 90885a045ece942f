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


def scale(x: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Map ``x`` in ``[-1, 1]`` to ``[lower, upper]``: ``lower + (x + 1)(upper − lower) / 2`` (inverse of unscale)."""
    return lower + 0.5 * (x + 1.0) * (upper - lower)


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a ⊗ b`` of (..., 4) scalar-first quaternions (rotation ``b`` first, then ``a``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """Conjugate ``(w, −x, −y, −z)`` of (..., 4) quaternions (the inverse rotation for unit ``q``)."""
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def quat_from_angle_axis(angle: torch.Tensor, axis: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (..., 4) of the rotation by ``angle`` (...,) [rad] about ``axis`` (..., 3) (normalised here)."""
    axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    half = 0.5 * angle.unsqueeze(-1)
    return torch.cat([torch.cos(half), axis * torch.sin(half)], dim=-1)


def quat_rotation_distance(q: torch.Tensor, q_ref: torch.Tensor) -> torch.Tensor:
    """Rotation angle (...,) [rad, in ``[0, pi]``] between unit quaternions: ``2 asin(min(|(q ⊗ q_ref*).xyz|, 1))``.

    The OIGE in-hand manipulation ``rot_dist`` (``isaac_tasks.md`` section 5.4).
    """
    diff = quat_mul(q, quat_conjugate(q_ref))
    return 2.0 * torch.asin(torch.clamp(torch.linalg.vector_norm(diff[..., 1:], dim=-1), max=1.0))


def tf_apply(q: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Apply the transform (rotation ``q`` (..., 4), translation ``t`` (..., 3)) to points ``v``: ``R(q) v + t``."""
    return quat_rotate(q, v) + t


def tf_combine(q1: torch.Tensor, t1: torch.Tensor, q2: torch.Tensor, t2: torch.Tensor
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Compose transforms ``(q1, t1) ∘ (q2, t2)`` (frame 2 expressed in frame 1): ``(q1 ⊗ q2, R(q1) t2 + t1)``."""
    return quat_mul(q1, q2), quat_rotate(q1, t2) + t1
