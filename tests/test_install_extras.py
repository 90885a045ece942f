"""The core package installs beside any Isaac framework: the embedded backend's packages are the ``mujoco`` extra.

Isaac Lab 3.0 pins mujoco / mujoco-warp 3.x, Isaac Gym runs on Python 3.8 and Isaac Sim 2023.1 on 3.10, where
mujoco 4 does not exist: so ``install_requires`` must not ask for mujoco or gymnasium, ``scripts/install_cpu.sh``
must always add the extra, and ``sim=mujoco`` without it must say, in one line, what to install.
"""

import ast
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from meow_isaac import factory

ROOT = Path(REPO)
EMBEDDED = ("mujoco", "gymnasium")


def _setup_keyword(name):
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in setup.py")


def _name(requirement):
    for sep in "[<>=!~; ":
        requirement = requirement.split(sep, 1)[0]
    return requirement.strip().lower()


def test_core_requirements_leave_the_embedded_backend_to_its_extra():
    core = {_name(r) for r in _setup_keyword("install_requires")}
    assert not core & set(EMBEDDED), core
    extra = {_name(r): r for r in _setup_keyword("extras_require")["mujoco"]}
    assert set(extra) == set(EMBEDDED)
    assert ">=4" in extra["mujoco"] and "<5" in extra["mujoco"]


def test_install_cpu_sh_always_installs_the_mujoco_extra(tmp_path):
    """Run the script with a stand-in python that logs its pip calls: the extra is there with and without EXTRAS."""
    log = tmp_path / "pip.log"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/bash\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    calls = {}
    for extras in (None, "", "test,wandb"):
        log.write_text("")
        args = ["bash", str(ROOT / "scripts" / "install_cpu.sh")] + ([] if extras is None else [extras])
        proc = subprocess.run(args, env=dict(os.environ, PYTHON=str(fake)), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        calls[extras] = log.read_text().splitlines()[-1]
    assert calls[None].endswith("install -e .[mujoco,test,wandb,export]")
    assert calls[""].endswith("install -e .[mujoco]")
    assert calls["test,wandb"].endswith("install -e .[mujoco,test,wandb]")


BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == {package!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ['runner.py'] + {argv!r}
import runpy
runpy.run_path('runner.py', run_name='__main__')
"""


@pytest.mark.parametrize("package", EMBEDDED)
def test_sim_mujoco_without_the_extra_is_one_clear_line(package, tmp_path):
    argv = ["task=Hopper", "sim=mujoco", "max_iterations=2", f"hydra.run.dir={tmp_path}/run", "progress_bar=False"]
    proc = subprocess.run([sys.executable, "-c", BLOCK.format(package=package, argv=argv)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "sim='mujoco'" in lines[0] and f"{package} is not installed" in lines[0]
    assert "pip install -e '.[mujoco]'" in lines[0]


def test_an_old_mujoco_is_named_with_its_version():
    """mujoco 3.x (Isaac Lab 3's pin) imports but has no ``mujoco.batch``: the message names the version found."""
    try:
        raise ImportError("cannot import name 'batch' from 'mujoco'", name="mujoco")
    except ImportError as cause:
        err = ValueError("task entry point 'tasks.gym_mujoco:Hopper' cannot be imported")
        err.__cause__ = cause
    message = factory.embedded_backend_missing(err)
    assert message is not None and "mujoco>=4,<5" in message and "cannot import name 'batch'" in message
    assert f"mujoco {importlib.metadata.version('mujoco')} is installed" in message
    assert factory.embedded_backend_missing(ValueError("task='Nope' is not registered")) is None
