"""Resolve ``sim`` and a task config to a ``VecEnv`` (``DESIGN.md``: sits above ``tasks/`` and the backends).

``cfg/task/<Task>.yaml`` holds one section per Isaac framework (``isaacgym:``, ``omniisaacgym:``,
``isaaclab:``) with the framework's task key / gym id; the embedded backend uses ``name``/``entry_point``/
``env``. The adapters live in ``meow_isaac/envs/<framework>.py`` and import their framework lazily.
"""

from __future__ import annotations

import importlib
import importlib.util
import importlib.metadata
from typing import Any, Callable, Dict, Mapping, Optional

import torch

from meow_isaac.config import SIMS, ConfigError
from meow_isaac.envs.isaac_common import FrameworkError
from meow_isaac.envs.wrappers import ReferenceCompat, SharedSim
from meow_isaac.sim_probe import FRAMEWORKS, installed, installed_frameworks

# sim -> module with ``make(section, num_envs, seed, device, headless) -> VecEnv``
ADAPTERS: Dict[str, str] = {
    "isaacgym": "meow_isaac.envs.isaacgym",
    "omniisaacgym": "meow_isaac.envs.omniisaacgym",
    "isaaclab": "meow_isaac.envs.isaaclab",
}

# One simulation per process and framework: later envs (evaluation) are handles on the open one.
_OPEN: Dict[str, SharedSim] = {}


def _has_section(task_cfg: Optional[Mapping[str, Any]], sim: str) -> bool:
    return task_cfg is None or bool(task_cfg.get(sim))


EMBEDDED_SIMS = ("mujoco", "mjwarp")  # the embedded tasks' physics engines (meow_isaac/envs/mujoco_batch.py)


def mjwarp_installed() -> bool:
    """True when ``mujoco_warp`` and ``warp`` can be found (import probes only, nothing is imported)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("mujoco_warp", "warp"))
    except (ImportError, ValueError):
        return False


def resolve_sim(sim: str, task_cfg: Optional[Mapping[str, Any]] = None, log: Callable[[str], Any] = print,
                device: Optional[str] = None) -> str:
    """``auto`` -> the first installed Isaac framework that ``task_cfg`` has a section for; else, on a CUDA
    training ``device`` with MuJoCo Warp installed, ``mjwarp`` (the embedded tasks on the GPU); else ``mujoco``.

    Import probes only (``importlib.util.find_spec``); the choice is logged in one line.

    Raises:
        ConfigError: unknown ``sim``; a framework that is not installed (says what to install); a task
            without a section for the requested framework.
    """
    if sim not in SIMS:
        raise ConfigError(f"invalid config: sim={sim!r}; accepted: {', '.join(SIMS)}")
    name = (task_cfg or {}).get("name", "?")
    if sim == "auto":
        found = installed_frameworks()
        usable = [f for f in found if _has_section(task_cfg, f)]
        if usable:
            log(f"[meow-isaac] sim=auto: using {usable[0]} (installed: {', '.join(found)})")
            return usable[0]
        why = (f"installed {', '.join(found)} but task {name} has no section for it" if found
               else "no Isaac framework installed")
        on_cuda = device is not None and str(device).startswith("cuda")
        if on_cuda and mjwarp_installed():
            log(f"[meow-isaac] sim=auto: {why}; using the embedded tasks on MuJoCo Warp on {device} (sim=mjwarp)")
            return "mjwarp"
        hint = (" (on a GPU, pip install -e \".[mjwarp]\" runs them on MuJoCo Warp)" if on_cuda else "")
        log(f"[meow-isaac] sim=auto: {why}; using the embedded MuJoCo CPU backend{hint}")
        return "mujoco"
    if sim == "mjwarp":
        if not mjwarp_installed():
            raise ConfigError("invalid config: sim='mjwarp' needs MuJoCo Warp (python modules mujoco_warp, warp not "
                              "importable; install: pip install -e \".[mjwarp]\"); accepted: auto, mujoco")
        return sim
    if sim != "mujoco":
        mods, what = FRAMEWORKS[sim]
        if not installed(sim):
            raise ConfigError(f"invalid config: sim={sim!r} needs {what} (python modules {', '.join(mods)} not "
                              "importable): install it (README, Running on Isaac); accepted here: auto, mujoco")
        if not _has_section(task_cfg, sim):
            raise ConfigError(f"invalid config: sim={sim!r}: task {name} has no `{sim}:` section in its task "
                              f"yaml; accepted: a task with one, or sim=mujoco")
    return sim


def make_task_env(task_cfg: Mapping[str, Any], sim: str, num_envs: int, seed: int, device: str,
                  num_threads: int, entry_point: Optional[str] = None, headless: bool = True,
                  reference_compat: bool = False) -> Any:
    """Build the env of ``task_cfg`` (the ``task`` config node as a dict) on the resolved ``sim``.

    Isaac frameworks run one simulation per process: a second call for the same framework while the first
    env is open returns another handle on it (:class:`~meow_isaac.envs.wrappers.SimHandle`, with the first
    env's ``num_envs``). ``reference_compat`` wraps the env in
    :class:`~meow_isaac.envs.wrappers.ReferenceCompat`.

    Raises:
        ConfigError: unknown task, invalid task key, or an Isaac framework error (one line).
    """
    if sim in EMBEDDED_SIMS:
        env = _embedded_env(task_cfg, num_envs, seed, device, num_threads, entry_point, sim)
    else:
        env = _isaac_env(task_cfg, sim, num_envs, seed, torch.device(device), headless)
    return ReferenceCompat(env) if reference_compat else env


def _embedded_env(task_cfg: Mapping[str, Any], num_envs: int, seed: int, device: str, num_threads: int,
                  entry_point: Optional[str], sim: str = "mujoco") -> Any:
    import tasks

    env_cfg = {k: v for k, v in dict(task_cfg.get("env") or {}).items() if k != "numEnvs"}
    try:
        return tasks.make_env(task_cfg["name"], env_cfg, num_envs=num_envs, seed=seed, device=device,
                              num_threads=num_threads, entry_point=entry_point or task_cfg.get("entry_point"),
                              sim=sim)
    except ImportError as err:  # sim=mjwarp without MuJoCo Warp: one line
        raise ConfigError(f"invalid config: {err}") from None
    except ValueError as err:
        if isinstance(err, ConfigError):
            raise
        missing = embedded_backend_missing(err)
        if missing:
            raise ConfigError(f"invalid config: sim='mujoco' task={task_cfg['name']!r}: {missing}") from err
        raise ConfigError(f"invalid config: task={task_cfg['name']!r}: {err}") from err


# The embedded backend's packages: the ``mujoco`` extra of setup.py (not core dependencies, so that the core
# package installs beside Isaac Lab 3.0, which pins mujoco 3.x).
EMBEDDED_PACKAGES = ("mujoco", "gymnasium")
EMBEDDED_INSTALL = ("pip install -e '.[mujoco]' (mujoco>=4,<5 and gymnasium>=1, Python >= 3.11; "
                    "scripts/install_cpu.sh installs it); in an Isaac framework's Python use its sim= instead")


def embedded_backend_missing(err: BaseException) -> Optional[str]:
    """The one-line reason when ``err`` (or an exception it was raised from) is a failed import of the embedded
    backend's packages (``mujoco`` absent or older than 4, which has no ``mujoco.batch``; ``gymnasium`` absent),
    saying what to install; None for any other error."""
    seen = err
    while seen is not None:
        if isinstance(seen, ImportError) and (seen.name or "").split(".")[0] in EMBEDDED_PACKAGES:
            package = (seen.name or "").split(".")[0]
            try:
                version = importlib.metadata.version(package)
            except importlib.metadata.PackageNotFoundError:
                version = None
            absent = isinstance(seen, ModuleNotFoundError) or version is None
            found = f"{package} is not installed" if absent else f"{package} {version} is installed"
            return f"the embedded MuJoCo backend needs the `mujoco` extra ({found}: {seen}): {EMBEDDED_INSTALL}"
        seen = seen.__cause__ or seen.__context__
    return None


# The frameworks' own task packages: a ``task_class`` / ``import_modules`` entry may always name them.
FRAMEWORK_PACKAGES = ("isaacgymenvs", "omniisaacgymenvs", "isaaclab", "isaaclab_tasks")


def check_isaac_section(sim: str, section: Mapping[str, Any]) -> None:
    """Check the config strings of an Isaac task section that name code (``task_class: 'module:Class'``,
    ``import_modules: [...]``) against the task allow-list (:func:`tasks.check_entry_point`) before any import.

    Raises:
        ConfigError: a string that the allow-list does not cover (one line, says how to allow it).
    """
    import tasks

    try:
        if section.get("task_class"):
            tasks.check_entry_point(str(section["task_class"]), FRAMEWORK_PACKAGES)
        for module in section.get("import_modules") or []:
            tasks.check_module(str(module), f"module {module!r}", FRAMEWORK_PACKAGES)
    except ValueError as err:
        raise ConfigError(f"invalid config: task.{sim}: {err}") from None


def _isaac_env(task_cfg: Mapping[str, Any], sim: str, num_envs: int, seed: int, device: torch.device,
               headless: bool) -> Any:
    shared = _OPEN.get(sim)
    if shared is None or shared.handles == 0:
        section = dict(task_cfg.get(sim) or {})
        check_isaac_section(sim, section)
        try:
            env = importlib.import_module(ADAPTERS[sim]).make(section, num_envs, seed, device, headless=headless)
        except FrameworkError as err:
            message = " ".join(str(err).split())  # one line
            raise ConfigError(f"invalid config: sim={sim!r} task={task_cfg.get('name')!r}: {message}") from err
        shared = _OPEN[sim] = SharedSim(env)
    elif shared.env.num_envs != num_envs:
        print(f"[meow-isaac] {sim}: one simulation per process; this env shares the open one "
              f"({shared.env.num_envs} envs, not {num_envs}): episodes in progress restart after each switch")
    return shared.handle()
