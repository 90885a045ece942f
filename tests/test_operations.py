"""Operations: preemption (SIGTERM -> checkpoint, exit 3, checkpoint=auto resumes exactly), export, multirun."""

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from test_runner import SMALL, _run

CLI = [sys.executable, os.path.join(REPO, "runner.py")]


def test_sigterm_checkpoints_exits_3_and_auto_resume_matches_uninterrupted(tmp_path):
    args = SMALL + ["experiment=pre", "train.save_replay=True", "train.eval_interval=0",
                    "train.compile=False"]  # 100000 iterations would compile (auto on CPU) before the first checkpoint
    proc = subprocess.Popen(CLI + args + ["max_iterations=100000"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ckpt = tmp_path / "runs" / "pre" / "nn" / "pre.pth"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:  # first periodic checkpoint: the loop is running
        time.sleep(0.5)
    assert ckpt.exists()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    stopped_at = torch.load(ckpt, weights_only=False)["counters"]["iteration"]
    assert 100 <= stopped_at < 100000

    target = stopped_at + 150
    resumed = subprocess.run(CLI + args + ["checkpoint=auto", f"max_iterations={target}"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout
    final = torch.load(ckpt, weights_only=False)["counters"]
    os.chdir(tmp_path)
    try:
        whole = _run(SMALL + ["experiment=whole", "train.save_replay=True", "train.eval_interval=0",
                              f"max_iterations={target}"])
    finally:
        os.chdir(REPO)
    assert (final["iteration"], final["updates"], final["frames"]) == \
        (whole["iteration"], whole["updates"], whole["frames"])


def test_ctrl_c_checkpoints_and_exits_3(tmp_path):
    """A first Ctrl-C (SIGINT) stops like a preemption: the step ends, a checkpoint is written, exit 3 with the
    resume line, instead of a KeyboardInterrupt traceback from inside the env step."""
    args = SMALL + ["experiment=int", "train.eval_interval=0", "train.compile=False", "max_iterations=100000"]
    proc = subprocess.Popen(CLI + args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = tmp_path / "runs" / "int" / "nn" / "int.pth"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:  # first periodic checkpoint: the loop is running
        time.sleep(0.5)
    assert ckpt.exists()
    before = torch.load(ckpt, weights_only=False)["counters"]["iteration"]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    assert "Ctrl-C: checkpointing and stopping" in out and "Traceback" not in out
    assert "resume with checkpoint=auto experiment=int" in out
    assert torch.load(ckpt, weights_only=False)["counters"]["iteration"] >= before


LOAD_WITHOUT_THE_PROJECT = """
import sys, torch
sys.modules["meow_isaac"] = sys.modules["tasks"] = None  # any import of the project fails
program = torch.export.load(sys.argv[1])
torch.save([program.module()(obs) for obs in torch.load(sys.argv[2])], sys.argv[3])
"""


def test_export_matches_pytorch_policy(tmp_path, monkeypatch, capsys):
    """export=pt2 (torch.export, loaded in a process that cannot import meow_isaac), export=onnx (dynamo exporter,
    onnxruntime) and the legacy export=torchscript give the PyTorch policy's deterministic action to 1e-5, at the
    traced batch size and at others (dynamic batch)."""
    ort = pytest.importorskip("onnxruntime")
    from meow_isaac.agents.meow import MEowAgent
    from meow_isaac.checkpoint import load_checkpoint

    monkeypatch.chdir(tmp_path)
    run = _run(["task=Hopper", "max_iterations=300", "train.random_steps=100", "train.learning_starts=100",
                "train.normalize_input=True", "train.eval_interval=0", "train.eval_envs=1", "experiment=exp",
                "progress_bar=False", "torch_threads=1", "sim_threads=1"])
    ckpt = Path(run["run_dir"]) / "nn" / "exp.pth"
    agent = MEowAgent(11, 3, torch.device("cpu"), normalize_input=True)
    agent.load_state_dict(load_checkpoint(ckpt)["agent"])
    assert float(agent.normalizer.count) > 0  # the normaliser is non-trivial, so exporting it matters
    assert any("beta" in key for key in load_checkpoint(ckpt)["agent"])  # the default Swish network
    batches = [torch.randn(64, 11) * 3.0, torch.randn(1, 11), torch.randn(2, 11)]
    expected = [agent.act(obs, deterministic=True).numpy() for obs in batches]

    pt2_path = Path(_run(["task=Hopper", f"checkpoint={ckpt}", "export=pt2"])["export_path"])
    assert pt2_path == ckpt.with_suffix(".pt2")
    torch.save(batches, tmp_path / "obs.pt")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_THE_PROJECT, str(pt2_path), str(tmp_path / "obs.pt"),
                           str(tmp_path / "pt2_out.pt")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for got, want in zip(torch.load(tmp_path / "pt2_out.pt"), expected):
        np.testing.assert_allclose(got.detach().numpy(), want, atol=1e-5, rtol=0)

    onnx_path = Path(_run(["task=Hopper", f"checkpoint={ckpt}", "export=onnx"])["export_path"])
    session = ort.InferenceSession(str(onnx_path))
    assert [i.name for i in session.get_inputs()] == ["obs"] and [o.name for o in session.get_outputs()] == ["action"]
    assert session.get_inputs()[0].shape == ["batch", 11]
    for obs, want in zip(batches, expected):
        np.testing.assert_allclose(session.run(None, {"obs": obs.numpy()})[0], want, atol=1e-5, rtol=0)

    capsys.readouterr()
    ts_path = Path(_run(["task=Hopper", f"checkpoint={ckpt}", "export=torchscript"])["export_path"])
    assert "export=torchscript is legacy" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.", category=DeprecationWarning)
        scripted = torch.jit.load(str(ts_path))
    for obs, want in zip(batches, expected):
        np.testing.assert_allclose(scripted(obs).detach().numpy(), want, atol=1e-5, rtol=0)


def test_multirun_gives_each_job_its_folder_and_config(tmp_path):
    proc = subprocess.run(CLI + ["-m"] + SMALL + ["max_iterations=60", "train.eval_interval=0", "experiment=sweep",
                                                  "train.alpha=0.05,0.1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    alphas = []
    for job in (0, 1):
        config = tmp_path / "runs" / f"sweep_{job}" / "config.yaml"
        assert config.is_file()
        from omegaconf import OmegaConf

        alphas.append(OmegaConf.load(config).train.alpha)
    assert sorted(alphas) == [0.05, 0.1]


def test_export_leaves_the_live_modules_as_they_were(tmp_path):
    """``export_policy`` works on copies: the agent's flow and normaliser keep their train mode (and device and
    dtype), so exporting in the middle of training changes nothing in the run."""
    from meow_isaac.agents.meow import MEowAgent
    from meow_isaac.export import export_policy

    agent = MEowAgent(5, 2, torch.device("cpu"), normalize_input=True)
    agent.policy.train(), agent.normalizer.train()
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    export_policy(agent.deterministic_actor(), agent.normalizer, 5, tmp_path / "policy.pt2", "pt2")
    assert agent.policy.training and agent.normalizer.training
    assert all(torch.equal(v, before[k]) for k, v in agent.policy.state_dict().items())
