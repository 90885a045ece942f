"""``benchmarks/gpu_check.sh --cpu``: the prepared GPU check runs every stage at tiny sizes on the CPU and writes its
JSON, log and plots (issue 20). The mjwarp stages run the embedded mujoco backend there, whether warp is installed or
not. Speed is never asserted; only that each stage ran and produced its figures."""

import json
import os
import subprocess

from conftest import REPO

STAGES = ["install", "info", "pytest", "update_256", "update_large", "pipeline", "env_mjwarp", "train"]


def test_gpu_check_cpu_dry_run_runs_every_stage(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", "--budget", "900", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=1200, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads((out / "gpu_check.json").read_text())
    status = {s["name"]: s["status"] for s in report["stages"]}
    assert [s for s in STAGES if status.get(s) != "ok"] == [], status
    assert status["env_mujoco"] == "skipped"
    counts = report["pytest_cuda"]["counts"]
    assert counts["passed"] >= 7 and counts["failed"] == counts["error"] == counts["skipped"] == 0, counts
    assert {(r["batch"], r["run"]) for r in report["update"]} == {(32, "update_256"), (64, "update_large")}
    assert all(r["eager_ratio"] > 0 and r["reference_ms"] > 0 for r in report["update"])
    assert [r["num_envs"] for r in report["pipeline"]["rows"]] == [1, 8]
    prof = report["pipeline"]["profile"]
    assert prof["num_envs"] == 8 and prof["iterations"] == 3 and prof["wall_ms"] > 0 and prof["device_ms"] is None
    assert prof["top_host"] and "profile at 8 envs: per iteration wall" in proc.stdout
    assert report["env"]["env_mjwarp"] and report["train"]["evaluations"] >= 1  # (bench_env's own JSON layout)
    assert report["machine"]["mode"] == "cpu" and "mjwarp" in report["machine"]
    for name in ("bench_pipeline.png", "train_returns.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (out / "gpu_check.log").read_text()
    assert all(f"===== {s}: ok" in log for s in STAGES)
    assert "pytest -m cuda: " in proc.stdout and "[gpu_check] done in" in proc.stdout
    assert not list(tmp_path.glob("gpu_check.*"))  # the work folder is removed (no --keep-work)


def test_gpu_check_rejects_bad_arguments():
    for args, message in ((["--stages", "pytest,bogus"], "unknown 'bogus'"), (["--budget", "ten"], "whole number"),
                          (["--frobnicate"], "unknown argument '--frobnicate'")):
        proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr)
