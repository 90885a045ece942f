"""Smoke test of benchmarks/soak.py: a few seconds of a real (tiny) run, sampled from outside; CSV, PNG, summary."""

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_soak_writes_csv_png_and_summary(tmp_path):
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(Path(REPO) / "benchmarks" / "soak.py"), "--task", "InvertedPendulum",
         "--minutes", "0.05", "--interval", "0.5", "--replay-slots", "100", "--out", str(out),
         "--run-root", str(tmp_path), "--",
         "train.random_steps=50", "train.learning_starts=50", "train.batch_size=64", "train.log_interval=50",
         "train.eval_interval=0", "train.compile=False"],  # an endless run would compile (auto) for 20-70 s
        cwd=REPO, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "run exit code 3" in proc.stdout  # SIGTERM -> checkpoint -> exit 3, the clean stop
    verdicts = [line for line in proc.stdout.splitlines() if line in ("memory flat", "memory GROWING")]
    assert len(verdicts) == 1, proc.stdout

    with open(out / "soak_InvertedPendulum.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["elapsed_s", "rss_mib", "iteration", "frames", "fps", "cpu_s", "threads", "load1"]
    assert len(rows) >= 4
    elapsed = [float(r["elapsed_s"]) for r in rows]
    frames = [int(r["frames"]) for r in rows]
    assert elapsed == sorted(elapsed) and len(set(elapsed)) == len(elapsed)
    assert frames == sorted(frames) and frames[-1] > 0  # the progress bar was read
    assert 50 < float(rows[-1]["rss_mib"]) < 8192       # torch + mujoco loaded; not absurd
    assert max(float(r["fps"]) for r in rows) > 0 and float(rows[-1]["cpu_s"]) > 0

    summary = json.loads((out / "soak_InvertedPendulum.json").read_text())
    assert summary["exit_code"] == 3 and summary["failure"] is None
    assert summary["tb_last_iteration"] > 0  # TensorBoard read back
    assert abs(summary["rss_end_mib"] - float(rows[-1]["rss_mib"])) < 0.01

    png = (out / "soak_InvertedPendulum.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(png) < 200_000
    assert list((tmp_path / "runs").glob("soak_InvertedPendulum_*/nn/*.pth"))  # the SIGTERM checkpoint
