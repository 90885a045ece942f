"""The simulator data contract (``DESIGN.md``, "The simulator contract").

Every backend (embedded MuJoCo, IsaacGymEnvs, Omniverse Isaac Gym, Isaac Lab) maps its own reset timing,
time-out reporting and buffer reuse onto :class:`StepOut`, so the trainer never special-cases a backend.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

try:  # Protocol is typing-only on 3.8+, kept import-safe for the Isaac Gym (3.8) path.
    from typing import Protocol
except ImportError:  # pragma: no cover
    from typing_extensions import Protocol  # type: ignore


class StepOut(NamedTuple):
    """One vectorised step of ``N`` environments; all tensors live on ``VecEnv.device``.

    Attributes:
        obs: ``(N, obs_dim)`` float32, the observation to act on next (post-reset where an episode ended).
        reward: ``(N,)`` float32, reward of the transition that just happened.
        terminated: ``(N,)`` bool, MDP termination (no bootstrap from ``final_obs``).
        truncated: ``(N,)`` bool, time limit (bootstrap from ``final_obs``); never true with ``terminated``.
        final_obs: ``(N, obs_dim)`` float32, the true ``s_{t+1}``; equals ``obs`` where no episode ended.
        valid: ``(N,)`` bool, ``False`` for rows that must not enter the replay buffer or statistics.
        episode_return: ``(N,)`` float32, undiscounted return of the episode that ended this step (0 elsewhere).
        episode_length: ``(N,)`` int64, length in agent steps of the episode that ended this step (0 elsewhere).
    """

    obs: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    final_obs: torch.Tensor
    valid: torch.Tensor
    episode_return: torch.Tensor
    episode_length: torch.Tensor

    @property
    def done(self) -> torch.Tensor:
        """``(N,)`` bool: an episode ended this step (terminated or truncated)."""
        return self.terminated | self.truncated


class VecEnv(Protocol):
    """A batch of ``num_envs`` environments stepped together (``DESIGN.md``).

    Actions are ``(num_envs, action_dim)`` float32 in ``[-1, 1]`` on ``device``. ``reset()`` returns the first
    ``(num_envs, obs_dim)`` float32 observation; ``step`` auto-resets finished episodes and reports them in
    :class:`StepOut`.
    """

    num_envs: int
    obs_dim: int
    action_dim: int
    device: torch.device
    max_episode_length: int

    def reset(self) -> torch.Tensor: ...

    def step(self, action: torch.Tensor) -> StepOut: ...

    def close(self) -> None: ...
