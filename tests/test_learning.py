"""Learning: MEow balances InvertedPendulum (random policy: ~10 steps; max return 1000) on a small budget."""

from test_runner import _run


def test_meow_learns_inverted_pendulum(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = _run(["task=InvertedPendulum", "num_envs=4", "max_iterations=2500", "train.random_steps=250",
                "train.learning_starts=250", "train.updates_per_step=2", "train.eval_interval=500", "train.eval_envs=5",
                "experiment=learn",
                "progress_bar=False", "torch_threads=1", "sim_threads=1", "seed=1", "train.activation=relu"])
    # A random policy keeps the pole up ~5-15 steps; 500 means the policy balances for half an episode or more.
    # Two updates per vectorised step (4,500 updates): with one, 3 of 5 seeds (old and new code alike) stayed
    # below 220 at this budget, so the test passed or failed on float rounding; with two, seeds 1 and 2 reach 1000.
    # train.activation=relu: the earlier ReLU network, for which this budget was tuned. The authors' Swish network
    # (the default) does not learn InvertedPendulum at small budgets (2026-12-04, this schedule): seed 1 reached
    # 1000 once at 12,000 frames and fell back to 52-60; seed 2 stayed at 36-87 up to 24,000 frames (6,000
    # iterations); alpha 0.05 or 0.002, or 16 envs, did not change that (best 56, 54, 101). The default network's
    # learning test is tests/test_multigoal.py::test_the_default_network_learns_the_multigoal_task; on Hopper it
    # reaches the ReLU network's plateau (benchmarks/README.md, the 30-minute run).
    assert out["best_return"] >= 500, out
