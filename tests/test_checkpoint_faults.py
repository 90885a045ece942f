"""Checkpoint faults: a failed write (disk full / file too large) keeps the previous file; wrong, corrupt, newer
or untrusted checkpoints are refused in one line before anything is loaded; config strings may only name allowed
task code."""

import errno
import os
import pickle
import re
import resource
import shutil
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

import tasks
from conftest import REPO
from meow_isaac.agents import make_agent
from meow_isaac.checkpoint import (FORMAT_VERSION, CheckpointError, CheckpointWriteError, check_checkpoint_error,
                                   load_checkpoint, save_checkpoint, temp_files)
from meow_isaac.config import ConfigError, TrainConfig
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.factory import make_task_env
from meow_isaac.runner import config_dir, find_latest_checkpoint, run
from meow_isaac.trainer import Trainer

CPU = torch.device("cpu")
CLI = [sys.executable, os.path.join(REPO, "runner.py")]
HOPPER = ["task=Hopper", "num_envs=4", "train.random_steps=10", "train.learning_starts=10", "train.batch_size=32",
          "train.replay_size_per_env=50", "train.eval_interval=0", "train.eval_envs=1", "train.log_interval=10",
          "train.save_interval=10", "progress_bar=False", "torch_threads=1", "sim_threads=1", "experiment=full"]


def _trainer(tmp_path, algo="meow", obs_dim=6, action_dim=2, task="Synthetic", iterations=20, activation="swish"):
    cfg = TrainConfig(algo=algo, batch_size=16, replay_size_per_env=30, random_steps=5, learning_starts=5,
                      max_iterations=iterations, log_interval=10, eval_interval=0, save_interval=10**9,
                      save_replay=True, units=[16, 16], activation=activation)
    agent = make_agent(obs_dim, action_dim, CPU, cfg)
    return Trainer(SyntheticVecEnv(2, obs_dim, action_dim, 20), lambda: SyntheticVecEnv(1, obs_dim, action_dim, 20),
                   agent, cfg, tmp_path, None, "t", CPU, config_dict={"task": {"name": task}}, show_progress=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained MEow Synthetic (obs 6, action 2) trainer and its 'last' checkpoint (optimizer state non-empty)."""
    trainer = _trainer(tmp_path_factory.mktemp("trained"))
    trainer.train()
    return trainer, trainer.checkpoint_path("last")


def _snapshot(trainer):
    return ({k: v.clone() for k, v in trainer.agent.state_dict().items()}, trainer.iteration, trainer.updates,
            trainer.replay.num_adds, str(trainer.agent.optimizer_state_dict()))


def _same(a, b):
    return all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:]


def _fake_disk_full(monkeypatch):
    """torch.save writes half of its bytes, then the disk is full."""
    real = torch.save

    def save(obj, handle, *args, **kwargs):
        real(obj, handle, *args, **kwargs)
        handle.seek(0)
        handle.truncate(100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", save)


# ------------------------------------------------------------------------------------------- failed writes
def test_failed_write_keeps_the_previous_file_byte_identical_and_removes_the_temp(tmp_path, monkeypatch):
    path = tmp_path / "nn" / "x.pth"
    save_checkpoint(path, {"agent": {"w": torch.ones(3)}, "counters": {}})
    before = path.read_bytes()
    _fake_disk_full(monkeypatch)
    with pytest.raises(OSError) as info:
        save_checkpoint(path, {"agent": {"w": torch.zeros(1000)}, "counters": {}})
    assert info.value.errno == errno.ENOSPC and str(path) in str(info.value)
    assert path.read_bytes() == before and temp_files(path) == [] and os.listdir(path.parent) == ["x.pth"]


def test_trainer_save_warns_in_one_line_or_stops(tmp_path, monkeypatch, capsys):
    trainer = _trainer(tmp_path)
    path = trainer.save(trainer.checkpoint_path("last"))
    before = path.read_bytes()
    _fake_disk_full(monkeypatch)
    trainer.iteration = 7
    assert trainer.save(path) == path  # checkpoint_error: warn (default)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"[meow-isaac] error: could not write checkpoint {path} at "
                                               "iteration 7: [Errno 28] No space left on device; the previous")
    assert "training continues (checkpoint_error=warn)" in err[0]
    trainer.checkpoint_error = "stop"
    with pytest.raises(CheckpointWriteError, match=r"could not write checkpoint .*\[Errno 28\].*checkpoint_error=stop"):
        trainer.save(path)
    assert path.read_bytes() == before and temp_files(path) == []


def test_checkpoint_error_key_is_validated():
    assert check_checkpoint_error("warn") == "warn" and check_checkpoint_error("stop") == "stop"
    with pytest.raises(ConfigError, match=r"checkpoint_error='ignore'; accepted: warn, stop"):
        check_checkpoint_error("ignore")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=["task=Hopper", "checkpoint_error=maybe"])
    with pytest.raises(ConfigError, match=r"invalid config: checkpoint_error='maybe'; accepted: warn, stop"):
        run(cfg)


def test_stale_temp_files_are_ignored_and_removed(tmp_path):
    nn = tmp_path / "runs" / "exp" / "nn"
    save_checkpoint(nn / "exp.pth", {"agent": {}, "counters": {}})
    stale = nn / "exp.pth.k1ll3d.tmp"
    stale.write_bytes(b"PK\x03\x04 half a zip")  # newest file of the folder
    (nn / "other.pth").write_bytes(b"")  # an empty file (not written by save_checkpoint) is never picked
    assert find_latest_checkpoint("exp", "exp", tmp_path / "runs") == str(nn / "exp.pth")
    save_checkpoint(nn / "exp.pth", {"agent": {}, "counters": {}})
    assert not stale.exists()


@pytest.fixture(scope="module")
def hopper_runs(tmp_path_factory):
    """``runs/`` of a 20-iteration Hopper run (``runs/full/nn/full.pth``), trained in-process."""
    root, cwd = tmp_path_factory.mktemp("hopper"), os.getcwd()
    os.chdir(root)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            run(compose("config", overrides=HOPPER + ["max_iterations=20"]))
    finally:
        os.chdir(cwd)
    return root / "runs"


@pytest.mark.parametrize("mode, code", [("warn", 0), ("stop", 5)])
def test_file_size_limit_while_checkpointing_through_the_cli(hopper_runs, tmp_path, mode, code):
    """A real OS fault: RLIMIT_FSIZE (CPython ignores SIGXFSZ) makes every checkpoint write fail with EFBIG."""
    shutil.copytree(hopper_runs, tmp_path / "runs")
    ckpt = tmp_path / "runs" / "full" / "nn" / "full.pth"
    before = ckpt.read_bytes()
    limit = 512 * 1024
    assert len(before) > limit

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(CLI + HOPPER + ["checkpoint=auto", "max_iterations=40", f"checkpoint_error={mode}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, preexec_fn=small_files)
    assert proc.returncode == code, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "could not write checkpoint" in line]
    named = re.compile(re.escape(str(ckpt.with_suffix(""))) + r"(_best)?\.pth at iteration")  # last, or best
    assert errors and all(named.search(e) and "[Errno 27] File too large" in e  # if the return improved
                          and "previous checkpoint file is intact" in e for e in errors), proc.stderr
    if mode == "warn":  # every save failed (periodic at 30 and 40, best if better, final), training went on
        assert 3 <= len(errors) <= 4 and "done: iteration 40" in proc.stdout, proc.stdout + proc.stderr
    else:  # the first failed save stops the run: one line, exit 5
        assert [line for line in proc.stderr.splitlines() if line.strip()] == errors and len(errors) == 1
        assert errors[0].startswith("error: could not write checkpoint") and "iteration 30" in errors[0]
    assert ckpt.read_bytes() == before and temp_files(ckpt) == []


# ------------------------------------------------------------------------------------------- wrong files
def test_wrong_corrupt_and_newer_checkpoints_are_refused_before_anything_is_loaded(trained, tmp_path):
    source, path = trained
    state = torch.load(path, weights_only=True)
    assert state["format_version"] == FORMAT_VERSION
    assert state["meta"] == {"algo": "meow", "task": "Synthetic", "obs_dim": 6, "action_dim": 2,
                             "activation": "swish"}

    def refused(target, file, pattern):
        before = _snapshot(target)
        with pytest.raises(CheckpointError, match=pattern):
            target.load(file)
        assert _same(before, _snapshot(target)), "partial load"

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    refused(_trainer(tmp_path), truncated, r"checkpoint='.*truncated.pth': is truncated or corrupt")
    refused(_trainer(tmp_path, obs_dim=5, action_dim=3, task="Other"), path,
            r"task: expected 'Other', found 'Synthetic'; obs_dim: expected 5, found 6; action_dim: expected 3, "
            r"found 2; accepted: a checkpoint of the same algorithm, task and model")
    refused(_trainer(tmp_path, algo="sac"), path, r"train.algo='sac'; accepted: 'meow', the algorithm of "
                                                  r"checkpoint=.* \(select its train config, e.g. train=<Task>MEow\)")
    for name, edit, pattern in [
        ("newer", lambda s: s.update(format_version=FORMAT_VERSION + 1),
         rf"format_version: expected 1..{FORMAT_VERSION}, found {FORMAT_VERSION + 1} \(written by a newer"),
        ("shape", lambda s: s["agent"].update({k: torch.zeros(3) for k in list(s["agent"])[:1]}),
         r"agent\.\S+: expected shape \(\d+, 6\), found \(3,\)"),
        ("keys", lambda s: s["agent"].pop(sorted(s["agent"])[-1]), r"agent keys missing: "),
        ("replay", lambda s: s["replay"].update(obs=torch.zeros(1, 6)), r"replay.obs: expected shape .*num_envs"),
        ("optimizer", lambda s: next(iter(s["optimizer"]["state"].values())).update(exp_avg=torch.zeros(2, 2)),
         r"optimizer state does not fit this model .*expected shape"),
    ]:
        bad = torch.load(path, weights_only=True)
        edit(bad)
        torch.save(bad, tmp_path / f"{name}.pth")
        refused(_trainer(tmp_path), tmp_path / f"{name}.pth", pattern)
    fresh = _trainer(tmp_path)
    fresh.load(path)  # and the good file loads
    assert _same(_snapshot(source), _snapshot(fresh))


@pytest.fixture(scope="module")
def trained_relu(tmp_path_factory):
    """As :func:`trained` with ``train.activation=relu`` (the network of files written before that key)."""
    trainer = _trainer(tmp_path_factory.mktemp("trained_relu"), activation="relu")
    trainer.train()
    return trainer, trainer.checkpoint_path("last")


def test_version_1_checkpoints_still_load(trained_relu, tmp_path):
    """Unversioned files of the previous layout (NumPy RNG state as an array, no meta; the ReLU network, as every
    file of that time) load as version 1, with train.activation=relu."""
    import numpy as np

    _, path = trained_relu
    legacy = torch.load(path, weights_only=True)
    del legacy["format_version"], legacy["meta"]
    legacy["rng"]["numpy"] = np.random.get_state()
    torch.save(legacy, tmp_path / "v1.pth")
    trainer = _trainer(tmp_path, activation="relu")
    trainer.load(tmp_path / "v1.pth")
    assert trainer.iteration == 20 and load_checkpoint(tmp_path / "v1.pth")["format_version"] == 1
    with pytest.raises(CheckpointError, match=r"train.activation='swish'; accepted: 'relu'"):
        _trainer(tmp_path).load(tmp_path / "v1.pth")


def test_checkpoints_of_the_earlier_relu_network_load_with_train_activation_relu_or_are_refused(
        trained, trained_relu, tmp_path):
    """Files written before train.activation (ReLU network, meta without 'activation') load into a relu agent;
    the default (swish) refuses them in one line naming the setting, and so does a swish file in a relu run."""
    _, swish_path = trained
    old, relu_path = trained_relu
    assert not any("beta" in key for key in old.agent.state_dict())  # the earlier network's state dict
    legacy = torch.load(relu_path, weights_only=True)
    assert legacy["meta"].pop("activation") == "relu"
    torch.save(legacy, tmp_path / "legacy.pth")
    target = _trainer(tmp_path)
    before = _snapshot(target)
    refusal = (r"^invalid config: train.activation='swish'; accepted: 'relu', the network of checkpoint=.*legacy.pth "
               r"\(written before train.activation existed\): add train.activation=relu$")
    with pytest.raises(CheckpointError, match=refusal):
        target.load(tmp_path / "legacy.pth")
    assert _same(before, _snapshot(target))
    relu = _trainer(tmp_path, activation="relu")
    relu.load(tmp_path / "legacy.pth")
    assert _same(_snapshot(old), _snapshot(relu))
    with pytest.raises(CheckpointError, match=r"train.activation='relu'; accepted: 'swish', the network of "
                                              r"checkpoint=.*: add train.activation=swish$"):
        _trainer(tmp_path, activation="relu").load(swish_path)


def test_an_earlier_relu_checkpoint_through_the_cli_is_one_line_or_plays_with_train_activation_relu(tmp_path):
    root, cwd = tmp_path / "relu", os.getcwd()
    root.mkdir()
    os.chdir(root)
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            run(compose("config", overrides=HOPPER + ["max_iterations=20", "train.activation=relu"]))
    finally:
        os.chdir(cwd)
    legacy = torch.load(root / "runs/full/nn/full.pth", weights_only=True)
    del legacy["meta"]["activation"]
    path = tmp_path / "legacy.pth"
    torch.save(legacy, path)
    play = CLI + ["task=Hopper", "test=True", f"checkpoint={path}", "train.eval_envs=1", "torch_threads=1",
                  "sim_threads=1"]
    proc = subprocess.run(play, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and lines == [
        f"error: invalid config: train.activation='swish'; accepted: 'relu', the network of checkpoint={path} "
        "(written before train.activation existed): add train.activation=relu"], proc.stdout + proc.stderr
    proc = subprocess.run(play + ["train.activation=relu"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "mean return" in proc.stdout.lower(), proc.stdout + proc.stderr


class Payload:
    """Runs a shell command when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_planted_pickle_payload_is_refused_and_never_runs(trained, tmp_path):
    _, path = trained
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Payload(control)))  # the payload is live: plain unpickling runs it
    assert control.exists()
    marker = tmp_path / "pwned"
    state = torch.load(path, weights_only=True)
    state["config"]["note"] = Payload(marker)
    torch.save(state, tmp_path / "evil.pth")
    trainer = _trainer(tmp_path)
    for load in (lambda: load_checkpoint(tmp_path / "evil.pth"), lambda: trainer.load(tmp_path / "evil.pth")):
        with pytest.raises(CheckpointError, match=r"holds pickled objects that are not plain data "
                                                  r"\(GLOBAL posix.system\); refused, nothing was loaded or run"):
            load()
    assert not marker.exists() and trainer.iteration == 0


def test_wrong_checkpoint_through_the_cli_is_one_line_exit_2(trained, tmp_path):
    _, path = trained
    proc = subprocess.run(CLI + ["task=Hopper", "test=True", f"checkpoint={path}", "train.eval_envs=1",
                                 "torch_threads=1", "sim_threads=1"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr
    assert lines[0] == (f"error: invalid config: checkpoint='{path}': task: expected 'Hopper', found 'Synthetic'; "
                        "obs_dim: expected 11, found 6; action_dim: expected 3, found 2; accepted: a checkpoint of the "
                        "same algorithm, task and model as this run")


# ------------------------------------------------------------------------------------------- allow-list
def test_entry_points_outside_the_allow_list_are_refused(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(os, "system", lambda *a, **k: called.append(a))
    with pytest.raises(ConfigError, match=r"invalid config: task='Evil': task entry point 'os:system' is not "
                                          r"allowed: module 'os' is part of the Python installation .*accepted: "
                                          r"a registered task .*MEOW_ISAAC_TASK_MODULES"):
        make_task_env({"name": "Evil", "entry_point": "os:system", "env": {}}, "mujoco", 1, 0, "cpu", 1)
    with pytest.raises(ConfigError, match=r"task.isaacgym: task entry point 'subprocess:Popen' is not allowed"):
        make_task_env({"name": "Evil", "isaacgym": {"task_class": "subprocess:Popen"}}, "isaacgym", 1, 0, "cpu", 1)
    assert called == []
    with pytest.raises(ValueError, match="not allowed"):
        tasks.check_entry_point("json:loads")
    monkeypatch.setenv(tasks.TASK_MODULES_ENV, "json")  # explicitly allowed by the user
    tasks.check_entry_point("json:loads")
    (tmp_path / "team_mod.py").write_text("def make(env_cfg, **kw):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # the user's own code
    tasks.check_entry_point("team_mod:make")
    tasks.check_entry_point("tasks.gym_mujoco:Hopper")  # a registered builder's module


def test_tensorboard_write_error_is_one_line_and_training_logs_go_on(tmp_path, capsys):
    from meow_isaac.logger import Logger

    logger = Logger(tmp_path)
    logger.log({"a": 1.0}, 0)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    logger.writer.add_scalar = disk_full  # type: ignore[union-attr]
    logger.log({"a": 2.0}, 1)
    logger.log({"a": 3.0}, 2)  # TensorBoard is off now: no second error, no exception
    logger.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: TensorBoard could not write to ") and "No space left" in err[0]
    assert logger.writer is None


def test_env_rng_of_another_device_kind_is_not_restored_and_a_wrong_one_is_refused(trained, tmp_path, capsys):
    """A CUDA run's env generator state (Philox, 16 bytes) cannot seed a CPU generator (mt19937, 5056 bytes): a
    checkpoint saved on CUDA resumes on the CPU with one line and the env's stream from the seed; a state of the
    wrong shape saved by a generator of the same device kind is still refused."""
    _, path = trained
    state = torch.load(path, weights_only=True)
    assert state["env_rng_device"] == "cpu" and state["env_rng"].shape == torch.Generator().get_state().shape
    state["env_rng"], state["env_rng_device"] = torch.zeros(16, dtype=torch.uint8), "cuda"
    moved = tmp_path / "from_cuda.pth"
    torch.save(state, moved)
    trainer = _trainer(tmp_path / "cpu")
    seeded = trainer.env.generator.get_state().clone()
    trainer.load(moved)
    assert trainer.iteration == 20 and torch.equal(trainer.env.generator.get_state(), seeded)
    assert "random generator was on cuda, this run's is on cpu: its state is not restored" in capsys.readouterr().out
    state["env_rng_device"] = "cpu"
    torch.save(state, moved)
    fresh = _trainer(tmp_path / "cpu2")
    with pytest.raises(CheckpointError, match=r"env_rng: expected a tensor of shape \(5056,\)"):
        fresh.load(moved)
    assert fresh.iteration == 0


def test_both_env_generators_of_an_embedded_env_are_checkpointed(tmp_path):
    """The embedded env draws resets by index from ``generator`` and resets by mask (the device engines' auto-reset,
    the NaN guard's ``reset_envs``) from ``masked_generator``: both are saved and restored, so a resumed run
    draws the same reset noise as the uninterrupted one."""
    import tasks

    def trainer(folder):
        env = tasks.make_env("InvertedPendulum", {}, num_envs=3, seed=5, device="cpu", num_threads=1)
        cfg = TrainConfig(batch_size=8, replay_size_per_env=30, random_steps=5, learning_starts=5, max_iterations=10,
                          log_interval=10, eval_interval=0, save_interval=10**9, units=[16, 16])
        return Trainer(env, None, make_agent(env.obs_dim, env.action_dim, CPU, cfg), cfg, folder, None, "t", CPU,
                       config_dict={"task": {"name": "InvertedPendulum"}}, show_progress=False)

    first, mask = trainer(tmp_path / "a"), torch.tensor([True, False, True])
    first.env.reset()
    first.env._reset_masked(mask)  # advances masked_generator only
    state = first.state_dict()
    assert not torch.equal(state["env_rng_masked"], trainer(tmp_path / "x").env.masked_generator.get_state())
    path = tmp_path / "t.pth"
    torch.save(state, path)
    second = trainer(tmp_path / "b")
    second.load(path)
    for name in ("generator", "masked_generator"):
        assert torch.equal(getattr(second.env, name).get_state(), getattr(first.env, name).get_state()), name
    first.env._reset_masked(mask), second.env._reset_masked(mask)
    assert torch.equal(first.env.qpos[mask], second.env.qpos[mask])  # the reset rows (the sim state is not saved)
    assert not torch.equal(first.env.qpos[0], first.env.qpos[2])
