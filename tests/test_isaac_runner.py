"""``runner.py task=<each of the 6> sim=<each framework>`` end to end against the fake frameworks, in process.

(``tests/test_isaac_cli.py`` runs ``python runner.py`` in fresh processes.)
"""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fake_frameworks import LAB_TASKS, TASKS, fakes, set_isaaclab_version, short_episodes_cli  # noqa: F401,E501
from meow_isaac.runner import config_dir, run

SMALL = ["num_envs=4", "max_iterations=32", "train.random_steps=8", "train.learning_starts=8",
         "train.batch_size=32", "train.replay_size_per_env=100", "train.eval_interval=16", "train.eval_envs=2",
         "train.log_interval=32", "train.save_interval=1000", "progress_bar=False", "torch_threads=1",
         "sim_threads=1", "headless=True"]  # evaluation at 16 (on the training sim) and 32
CASES = ([("isaacgym", t, None) for t in TASKS] + [("omniisaacgym", t, None) for t in TASKS]
         + [("isaaclab", t, 2 + i % 2) for i, t in enumerate(LAB_TASKS)])


@pytest.mark.parametrize("sim, task, version", CASES)
def test_runner_trains_each_task_on_each_framework(fakes, monkeypatch, tmp_path, capsys, sim, task, version):
    if version:
        set_isaaclab_version(monkeypatch, version)
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        out = run(compose("config", overrides=[f"task={task}", f"sim={sim}", *short_episodes_cli(sim, task),
                                               "experiment=e"] + SMALL))
    assert out["iteration"] == 32 and out["updates"] == 25
    assert out["scalars"]["episode/count"] > 0 and out["last_eval"] is not None
    assert (Path(out["run_dir"]) / "nn" / "e.pth").is_file()
    assert f"{task} on {sim}: 4 envs" in capsys.readouterr().out


def test_reference_compat_through_the_runner(fakes, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        out = run(compose("config", overrides=["task=Ant", "sim=omniisaacgym", "reference_compat=True",
                                               *short_episodes_cli("omniisaacgym", "Ant"), "experiment=c"] + SMALL))
    assert out["iteration"] == 32
