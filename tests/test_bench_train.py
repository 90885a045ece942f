"""benchmarks/bench_train.py: a tiny real run of both variants, the reference swap, and the summary logic."""

import json
import os
import subprocess
import sys

import torch

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import bench_train  # noqa: E402


def test_bench_train_smoke(tmp_path):
    """Both variants train Hopper for a few steps concurrently; the table, the ratio line and the JSON come out."""
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    cmd = [sys.executable, os.path.join(REPO, "benchmarks", "bench_train.py"), "--threshold=-1e9",
           "--eval-interval", "20", "--max-minutes", "1", "--quiet", "--json", str(out_json), "--png", str(out_png)]
    for item in ("train.random_steps=10", "train.learning_starts=10", "train.batch_size=16",
                 "train.replay_size_per_env=1000", "train.compile=False"):  # a few steps: compiling would dominate
        cmd += ["--override", item]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "| variant | reached | seconds to threshold |" in proc.stdout
    assert "| ours | yes |" in proc.stdout and "| reference | yes |" in proc.stdout
    assert "ratio reference/ours of wall-clock seconds to return >= -1e+09: " in proc.stdout
    assert "ratio ours/reference of updates/s (learning phase): " in proc.stdout
    data = json.loads(out_json.read_text())
    assert data["meta"]["train_cfg"]["batch_size"] == 16 and data["meta"]["seed"] == 1
    assert len(data["meta"]["sources"]["meow_isaac/agents/meow.py"]) == 12
    for variant in ("ours", "reference"):
        row = data["summary"][variant]
        assert row["reached"] and row["frames_to_threshold"] == 20 and row["seconds_to_threshold"] > 0
        assert row["updates_per_s"] > 0 and row["final_updates"] >= 10
        first = data["evaluations"][variant][0]
        assert first["iteration"] == 20 and not first["after_done"]
    assert out_png.stat().st_size > 1000


def test_reference_swap_acts_like_ours_and_updates():
    """The reference copies act exactly as the original nets; the swapped update trains the copies only."""
    from meow_isaac.agents.meow import MEowAgent
    from meow_isaac.config import TrainConfig
    from meow_isaac.replay import ReplayBuffer

    torch.manual_seed(0)
    agent = MEowAgent(11, 3, torch.device("cpu"), alpha=0.25)
    obs = torch.randn(8, 11)
    before = agent.act(obs, deterministic=True)
    original = [p.detach().clone() for p in agent.policy.parameters()]
    old_policy = agent.policy
    bench_train.use_reference_update(agent, TrainConfig())
    assert agent.policy is not old_policy
    torch.testing.assert_close(agent.act(obs, deterministic=True), before)
    replay = ReplayBuffer(1, 64, 11, 3, torch.device("cpu"))
    for _ in range(64):
        replay.add(torch.randn(1, 11), torch.rand(1, 3) * 2 - 1, torch.randn(1), torch.randn(1, 11),
                   torch.zeros(1, dtype=torch.bool), torch.ones(1, dtype=torch.bool))
    metrics = agent.update(replay.sample(32))
    assert set(metrics) == {"losses/loss"} and torch.isfinite(metrics["losses/loss"])
    assert not torch.equal(agent.act(obs, deterministic=True), before)
    for p, q in zip(old_policy.parameters(), original):
        assert torch.equal(p, q)  # the agent's own nets are no longer trained


def _evals(variant, points, done_at, reached):
    recs = [{"event": "eval", "variant": variant, "iteration": f, "frames": f, "updates": max(0, f - 100),
             "train_s": s, "train_cpu_s": s / 2, "eval_s": 1.0, "return": r, "after_done": i > done_at,
             "learn_start_s": 1.0, "learn_start_cpu_s": 0.5} for i, (s, f, r) in enumerate(points)]
    return recs, dict(recs[done_at], event="done", reached=reached)


def test_summary_when_reference_misses_the_threshold():
    """No fake ratio: a lower bound, the updates/s ratio and the frames at the budget instead."""
    budget = 100.0
    ours, ours_done = _evals("ours", [(10, 200, 50), (50, 1000, 310), (110, 2200, 400)], 1, True)
    ref, ref_done = _evals("reference", [(10, 150, 50), (60, 900, 200), (101, 1500, 250)], 2, False)
    rows = {"ours": bench_train.summarize("ours", ours, ours_done, budget),
            "reference": bench_train.summarize("reference", ref, ref_done, budget)}
    assert rows["ours"]["seconds_to_threshold"] == 50 and rows["ours"]["frames_to_threshold"] == 1000
    assert rows["reference"]["seconds_to_threshold"] is None and rows["ours"]["evaluations"] == 2
    assert abs(rows["ours"]["frames_at_budget"] - 2000) < 1e-9  # interpolated between 50 s and 110 s
    lines = "\n".join(bench_train.comparison_lines(rows, 300.0, budget))
    assert "ratio reference/ours of wall-clock" not in lines
    assert "reference did not reach return 300 within" in lines and "no time-to-threshold ratio" in lines
    assert ">= 2.02" in lines  # 101 s (not reached) / 50 s
    ups = (900 / 49) / (1400 / 100)
    assert f"ratio ours/reference of updates/s (learning phase): {ups:.2f}" in lines
    assert "ratio ours/reference of frames at the 1.66667 min budget: 1.35" in lines  # 2000 / 1483.3
    table = "\n".join(bench_train.table_lines(rows))
    assert "| reference | no | - | - | - |" in table
