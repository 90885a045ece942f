"""Two-process data parallel training with torchrun + gloo on CPU: parameters stay identical across ranks."""

import os
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
