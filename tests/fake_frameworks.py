"""Put the fake Isaac frameworks of ``tests/fakes`` on the path for one test, and remove every trace after.

Import the ``fakes`` fixture into a test module (``from fake_frameworks import fakes``). It simulates a user
who imported Isaac Gym before torch (``sys.modules['isaacgym']`` is set: the real and the fake package refuse
to load once torch is loaded); subprocess tests use :func:`fake_env` instead and start from a clean process.
"""

import os
import sys
import types
from pathlib import Path

import pytest

from conftest import REPO

FAKES = Path(REPO) / "tests" / "fakes"
FAKES_PIP = Path(REPO) / "tests" / "fakes_pip"  # the Isaac Lab 2.x PyPI wheel layout (links into FAKES)
ROOTS = ("isaacgym", "isaacgymenvs", "omni", "omniisaacgymenvs", "isaaclab", "isaaclab_tasks", "fake_dynamics",
         "app_launcher")
TASKS = ("Ant", "Humanoid", "Anymal", "AllegroHand", "FrankaCabinet", "Ingenuity")
LAB_TASKS = TASKS[:5]  # Isaac Lab ships no Ingenuity task


def purge_fake_modules() -> None:
    """Forget every imported fake module (and the gym ids the fake Isaac Lab registered)."""
    for name in list(sys.modules):
        if name.split(".")[0] in ROOTS:
            del sys.modules[name]
    gym = sys.modules.get("gymnasium")
    if gym is not None:
        for env_id in [k for k in gym.registry if k.startswith(("Isaac-", "IsaacContrib-"))]:
            del gym.registry[env_id]


def close_open_sims() -> None:
    """Close simulations a failed test left open in the factory."""
    from meow_isaac import factory

    for sim, shared in list(factory._OPEN.items()):
        if shared.handles > 0:
            shared.env.close()
        del factory._OPEN[sim]


def set_isaaclab_version(monkeypatch, version: int) -> None:
    """Make the fake Isaac Lab behave as ``version`` (2 or 3) from its next import on."""
    monkeypatch.setenv("FAKE_ISAACLAB_VERSION", str(version))
    for name in list(sys.modules):
        if name.split(".")[0] in ("isaaclab", "isaaclab_tasks"):
            del sys.modules[name]


def fake_env(**extra: str) -> dict:
    """Environment for a subprocess that sees the fakes (``PYTHONPATH``) and runs on one thread."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKES), REPO]), OMP_NUM_THREADS="1", **extra)
    return env


@pytest.fixture
def fakes(monkeypatch):
    purge_fake_modules()
    monkeypatch.syspath_prepend(str(FAKES))
    monkeypatch.setitem(sys.modules, "isaacgym", types.ModuleType("isaacgym"))  # imported before torch
    monkeypatch.setenv("FAKE_ISAACLAB_VERSION", "2")
    yield FAKES
    close_open_sims()
    purge_fake_modules()


@pytest.fixture
def fakes_pip(monkeypatch):
    """Only the fake Isaac Lab 2.x PyPI wheel on the path (``tests/fakes_pip``): ``isaaclab`` is the wheel's
    shim and ``isaaclab_tasks`` is not importable until ``AppLauncher`` has started the app."""
    purge_fake_modules()
    monkeypatch.syspath_prepend(str(FAKES_PIP))
    monkeypatch.setenv("FAKE_ISAACLAB_VERSION", "2")
    yield FAKES_PIP
    close_open_sims()
    purge_fake_modules()
