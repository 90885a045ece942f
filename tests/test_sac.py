"""SAC behind the same interfaces as MEow (issue 8): learning, checkpoint/resume/play/export, no host reads in the
loop, and the learning-curve comparison tool."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from meow_isaac.agents import make_agent
from meow_isaac.agents.sac import SACAgent
from meow_isaac.compare import group_curves, load_curve, main as compare_main, method_name
from meow_isaac.config import ConfigError, TrainConfig
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.replay import Batch
from meow_isaac.runner import config_dir
from meow_isaac.trainer import Trainer

from test_no_host_sync import ReadCounter
from test_runner import SMALL, _run

SAC = ["train=InvertedPendulumSAC"]
TINY = SAC + ["train.units=[64,64]"]  # short runs: small nets (cheaper updates)


def test_sac_learns_inverted_pendulum(tmp_path, monkeypatch):
    """Same task, env count, warm-up, evaluation, seed and threshold as tests/test_learning.py (MEow); 14000 frames
    against MEow's 10000.

    SAC needs more gradient steps than MEow here: 4 per vectorised step (one per env frame, CleanRL's ratio;
    9000 updates vs MEow's 2250). With MEow's 2250 updates it stays near 100 (best 98-118 over 4 settings tried,
    random policy ~10). 64x64 hidden units (the yaml keeps CleanRL's 256x256) keep the test in its time budget.
    SAC is slower on this task and its curve jumps late (~100 for thousands of frames, then 1000), at a frame count
    that moves with the CPU's float rounding: seed 1 reached 414 at 10000 frames and 1000 at 12000 on an AVX-512
    Xeon (2026-12-03; >= 500 by 10000 on an AVX2 EPYC before), seed 2 1000 at 16000, seed 3 only 269 by 12000.
    """
    monkeypatch.chdir(tmp_path)
    out = _run(SAC + ["task=InvertedPendulum", "num_envs=4", "max_iterations=3500", "train.random_steps=250",
                      "train.learning_starts=250", "train.eval_interval=500", "train.eval_envs=5",
                      "train.updates_per_step=4", "train.units=[64,64]",
                      "experiment=learn", "progress_bar=False", "torch_threads=1", "sim_threads=1", "seed=1"])
    assert out["best_return"] >= 500, out


def test_sac_checkpoint_resume_play_and_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first = _run(TINY + SMALL + ["experiment=part", "max_iterations=200", "train.save_replay=True"])
    run_dir = Path(first["run_dir"])
    last, best = run_dir / "nn" / "part.pth", run_dir / "nn" / "part_best.pth"
    assert last.is_file() and best.is_file()
    state = torch.load(last, weights_only=False)
    assert {"actor", "alpha", "critic"} <= set(state["optimizer"])
    assert "log_alpha" in state["agent"] and "critic_target.weights.0" in state["agent"]
    resumed = _run(TINY + SMALL + [f"checkpoint={last}", "max_iterations=300", "train.save_replay=True"])
    whole = _run(TINY + SMALL + ["experiment=whole", "max_iterations=300"])
    for key in ("iteration", "frames", "updates"):
        assert resumed[key] == whole[key], key
    assert "resumed from" in capsys.readouterr().out

    played = _run(TINY + SMALL + [f"checkpoint={best}", "test=True"])
    assert len(played["test_returns"]) == 2 and min(played["test_returns"]) > 0
    with pytest.raises(ConfigError, match="train.algo='meow'; accepted: 'sac'"):  # forgot train=<Task>SAC
        _run(SMALL + [f"checkpoint={best}", "test=True"])

    agent = SACAgent(4, 1, torch.device("cpu"), units=[64, 64])
    agent.load_state_dict(torch.load(last, weights_only=False)["agent"])
    obs = torch.randn(16, 4)
    expected = agent.act(obs, deterministic=True).numpy()
    program = torch.export.load(_run(TINY + SMALL + [f"checkpoint={last}", "export=pt2"])["export_path"])
    np.testing.assert_allclose(program.module()(obs).detach().numpy(), expected, atol=1e-5, rtol=0)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(_run(TINY + SMALL + [f"checkpoint={last}", "export=onnx"])["export_path"])
    np.testing.assert_allclose(session.run(None, {"obs": obs.numpy()})[0], expected, atol=1e-5, rtol=0)


def test_one_update_equals_cleanrl_step():
    """Critic step, actor step, Polyak: the same parameters as CleanRL ``sac_continuous_action.py`` (fixed alpha;
    per-critic loops, torch.distributions log-prob with its 1e-6 epsilon, plain Adam) from the same noise."""
    torch.manual_seed(0)
    agent = SACAgent(4, 2, torch.device("cpu"), alpha=0.3, units=[32, 32], learnable_temperature=False)
    ref = SACAgent(4, 2, torch.device("cpu"), alpha=0.3, units=[32, 32], learnable_temperature=False)
    ref.load_state_dict(agent.state_dict())
    batch = Batch(torch.randn(64, 4), torch.rand(64, 2) * 2 - 1, torch.randn(64), torch.randn(64, 4),
                  (torch.rand(64) < 0.2).float())

    def q(net, obs, act):  # [Q1, Q2], each (B,)
        out = []
        for j in range(2):
            h = torch.cat((obs, act), 1)
            for i, (w, b) in enumerate(zip(net.weights, net.biases)):
                h = h @ w[j] + b[j]
                h = torch.relu(h) if i < len(net.weights) - 1 else h
            out.append(h.view(-1))
        return out

    def get_action(obs):
        mean, log_std = ref.actor(obs)
        normal = torch.distributions.Normal(mean, log_std.exp())
        x = normal.rsample()
        y = torch.tanh(x)
        return y, (normal.log_prob(x) - torch.log(1 - y.pow(2) + 1e-6)).sum(1)

    q_opt, pi_opt = torch.optim.Adam(ref.critic.parameters(), 1e-3), torch.optim.Adam(ref.actor.parameters(), 3e-4)
    torch.manual_seed(1)
    with torch.no_grad():
        next_a, next_lp = get_action(batch.next_obs)
        y = batch.reward + (1 - batch.terminated) * 0.99 * (torch.min(*q(ref.critic_target, batch.next_obs, next_a))
                                                            - 0.3 * next_lp)
    q_opt.zero_grad()
    sum(F.mse_loss(v, y) for v in q(ref.critic, batch.obs, batch.action)).backward()
    q_opt.step()
    pi, log_pi = get_action(batch.obs)
    pi_opt.zero_grad()
    (0.3 * log_pi - torch.min(*q(ref.critic, batch.obs, pi))).mean().backward()
    pi_opt.step()
    with torch.no_grad():
        for p, t in zip(ref.critic.parameters(), ref.critic_target.parameters()):
            t.copy_(0.005 * p + 0.995 * t)

    torch.manual_seed(1)
    agent.update(batch)
    for (name, mine), theirs in zip(agent.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("learnable", [True, False])
def test_sac_loop_has_no_host_reads(tmp_path, monkeypatch, learnable):
    env = SyntheticVecEnv(8, obs_dim=6, action_dim=2, max_episode_length=20)
    cfg = TrainConfig(algo="sac", batch_size=32, replay_size_per_env=100, random_steps=5, learning_starts=5,
                      max_iterations=100, log_interval=10**9, eval_interval=0, save_interval=10**9,
                      normalize_input=True, updates_per_step=2)
    agent = SACAgent(6, 2, torch.device("cpu"), units=[32, 32], normalize_input=True,
                     learnable_temperature=learnable)
    trainer = Trainer(env, lambda: SyntheticVecEnv(2, 6, 2, 20), agent, cfg, tmp_path, None, "sync",
                      torch.device("cpu"), show_progress=False)
    trainer.evaluate_and_save_best = lambda: 0.0  # type: ignore[assignment]  # the end of the run, not the loop
    trainer.save = lambda path: path  # type: ignore[assignment]
    alpha0 = float(agent.log_alpha.detach())
    counter = ReadCounter(monkeypatch)
    trainer.train()
    assert counter.count == 0, f"{counter.count} host reads in the training loop"
    assert trainer.updates == 2 * (100 - 5 + 1)
    monkeypatch.undo()
    assert (float(agent.log_alpha.detach()) != alpha0) == learnable


@pytest.mark.parametrize("task, units", [(t, [256, 256]) for t in ("Hopper", "HalfCheetah", "Walker2d", "MujocoAnt",
                                                                  "MujocoHumanoid", "InvertedPendulum")]
                         + [("Ant", [512, 256]), ("Humanoid", [512, 256])])
def test_every_sac_yaml_builds_a_sac_agent(task, units):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"task={task}", f"train={task}SAC"])
    tcfg = TrainConfig.from_mapping(OmegaConf.to_container(cfg.train, resolve=True))
    assert tcfg.name == f"{task}SAC" and tcfg.algo == "sac" and tcfg.units == units
    agent = make_agent(5, 2, torch.device("cpu"), tcfg)
    assert isinstance(agent, SACAgent) and agent.grad_norm == float("inf") and agent.learnable_temperature
    assert agent.target_entropy == -2.0 and float(agent.log_alpha.detach().exp()) == pytest.approx(1.0)


def test_sac_config_errors():
    for bad, needle in (({"algo": "td3"}, "train.algo='td3'; accepted: meow, sac"),
                        ({"units": []}, "train.units=[]"), ({"units": [64, 0]}, "train.units=[64, 0]"),
                        ({"critic_lr": 0.0}, "train.critic_lr=0.0"), ({"log_std_min": 3.0}, "train.log_std_min=3.0")):
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            TrainConfig.from_mapping(bad)


def test_method_names():
    assert method_name("hop_sac_seed3") == "hop_sac" == method_name("hop_sac_2") == method_name("hop_sac_seed1_0")
    assert method_name("HopperSAC_03-12-00-01") == "HopperSAC_03-12-00-01"
    assert method_name("a_meow_x", r"(meow|sac)") == "meow"


def test_compare_two_short_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    short = SMALL + ["max_iterations=150", "train.eval_interval=50"]
    for seed in (1, 2):
        _run(short + [f"experiment=cmp_meow_seed{seed}", f"seed={seed}"])
    _run(TINY + short + ["experiment=cmp_sac_seed1"])
    runs = [f"runs/cmp_meow_seed{s}" for s in (1, 2)] + ["runs/cmp_sac_seed1"]
    curve = load_curve(Path(runs[0]))
    assert list(curve.frames) == [100, 200, 300] and np.all(np.diff(curve.wall) > 0)
    assert list(group_curves([load_curve(Path(r)) for r in runs])) == ["cmp_meow", "cmp_sac"]

    assert compare_main(runs + ["--out", "docs/cmp.png", "--label", "cmp_sac=SAC"]) == 0
    png, table = tmp_path / "docs" / "cmp.png", tmp_path / "docs" / "cmp.md"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    lines = table.read_text().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| cmp_meow | 2 | 300 |") and lines[3].startswith("| SAC | 1 |")
    assert "±" in lines[2] and table.read_text() in capsys.readouterr().out
    assert compare_main(["runs/nope"]) == 2
