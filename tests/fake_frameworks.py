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


def short_episodes(sim: str, task: str, steps: int = 16) -> dict:
    """The keys of the ``<sim>:`` section of ``cfg/task/<task>.yaml`` for episodes of ``steps`` agent steps,
    under the real task's own key: IsaacGymEnvs / OIGE ``env.episodeLength``, Anymal ``env.learn.episodeLength_s``
    (IGE ``int(s / 0.02 + 0.5)``, OIGE ``int(s / (1/60) + 0.5)``), Ingenuity ``env.maxEpisodeLength``; actions
    unclipped by the framework (``clipActions``). Isaac Lab: ``episode_length_s`` of the env cfg (0.26 s: 16 steps
    of Ant/Humanoid/Franka, 13 of ANYmal, 8 of Allegro, whose step dt differ)."""
    if sim == "isaaclab":
        return {"env_cfg": {"episode_length_s": 0.26}}
    env: dict = {"clipActions": 100.0}
    if task == "Anymal":
        env["learn"] = {"episodeLength_s": steps * (0.02 if sim == "isaacgym" else 1.0 / 60.0)}
    elif task == "Ingenuity":
        env["maxEpisodeLength"] = steps
    else:
        env["episodeLength"] = steps
    return {"overrides": {"env": env}}


def short_episodes_cli(sim: str, task: str, steps: int = 16) -> list:
    """:func:`short_episodes` as ``+task.<sim>....=value`` hydra overrides (clipActions left alone)."""
    def flat(prefix, node):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from flat(f"{prefix}.{key}", value)
            elif key != "clipActions":
                yield f"+{prefix}.{key}={value}"
    return list(flat(f"task.{sim}", short_episodes(sim, task, steps)))
