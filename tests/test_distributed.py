"""Two-process data parallel training with torchrun + gloo on CPU: parameters stay identical across ranks."""

import os
import re
import subprocess
import sys

import torch

from conftest import REPO


def test_two_ranks_gloo_keep_identical_parameters(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           os.path.join(REPO, "runner.py"), "task=InvertedPendulum", "num_envs=2", "max_iterations=150",
           "train.random_steps=50", "train.learning_starts=50", "train.eval_interval=0", "train.eval_envs=2",
           "train.batch_size=64", "train.normalize_input=True", "progress_bar=False", "torch_threads=1",
           "sim_threads=1", "experiment=ddp"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    for rank in (0, 1):
        assert f"rank {rank}: parameters identical on all 2 ranks: True" in out, out[-3000:]
        assert f"rank {rank}/2: InvertedPendulum" in out
    ckpt = torch.load(tmp_path / "runs" / "ddp" / "nn" / "ddp.pth", weights_only=False)
    assert ckpt["counters"]["updates"] == 101 and ckpt["config"]["world_size"] == 2
    assert float(ckpt["agent"]["normalizer.count"]) == 2 * 2 * 151  # both ranks' observations were merged


def test_checkpoint_error_stop_stops_every_rank_with_one_line(tmp_path):
    """Rank 0's checkpoint write fails (RLIMIT_FSIZE: EFBIG) with checkpoint_error=stop: both ranks stop at that
    save point with exit code 5 (none is left waiting in a gradient all-reduce), and one line says why."""
    import resource

    limit = 64 * 1024  # far below a checkpoint; TensorBoard's few events stay under it

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           os.path.join(REPO, "runner.py"), "task=InvertedPendulum", "num_envs=2", "max_iterations=200",
           "train.random_steps=20", "train.learning_starts=20", "train.eval_interval=0", "train.save_interval=40",
           "train.batch_size=32", "train.compile=False", "progress_bar=False", "torch_threads=1", "sim_threads=1",
           "checkpoint_error=stop", "experiment=ddp_stop"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "could not write checkpoint" in errors[0] and "iteration 40" in errors[0], out[-3000:]
    assert "[Errno 27] File too large" in errors[0] and "checkpoint_error=stop" in errors[0]
    assert "CheckpointWriteError" not in out and "all_reduce" not in out, out[-3000:]  # no worker traceback
    # torchrun's summary: both ranks stopped by themselves with exit 5; torchrun SIGTERMs the ranks still alive
    # once one has exited, which can catch a rank in its interpreter shutdown after the common exit (-15)
    ranks = dict(re.findall(r"rank\s*:\s*(\d+) \(local_rank: \d+\)\s*exitcode\s*:\s*(-?\d+)", out))
    assert set(ranks) == {"0", "1"} and "5" in ranks.values() and set(ranks.values()) <= {"5", "-15"}, out[-3000:]
    assert re.search(r"Root Cause.*?exitcode\s*:\s*5", out, re.S), out[-3000:]
    assert "done: iteration" not in out


_EXIT_PROBE = r'''
import atexit
import torch.distributed as dist
# registered first, so it runs last (atexit is LIFO): after every handler the project registered
atexit.register(lambda: print(f"[probe] rank {dist.get_rank() if dist.is_initialized() else '-'}: group joined at "
                              f"exit: {dist.is_initialized()}", flush=True))
from meow_isaac.distributed import all_reduce_sum, init_distributed
import torch
info = init_distributed("cpu")
print(f"[probe] rank {info.rank}: sum {float(all_reduce_sum(torch.ones(1)))}", flush=True)
'''


def test_every_rank_leaves_the_process_group_before_the_interpreter_exits(tmp_path):
    """``init_distributed`` registers ``destroy_distributed`` at exit: a group left for interpreter finalisation can
    abort a rank whose run had finished (``terminate called without an active exception``, exit -6, seen once in
    the 2-rank SIGKILL test), and torchrun reports the job as failed."""
    script = tmp_path / "probe.py"
    script.write_text(_EXIT_PROBE)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29537",
           str(script)]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("sum 2.0") == 2, out[-3000:]
    assert out.count("group joined at exit: False") == 2, out[-3000:]
