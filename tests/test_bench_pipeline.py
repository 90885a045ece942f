"""benchmarks/bench_pipeline.py runs the real trainer loop on the synthetic env, prints the throughput curve and
writes its JSON and PNG plot (a smoke test at tiny sizes; speed itself is never asserted)."""

import json
import subprocess
import sys

from conftest import REPO


def test_bench_pipeline_prints_the_curve_and_writes_the_plot(tmp_path):
    proc = subprocess.run([sys.executable, "benchmarks/bench_pipeline.py", "--device", "cpu", "--envs", "1,8",
                           "--batch", "32", "--seconds", "0.3", "--threads", "1", "--profile", "3", "--out",
                           str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads((tmp_path / "bench_pipeline.json").read_text())
    rows, prof = out["rows"], out["profile"]
    assert [r["num_envs"] for r in rows] == [1, 8]
    assert all(r["transitions_per_s"] > 0 and r["updates_per_s"] > 0 and r["iterations"] >= 10 for r in rows)
    png = (tmp_path / "bench_pipeline.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "| 8 |" in proc.stdout
    # --profile: 3 iterations at the largest size; on the CPU no device time, host ops ranked
    assert prof["num_envs"] == 8 and prof["iterations"] == 3 and prof["device_ms"] is None
    assert 0 < prof["host_op_ms"] and 0 < prof["wall_ms"]
    assert any(r["op"] == "aten::mm" and r["calls"] >= 1 for r in prof["top_host"]), prof["top_host"]
    assert "profile at 8 envs, 3 iterations: per iteration wall" in proc.stdout


def test_bench_pipeline_rejects_a_negative_profile():
    proc = subprocess.run([sys.executable, "benchmarks/bench_pipeline.py", "--profile", "-1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--profile -1: give a number of iterations >= 0" in proc.stderr
