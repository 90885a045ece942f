"""The interface every agent offers the trainer, runner, checkpoints and export."""

from __future__ import annotations

from typing import Any, Dict

import torch
from torch import nn

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

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Actions ``(N, action_dim)`` in ``[-1, 1]`` for raw observations ``(N, obs_dim)`` (no grad)."""

    def update(self, batch: Batch) -> Dict[str, torch.Tensor]:
        """One gradient step (all nets) on a raw-observation minibatch; 0-dim metric tensors keyed by their
        TensorBoard names (e.g. ``losses/loss``). Must not read tensors on the host."""

    def optimizer_state_dict(self) -> Dict[str, Any]:
        """State of every optimizer (for exact resume)."""

    def load_optimizer_state_dict(self, state: Dict[str, Any]) -> None:
        """Inverse of :meth:`optimizer_state_dict`."""

    def deterministic_actor(self) -> nn.Module:
        """Module mapping *normalised* obs ``(B, obs_dim)`` to the deterministic action (for export)."""

    def state_dict(self) -> Dict[str, Any]: ...

    def load_state_dict(self, state: Dict[str, Any]) -> Any: ...
