"""``python runner.py ... sim=<framework>`` in fresh processes, with the fake frameworks on ``PYTHONPATH``.

Only a fresh process shows that Isaac Gym is imported before torch (``meow_isaac/runner.py`` pre-import),
that the SimulationApp starts before ``omni.isaac`` imports, that Isaac Lab's runtime starts before
``isaaclab_tasks`` (2.x) or around the env (3.x), and that ``sim=auto`` picks the installed framework.
"""

import subprocess
import sys

import pytest

from conftest import REPO
from fake_frameworks import fake_env, short_episodes_cli

SMALL = ["num_envs=2", "max_iterations=15", "train.random_steps=5", "train.learning_starts=5",
         "train.batch_size=16", "train.replay_size_per_env=50", "train.eval_interval=0", "train.eval_envs=1",
         "train.log_interval=5", "progress_bar=False", "torch_threads=1", "sim_threads=1", "headless=True"]


def _cli(args, env, timeout=120):
    return subprocess.run([sys.executable, "runner.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("sim, task, version", [("isaacgym", "Humanoid", 2), ("omniisaacgym", "AllegroHand", 2),
                                                ("auto", "Anymal", 3)])
def test_cli_fresh_process(tmp_path, sim, task, version):
    """A fresh process: the import/launch order each framework needs is really exercised."""
    key = "isaaclab" if sim == "auto" else sim
    proc = _cli([f"task={task}", f"sim={sim}", *short_episodes_cli(key, task), f"experiment={tmp_path / 'x'}"]
                + SMALL, fake_env(FAKE_ISAACLAB_VERSION=str(version)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{task} on {key}: 2 envs" in proc.stdout
    if sim == "auto":
        assert "sim=auto: using isaaclab" in proc.stdout and "compute_final_obs: yes" in proc.stdout


ORDER_CHECK = """
import importlib
for module in ("omni.isaac.core", "isaaclab_tasks"):   # before the SimulationApp / AppLauncher
    try:
        importlib.import_module(module)
    except ImportError:
        print("refused", module)
import torch
try:
    import isaacgym                                     # after torch
except ImportError:
    print("refused isaacgym")
"""


def test_fakes_enforce_the_launch_order():
    """The order checks the CLI runs pass are real: the fakes refuse the wrong order."""
    proc = subprocess.run([sys.executable, "-c", ORDER_CHECK], capture_output=True, text=True, timeout=120,
                          env=fake_env())
    assert proc.stdout.split("\n")[:3] == ["refused omni.isaac.core", "refused isaaclab_tasks", "refused isaacgym"]
