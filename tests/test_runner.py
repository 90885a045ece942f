"""End to end through the hydra runner: train, checkpoint, resume, play; config errors exit 2."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from meow_isaac.runner import config_dir, run

from conftest import REPO

SMALL = ["task=InvertedPendulum", "num_envs=2", "train.random_steps=50", "train.learning_starts=50",
         "train.eval_interval=100", "train.save_interval=100", "train.eval_envs=2", "train.log_interval=50",
         "train.batch_size=64", "progress_bar=False", "torch_threads=1", "sim_threads=1"]


def _run(overrides):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return run(compose("config", overrides=overrides))


def test_train_checkpoint_resume_and_play(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = _run(SMALL + ["experiment=part", "max_iterations=200", "train.save_replay=True"])
    run_dir = Path(first["run_dir"])
    last, best = run_dir / "nn" / "part.pth", run_dir / "nn" / "part_best.pth"  # train.name = experiment
    assert last.is_file() and best.is_file() and (run_dir / "config.yaml").is_file()
    assert list((run_dir / "summaries").glob("events.out.tfevents.*"))
    assert first["iteration"] == 200 and first["frames"] == 400 and first["updates"] == 151

    resumed = _run(SMALL + [f"checkpoint={last}", "max_iterations=300", "train.save_replay=True"])
    assert resumed["run_dir"] == str(run_dir.resolve())
    whole = _run(SMALL + ["experiment=whole", "max_iterations=300"])
    for key in ("iteration", "frames", "updates"):
        assert resumed[key] == whole[key], key
    assert "resumed from" in capsys.readouterr().out
    # Without the replay in the checkpoint, updates wait until the buffer holds learning_starts rows again.
    _run(SMALL + ["experiment=noreplay", "max_iterations=200"])
    refilled = _run(SMALL + ["checkpoint=runs/noreplay/nn/noreplay.pth", "max_iterations=300"])
    assert refilled["iteration"] == 300 and refilled["updates"] == whole["updates"] - 50 + 1

    played = _run(SMALL + [f"checkpoint={best}", "test=True"])
    assert len(played["test_returns"]) == 2 and min(played["test_returns"]) > 0
    assert "test: InvertedPendulum" in capsys.readouterr().out


def test_tensorboard_has_the_documented_scalars(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.chdir(tmp_path)
    out = _run(SMALL + ["experiment=tb", "max_iterations=200"])
    acc = EventAccumulator(str(Path(out["run_dir"]) / "summaries"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("episode/return", "episode/length", "losses/loss", "values/q", "values/target_v",
                "performance/env_fps", "performance/total_fps", "eval/return"):
        assert tag in tags, tag


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "runner.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    (["task=Nope"], "task='Nope'"),
    (["task=Hopper", "sim=warp"], "sim='warp'"),
    (["task=Hopper", "num_envs=0"], "num_envs=0"),
    (["task=Hopper", "train.batch_size=100", "train.replay_size_per_env=10"], "train.batch_size=100"),
    (["task=Hopper", "train.learning_rate=-0.1"], "train.learning_rate=-0.1"),
])
def test_config_errors_are_one_line_exit_2(args, needle):
    proc = _cli(*args, "experiment=should_not_exist")
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "accepted" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_trains_and_console_script_matches(tmp_path):
    proc = _cli("task=Ant", "num_envs=4", "max_iterations=30", "train.random_steps=10", "train.learning_starts=10",
                "train.batch_size=32", "train.eval_interval=0", "train.eval_envs=1", "progress_bar=False",
                "torch_threads=1", "sim_threads=1",
                f"experiment={tmp_path / 'ant'}", "headless=True")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "ant" / "nn" / f"{tmp_path / 'ant'}.pth").is_file() or list((tmp_path / "ant" / "nn").glob("*.pth"))
    assert "replay" in proc.stdout and "MiB" in proc.stdout
    console = subprocess.run(["meow-isaac", "task=Nope"], capture_output=True, text=True, timeout=60)
    assert console.returncode == 2 and console.stderr == _cli("task=Nope").stderr


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = _run(SMALL + ["experiment=wb", "max_iterations=100", "wandb_activate=True", "wandb_project=test",
                        "wandb_tags=[ci]"])
    runs = list((Path(out["run_dir"]) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
