"""Bad configuration: every invalid input gives exactly one stderr line naming the key, the value and what is
accepted, exit code 2, and writes nothing (no ``runs/`` folder).

The table runs in-process through the console entry point (:func:`meow_isaac.runner.main`: the same pre-check,
hydra composition and :func:`~meow_isaac.runner.run` validation as ``python runner.py``); a few cases also run
as real ``python runner.py`` processes and must print the same line.
"""

import os
import subprocess
import sys

import pytest
import torch

from meow_isaac import runner
from meow_isaac.config import ConfigError, check_distributed_env

from conftest import REPO

BASE = {"task": "Hopper", "experiment": "bad", "torch_threads": "1", "sim_threads": "1", "progress_bar": "False",
        "max_iterations": "20"}
TORCHRUN = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29599"}

# id: (overrides, extra environment, text the one stderr line must contain: key=value)
CASES = {
    "unknown task": (["task=Nope"], {}, "task='Nope'"),
    "unknown train config": (["train=NopeMEow"], {}, "train='NopeMEow'"),
    "unknown sim": (["sim=warp"], {}, "sim='warp'"),
    "unknown cpu_malloc": (["cpu_malloc=jemalloc"], {}, "cpu_malloc='jemalloc'"),
    "device tpu": (["device=tpu"], {}, "device='tpu'"),
    "device cuda:7": (["device=cuda:7"], {}, "device='cuda:7'"),
    "num_envs 0": (["num_envs=0"], {}, "num_envs=0"),
    "num_envs negative": (["num_envs=-4"], {}, "num_envs=-4"),
    "num_envs not a number": (["num_envs=many"], {}, "num_envs='many'"),
    "batch_size 0": (["train.batch_size=0"], {}, "train.batch_size=0"),
    "replay_size_per_env 0": (["train.replay_size_per_env=0"], {}, "train.replay_size_per_env=0"),
    "max_iterations 0": (["max_iterations=0"], {}, "max_iterations=0"),
    "updates_per_step 0": (["train.updates_per_step=0"], {}, "train.updates_per_step=0"),
    "log_interval 0": (["train.log_interval=0"], {}, "train.log_interval=0"),
    "save_interval 0": (["train.save_interval=0"], {}, "train.save_interval=0"),
    "eval_envs 0": (["train.eval_envs=0"], {}, "train.eval_envs=0"),
    "random_steps negative": (["train.random_steps=-1"], {}, "train.random_steps=-1"),
    "alpha 0": (["train.alpha=0"], {}, "train.alpha=0.0"),
    "alpha negative": (["train.alpha=-0.2"], {}, "train.alpha=-0.2"),
    "tau 0": (["train.tau=0"], {}, "train.tau=0.0"),
    "tau 1.5": (["train.tau=1.5"], {}, "train.tau=1.5"),
    "gamma 1.2": (["train.gamma=1.2"], {}, "train.gamma=1.2"),
    "gamma negative": (["train.gamma=-0.1"], {}, "train.gamma=-0.1"),
    "sigma_min >= sigma_max": (["train.sigma_min=-0.3"], {}, "train.sigma_min=-0.3"),
    "batch > replay capacity": (["train.batch_size=100", "train.replay_size_per_env=10"], {},
                                "train.batch_size=100"),
    "missing checkpoint": (["checkpoint=missing.pth"], {}, "checkpoint='missing.pth'"),
    "unknown top-level key +foo": (["+foo=1"], {}, "foo=1"),
    "misspelt top-level key": (["num_env=4"], {}, "num_env=4"),
    "unknown train key +": (["+train.bath_size=64"], {}, "train.bath_size=64"),
    "misspelt train key": (["train.bath_size=64"], {}, "train.bath_size=64"),
    "non-numeric alpha": (["train.alpha=abc"], {}, "train.alpha='abc'"),
    "unknown activation": (["train.activation=gelu"], {}, "train.activation='gelu'; accepted: swish, relu"),
    "seed not a number": (["seed=abc"], {}, "seed='abc'"),
    "seed a float": (["seed=1.5"], {}, "seed=1.5"),
    "export without checkpoint": (["export=onnx"], {}, "export='onnx'"),
    "unknown export format": (["export=tflite"], {}, "export='tflite'"),
    "test without checkpoint": (["test=True"], {}, "test=True"),
    "torch_threads 0": (["torch_threads=0"], {}, "torch_threads=0"),
    "sim_threads not a number": (["sim_threads=two"], {}, "sim_threads='two'"),
    "bool not a bool": (["headless=maybe"], {}, "headless='maybe'"),
    "video freq 0": (["capture_video=True", "capture_video_freq=0"], {}, "capture_video_freq=0"),
    "interpolation to nothing": (["train.alpha=${nope}"], {}, "train.alpha='${nope}'"),
    "override syntax": (["train.alpha=[1"], {}, "train.alpha=[1"),
    "sweep without -m": (["train.alpha=0.1,0.2"], {}, "train.alpha=0.1,0.2"),
    "WORLD_SIZE without torchrun": ([], {"WORLD_SIZE": "2"}, "WORLD_SIZE (environment)='2'"),
    "WORLD_SIZE not a number": ([], {"WORLD_SIZE": "two"}, "WORLD_SIZE (environment)='two'"),
    "RANK >= WORLD_SIZE": ([], dict(TORCHRUN, RANK="2"), "RANK (environment)='2'"),
}
CLI_CASES = ["misspelt top-level key", "tau 0", "WORLD_SIZE without torchrun"]  # pre-check, run(), environment


def _argv(overrides):
    """BASE with ``overrides`` applied (an override of a BASE key replaces it: hydra takes one value per key)."""
    keys = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    return [f"{k}={v}" for k, v in BASE.items() if k not in keys] + list(overrides)


def _env(extra):
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN}
    env.update(extra)
    return env


def _check_one_line(code, stderr, needle, folder):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: invalid config: ") and needle in lines[0], lines[0]
    assert "; accepted: " in lines[0], lines[0]
    assert "Traceback" not in stderr
    assert not (folder / "runs").exists() and not list(folder.iterdir()), list(folder.iterdir())
    return lines[0]


def _main_in_process(overrides, extra_env, tmp_path, monkeypatch, capsys):
    """``python runner.py <overrides>`` in this process; returns (exit code, stderr)."""
    monkeypatch.chdir(tmp_path)
    for key in TORCHRUN:
        monkeypatch.delenv(key, raising=False)
    for key, value in extra_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["runner.py", *_argv(overrides)])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        runner.main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_line_exit_2_nothing_written(case, tmp_path, monkeypatch, capsys):
    overrides, extra_env, needle = CASES[case]
    if case == "device cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    work = tmp_path / "cwd"
    work.mkdir()
    code, err = _main_in_process(overrides, extra_env, work, monkeypatch, capsys)
    _check_one_line(code, err, needle, work)


def test_cli_processes_print_the_same_line(tmp_path):
    procs = {}
    for case in CLI_CASES:
        overrides, extra_env, _ = CASES[case]
        work = tmp_path / case.replace(" ", "_")
        work.mkdir()
        procs[case] = (work, subprocess.Popen([sys.executable, os.path.join(REPO, "runner.py"), *_argv(overrides)],
                                              cwd=work, env=_env(extra_env), stdout=subprocess.PIPE,
                                              stderr=subprocess.PIPE, text=True))
    for case, (work, proc) in procs.items():
        _, err = proc.communicate(timeout=120)
        line = _check_one_line(proc.returncode, err, CASES[case][2], work)
        print(f"{case}: {line}")


def test_tau_zero_is_rejected_but_tau_one_is_accepted():
    from meow_isaac.config import TrainConfig

    assert TrainConfig(tau=1.0).tau == 1.0
    with pytest.raises(ConfigError, match=r"train.tau=0.0; accepted: a number in \(0, 1\]"):
        TrainConfig(tau=0.0).validate()


def test_distributed_environment_check():
    cpu = torch.device("cpu")
    assert check_distributed_env({}, cpu) == 1
    assert check_distributed_env(TORCHRUN, cpu) == 2
    for env, needle in (({"WORLD_SIZE": "0"}, "WORLD_SIZE (environment)='0'"),
                        (dict(TORCHRUN, MASTER_PORT=""), "missing here"),
                        (dict(TORCHRUN, RANK="-1"), "RANK (environment)='-1'"),
                        (dict(TORCHRUN, LOCAL_RANK="x"), "LOCAL_RANK (environment)='x'")):
        with pytest.raises(ConfigError, match="accepted") as err:
            check_distributed_env(env, cpu)
        assert needle in str(err.value) and "\n" not in str(err.value)
    if not torch.cuda.is_available():
        return
    with pytest.raises(ConfigError, match="LOCAL_RANK"):
        check_distributed_env(dict(TORCHRUN, LOCAL_RANK=str(torch.cuda.device_count())), torch.device("cuda"))
