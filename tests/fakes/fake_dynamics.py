"""Torch-only dynamics shared by the fake Isaac frameworks, with ground-truth episode bookkeeping.

State ``s`` (N, obs_dim), obs = s. Deterministic: ``s' = 0.9 s + 0.3 tanh(a W)`` (see :func:`transition`),
reward ``1 - s'_0^2``, termination ``s'_0 > 0.35``. A reset draws ``s ~ 0.02 N(0, 1)`` clipped to +-0.05, from
which no single step can terminate. The fakes call :meth:`FakeDynamics.record` with the rows that belong to
an episode; :attr:`FakeDynamics.episodes` is then the ground truth the adapters are checked against.
"""

import torch

THRESHOLD = 0.35


def weights(obs_dim, act_dim):
    """The fixed ``(act_dim, obs_dim)`` action matrix of a task with these sizes."""
    gen = torch.Generator().manual_seed(1000 + 31 * obs_dim + act_dim)
    return torch.randn(act_dim, obs_dim, generator=gen) / act_dim ** 0.5


def transition(obs, action):
    """The true next state of ``obs`` ``(B, D)`` under ``action`` ``(B, A)`` as applied (no clamping here)."""
    w = weights(obs.shape[1], action.shape[1]).to(obs.device)
    return 0.9 * obs + 0.3 * torch.tanh(action @ w)


class FakeDynamics:
    """``num_envs`` copies of the fake system on ``device``."""

    def __init__(self, num_envs, obs_dim, act_dim, device="cpu", seed=0):
        self.num_envs, self.obs_dim, self.act_dim = num_envs, obs_dim, act_dim
        self.device = torch.device(device)
        self.state = torch.zeros(num_envs, obs_dim, device=self.device)
        self.gen = torch.Generator().manual_seed(seed)
        self.gt_ret = torch.zeros(num_envs, device=self.device)
        self.gt_len = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.episodes = []  # dicts: env, ret, length, timeout, final_obs (completion order)

    def reset_idx(self, ids):
        ids = torch.as_tensor(ids, dtype=torch.long, device=self.device).reshape(-1)
        if ids.numel():
            init = (0.02 * torch.randn(ids.numel(), self.obs_dim, generator=self.gen)).clamp(-0.05, 0.05)
            self.state[ids] = init.to(self.device)
            self.gt_ret[ids] = 0.0
            self.gt_len[ids] = 0

    def physics(self, actions):
        self.state.copy_(transition(self.state, actions.to(self.device, torch.float32)))

    def reward(self):
        return 1.0 - self.state[:, 0] ** 2

    def terminated(self):
        return self.state[:, 0] > THRESHOLD

    def record(self, counted, reward, done, timeout):
        """Add ``reward`` to the episodes of ``counted`` rows; log the episodes that end (``done``)."""
        counted, done = counted.bool(), done.bool()
        self.gt_ret += reward * counted
        self.gt_len += counted.long()
        for i in done.nonzero().reshape(-1).tolist():
            self.episodes.append({"env": i, "ret": float(self.gt_ret[i]), "length": int(self.gt_len[i]),
                                  "timeout": bool(timeout[i]), "final_obs": self.state[i].clone()})
            self.gt_ret[i] = 0.0
            self.gt_len[i] = 0
