"""Pictures of a MEow policy on the multi-goal task (paper Section 4.1, Fig. 2 style), headless matplotlib.

Three PNGs and a JSON summary, written by :func:`write_multigoal_plots` (the runner calls it through
:meth:`tasks.multigoal.MultiGoal.write_artifacts` after training and on ``test=True``):

* ``trajectories.png``: many stochastic trajectories from the start (exactly the origin) over the contours of
  the goal-attraction reward ``-distanceCost * min_g ||s - g||^2``, goals marked, each path coloured by the
  goal it reached;
* ``soft_value.png``: the learned soft value ``V(s) = min_j V_j(s)`` over the plane, read exactly off the flow
  (``EBFlowPolicy.soft_v``, spec section 3) on normalised observations when the normaliser is on;
* ``action_density.png``: ``pi(a|s)`` over the action square at a few states (``EBFlowPolicy.log_prob`` on a
  grid) with sampled actions overlaid;
* ``goal_coverage.json``: episodes per goal, goals covered (by at least 5% of the episodes), their mean return.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no global backend change, no display).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import torch
from matplotlib.figure import Figure

from tasks.multigoal import GOALS, MultiGoal, goal_counts, goals_covered

GOAL_COLOURS = ("tab:red", "tab:blue", "tab:green", "tab:orange")
MIN_FRACTION = 0.05  #: a goal counts as covered when at least this fraction of the episodes ends there
DENSITY_STATES: Tuple[Tuple[float, float], ...] = ((0.0, 0.0), (1.5, 1.5), (0.0, 3.0))


def _device(agent: Any) -> torch.device:
    return next(agent.policy.parameters()).device


def _plane(bound: float, points: int) -> Tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-bound, bound, points, dtype=np.float32)
    return np.meshgrid(axis, axis)


def _goal_reward_field(cfg: Mapping[str, Any], xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    goals = np.asarray(GOALS, dtype=np.float32)
    sq = np.min([(xx - gx) ** 2 + (yy - gy) ** 2 for gx, gy in goals], axis=0)
    return -float(cfg["distanceCost"]) * sq


def _mark_goals(ax: Any, cfg: Mapping[str, Any]) -> None:
    from matplotlib.patches import Circle

    for (gx, gy), colour in zip(GOALS, GOAL_COLOURS):
        ax.add_patch(Circle((gx, gy), float(cfg["goalThreshold"]), fill=False, color=colour, lw=2))
        ax.plot([gx], [gy], marker="*", color=colour, ms=14, mec="k")
    ax.plot([0.0], [0.0], marker="o", color="k", ms=6)
    ax.set_aspect("equal")
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def plot_trajectories(agent: Any, cfg: Mapping[str, Any], path: Path, num_trajectories: int = 100,
                      seed: int = 0) -> Dict[str, Any]:
    """Sample ``num_trajectories`` stochastic episodes from the origin; draw them; return the goal summary."""
    env = MultiGoal({**cfg, "initSigma": 0.0}, num_envs=num_trajectories, seed=seed, device=_device(agent))
    result = env.rollout(lambda obs: agent.act(obs, deterministic=False))
    counts = goal_counts(result.goal)
    bound = float(cfg["bound"])
    fig = Figure(figsize=(6.4, 6.0), dpi=100)
    ax = fig.add_subplot()
    xx, yy = _plane(bound, 201)
    contours = ax.contour(xx, yy, _goal_reward_field(cfg, xx, yy), levels=12, cmap="Greys", linewidths=0.8)
    ax.clabel(contours, inline=True, fontsize=7, fmt="%.0f")
    positions = result.positions.cpu().numpy()
    for i in range(num_trajectories):
        g = int(result.goal[i])
        ax.plot(positions[:, i, 0], positions[:, i, 1], lw=0.8, alpha=0.7,
                color=GOAL_COLOURS[g] if g >= 0 else "0.4")
    _mark_goals(ax, cfg)
    ax.set_xlim(-bound, bound)
    ax.set_ylim(-bound, bound)
    ax.set_title(f"{num_trajectories} sampled trajectories from the origin\n"
                 f"episodes per goal (+x, -x, +y, -y): {counts}", fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    return {"num_trajectories": num_trajectories, "episodes_per_goal": counts,
            "goals_covered": goals_covered(result.goal, MIN_FRACTION), "goal_min_fraction": MIN_FRACTION,
            "mean_return": float(result.returns.mean())}


@torch.no_grad()
def plot_soft_value(agent: Any, cfg: Mapping[str, Any], path: Path, points: int = 141) -> None:
    """Heat map of ``min_j V_j(s)`` over ``[-bound, bound]^2`` (exact soft value of the flow, paper Eq. 11)."""
    bound = float(cfg["bound"])
    xx, yy = _plane(bound, points)
    grid = torch.from_numpy(np.stack((xx.ravel(), yy.ravel()), -1)).to(_device(agent))
    was_training = agent.policy.training
    agent.policy.eval()
    value = agent.policy.soft_v(agent.normalizer(grid), agent.alpha).min(-1).values
    agent.policy.train(was_training)
    fig = Figure(figsize=(6.8, 6.0), dpi=100)
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(xx, yy, value.reshape(points, points).cpu().numpy(), cmap="viridis", shading="auto")
    fig.colorbar(mesh, ax=ax, label="soft value V(s)")
    _mark_goals(ax, cfg)
    for x, y in DENSITY_STATES[1:]:
        ax.plot([x], [y], marker="x", color="w", ms=8, mew=2)
    ax.set_title("learned soft value V(s) = min over shift heads\n(white crosses: states of action_density.png)",
                 fontsize=10)
    fig.savefig(path, bbox_inches="tight")


@torch.no_grad()
def plot_action_density(agent: Any, path: Path, states: Sequence[Tuple[float, float]] = DENSITY_STATES,
                        points: int = 121, samples: int = 300) -> None:
    """``pi(a|s)`` on a ``points x points`` action grid at each state, with ``samples`` sampled actions."""
    device = _device(agent)
    edge = 1.0 - 1e-3
    ax_grid = np.linspace(-edge, edge, points, dtype=np.float32)
    aa, bb = np.meshgrid(ax_grid, ax_grid)
    actions = torch.from_numpy(np.stack((aa.ravel(), bb.ravel()), -1)).to(device)
    was_training = agent.policy.training
    agent.policy.eval()
    fig = Figure(figsize=(4.0 * len(states), 4.3), dpi=100, layout="constrained")
    for k, state in enumerate(states):
        ax = fig.add_subplot(1, len(states), k + 1)
        obs = torch.tensor(state, dtype=torch.float32, device=device)
        norm = agent.normalizer(obs.expand(actions.shape[0], 2))
        density = agent.policy.log_prob(norm, actions).exp().reshape(points, points).cpu().numpy()
        ax.pcolormesh(aa, bb, density, cmap="magma", shading="auto")
        drawn = agent.act(obs.expand(samples, 2), deterministic=False).cpu().numpy()
        ax.scatter(drawn[:, 0], drawn[:, 1], s=3, c="cyan", alpha=0.6, linewidths=0)
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("action x (velocity)")
        if k == 0:
            ax.set_ylabel("action y (velocity)")
        ax.set_title(f"pi(a | s = ({state[0]:g}, {state[1]:g}))", fontsize=10)
    agent.policy.train(was_training)
    fig.suptitle(f"action density (heat map) and {samples} sampled actions (dots)", fontsize=10)
    fig.savefig(path, bbox_inches="tight")


def write_multigoal_plots(agent: Any, cfg: Mapping[str, Any], out_dir: Path, seed: int = 0,
                          num_trajectories: int = 100) -> List[Path]:
    """Write the three pictures and ``goal_coverage.json`` into ``out_dir`` (created); returns the paths.

    Args:
        agent: a :class:`~meow_isaac.agents.meow.MEowAgent` (``policy``, ``normalizer``, ``alpha``, ``act``).
        cfg: the task's env config (all keys of :data:`tasks.multigoal.DEFAULTS`).
        out_dir: destination folder. seed: sampling seed (the global torch RNG is restored afterwards).
        num_trajectories: episodes drawn in ``trajectories.png``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / name for name in ("trajectories.png", "soft_value.png", "action_density.png",
                                         "goal_coverage.json")]
    device = _device(agent)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        summary = plot_trajectories(agent, cfg, paths[0], num_trajectories, seed)
        plot_soft_value(agent, cfg, paths[1])
        plot_action_density(agent, paths[2])
    paths[3].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"[meow-isaac] MultiGoal: {summary['num_trajectories']} sampled episodes from the origin, per goal "
          f"(+x, -x, +y, -y) {summary['episodes_per_goal']}, goals covered (>= {MIN_FRACTION:.0%} of the episodes) "
          f"{summary['goals_covered']}/4; "
          f"pictures in {out_dir}")
    return paths
