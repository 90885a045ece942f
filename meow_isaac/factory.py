"""Resolve ``sim`` and a task config to a ``VecEnv`` (``DESIGN.md``: sits above ``tasks/`` and the backends)."""

from __future__ import annotations

import importlib.util
from typing import Any, Dict, Mapping, Optional

from meow_isaac.config import SIMS, ConfigError

# framework -> (python modules that must be importable, what to install)
FRAMEWORKS: Dict[str, tuple] = {
    "isaaclab": (("isaaclab",), "Isaac Lab 2.x/3.x (https://isaac-sim.github.io/IsaacLab)"),
    "omniisaacgym": (("omniisaacgymenvs",), "Isaac Sim 2023.1.1 with OmniIsaacGymEnvs"),
    "isaacgym": (("isaacgym", "isaacgymenvs"), "Isaac Gym Preview 4 and IsaacGymEnvs"),
}


def _installed(modules: tuple) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def resolve_sim(sim: str, log: Any = print) -> str:
    """``auto`` -> the installed Isaac framework, else the embedded MuJoCo backend (logged in one line).

    Raises:
        ConfigError: unknown ``sim``, or a framework that is not installed / has no adapter in this version.
    """
    if sim not in SIMS:
        raise ConfigError(f"invalid config: sim={sim!r}; accepted: {', '.join(SIMS)}")
    if sim == "auto":
        found = [name for name, (mods, _) in FRAMEWORKS.items() if _installed(mods)]
        if found:
            log(f"[meow-isaac] sim=auto: found {found[0]}, but its adapter is not in this version; "
                "using the embedded MuJoCo backend")
        else:
            log("[meow-isaac] sim=auto: no Isaac framework installed; using the embedded MuJoCo CPU backend")
        return "mujoco"
    if sim != "mujoco":
        mods, what = FRAMEWORKS[sim]
        if not _installed(mods):
            raise ConfigError(f"invalid config: sim={sim!r} needs {what} (python modules {', '.join(mods)} "
                              "not importable); install it or use sim=mujoco / sim=auto")
        raise ConfigError(f"invalid config: sim={sim!r}: the {sim} adapter is not part of this version yet; "
                          "accepted now: auto, mujoco")
    return sim


def make_task_env(task_cfg: Mapping[str, Any], sim: str, num_envs: int, seed: int, device: str,
                  num_threads: int, entry_point: Optional[str] = None) -> Any:
    """Build the env of ``task_cfg`` (the ``task`` config node as a dict) on the resolved ``sim``.

    Raises:
        ConfigError: unknown task (lists the registered ones) or an invalid task key.
    """
    import tasks

    env_cfg = {k: v for k, v in dict(task_cfg.get("env") or {}).items() if k != "numEnvs"}
    try:
        return tasks.make_env(task_cfg["name"], env_cfg, num_envs=num_envs, seed=seed, device=device,
                              num_threads=num_threads, entry_point=entry_point or task_cfg.get("entry_point"))
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"invalid config: task={task_cfg['name']!r}: {err}") from err
