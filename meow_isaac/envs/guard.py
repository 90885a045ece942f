"""NaN/Inf guard between any ``VecEnv`` and the trainer (``Trainer.train`` wraps its env in it).

A simulation that blows up returns non-finite observations or rewards. :class:`NonFiniteGuard` checks every step
with tensor ops only (no host read on device backends, no Python branch on tensor values) and:

* marks the rows of affected envs invalid (``StepOut.valid = False``: never stored, never in statistics) and
  overwrites their non-finite values with finite ones (reward 0, observations below), so no NaN reaches the
  replay buffer storage, the observation normaliser or the policy;
* resets the affected envs where the backend can reset a subset (see :func:`find_partial_reset`);
* hands the agent a finite observation for every env: the fresh post-reset observation when the backend reset
  the env in this step, else a *placeholder* (the last finite observation this guard returned for that env).
  The row that starts from a placeholder is dropped too, since its ``obs`` is not the env's state;
* counts the env steps whose obs, final obs or reward were non-finite in a device tensor
  (:attr:`NonFiniteGuard.nonfinite_env_steps`, read by the trainer at log intervals).

Partial reset, in order of preference (first match along the ``.env`` chain of wrappers):

1. ``env.reset_envs(mask)`` (optional ``VecEnv`` method): reset the envs where ``mask`` ``(N,)`` bool is True,
   including the env's own episode bookkeeping, and return the ``(N, obs_dim)`` observation whose masked rows
   are post-reset (other rows are ignored). It is called after every step, mostly with an all-False mask, so
   it must be cheap then and must not read tensors on the host on device backends.
2. The embedded MuJoCo backend (``MujocoBatchEnv``): ``_reset_ids`` + ``_observe`` as its own auto-reset does.
   It is a CPU backend whose step already reads ``done.any()`` (and the actions) on the host; this adds one
   such read of the mask.
3. IsaacGymEnvs / Omniverse Isaac Gym adapters (next-step reset): the framework's ``reset_buf`` is raised for
   the affected envs, so the task's own ``reset_idx`` resets them at the start of the next step. The agent acts
   on the placeholder meanwhile; that row is dropped (it starts from the placeholder).
4. Isaac Lab adapter (same-step reset): ``episode_length_buf`` of the affected envs is set to the episode limit,
   so the env times out and resets itself in the next step; that row (its final obs is the broken state) is
   dropped and not counted again.

Fallback (any other backend, e.g. the synthetic env): no reset. The affected rows are dropped and counted, the
agent acts on the placeholder, and every following non-finite step is dropped and counted as well, until the
backend's own auto-reset (at the time limit at the latest) returns a finite observation.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from meow_isaac.envs.contract import StepOut
from meow_isaac.envs.wrappers import _Delegate

# (mask (N,) bool, obs (N, obs_dim)) -> obs with the masked rows post-reset (immediate strategies), or None
# (deferred strategies: the env resets during its next step).
ResetFn = Callable[[torch.Tensor, torch.Tensor], Optional[torch.Tensor]]


def nonfinite_rows(x: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: rows of ``x`` (``(N,)`` or ``(N, D)``) holding a NaN or an Inf."""
    bad = ~torch.isfinite(x)
    return bad.reshape(bad.shape[0], -1).any(1) if bad.dim() > 1 else bad


def _zero_episode_sums(adapter: Any, mask: torch.Tensor) -> None:
    """Forget the running episode sums of ``mask`` in an Isaac adapter (the episode was cut by a forced reset)."""
    episodes = getattr(adapter, "_episodes", None)
    for name in ("ret", "len"):
        buf = getattr(episodes, name, None)
        if isinstance(buf, torch.Tensor):
            buf.masked_fill_(mask.to(buf.device), 0)


def _strategy(env: Any) -> Optional[Tuple[str, bool, ResetFn]]:
    """``(name, immediate, fn)`` if ``env`` itself can reset a subset of its envs, else None."""
    reset_envs = getattr(env, "reset_envs", None)
    if callable(reset_envs):
        return "reset_envs", True, lambda mask, obs: reset_envs(mask).to(obs.device, obs.dtype)
    if callable(getattr(env, "_reset_ids", None)) and callable(getattr(env, "_observe", None)):
        def mujoco(mask: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
            mask_cpu = mask.cpu()
            if not bool(mask_cpu.any()):  # CPU backend: its own step reads done.any() the same way
                return obs
            env._reset_ids(mask_cpu.nonzero().squeeze(1))
            return torch.where(mask[:, None], env._observe().to(obs.device, obs.dtype), obs)
        return "mujoco", True, mujoco
    autoreset = getattr(env, "autoreset", None)
    if autoreset == "next_step":
        # IsaacGymEnv: .env is the VecTask; OmniIsaacGymEnv: .task is the RLTask (task.reset() rebinds
        # reset_buf, so it is looked up at every call).
        holder = getattr(env, "task", None) or vars(env).get("env")
        if isinstance(getattr(holder, "reset_buf", None), torch.Tensor):
            def raise_reset_buf(mask: torch.Tensor, obs: torch.Tensor) -> None:
                buf = holder.reset_buf
                buf.masked_fill_(mask.to(buf.device), 1)
                _zero_episode_sums(env, mask)
            return "reset_buf", False, raise_reset_buf
    if autoreset == "same_step":
        raw = getattr(vars(env).get("env"), "unwrapped", None)
        if isinstance(getattr(raw, "episode_length_buf", None), torch.Tensor):
            limit = int(getattr(raw, "max_episode_length", getattr(env, "max_episode_length", 0)))

            def force_time_out(mask: torch.Tensor, obs: torch.Tensor) -> None:
                buf = raw.episode_length_buf
                buf.masked_fill_(mask.to(buf.device), limit)
                _zero_episode_sums(env, mask)
            return "episode_length_buf", False, force_time_out
    return None


def find_partial_reset(env: Any) -> Tuple[str, bool, Optional[ResetFn]]:
    """The partial-reset strategy of ``env`` or of the first env along its ``.env`` chain (wrappers such as
    ``ReferenceCompat`` / ``SimHandle`` forward to the env inside): ``(name, immediate, fn)``; ``("none",
    False, None)`` when nothing can reset a subset (the fallback of the module docstring)."""
    seen = set()
    while env is not None and id(env) not in seen:
        seen.add(id(env))
        found = _strategy(env)
        if found is not None:
            return found
        env = vars(env).get("env") if hasattr(env, "__dict__") else None
    return "none", False, None


class NonFiniteGuard(_Delegate):
    """``VecEnv`` wrapper that drops, resets and counts envs whose step returned NaN/Inf (module docstring).

    Attributes:
        nonfinite_env_steps: 0-dim int64 device tensor, env steps with a non-finite obs, final obs or reward
            since this guard was built (the rows a forced deferred reset drops are not counted again).
        reset_mode: the partial-reset strategy found: ``reset_envs``, ``mujoco``, ``reset_buf``,
            ``episode_length_buf`` or ``none`` (fallback).
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        device = torch.device(env.device)
        n = int(env.num_envs)
        self.nonfinite_env_steps = torch.zeros((), dtype=torch.long, device=device)
        self.reset_mode, self._immediate, self._reset_fn = find_partial_reset(env)
        self._last_obs = torch.zeros(n, int(env.obs_dim), device=device)
        self._stale = torch.zeros(n, dtype=torch.bool, device=device)   # obs handed out was a placeholder
        self._forced = torch.zeros(n, dtype=torch.bool, device=device)  # deferred reset requested last step

    def _recover(self, need: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Reset ``need`` envs (when possible) and return a finite obs for every env."""
        self._forced = torch.zeros_like(need)
        if self._reset_fn is not None:
            fresh = self._reset_fn(need, obs)
            if fresh is not None:
                obs = fresh
            else:
                self._forced = need
        bad = nonfinite_rows(obs)
        obs = torch.where(bad[:, None], self._last_obs.to(obs.dtype), obs)
        self._stale = bad
        self._last_obs = obs
        return obs

    def reset(self) -> torch.Tensor:
        """Reset every env; non-finite rows of the first observation are handled as in :meth:`step`."""
        obs = self.env.reset()
        bad = nonfinite_rows(obs)
        self.nonfinite_env_steps += bad.sum()
        self._last_obs = torch.zeros_like(obs)
        return self._recover(bad, obs)

    def step(self, action: torch.Tensor) -> StepOut:
        """Step the wrapped env, then drop, reset and count its non-finite rows (tensor ops only)."""
        out = self.env.step(action)
        obs_bad = nonfinite_rows(out.obs)
        final_bad = nonfinite_rows(out.final_obs)
        reward_ok = torch.isfinite(out.reward)
        bad = obs_bad | final_bad | ~reward_ok
        self.nonfinite_env_steps += (bad & ~self._forced).sum()
        dropped = bad | self._stale  # this row starts from a placeholder obs
        # Reset where the env's state is broken: its obs is non-finite, or it is bad and did not just reset.
        need = obs_bad | (bad & ~out.done)
        obs = self._recover(need, out.obs)
        # An immediate reset ended the env's episode here (the row is dropped: statistics ignore it).
        truncated = out.truncated | (need & ~out.terminated) if self._immediate else out.truncated
        return out._replace(
            obs=obs,
            reward=torch.where(reward_ok, out.reward, torch.zeros_like(out.reward)),
            truncated=truncated,
            final_obs=torch.where(final_bad[:, None], obs.to(out.final_obs.dtype), out.final_obs),
            valid=out.valid & ~dropped,
        )

    def close(self) -> None:
        """Close the wrapped env."""
        self.env.close()
