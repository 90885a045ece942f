"""The multi-goal task of MEow's Section 4.1 (Chao et al., NeurIPS 2024, arXiv:2405.13629), batched in pure torch.

The environment of Haarnoja et al. (2017, soft Q-learning, Sec. 5.1) that MEow uses to show a multi-modal
policy: a 2-D point mass starts near the origin and moves by its action (a velocity); four goals sit at
``(5, 0)``, ``(-5, 0)``, ``(0, 5)`` and ``(0, -5)``. Constants follow the authors' public toy environment
(``toy/toy_envs/multi_goal.py`` of the MEow repository, itself from softlearning):

* state/observation ``s`` = position ``(N, 2)``; reset ``s0 = clip(0.1 * N(0, I), -7, 7)``;
* action ``a`` ``(N, 2)`` in ``[-1, 1]`` (velocity bound 1, no rescaling); ``s' = clip(s + a, -7, 7)``;
* reward ``r = -(actionCost * ||a||^2 + distanceCost * min_g ||s' - g||^2) + goalReward * [reached]``
  (goal attraction: negative squared distance to the nearest goal; coefficients 30, 1 and 10);
* terminated when ``min_g ||s' - g|| < goalThreshold`` (1.0); truncated at ``episodeLength``.

Differences from the toy environment: the time limit defaults to 100 agent steps instead of 1000 (time-limit
ends are bootstrapped, so the learned values do not depend on it; it only bounds how long an evaluation episode
of a policy that hovers can last), and everything runs batched on any torch device.

The class implements the ``VecEnv`` protocol (``meow_isaac/envs/contract.py``) with the same step semantics as
:class:`~meow_isaac.envs.mujoco_batch.MujocoBatchEnv`: same-step auto-reset, the true ``final_obs``, truncation
at the time limit, per-episode return and length. :meth:`MultiGoal.write_artifacts` is the optional hook the
runner calls after training and on ``test=True`` (pictures in ``tasks/multigoal_plots.py``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Tuple, Union

import torch

from meow_isaac.envs.contract import StepOut

GOALS = ((5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0))  #: goal positions (x, y)

DEFAULTS: Dict[str, Any] = {
    "episodeLength": 100,    # agent steps before truncation (toy environment: 1000)
    "goalReward": 10.0,      # bonus on the step that reaches a goal
    "actionCost": 30.0,      # coefficient of ||a||^2
    "distanceCost": 1.0,     # coefficient of the squared distance to the nearest goal
    "goalThreshold": 1.0,    # a goal is reached when closer than this
    "initSigma": 0.1,        # std of the start position around the origin
    "bound": 7.0,            # positions are clipped to [-bound, bound]^2
}


class MultiGoal:
    """``num_envs`` multi-goal point masses stepped together on ``device`` (``VecEnv`` protocol).

    Args:
        env_cfg: the ``env`` section of ``cfg/task/MultiGoal.yaml``; keys of :data:`DEFAULTS` (all optional),
            ``numEnvs`` is ignored (``num_envs`` decides).
        num_envs: number of parallel environments ``N`` (>= 1).
        seed: seed of the env's generator (start noise); equal seeds give equal episodes.
        device: where state and returned tensors live ("cpu", "cuda", ...).
        num_threads: unused (no physics thread pool); accepted for the builder signature of ``tasks/``.

    Raises:
        ValueError: an unknown ``env_cfg`` key, ``num_envs < 1`` or ``episodeLength < 1``.
    """

    obs_dim = 2
    action_dim = 2

    def __init__(self, env_cfg: Mapping[str, Any], num_envs: int, seed: int = 0,
                 device: Union[str, torch.device] = "cpu", num_threads: int = 0) -> None:
        env_cfg = {k: v for k, v in dict(env_cfg or {}).items() if k != "numEnvs"}
        for key in env_cfg:
            if key not in DEFAULTS:
                raise ValueError(f"MultiGoal: unknown env_cfg key {key!r}; accepted keys: {', '.join(DEFAULTS)}")
        self.cfg: Dict[str, Any] = {**DEFAULTS, **env_cfg}
        for key, value in (("num_envs", num_envs), ("episodeLength", self.cfg["episodeLength"])):
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise ValueError(f"MultiGoal: {key}={value!r} is invalid: expected an integer >= 1")
        self.num_envs = int(num_envs)
        self.max_episode_length = int(self.cfg["episodeLength"])
        self.device = torch.device(device)
        self.seed = int(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.goals = torch.tensor(GOALS, dtype=torch.float32, device=self.device)
        n = self.num_envs
        self.pos = torch.zeros(n, 2, device=self.device)
        self.progress = torch.zeros(n, dtype=torch.long, device=self.device)
        self.episode_return_acc = torch.zeros(n, dtype=torch.float64, device=self.device)

    # ------------------------------------------------------------------ task maths
    def goal_distances(self, pos: torch.Tensor) -> torch.Tensor:
        """Euclidean distances ``(..., 4)`` from positions ``(..., 2)`` to the four goals (order of GOALS)."""
        return torch.linalg.vector_norm(pos.unsqueeze(-2) - self.goals.to(pos.device, pos.dtype), dim=-1)

    def reward_terminated(self, next_pos: torch.Tensor, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reward ``(N,)`` float32 and terminated ``(N,)`` bool of moving to ``next_pos`` with ``action``.

        ``r = -(actionCost ||a||^2 + distanceCost min_g ||s' - g||^2) + goalReward [min_g ||s' - g|| < thr]``.
        """
        c = self.cfg
        dist = self.goal_distances(next_pos).min(-1).values
        terminated = dist < float(c["goalThreshold"])
        reward = -(float(c["actionCost"]) * action.square().sum(-1) + float(c["distanceCost"]) * dist.square())
        return reward + float(c["goalReward"]) * terminated.to(reward.dtype), terminated

    def _start(self, count: int) -> torch.Tensor:
        noise = torch.randn(count, 2, generator=self.generator, device=self.device)
        bound = float(self.cfg["bound"])
        return (float(self.cfg["initSigma"]) * noise).clamp(-bound, bound)

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> torch.Tensor:
        """Reset every environment; returns the ``(N, 2)`` float32 start positions on ``device``."""
        self.pos = self._start(self.num_envs)
        self.progress.zero_()
        self.episode_return_acc.zero_()
        return self.pos.clone()

    def step(self, action: torch.Tensor) -> StepOut:
        """Move every point mass by ``action`` ``(N, 2)`` (clamped to ``[-1, 1]``); auto-reset finished ones.

        Raises:
            ValueError: ``action`` has the wrong shape.
        """
        if action.shape != (self.num_envs, self.action_dim):
            raise ValueError(f"action shape {tuple(action.shape)} != expected {(self.num_envs, self.action_dim)}")
        action = action.detach().to(self.device, torch.float32).clamp(-1.0, 1.0)
        bound = float(self.cfg["bound"])
        final_obs = (self.pos + action).clamp(-bound, bound)
        reward, terminated = self.reward_terminated(final_obs, action)
        self.progress += 1
        truncated = (self.progress >= self.max_episode_length) & ~terminated
        done = terminated | truncated
        self.episode_return_acc += reward
        zero = torch.zeros_like(self.episode_return_acc)
        episode_return = torch.where(done, self.episode_return_acc, zero).to(torch.float32)
        episode_length = torch.where(done, self.progress, torch.zeros_like(self.progress))
        # Same-step auto-reset without a host sync: fresh starts are drawn for every row, used where done.
        self.pos = torch.where(done.unsqueeze(-1), self._start(self.num_envs), final_obs)
        self.progress = torch.where(done, torch.zeros_like(self.progress), self.progress)
        self.episode_return_acc = torch.where(done, zero, self.episode_return_acc)
        return StepOut(obs=self.pos.clone(), reward=reward, terminated=terminated, truncated=truncated,
                       final_obs=final_obs, valid=torch.ones_like(done), episode_return=episode_return,
                       episode_length=episode_length)

    def close(self) -> None:
        """Nothing to release (pure torch)."""

    # ------------------------------------------------------------------ rollouts and pictures
    @torch.no_grad()
    def rollout(self, act: Callable[[torch.Tensor], torch.Tensor], steps: int = 0) -> "Rollout":
        """Run one episode in each of the ``N`` envs from a fresh reset with ``act(obs (N, 2)) -> (N, 2)``.

        Args:
            act: the policy (raw observations in, actions in ``[-1, 1]`` out).
            steps: at most this many steps (0: ``episodeLength``).

        Returns:
            :class:`Rollout`: positions ``(T + 1, N, 2)`` (rows stay at the end position after an episode ended),
            the goal each episode reached ``(N,)`` (index into GOALS, -1 for none) and the returns ``(N,)``.
        """
        steps = steps or self.max_episode_length
        obs = self.reset()
        path = [obs]
        alive = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        goal = torch.full((self.num_envs,), -1, dtype=torch.long, device=self.device)
        returns = torch.zeros(self.num_envs, device=self.device)
        for _ in range(steps):
            out = self.step(act(obs).to(self.device))
            path.append(torch.where(alive.unsqueeze(-1), out.final_obs, path[-1]))
            returns += torch.where(alive, out.reward, torch.zeros_like(out.reward))
            reached = alive & out.terminated
            goal = torch.where(reached, self.goal_distances(out.final_obs).argmin(-1), goal)
            alive &= ~out.done
            if not bool(alive.any()):
                break
            obs = out.obs
        return Rollout(torch.stack(path), goal, returns)

    def write_artifacts(self, agent: Any, out_dir: Union[str, Path]) -> List[Path]:
        """Runner hook (after training and on ``test=True``): the task's pictures into ``out_dir``.

        Writes ``trajectories.png``, ``soft_value.png``, ``action_density.png`` and ``goal_coverage.json``
        (see :func:`tasks.multigoal_plots.write_multigoal_plots`); returns their paths.
        """
        from tasks.multigoal_plots import write_multigoal_plots

        return write_multigoal_plots(agent, self.cfg, Path(out_dir), seed=self.seed)


class Rollout(NamedTuple):
    """Result of :meth:`MultiGoal.rollout`: ``positions (T + 1, N, 2)``, ``goal (N,)`` int64 (-1: none),
    ``returns (N,)`` float32 undiscounted."""

    positions: torch.Tensor
    goal: torch.Tensor
    returns: torch.Tensor


def goal_counts(goal: torch.Tensor) -> List[int]:
    """How many episodes ended at each of the four goals (order of GOALS), from ``Rollout.goal`` ``(N,)``."""
    return torch.bincount(goal[goal >= 0].cpu(), minlength=len(GOALS)).tolist()


def goals_covered(goal: torch.Tensor, min_fraction: float = 0.05) -> int:
    """Number of goals reached by at least ``min_fraction`` of the episodes (at least one episode)."""
    need = max(1, math.ceil(min_fraction * goal.numel() - 1e-9))
    return sum(int(c >= need) for c in goal_counts(goal))
