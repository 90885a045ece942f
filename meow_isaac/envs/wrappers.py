"""Backend-independent ``VecEnv`` wrappers applied by the factory (``meow_isaac/factory.py``).

* :class:`ReferenceCompat` (``reference_compat=True``): the published MEow setup.
* :class:`SharedSim` / :class:`SimHandle`: several ``VecEnv`` handles on one simulation, for frameworks that
  run one simulation per process (Omniverse Isaac Gym and Isaac Lab own a single ``SimulationApp``; Isaac Gym's
  GPU pipeline holds one sim): the trainer's evaluation env is a second handle on the training simulation.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from meow_isaac.envs.contract import StepOut


class _Delegate:
    """Forwards unknown attributes (``num_envs``, ``obs_dim``, ``device``, ...) to ``self.env``."""

    env: Any

    def __getattr__(self, name: str) -> Any:
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)


class ReferenceCompat(_Delegate):
    """Reproduce the published MEow setup on top of any backend (``shared/reference/meow_algorithm.md`` s. 7).

    The reference (skrl on Omniverse Isaac Gym) got no time-out signal and stored every row: here every
    episode end is a termination (``terminated = terminated | truncated``, ``truncated = False``: no
    bootstrap at time limits) and every row is kept (``valid`` all True, including the garbage row after a
    next-step reset: terminal obs -> obs after the reset). Episode returns/lengths are left as the backend
    computed them.
    """

    def __init__(self, env: Any) -> None:
        self.env = env

    def reset(self) -> torch.Tensor:
        """Reset the wrapped env."""
        return self.env.reset()

    def step(self, action: torch.Tensor) -> StepOut:
        """Step the wrapped env and rewrite ``terminated``/``truncated``/``valid`` as the reference did."""
        out = self.env.step(action)
        return out._replace(terminated=out.terminated | out.truncated, truncated=torch.zeros_like(out.truncated),
                            valid=torch.ones_like(out.valid))

    def close(self) -> None:
        """Close the wrapped env."""
        self.env.close()


class SharedSim:
    """One simulation (a ``VecEnv``) shared by several :class:`SimHandle` s; closed with the last handle."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.owner: Optional["SimHandle"] = None
        self.handles = 0

    def handle(self) -> "SimHandle":
        """A new handle on the simulation."""
        self.handles += 1
        return SimHandle(self)

    def release(self) -> bool:
        """Drop one handle; closes the simulation and returns True when it was the last."""
        self.handles -= 1
        if self.handles == 0:
            self.env.close()
            return True
        return False


class SimHandle(_Delegate):
    """A ``VecEnv`` view of a :class:`SharedSim`.

    While one handle uses the simulation, the others' episodes are interrupted. A handle that steps after
    another one used the simulation first resets every env (the obs it holds is stale) and returns a step with
    ``valid`` all False, reward 0 and no episode end, whose ``obs`` is the fresh post-reset observation; its
    interrupted episodes are not reported. (The trainer's evaluation resets the simulation, runs one episode
    per env, and training then resumes from fresh episodes after one dropped row.)
    """

    def __init__(self, shared: SharedSim) -> None:
        self.shared = shared
        self.env = shared.env
        self.closed = False

    def reset(self) -> torch.Tensor:
        """Take the simulation and reset every env."""
        self.shared.owner = self
        return self.env.reset()

    def step(self, action: torch.Tensor) -> StepOut:
        """Step the simulation (after a reset when another handle used it since this handle's last call)."""
        if self.shared.owner is not self:
            obs = self.reset()
            done = torch.zeros(obs.shape[0], dtype=torch.bool, device=obs.device)
            zeros = torch.zeros(obs.shape[0], device=obs.device)
            return StepOut(obs=obs, reward=zeros, terminated=done, truncated=done.clone(), final_obs=obs,
                           valid=done.clone(), episode_return=zeros.clone(),
                           episode_length=torch.zeros_like(done, dtype=torch.long))
        return self.env.step(action)

    def close(self) -> None:
        """Release this handle (the simulation closes with the last one)."""
        if not self.closed:
            self.closed = True
            self.shared.release()
