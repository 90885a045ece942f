"""Task registry and env factory (``DESIGN.md``: the factory sits above ``tasks/`` and ``meow_isaac/envs``).

A task is a name bound to a *builder*: a callable (or a ``"module:attr"`` string, imported lazily)

    builder(env_cfg: Mapping[str, Any], num_envs: int, seed: int, device: str, num_threads: int) -> VecEnv

where ``env_cfg`` is the ``env`` section of ``cfg/task/<Task>.yaml``. Users add tasks without touching this
package: call :func:`register_task` from their own package, or give ``entry_point: "pkg.mod:builder"`` in
their task yaml.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable, Dict, Mapping, Union

os.environ.setdefault("MUJOCO_GL", "egl")  # offscreen rendering without a display (set before mujoco loads)

Builder = Callable[..., Any]

_REGISTRY: Dict[str, Union[str, Builder]] = {
    # classic Gymnasium MuJoCo suite, v5 semantics (tasks/gym_mujoco.py)
    "Hopper": "tasks.gym_mujoco:Hopper",
    "HalfCheetah": "tasks.gym_mujoco:HalfCheetah",
    "Walker2d": "tasks.gym_mujoco:Walker2d",
    "MujocoAnt": "tasks.gym_mujoco:MujocoAnt",
    "MujocoHumanoid": "tasks.gym_mujoco:MujocoHumanoid",
    "InvertedPendulum": "tasks.gym_mujoco:InvertedPendulum",
    # costless synthetic torch env on the training device (framework overhead, benchmarks)
    "Synthetic": "meow_isaac.envs.synthetic:make_synthetic",
    # Omniverse Isaac Gym task definitions on MuJoCo (tasks/isaac_locomotion.py)
    "Ant": "tasks.isaac_locomotion:Ant",
    "Humanoid": "tasks.isaac_locomotion:Humanoid",
    "Anymal": "tasks.anymal:Anymal",  # tasks/anymal.py
    "Ingenuity": "tasks.ingenuity:Ingenuity",  # tasks/ingenuity.py
    "AllegroHand": "tasks.allegro_hand:AllegroHand",  # tasks/allegro_hand.py
    "FrankaCabinet": "tasks.franka_cabinet:FrankaCabinet",  # tasks/franka_cabinet.py
    # MEow paper Sec. 4.1 multi-goal point mass, pure torch (tasks/multigoal.py)
    "MultiGoal": "tasks.multigoal:MultiGoal",
}


def register_task(name: str, builder: Union[str, Builder], overwrite: bool = False) -> None:
    """Register ``builder`` (callable or ``"module:attr"``) under task ``name``.

    Raises:
        ValueError: ``name`` is already registered and ``overwrite`` is False.
    """
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"task {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = builder


def registered_tasks() -> list:
    """Sorted names of all registered tasks."""
    return sorted(_REGISTRY)


def resolve_builder(spec: Union[str, Builder]) -> Builder:
    """Import a ``"module:attr"`` string (or return a callable unchanged).

    Raises:
        ValueError: the string is not of the form ``module:attr`` or cannot be imported.
    """
    if callable(spec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"task entry point {spec!r} is invalid: expected 'package.module:callable'")
    module_name, attr = spec.split(":", 1)
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"task entry point {spec!r} cannot be imported: {err}") from err


def make_env(name: str, env_cfg: Mapping[str, Any], num_envs: int, seed: int = 0, device: str = "cpu",
             num_threads: int = 0, entry_point: Union[str, Builder, None] = None) -> Any:
    """Build the embedded-backend env of task ``name`` (or of ``entry_point`` when given).

    Raises:
        ValueError: unknown task name (the message lists the registered ones).
    """
    spec = entry_point if entry_point else _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"task={name!r} is not registered; registered tasks: {', '.join(registered_tasks())}")
    builder = resolve_builder(spec)
    return builder(dict(env_cfg or {}), num_envs=num_envs, seed=seed, device=device, num_threads=num_threads)
