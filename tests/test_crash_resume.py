"""Crash at any time: SIGKILL a real training process at random moments, resume each time with
``checkpoint=auto``, and check that at most one save interval of progress is lost per kill, that every
checkpoint left behind loads, that a killed write's temp file does not break the resume, and that the final
counters are those of the same run uninterrupted (the replay buffer is saved, so updates resume exactly).

How far a killed run got is measured from the outside: the training subprocess runs ``runner.py`` through a
driver that replaces the trainer's progress bar with one that writes ``[probe] iteration N`` (unbuffered,
``os.write``) after every completed iteration, i.e. before that iteration's checkpoint is written.
"""

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import torch
from hydra import compose, initialize_config_dir

from conftest import REPO
from meow_isaac.checkpoint import load_checkpoint, temp_files
from meow_isaac.runner import config_dir, run

DRIVER = r"""
import os, sys
import meow_isaac.trainer as trainer_mod
from meow_isaac.runner import main


class Probe(trainer_mod.tqdm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reached = kwargs.get("initial", 0)

    def update(self, n=1):
        self.reached += n
        os.write(1, f"[probe] iteration {self.reached}\n".encode())
        return super().update(n)


trainer_mod.tqdm = Probe
main()
"""

SAVE, LEARNING_STARTS, TARGET = 20, 10, 120
ARGS = ["task=Hopper", "num_envs=4", f"train.random_steps={LEARNING_STARTS}",
        f"train.learning_starts={LEARNING_STARTS}", "train.batch_size=32", "train.replay_size_per_env=100",
        "train.save_replay=True", f"train.save_interval={SAVE}",
        "train.log_interval=50", "train.eval_interval=0", "train.eval_envs=1", f"max_iterations={TARGET}",
        "experiment=crash", "checkpoint=auto", "progress_bar=False", "torch_threads=1", "sim_threads=1"]


class Run:
    """The training subprocess; a thread collects its output (the pipe never fills up)."""

    def __init__(self, cwd):
        path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen([sys.executable, "-c", DRIVER] + ARGS, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=dict(os.environ, PYTHONPATH=path))
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self):
        return "".join(self.lines)

    def reached(self):
        return max([int(n) for n in re.findall(r"\[probe\] iteration (\d+)", self.text())] or [None])

    def started_at(self):
        """The iteration it resumed at (0 for a fresh start)."""
        found = re.search(r"resumed from (\S+) at iteration (\d+)", self.text())
        return (found.group(1), int(found.group(2))) if found else (None, 0)



def _assert_each_resume_lost_at_most_one_save_interval(kills, final, nn):
    """``kills``: (checkpoint the attempt started from, iteration it reached) per killed attempt; ``final`` the
    run that finished. Each next attempt resumed from a real checkpoint (never a temp file) at a save point, at
    most one save interval behind what the killed attempt had reached."""
    starts = [start for start, _ in kills[1:]] + [final.started_at()]
    print("kills (started at, reached):", kills, "final started at", final.started_at())
    for (_, reached), (path, resumed_at) in zip(kills, starts):
        assert path in (None, str(nn / "crash.pth"), "runs/crash/nn/crash.pth"), path  # never a temp file
        assert resumed_at % SAVE == 0 and resumed_at <= reached, (resumed_at, reached)
        assert reached - resumed_at <= SAVE, f"lost {reached - resumed_at} iterations > save interval {SAVE}"

def test_sigkill_at_random_moments_then_auto_resume(tmp_path, monkeypatch):
    rng = random.Random(20240601)
    nn = tmp_path / "runs" / "crash" / "nn"
    last = nn / "crash.pth"
    kills = []
    for kill in range(3):
        if last.exists():  # a write killed before its rename leaves a temp file, newer than the checkpoint
            stale = nn / f"crash.pth.k{kill}ll.tmp"
            stale.write_bytes(last.read_bytes()[:1000])
        attempt = Run(tmp_path)
        deadline = time.time() + 120
        while attempt.reached() is None and attempt.proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)  # wait until it trains
        assert attempt.reached() is not None, attempt.text()
        kill_at = time.time() + rng.uniform(0.2, 1.5)
        while time.time() < kill_at and attempt.reached() < TARGET - 3 * SAVE:  # leave the last run work to do
            time.sleep(0.01)
        attempt.proc.send_signal(signal.SIGKILL)
        attempt.proc.wait(timeout=60)
        attempt.reader.join(timeout=60)
        assert attempt.proc.returncode == -signal.SIGKILL, attempt.text()
        kills.append((attempt.started_at(), attempt.reached()))
        if last.exists():
            assert load_checkpoint(last)["counters"]["iteration"] <= attempt.reached()
    final = Run(tmp_path)
    assert final.proc.wait(timeout=300) == 0, final.text()
    final.reader.join(timeout=60)
    _assert_each_resume_lost_at_most_one_save_interval(kills, final, nn)
    assert kills[-1][1] < TARGET, "the last kill came after the end: nothing left to resume"
    done = re.search(r"done: iteration (\d+), frames (\d+), updates (\d+)", final.text())
    monkeypatch.chdir(tmp_path)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):  # the same run, uninterrupted
        whole = run(compose("config", overrides=[a for a in ARGS if a not in ("checkpoint=auto", "experiment=crash")]
                            + ["experiment=whole"]))
    expected = (whole["iteration"], whole["frames"], whole["updates"])
    assert expected[:2] == (TARGET, TARGET * 4) and expected[2] > 0
    assert tuple(int(g) for g in done.groups()) == expected, final.text()
    counters = load_checkpoint(last)["counters"]
    assert (counters["iteration"], counters["frames"], counters["updates"]) == expected
    for path in sorted(nn.glob("*.pth")):
        state = load_checkpoint(path)
        assert set(state["agent"]) and all(isinstance(v, torch.Tensor) for v in state["agent"].values()), path
    assert temp_files(last) == [] and not list(nn.glob("*.tmp"))  # the killed writes' temp files are cleaned up


# ------------------------------------------------------------------ torchrun, 2 gloo ranks
DDP_ARGS = [a for a in ARGS if not a.startswith(("experiment=", "num_envs="))] + ["num_envs=2", "train.compile=False"]


class TorchRun(Run):
    """``torchrun --nproc_per_node 2`` over the probe driver (each probe line names the rank and its pid)."""

    def __init__(self, cwd, port, experiment):
        path = os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH", "")) if p)
        driver = cwd / "probe_driver.py"
        driver.write_text(DRIVER.replace('f"[probe] iteration', 'f"[probe] rank {os.environ[\'RANK\']} pid '
                                         '{os.getpid()} iteration'))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               str(driver)] + DDP_ARGS + [f"experiment={experiment}"]
        self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, PYTHONPATH=path))
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def reached(self, rank=0):
        found = re.findall(rf"\[probe\] rank {rank} pid \d+ iteration (\d+)", self.text())
        return max([int(n) for n in found] or [None])

    def pid(self, rank):
        found = re.search(rf"\[probe\] rank {rank} pid (\d+)", self.text())
        return int(found.group(1)) if found else None


def test_sigkill_under_torchrun_at_random_moments_then_auto_resume(tmp_path):
    """2 gloo ranks: SIGKILL rank 1, then rank 0 (the one that writes, maybe mid-write), then the whole job, at
    random moments; each time torchrun with checkpoint=auto resumes from the last checkpoint, losing at most one
    save interval, and the final counters are those of the same 2-rank run uninterrupted."""
    rng = random.Random(20241204)
    nn = tmp_path / "runs" / "crash" / "nn"
    last = nn / "crash.pth"
    kills = []
    for kill, target in enumerate(("rank 1", "rank 0", "job")):
        attempt = TorchRun(tmp_path, 29571 + kill, "crash")
        deadline = time.time() + 240
        while (attempt.reached(0) is None or attempt.reached(1) is None) and attempt.proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.05)  # wait until both ranks train
        assert attempt.reached(0) is not None and attempt.reached(1) is not None, attempt.text()
        kill_at = time.time() + rng.uniform(0.2, 1.5)
        while time.time() < kill_at and attempt.reached(0) < TARGET - 3 * SAVE:  # leave the last run work to do
            time.sleep(0.01)
        if target == "job":  # as a node failure or Slurm's cgroup kill: torchrun and both workers at once
            for pid in (attempt.pid(0), attempt.pid(1), attempt.proc.pid):  # (the workers have their own sessions)
                os.kill(pid, signal.SIGKILL)
        else:
            os.kill(attempt.pid(int(target[-1])), signal.SIGKILL)
        reached = attempt.reached(0)
        assert attempt.proc.wait(timeout=120) != 0, attempt.text()
        print("DEBUG exited", attempt.proc.returncode, attempt.reached(0), time.time())  # torchrun tears the other rank down
        attempt.reader.join(timeout=60)
        reached = max(reached, attempt.reached(0))
        kills.append((attempt.started_at(), reached))
        if last.exists():
            assert load_checkpoint(last)["counters"]["iteration"] <= reached
        assert "done: iteration" not in attempt.text(), attempt.text()
    final = TorchRun(tmp_path, 29575, "crash")
    assert final.proc.wait(timeout=400) == 0, final.text()
    final.reader.join(timeout=60)
    _assert_each_resume_lost_at_most_one_save_interval(kills, final, nn)
    assert final.text().count("resumed from") == 2  # both ranks resumed from the same checkpoint
    whole = TorchRun(tmp_path, 29576, "whole")  # the same 2-rank run, uninterrupted
    assert whole.proc.wait(timeout=400) == 0, whole.text()
    whole.reader.join(timeout=60)
    pattern = r"done: iteration (\d+), frames (\d+), updates (\d+)"
    expected = sorted(re.findall(pattern, whole.text()))
    assert len(expected) == 2 and int(expected[0][0]) == TARGET and int(expected[0][2]) > 0, whole.text()
    assert sorted(re.findall(pattern, final.text())) == expected, final.text()
    assert "parameters identical on all 2 ranks: True" in final.text()
    counters = load_checkpoint(last)["counters"]
    assert (str(counters["iteration"]), str(counters["frames"]), str(counters["updates"])) == expected[0]
    for path in sorted(nn.glob("*.pth")):
        state = load_checkpoint(path)
        assert set(state["agent"]) and all(isinstance(v, torch.Tensor) for v in state["agent"].values()), path
    assert temp_files(last) == [] and not list(nn.glob("*.tmp"))
