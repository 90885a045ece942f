"""Replay buffer on the training device with a per-env ring layout (``slots_per_env x num_envs``)."""

from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import torch

_STATE_KEYS = ("obs", "next_obs", "action", "reward", "terminated", "valid", "ptr", "fill")


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes free for new tensors on ``device`` (CUDA: ``mem_get_info``; CPU: ``MemAvailable``), or None."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Batch(NamedTuple):
    """A sampled minibatch; all tensors on the buffer's device.

    obs ``(B, obs_dim)`` float32; action ``(B, action_dim)`` float32; reward ``(B,)`` float32;
    next_obs ``(B, obs_dim)`` float32 (the true ``s_{t+1}``); terminated ``(B,)`` float32 (1.0 = no bootstrap).
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    next_obs: torch.Tensor
    terminated: torch.Tensor


class ReplayBuffer:
    """Preallocated transition store; one ring of ``slots_per_env`` rows per environment.

    Every ``add`` offers one row per env. A row flagged invalid (``StepOut.valid == False``) is written into
    its env's *scratch* slot but does not advance that env's pointer, so it is overwritten by the env's next
    row and can never be sampled. Each ring keeps one extra scratch slot, hence ``slots_per_env + 1`` rows
    are allocated per env and at most ``slots_per_env`` valid rows are kept. ``valid`` records, per slot,
    whether it holds a stored row (for inspection and tests).

    Sampling is uniform over all stored rows of all envs, entirely on device (no host sync): a flat index in
    ``[0, total)`` is mapped to ``(env, age)`` by ``searchsorted`` over the per-env fill counts.

    Args:
        num_envs, obs_dim, action_dim: sizes. slots_per_env: capacity per env (>= 1).
        device: the training device.

    Raises:
        ValueError: a size < 1.
        MemoryError: the buffer does not fit on ``device`` (message gives the size needed).
    """

    def __init__(self, num_envs: int, slots_per_env: int, obs_dim: int, action_dim: int,
                 device: torch.device) -> None:
        for key, value in (("num_envs", num_envs), ("replay_size_per_env", slots_per_env),
                           ("obs_dim", obs_dim), ("action_dim", action_dim)):
            if int(value) < 1:
                raise ValueError(f"{key}={value} is invalid: expected an integer >= 1")
        self.num_envs, self.capacity = int(num_envs), int(slots_per_env)
        self.device = torch.device(device)
        rows = self.capacity + 1
        shape = (rows, self.num_envs)
        self.nbytes = rows * self.num_envs * (4 * (2 * obs_dim + action_dim + 2) + 1)
        available = available_memory(self.device)
        if available is not None and self.nbytes > available:
            raise MemoryError(
                f"replay buffer of {self.nbytes / 2**30:.2f} GiB ({num_envs} envs x {slots_per_env} slots, "
                f"obs {obs_dim}, action {action_dim}) does not fit in the {available / 2**30:.2f} GiB available "
                f"on {self.device}: lower train.replay_size_per_env or num_envs")
        try:
            self.obs = torch.empty(shape + (obs_dim,), device=self.device)
            self.next_obs = torch.empty(shape + (obs_dim,), device=self.device)
            self.action = torch.empty(shape + (action_dim,), device=self.device)
            self.reward = torch.empty(shape, device=self.device)
            self.terminated = torch.empty(shape, device=self.device)
            self.valid = torch.zeros(shape, dtype=torch.bool, device=self.device)
        except (RuntimeError, MemoryError) as err:
            raise MemoryError(
                f"replay buffer of {self.nbytes / 2**30:.2f} GiB ({num_envs} envs x {slots_per_env} slots, "
                f"obs {obs_dim}, action {action_dim}) does not fit on {self.device}: lower "
                f"train.replay_size_per_env or num_envs ({err})") from err
        self.ptr = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self.fill = torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        self._env_ids = torch.arange(self.num_envs, device=self.device)
        self._no_rows = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self.num_adds = 0  # host-side count of add() calls (vectorised steps offered)

    def add(self, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor, next_obs: torch.Tensor,
            terminated: torch.Tensor, valid: torch.Tensor) -> None:
        """Store one row per env: obs/next_obs ``(N, obs_dim)``, action ``(N, action_dim)``, reward ``(N,)``,
        terminated ``(N,)`` bool, valid ``(N,)`` bool. Invalid rows are never sampled."""
        idx = (self.ptr, self._env_ids)
        self.obs[idx] = obs
        self.action[idx] = action
        self.reward[idx] = reward
        self.next_obs[idx] = next_obs
        self.terminated[idx] = terminated.to(self.terminated.dtype)
        step = valid.to(torch.long)
        # The slot the pointer leaves becomes stored; the slot it reaches (oldest row once full) is freed.
        self.valid[idx] = valid
        self.ptr = (self.ptr + step) % (self.capacity + 1)
        # A device tensor, not ``= False``: on CUDA a Python scalar written by tensor index is copied to the device
        # with a blocking copy, a host sync every step (set_sync_debug_mode("error") raised here on an H200).
        self.valid[(self.ptr, self._env_ids)] = self._no_rows
        self.fill = torch.clamp(self.fill + step, max=self.capacity)
        self.num_adds += 1

    def sample(self, batch_size: int) -> Batch:
        """Uniform minibatch of ``batch_size`` stored rows (with replacement). Call only once rows exist."""
        cum = torch.cumsum(self.fill, 0)
        flat = torch.floor(torch.rand(batch_size, device=self.device) * cum[-1]).long()
        flat = torch.minimum(flat, cum[-1] - 1)
        env = torch.searchsorted(cum, flat, right=True)
        age = flat - (cum[env] - self.fill[env])  # 0 = newest row of that env
        slot = (self.ptr[env] - 1 - age) % (self.capacity + 1)
        idx = (slot, env)
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx], self.terminated[idx])

    def size(self) -> torch.Tensor:
        """Number of stored rows (0-dim int64 tensor on device)."""
        return self.fill.sum()

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """All storage and pointers (for ``train.save_replay``)."""
        state = {k: getattr(self, k) for k in _STATE_KEYS}
        state["num_adds"] = torch.tensor(self.num_adds)
        return state

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore from :meth:`state_dict`.

        Raises:
            ValueError: shapes differ from this buffer's.
        """
        for key in _STATE_KEYS:
            current = getattr(self, key)
            if tuple(state[key].shape) != tuple(current.shape):
                raise ValueError(f"replay state {key} has shape {tuple(state[key].shape)}, "
                                 f"expected {tuple(current.shape)}")
            current.copy_(state[key])
        self.num_adds = int(state["num_adds"])
