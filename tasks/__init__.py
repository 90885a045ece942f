"""Task registry and env factory (``DESIGN.md``: the factory sits above ``tasks/`` and ``meow_isaac/envs``).

A task is a name bound to a *builder*: a callable (or a ``"module:attr"`` string, imported lazily)

    builder(env_cfg: Mapping[str, Any], num_envs: int, seed: int, device: str, num_threads: int) -> VecEnv

where ``env_cfg`` is the ``env`` section of ``cfg/task/<Task>.yaml``. Users add tasks without touching this
package: call :func:`register_task` from their own package, or give ``entry_point: "pkg.mod:builder"`` in
their task yaml.

Allow-list: a ``"module:attr"`` string from a config is imported only if its module is the module of a
registered builder (or in this ``tasks`` package), one that the user allowed (``$MEOW_ISAAC_TASK_MODULES``,
comma/``os.pathsep``-separated package names, or :func:`allow_task_modules`), or the user's own code, i.e. not
part of the Python installation (standard library, site-packages). So ``entry_point: 'os:system'`` is refused
before anything is imported; a team's module on ``PYTHONPATH`` or installed with ``pip install -e`` works.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import site
import sys
import sysconfig
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Set, Union

import meow_isaac  # noqa: F401  (chooses MUJOCO_GL before mujoco loads: meow_isaac.default_mujoco_gl)


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


TASK_MODULES_ENV = "MEOW_ISAAC_TASK_MODULES"  # packages whose entry points a config may name (allow-list)
_ALLOWED_MODULES: Set[str] = set()


def allow_task_modules(*names: str) -> None:
    """Allow config entry points (``"module:attr"``) in the packages or modules ``names`` and their submodules."""
    _ALLOWED_MODULES.update(n.strip() for n in names if n.strip())


def _python_dirs() -> List[Path]:
    """The folders of the Python installation: standard library and site-packages (system and user)."""
    paths = sysconfig.get_paths()
    dirs = [paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    dirs += list(getattr(site, "getsitepackages", lambda: [])())
    dirs.append(getattr(site, "getusersitepackages", lambda: None)())
    return [Path(d).resolve() for d in dirs if d]


def _is_installed_with_python(top: str) -> bool:
    """True if the top-level module ``top`` is built in or lives in the Python installation (found without
    importing it); False for the user's own code and for modules that cannot be found."""
    if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
        return True
    spec = importlib.util.find_spec(top)
    if spec is None:
        return False
    if spec.origin in ("built-in", "frozen"):
        return True
    where = [spec.origin] if spec.origin else []
    where += list(spec.submodule_search_locations or [])
    python = _python_dirs()
    for location in where:
        path = Path(location).resolve()
        if any(path == d or d in path.parents for d in python):
            return True
    return False


def check_entry_point(spec: str, extra_allowed: Iterable[str] = ()) -> None:
    """Refuse a config ``entry_point`` / ``task_class`` string (``"module:attr"``) that the allow-list (module
    docstring; plus the packages ``extra_allowed``) does not cover; nothing is imported before the check passes.

    Raises:
        ValueError: not of the form ``module:attr``, or not allowed (the message says how to allow it).
    """
    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ValueError(f"task entry point {spec!r} is invalid: expected 'package.module:callable'")
    check_module(spec.split(":", 1)[0], f"task entry point {spec!r}", extra_allowed)


def check_module(module: str, what: str, extra_allowed: Iterable[str] = ()) -> None:
    """Refuse importing ``module`` for a config string (``what`` names it in the message) unless the allow-list
    covers it: see :func:`check_entry_point`.

    Raises:
        ValueError: not allowed (the message says how to allow it).
    """
    parts = str(module).split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    registered = {b.split(":", 1)[0] for b in _REGISTRY.values() if isinstance(b, str)} | {"tasks"}
    allowed = _ALLOWED_MODULES | set(extra_allowed) | {m.strip() for m in os.environ.get(
        TASK_MODULES_ENV, "").replace(os.pathsep, ",").split(",") if m.strip()}
    if prefixes & (registered | allowed) or not _is_installed_with_python(parts[0]):
        return
    raise ValueError(f"{what} is not allowed: module {parts[0]!r} is part of the Python installation (standard "
                     "library or site-packages) and is not on the allow-list; accepted: a registered task "
                     "(tasks.register_task), a module of your own (PYTHONPATH, pip install -e), or a package listed "
                     f"in ${TASK_MODULES_ENV} (e.g. {TASK_MODULES_ENV}={parts[0]})")


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
             num_threads: int = 0, entry_point: Union[str, Builder, None] = None, sim: str = "mujoco") -> Any:
    """Build the embedded-backend env of task ``name`` (or of ``entry_point`` when given; a string is checked
    against the allow-list first, :func:`check_entry_point`).

    ``sim`` is the physics engine of an embedded MuJoCo task (``mujoco``: C ``mujoco.batch``; ``mjwarp``:
    MuJoCo Warp on ``device``), passed to builders that take a ``sim`` keyword; a builder without one (a pure
    torch task such as MultiGoal) is built unchanged, with one log line.

    Raises:
        ValueError: unknown task name (the message lists the registered ones); an entry point that is invalid,
            not allowed or not importable; an unknown ``sim``.
        ImportError: ``sim="mjwarp"`` without MuJoCo Warp (one line saying what to install).
    """
    if isinstance(entry_point, str) and entry_point and entry_point not in _REGISTRY.values():
        check_entry_point(entry_point)
    spec = entry_point if entry_point else _REGISTRY.get(name)
    if spec is None:
        raise ValueError(f"task={name!r} is not registered; registered tasks: {', '.join(registered_tasks())}")
    builder = resolve_builder(spec)
    kwargs = {}
    if sim != "mujoco":  # physics engine of an embedded MuJoCo task (MujocoBatchEnv(sim=...))
        if _accepts_sim(builder):
            kwargs["sim"] = sim
        else:
            print(f"[meow-isaac] task {name}: its builder takes no `sim` argument (no MuJoCo physics, e.g. a pure "
                  f"torch task); sim={sim} builds it unchanged")
    return builder(dict(env_cfg or {}), num_envs=num_envs, seed=seed, device=device, num_threads=num_threads,
                   **kwargs)


def _accepts_sim(builder: Builder) -> bool:
    """True if ``builder`` takes a ``sim`` keyword (or ``**kwargs``)."""
    try:
        params = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "sim" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
