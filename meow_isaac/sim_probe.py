"""Which Isaac framework is installed, by import probes only, and ``import isaacgym`` before torch.

This module must not import torch (nor anything that does): :func:`preimport_for_argv` runs at the top of
``meow_isaac/runner.py``, before ``import torch``, because Isaac Gym Preview 4 refuses to load once torch is
loaded ("PyTorch was imported before isaacgym modules"; IsaacGymEnvs ``README.md``: ``import isaacgym``
first).
"""

import importlib.util
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

# sim name -> (top-level python modules that must be importable, what to install). Order = sim=auto priority:
# the newest framework first (Isaac Lab, then Omniverse Isaac Gym, then Isaac Gym Preview 4).
FRAMEWORKS: Dict[str, Tuple[Tuple[str, ...], str]] = {
    "isaaclab": (("isaaclab", "isaaclab_tasks"), "Isaac Lab 2.x/3.x (isaaclab + isaaclab_tasks)"),
    "omniisaacgym": (("omniisaacgymenvs",), "Isaac Sim 2023.1.1 + OmniIsaacGymEnvs, run with Isaac Sim's python.sh"),
    "isaacgym": (("isaacgym", "isaacgymenvs"), "Isaac Gym Preview 4 + IsaacGymEnvs"),
}


def _found(module: str) -> bool:
    if module in sys.modules:  # already imported (e.g. isaacgym, imported before torch)
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _in_isaaclab_wheel(module: str) -> bool:
    """True when ``module`` ships inside the Isaac Lab 2.x PyPI wheel's ``isaaclab/source/<module>/<module>``.

    That wheel's extensions (``isaaclab_tasks``, ...) reach ``sys.path`` only once ``AppLauncher`` has started
    the Kit app, so ``find_spec`` cannot see them before (the wheel's ``isaaclab/__init__.py``, ``expose_api``).
    """
    try:
        spec = importlib.util.find_spec("isaaclab")
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    package = Path(spec.origin).parent / "source" / module / module
    return (package / "__init__.py").is_file()


def installed(sim: str) -> bool:
    """True when every top-level module of framework ``sim`` can be found (nothing is imported).

    Isaac Lab 2.x from PyPI: ``isaaclab_tasks`` counts as found inside the wheel (:func:`_in_isaaclab_wheel`).
    """
    return all(_found(m) or (sim == "isaaclab" and _in_isaaclab_wheel(m)) for m in FRAMEWORKS[sim][0])


def installed_frameworks() -> List[str]:
    """Installed Isaac frameworks in ``sim=auto`` priority order."""
    return [name for name in FRAMEWORKS if installed(name)]


def sim_from_argv(argv: Sequence[str], default: str = "auto") -> str:
    """The ``sim=`` hydra override in ``argv`` (the last one wins; ``+sim=``/``++sim=`` too), else ``default``."""
    sim = default
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key == "sim":
            sim = value
    return sim


def preimport_for_argv(argv: Sequence[str]) -> Optional[str]:
    """``import isaacgym`` now if this run will use Isaac Gym (``sim=isaacgym``, or ``sim=auto`` picking it).

    Called before torch is imported. Does nothing when torch is already loaded (then the factory reports the
    ordering problem in one line) or when the import fails (the factory reports what is missing).

    Returns:
        ``"isaacgym"`` when it was imported here, else None.
    """
    sim = sim_from_argv(argv)
    if sim == "auto":
        found = installed_frameworks()
        sim = found[0] if found else "mujoco"
    if sim != "isaacgym" or "isaacgym" in sys.modules or "torch" in sys.modules:
        return None
    try:
        importlib.import_module("isaacgym")
    except ImportError:
        return None
    return "isaacgym"
