"""Packaging: install script, Dockerfiles, Apptainer definition, Slurm batch script and the Slurm launcher config.

No Docker engine or Slurm runs here: these tests check what can be checked without one (files referenced exist,
dependency lists agree with setup.py, the shell scripts parse, the batch script's signal/requeue logic with stand-in
``srun``/``scontrol``); hadolint lints the Dockerfiles in ``.ci/run``.
"""

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO

ROOT = Path(REPO)
DOCKERFILES = sorted((ROOT / "docker").glob("Dockerfile.*"))
SHELL_SCRIPTS = ["scripts/install_cpu.sh", "docker/slurm/train.sbatch", ".ci/run", "scripts/ci_isaaclab3.sh"]


def _instructions(path: Path):
    """(INSTRUCTION, arguments) per Dockerfile instruction, line continuations joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#")))
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            yield word.upper(), rest.strip()


def _install_requires():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return [elt.value for elt in node.value.elts]
    raise AssertionError("no install_requires in setup.py")


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;]", requirement, maxsplit=1)[0].strip().lower()


def test_dockerfiles_exist_and_copy_only_repository_files():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.isaaclab", "Dockerfile.omniisaacgym",
                                              "Dockerfile.isaacgym"}
    for dockerfile in DOCKERFILES:
        copies = [args.split() for word, args in _instructions(dockerfile) if word in ("COPY", "ADD")]
        assert copies, dockerfile
        for args in copies:
            if any(a.startswith("--from=") for a in args):  # the user-supplied Isaac Gym build context
                assert dockerfile.name == "Dockerfile.isaacgym" and "--from=isaacgym" in args
                continue
            sources = [a for a in args[:-1] if not a.startswith("--")]
            for src in sources:
                assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src} does not exist in the repository"


def test_cpu_image_ci_and_apptainer_install_through_the_same_script():
    runs = [args for word, args in _instructions(ROOT / "docker" / "Dockerfile.cpu") if word == "RUN"]
    assert any("scripts/install_cpu.sh" in r for r in runs)
    assert "scripts/install_cpu.sh" in (ROOT / ".ci" / "run").read_text()
    definition = (ROOT / "docker" / "meow-isaac.def").read_text()
    assert "scripts/install_cpu.sh" in definition.split("%post", 1)[1]
    files = definition.split("%files", 1)[1].split("%", 1)[0]
    for line in files.strip().splitlines():
        assert (ROOT / line.split()[0]).exists(), line
    script = (ROOT / "scripts" / "install_cpu.sh").read_text()
    assert "torch==2.13.0" in script and os.access(ROOT / "scripts" / "install_cpu.sh", os.X_OK)


def test_readme_test_commands_are_the_ones_ci_runs():
    """The README's "Install and run the tests" block is what ``.ci/run`` does: the same install line (a missing
    extra there, e.g. ``mjwarp``, makes ``tests/test_mjwarp.py`` fail for a newcomer) and the same pytest call."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("**Install and run the tests**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    install, test = [line.strip() for line in block.strip().splitlines()]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci, f"README installs with {install!r}; .ci/run does not"
    reported = [" ".join(w for w in line.split() if not w.startswith("--durations")) for line in ci]  # timing report
    assert test in reported, f"README tests with {test!r}; .ci/run does not"


@pytest.mark.parametrize("name", ["Dockerfile.isaacgym", "Dockerfile.omniisaacgym"])
def test_python_below_3_11_images_install_setup_py_requirements(name):
    """These images install meow-isaac with --no-deps (mujoco>=4 needs Python 3.11), then setup.py's list by hand."""
    text = " ".join(args for word, args in _instructions(ROOT / "docker" / name) if word == "RUN")
    listed = {_name(r): r for r in re.findall(r'"([A-Za-z][^"\s]*[<>=][^"\s]*)"', text.split("--no-deps", 1)[1])}
    expected = {_name(r): r for r in _install_requires() if _name(r) not in ("torch", "mujoco", "gymnasium")}
    assert set(listed) == set(expected), name
    for key, requirement in expected.items():  # same lower bounds (an image may add an upper bound)
        lower = re.findall(r">=[^,]+", requirement)
        assert all(bound in listed[key] for bound in lower), (name, requirement, listed[key])


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


FAKE_RUNNER = """
import signal, sys, time
from pathlib import Path
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
Path("args.txt").write_text(" ".join(sys.argv[1:]))
deadline = time.time() + 30
while not got and "finish" not in sys.argv and time.time() < deadline:
    time.sleep(0.05)
sys.exit(3 if got else 0)
"""


@pytest.mark.parametrize("sig", ["USR1", "TERM", None])
def test_sbatch_script_forwards_signals_and_requeues_on_exit_3(tmp_path, sig):
    """train.sbatch with stand-ins: srun runs the command, scontrol logs its arguments, the runner exits 3 on a signal.

    USR1 (time limit) -> checkpoint, exit 3, requeue; TERM (scancel/preemption) -> checkpoint, exit 3, no requeue by
    the script; no signal -> the run finishes, exit 0.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (bin_dir / "scontrol").write_text('#!/bin/bash\necho "$@" >> scontrol.log\n')
    for tool in ("srun", "scontrol"):
        (bin_dir / tool).chmod(0o755)
    (tmp_path / "fake_runner.py").write_text(FAKE_RUNNER)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242", SLURM_JOB_NAME="ant_s1",
               SLURM_SUBMIT_DIR=str(tmp_path), PYTHON=sys.executable, MEOW_RUNNER="fake_runner.py")
    extra = [] if sig else ["finish"]
    proc = subprocess.Popen(["bash", str(ROOT / "docker" / "slurm" / "train.sbatch"), "task=Ant", *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 30
    while not (tmp_path / "args.txt").exists() and time.time() < deadline:
        time.sleep(0.05)
    if sig:
        time.sleep(0.2)
        proc.send_signal(getattr(signal, "SIG" + sig))  # to the batch shell, as --signal=B:USR1@120 and scancel do
    out, _ = proc.communicate(timeout=60)
    assert (tmp_path / "args.txt").read_text().split()[:4] == ["experiment=ant_s1", "checkpoint=auto",
                                                               "headless=True", "task=Ant"]
    assert proc.returncode == (3 if sig else 0), out
    if sig == "USR1":
        assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    else:
        assert not (tmp_path / "scontrol.log").exists()


def test_hydra_slurm_launcher_config_composes():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from meow_isaac.runner import config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", "task=Ant", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1 and launcher.timeout_min > 0
    assert launcher.signal_delay_s >= 60 and launcher.max_num_timeout > 0
    assert launcher.additional_parameters.requeue is True
    assert cfg.task.name == "Ant"


def _extras_require():
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "extras_require":
            return {k.value: [e.value for e in v.elts] for k, v in zip(node.value.keys, node.value.values)}
    raise AssertionError("no extras_require in setup.py")


def test_every_extra_is_spelled_as_the_metadata_spells_it_and_the_commands_ask_for_existing_ones():
    """setuptools writes an extra in its normalised form (PEP 685: ``rl_games`` -> ``rl-games``), and pip < 23.3
    does not normalise the requested one: ``pip install ".[rl_games]"`` then installs no rl-games. So every extra
    is declared normalised, and every extra that ``.ci/run``, the install script and the README ask for exists."""
    extras = _extras_require()
    for name in extras:
        assert re.sub(r"[-_.]+", "-", name).lower() == name, f"setup.py extra {name!r} is not in normalised form"
    ci = re.search(r"scripts/install_cpu\.sh\s+(\S+)", (ROOT / ".ci" / "run").read_text()).group(1).split(",")
    default = re.search(r'extras="\$\{1-([^}]*)\}"', (ROOT / "scripts" / "install_cpu.sh").read_text()).group(1)
    readme = [e for group in re.findall(r'\.\[([^\]]+)\]', (ROOT / "README.md").read_text()) for e in group.split(",")]
    readme += [e for group in re.findall(r"scripts/install_cpu\.sh ([\w,-]+)", (ROOT / "README.md").read_text())
               for e in group.split(",")]
    for asked in ci + default.split(",") + readme:
        assert asked in extras, f"{asked!r} is asked for but setup.py declares {sorted(extras)}"
    assert "rl-games" in ci and any(r.startswith("rl-games") for r in extras["rl-games"])


def test_isaacgym_image_pins_the_rl_games_that_keeps_its_torch():
    """rl-games 1.6.5 on Python 3.8 asks for torch>=2.2.2 (pip would replace the image's CUDA torch 2.1); IsaacGymEnvs
    users pin 1.6.1, installed in the same pip command as IsaacGymEnvs (whose setup.py asks for rl-games>=1.6)."""
    runs = [args for word, args in _instructions(ROOT / "docker" / "Dockerfile.isaacgym") if word == "RUN"]
    ige = [r for r in runs if "pip install -e /opt/IsaacGymEnvs" in r]
    assert ige and '"rl-games==1.6.1"' in ige[0].split("pip install -e /opt/IsaacGymEnvs", 1)[1]
