"""Determinism: with ``torch_deterministic=True`` two CPU runs with the same seed give identical episode and
evaluation returns, losses and final checkpoints (every tensor bit for bit); another seed gives other ones."""

import os
import subprocess
import sys

import torch

from conftest import REPO

# Hopper, 4 envs, 60 vectorised steps: 20 random steps, then 41 updates of batch 32; episodes end within it.
ARGS = ["task=Hopper", "num_envs=4", "max_iterations=60", "train.random_steps=20", "train.learning_starts=20",
        "train.batch_size=32", "train.log_interval=10", "train.eval_interval=0", "train.eval_envs=2",
        "train.save_interval=30", "torch_deterministic=True", "torch_threads=1", "sim_threads=1",
        "progress_bar=False", "headless=True"]
TAGS = ("episode/return", "eval/return", "losses/loss")


def _scalars(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "summaries"))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in TAGS}


def _tensors(tree, prefix=""):
    """Every tensor of a nested checkpoint (dicts, lists) by its path."""
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    out = {}
    for key, value in items:
        out.update(_tensors(value, f"{prefix}/{key}"))
    return out


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    procs = {name: subprocess.Popen([sys.executable, os.path.join(REPO, "runner.py"), *ARGS, f"seed={seed}",
                                     f"experiment={name}"], cwd=tmp_path, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
             for name, seed in (("a", 1), ("b", 1), ("c", 2))}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out[-3000:]
    runs = {name: tmp_path / "runs" / name for name in procs}
    scalars = {name: _scalars(run) for name, run in runs.items()}
    ckpts = {name: torch.load(run / "nn" / f"{name}.pth", weights_only=False) for name, run in runs.items()}
    assert ckpts["a"]["counters"]["updates"] == 41 and len(scalars["a"]["episode/return"]) >= 3

    assert scalars["a"] == scalars["b"]
    assert ckpts["a"]["counters"] == ckpts["b"]["counters"]
    parts = ("agent", "optimizer", "rng", "env_rng")
    a, b = ({k: v for k, v in _tensors({p: c[p] for p in parts if p in c}).items()} for c in (ckpts["a"], ckpts["b"]))
    assert a.keys() == b.keys() and any(k.startswith("/agent/") for k in a) and any(k.startswith("/optimizer/")
                                                                                   for k in a)
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, differ

    assert scalars["a"]["episode/return"] != scalars["c"]["episode/return"]
    c = _tensors(ckpts["c"]["agent"])
    assert any(not torch.equal(a["/agent" + k], c[k]) for k in c if k.endswith("weight"))
