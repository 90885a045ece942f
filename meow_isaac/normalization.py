"""Running observation normaliser (mean/std over every fresh env observation seen so far)."""

from __future__ import annotations

import torch
from torch import nn

from meow_isaac.distributed import all_reduce_sum


class RunningObsNormalizer(nn.Module):
    """``y = clamp((x - mean) / sqrt(var + eps), -clip, clip)`` with running statistics; identity if disabled.

    Statistics are merged batch-wise with Chan et al.'s parallel variance formula in float64 buffers (saved in
    the module's ``state_dict``, hence in checkpoints and exports). Update it only from fresh environment
    observations, never from replay samples (those would count a transition many times).

    Args:
        obs_dim: observation size.
        enabled: when False, ``forward`` returns its input and ``update`` does nothing.
        clip: clamp bound of the normalised value (5.0, as rl_games / skrl).
        eps: variance floor.

    Raises:
        ValueError: ``obs_dim < 1`` or ``clip <= 0``.
    """

    def __init__(self, obs_dim: int, enabled: bool = True, clip: float = 5.0, eps: float = 1e-8) -> None:
        super().__init__()
        if obs_dim < 1:
            raise ValueError(f"obs_dim={obs_dim} is invalid: expected an integer >= 1")
        if clip <= 0:
            raise ValueError(f"clip={clip} is invalid: expected a positive number")
        self.enabled = bool(enabled)
        self.clip = float(clip)
        self.eps = float(eps)
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        # Saved with the statistics, so a checkpoint (test, export, resume) restores the switch too.
        self.register_buffer("enabled_flag", torch.tensor(self.enabled))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.enabled = bool(self.enabled_flag)

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        """Merge a batch ``obs`` ``(B, obs_dim)`` into the running statistics (no host sync)."""
        if not self.enabled or obs.shape[0] == 0:
            return
        x = obs.to(torch.float64)
        # Batch moments, summed over ranks under torchrun so every rank keeps identical statistics.
        moments = all_reduce_sum(torch.cat((x.new_full((1,), float(x.shape[0])), x.sum(0), x.square().sum(0))))
        d = x.shape[1]
        n, batch_mean = moments[0], moments[1:1 + d] / moments[0]
        batch_var = (moments[1 + d:] / n - batch_mean.square()).clamp_min(0.0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean.add_(delta * (n / total))
        m2 = self.var * self.count + batch_var * n + delta.square() * (self.count * n / total)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Normalise ``obs`` ``(..., obs_dim)``; returns the input dtype."""
        if not self.enabled:
            return obs
        mean = self.mean.to(obs.dtype)
        std = torch.sqrt(self.var + self.eps).to(obs.dtype)
        return ((obs - mean) / std).clamp(-self.clip, self.clip)
