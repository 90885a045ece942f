"""benchmarks/bench_update.py runs from the command line, checks that both formulations give the same loss and
prints a ratio per variant (a smoke test at a tiny size; speed itself is never asserted)."""

import json
import os
import subprocess
import sys

from conftest import REPO


def test_bench_update_prints_ratios_and_writes_json(tmp_path):
    out_json = tmp_path / "update.json"
    proc = subprocess.run([sys.executable, "benchmarks/bench_update.py", "--sizes", "Hopper", "--batch", "32",
                           "--iters", "10", "--variants", "eager,eager_bf16", "--json", str(out_json)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(out_json.read_text())
    (row,) = out["results"]
    assert out["meta"]["activation"] == "swish"  # the reference formulation pays for the authors' Swish too
    assert row["loss_rel_diff"] <= 1e-4 and row["bf16_loss_rel_diff"] < 0.05
    for variant in ("eager", "eager_bf16"):
        assert row[f"{variant}_ms"] > 0 and row[f"{variant}_ratio"] > 0
    assert "| Hopper (obs 11, act 3) | 32 |" in proc.stdout


def test_bench_update_rejects_an_unknown_variant():
    proc = subprocess.run([sys.executable, "benchmarks/bench_update.py", "--variants", "turbo"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown ['turbo']" in proc.stderr


def test_the_reference_copy_lives_on_the_flows_device():
    """``to_reference`` builds the reference's separate shift-head MLPs on the flow's device: on the GPU machine
    (2026-12-04) they were made on the CPU and the reference formulation failed with a device mismatch. The
    ``meta`` device stands in for CUDA here (copying a meta tensor into a CPU module raises)."""
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        from bench_update import to_reference
    finally:
        sys.path.pop(0)
    from meow_isaac.flows import EBFlowPolicy

    flow = EBFlowPolicy(11, 3).to("meta")
    ref = to_reference(flow)
    devices = {p.device.type for p in ref.parameters()}
    assert devices == {"meta"}, devices
    assert len(ref.shift_heads) == 2
