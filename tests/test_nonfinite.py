"""NaN/Inf faults (Reliability issue, items 3 and 4).

Simulator faults: rows of affected envs never reach the replay buffer, the agent and the normaliser never see a
NaN, affected envs are reset (each partial-reset strategy of ``meow_isaac/envs/guard.py``), the count is exact and
training runs to the end. Update faults: a skipped update leaves parameters, Adam state (step included) and the
Polyak target bit-identical (MEow and SAC, fused and foreach Adam); ``train.max_bad_updates`` consecutive skips
stop the run with a loadable checkpoint of the last good state (and exit code 4 from the runner).
"""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from meow_isaac.agents.base import NonFiniteUpdatesError
from meow_isaac.agents.meow import MEowAgent
from meow_isaac.agents.sac import SACAgent
from meow_isaac.checkpoint import load_checkpoint
from meow_isaac.config import ConfigError, TrainConfig
from meow_isaac.envs.guard import NonFiniteGuard
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.replay import Batch
from meow_isaac.trainer import Trainer

from fake_frameworks import fakes  # noqa: F401  (fixture)

NAN, INF = float("nan"), float("inf")
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------- simulator faults
class FaultyEnv(SyntheticVecEnv):
    """Synthetic env whose step ``t`` (1-based) corrupts ``faults[t]``: ``(env, kind)`` with kind ``state``
    (the simulation blows up: state, obs, final obs and reward NaN from now on), ``reward`` (+inf reward) or
    ``final`` (-inf in the final obs only). ``reset_envs`` (the optional partial reset) logs what it reset."""

    def __init__(self, faults, partial_reset=True, **kwargs):
        super().__init__(**kwargs)
        self.faults, self.t, self.reset_log = faults, 0, []
        if not partial_reset:
            self.reset_envs = None  # the guard's fallback

    def reset_envs(self, mask):
        fresh = self._initial()
        self.state = torch.where(mask[:, None], fresh, self.state)
        self.progress = torch.where(mask, torch.zeros_like(self.progress), self.progress)
        self.returns = torch.where(mask, torch.zeros_like(self.returns), self.returns)
        self.reset_log += [(self.t, i) for i in mask.nonzero().reshape(-1).tolist()]
        return self.state.clone()

    def step(self, action):
        out = super().step(action)
        self.t += 1
        obs, final, reward = out.obs.clone(), out.final_obs.clone(), out.reward.clone()
        for env, kind in self.faults.get(self.t, []):
            if kind == "state":
                self.state[env] = NAN
                obs[env] = NAN
                final[env] = NAN
                reward[env] = NAN
            elif kind == "reward":
                reward[env] = INF
            else:
                final[env, 0] = -INF
        return out._replace(obs=obs, final_obs=final, reward=reward)


def _trainer(tmp_path, env, agent, **cfg):
    base = dict(batch_size=32, replay_size_per_env=200, random_steps=5, learning_starts=5, max_iterations=60,
                log_interval=20, eval_interval=0, save_interval=10**9, normalize_input=True)
    base.update(cfg)
    trainer = Trainer(env, lambda: SyntheticVecEnv(2, env.obs_dim, env.action_dim, 20), agent,
                      TrainConfig(**base), tmp_path, None, "t", CPU, show_progress=False)
    trainer.evaluate_and_save_best = lambda: 0.0  # not under test
    return trainer


def _spy(trainer, agent):
    """Record every row offered to the replay buffer and every obs the agent acts on."""
    rows, acted = [], []
    add, act = trainer.replay.add, agent.act

    def add_spy(obs, action, reward, next_obs, terminated, valid):
        rows.append((obs.clone(), reward.clone(), next_obs.clone(), valid.clone()))
        add(obs, action, reward, next_obs, terminated, valid)

    def act_spy(obs, deterministic=False):
        acted.append(obs.clone())
        return act(obs, deterministic)

    trainer.replay.add, agent.act = add_spy, act_spy
    return rows, acted


def _assert_clean(rows, acted, agent):
    for obs, reward, next_obs, valid in rows:  # nothing non-finite is ever written, valid or not
        assert torch.isfinite(obs).all() and torch.isfinite(next_obs).all() and torch.isfinite(reward).all()
    assert all(torch.isfinite(o).all() for o in acted) and acted
    assert torch.isfinite(agent.normalizer.mean).all() and torch.isfinite(agent.normalizer.var).all()


def test_simulator_faults_are_dropped_reset_counted_and_training_continues(tmp_path):
    faults = {8: [(1, "state")], 9: [(2, "reward")], 15: [(0, "final"), (3, "state")], 30: [(1, "state")]}
    injected = sum(len(v) for v in faults.values())
    env = FaultyEnv(faults, num_envs=4, obs_dim=4, action_dim=2, max_episode_length=25, terminate_prob=0.0)
    agent = MEowAgent(4, 2, CPU, normalize_input=True)
    trainer = _trainer(tmp_path, env, agent)
    rows, acted = _spy(trainer, agent)
    scalars = trainer.train()
    assert trainer.iteration == 60 and trainer.updates == 60 - 5 + 1
    assert trainer.guard.reset_mode == "reset_envs"
    assert int(trainer.guard.nonfinite_env_steps) == injected and scalars["faults/nonfinite_env_steps"] == injected
    for t, items in faults.items():
        for env_id, _ in items:
            assert not rows[t - 1][3][env_id], (t, env_id)  # row of step t: dropped
            assert rows[t][3][env_id], (t, env_id)  # the next row starts from the fresh reset obs: kept
    # Every affected env was reset at once (none of them was ending its episode at that step), no other.
    assert sorted(env.reset_log) == sorted((t, e) for t, v in faults.items() for e, _ in v)
    dropped = sum(int((~v).sum()) for *_, v in rows)
    assert dropped == injected
    stored = trainer.replay.valid
    assert torch.isfinite(trainer.replay.obs[stored]).all() and torch.isfinite(trainer.replay.reward[stored]).all()
    assert int(trainer.replay.size()) == 60 * 4 - injected
    _assert_clean(rows, acted, agent)


def test_fallback_without_partial_reset_drops_until_the_backend_resets(tmp_path):
    """The synthetic env cannot reset one env: the blown-up env is dropped (and counted) until its time limit."""
    env = FaultyEnv({7: [(2, "state")]}, partial_reset=False, num_envs=3, obs_dim=4, action_dim=2,
                    max_episode_length=12, terminate_prob=0.0)
    agent = MEowAgent(4, 2, CPU, normalize_input=True)
    trainer = _trainer(tmp_path, env, agent, max_iterations=30, log_interval=10)
    rows, acted = _spy(trainer, agent)
    trainer.train()
    assert trainer.guard.reset_mode == "none" and trainer.iteration == 30
    # Steps 7..12 are non-finite for env 2 (its time limit resets it at step 12); step 13 is valid again.
    assert [bool(rows[t - 1][3][2]) for t in range(6, 15)] == [True] + [False] * 6 + [True, True]
    assert int(trainer.guard.nonfinite_env_steps) == 6
    assert all(bool(v[[0, 1]].all()) for *_, v in rows)
    _assert_clean(rows, acted, agent)


def test_the_guarded_loop_has_no_host_reads(tmp_path, monkeypatch):
    from test_no_host_sync import ReadCounter

    env = FaultyEnv({6: [(0, "state")], 9: [(1, "reward")]}, partial_reset=False, num_envs=4, obs_dim=4,
                    action_dim=2, max_episode_length=20)
    agent = MEowAgent(4, 2, CPU, normalize_input=True)
    trainer = _trainer(tmp_path, env, agent, max_iterations=30, log_interval=10**9)
    trainer.save = lambda path: path
    counter = ReadCounter(monkeypatch)
    trainer.train()
    monkeypatch.undo()
    assert counter.count == 0 and int(trainer.guard.nonfinite_env_steps) > 0


def test_mujoco_backend_resets_the_blown_up_env():
    tasks = pytest.importorskip("tasks")
    env = tasks.make_env("InvertedPendulum", {}, num_envs=3, seed=0, device="cpu", num_threads=1)
    guard = NonFiniteGuard(env)
    assert guard.reset_mode == "mujoco"
    guard.reset()
    for _ in range(3):
        guard.step(torch.zeros(3, 1))
    # MuJoCo itself resets a simulation whose qpos goes NaN (mjWARN_BADQPOS); task code can still compute a
    # NaN observation (e.g. 0/0): env 1's next observation is NaN, once.
    original, shots = env._observe, [1]

    def observe():
        obs = original()
        if shots:
            obs = obs.clone()
            obs[shots.pop()] = NAN
        return obs

    env._observe = observe
    out = guard.step(torch.zeros(3, 1))
    assert out.valid.tolist() == [True, False, True] and torch.isfinite(out.obs).all()
    assert int(env.progress[1]) == 0 and int(env.progress[0]) == 4  # env 1 was reset, the others not
    assert int(guard.nonfinite_env_steps) == 1
    out = guard.step(torch.zeros(3, 1))
    assert out.valid.all() and torch.isfinite(out.obs).all()
    env.close()


@pytest.mark.parametrize("sim, mode", [("isaacgym", "reset_buf"), ("omniisaacgym", "reset_buf"),
                                       ("isaaclab", "episode_length_buf")])
def test_isaac_adapters_reset_the_blown_up_env(fakes, sim, mode):  # noqa: F811 (fixture)
    from test_isaac_adapters import fake_of, make

    env = make(sim, "Ant")
    guard = NonFiniteGuard(env)
    assert guard.reset_mode == mode
    dyn = fake_of(env)
    guard.reset()
    gen = torch.Generator().manual_seed(0)
    step = lambda: guard.step(torch.rand(env.num_envs, env.action_dim, generator=gen) * 2 - 1)  # noqa: E731
    for _ in range(3):
        assert step().valid.all()
    dyn.state[2] = NAN
    outs = [step() for _ in range(4)]
    for out in outs:
        assert torch.isfinite(out.obs).all() and torch.isfinite(out.final_obs).all()
        assert torch.isfinite(out.reward).all()
    # The broken step and the one that resets the env are dropped; then env 2 runs normally again.
    assert [bool(o.valid[2]) for o in outs] == [False, False, True, True]
    assert all(bool(o.valid[[0, 1, 3]].all()) for o in outs)
    assert torch.isfinite(dyn.state).all() and int(guard.nonfinite_env_steps) == 1
    env.close()


# ---------------------------------------------------------------------------------------------- update faults
def _batch(obs_dim=4, action_dim=2, n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, obs_dim, generator=gen), torch.rand(n, action_dim, generator=gen) * 2 - 1,
                 torch.randn(n, generator=gen), torch.randn(n, obs_dim, generator=gen),
                 (torch.rand(n, generator=gen) < 0.1).float())


def _optimizers(agent):
    if isinstance(agent, MEowAgent):
        return {"policy": agent.optimizer}
    return {"critic": agent.critic_optimizer, "actor": agent.actor_optimizer, "alpha": agent.alpha_optimizer}


def _snapshot(agent):
    return ({k: v.clone() for k, v in agent.state_dict().items()},
            {name: copy.deepcopy(opt.state_dict()["state"]) for name, opt in _optimizers(agent).items()})


def _identical(agent, snap, prefixes=None):
    params, opt_states = _snapshot(agent)
    keys = [k for k in params if prefixes is None or k.split(".")[0] in prefixes]
    same = {k: torch.equal(params[k], snap[0][k]) for k in keys}
    for name, state in opt_states.items():
        if prefixes is not None and name not in prefixes:
            continue
        for idx, entry in state.items():
            for key in ("step", "exp_avg", "exp_avg_sq"):
                same[f"{name}.{idx}.{key}"] = torch.equal(entry[key], snap[1][name][idx][key])
    return same


def _use_foreach_adam(agent):
    for name, opt in _optimizers(agent).items():
        fresh = torch.optim.Adam(opt.param_groups[0]["params"], lr=opt.param_groups[0]["lr"], foreach=True)
        setattr(agent, "optimizer" if name == "policy" else f"{name}_optimizer", fresh)


def _poison(kind, batch, agent):
    """A batch or a gradient that makes the update non-finite; returns (batch, undo)."""
    if kind == "reward":
        return batch._replace(reward=batch.reward.clone().index_fill_(0, torch.tensor([3]), NAN)), lambda: None
    if kind == "obs":
        return batch._replace(obs=batch.obs.clone().index_fill_(0, torch.tensor([0]), INF)), lambda: None
    param = next(agent.policy.parameters()) if isinstance(agent, MEowAgent) else agent.critic.weights[0]
    handle = param.register_hook(lambda g: g * NAN)  # finite loss, NaN gradient
    return batch, handle.remove


@pytest.mark.parametrize("adam", ["fused", "foreach"])
@pytest.mark.parametrize("algo", ["meow", "sac"])
@pytest.mark.parametrize("kind", ["reward", "obs", "grad"])
def test_a_nonfinite_update_is_skipped_bit_exactly(algo, adam, kind):
    torch.manual_seed(0)
    agent = (MEowAgent(4, 2, CPU, tau=0.1) if algo == "meow" else
             SACAgent(4, 2, CPU, units=[32, 32], tau=0.1))
    if adam == "foreach":
        _use_foreach_adam(agent)
    assert all(bool(opt.param_groups[0]["fused"]) == (adam == "fused") for opt in _optimizers(agent).values())
    for seed in range(2):
        assert float(agent.update(_batch(seed=seed))["faults/update_skipped"]) == 0.0
    snap = _snapshot(agent)
    bad, undo = _poison(kind, _batch(seed=5), agent)
    metrics = agent.update(bad)
    undo()
    assert float(metrics["faults/update_skipped"]) == 1.0
    loss = metrics["losses/loss" if algo == "meow" else "losses/critic_loss"]
    grad = metrics["losses/grad_norm" if algo == "meow" else "losses/critic_grad_norm"]
    assert not (torch.isfinite(loss) and torch.isfinite(grad))  # reported as it is, not zeroed
    same = _identical(agent, snap)
    assert all(same.values()), [k for k, v in same.items() if not v]
    assert (int(agent.faults.skipped), int(agent.faults.streak), int(agent.faults.peak)) == (1, 1, 1)
    metrics = agent.update(_batch(seed=6))
    assert float(metrics["faults/update_skipped"]) == 0.0
    same = _identical(agent, snap)
    target = "target" if algo == "meow" else "critic_target"
    changed = [k for k, v in same.items() if not v]
    assert any(k.startswith(target) for k in changed) and any(k.endswith(".step") for k in changed)
    steps = [int(e["step"]) for opt in _optimizers(agent).values() for e in opt.state_dict()["state"].values()]
    assert set(steps) == {3}
    assert (int(agent.faults.skipped), int(agent.faults.streak), int(agent.faults.peak)) == (1, 0, 1)


def test_sac_actor_fault_keeps_the_critic_step_and_skips_the_rest():
    torch.manual_seed(0)
    agent = SACAgent(4, 2, CPU, units=[32, 32])
    agent.update(_batch())
    snap = _snapshot(agent)
    handle = agent.actor.net[0].weight.register_hook(lambda g: g * NAN)
    metrics = agent.update(_batch(seed=1))
    handle.remove()
    assert float(metrics["faults/update_skipped"]) == 1.0 and int(agent.faults.skipped) == 1
    same = _identical(agent, snap, prefixes={"actor", "critic_target", "log_alpha", "alpha"})
    assert all(same.values()), [k for k, v in same.items() if not v]
    assert not all(_identical(agent, snap, prefixes={"critic"}).values())


def test_consecutive_bad_updates_stop_the_run_with_the_last_good_checkpoint(tmp_path):
    torch.manual_seed(0)
    env = SyntheticVecEnv(4, obs_dim=4, action_dim=2, max_episode_length=20)
    agent = MEowAgent(4, 2, CPU)
    trainer = _trainer(tmp_path, env, agent, max_iterations=200, log_interval=10, max_bad_updates=7)
    sample, good = trainer.replay.sample, {}

    def sample_then_poison(batch_size):  # from the 12th update on, every batch holds a NaN reward
        batch = sample(batch_size)
        if trainer.updates >= 11:
            return batch._replace(reward=torch.full_like(batch.reward, NAN))
        return batch

    update = agent.update

    def update_and_record(batch):
        metrics = update(batch)
        if float(metrics["faults/update_skipped"]) == 0.0:
            good["state"] = {k: v.clone() for k, v in agent.state_dict().items()}
        return metrics

    trainer.replay.sample, agent.update = sample_then_poison, update_and_record
    with pytest.raises(NonFiniteUpdatesError, match=r"consecutive updates had a non-finite loss or gradient .*"
                                                    r"train.max_bad_updates=7.*saved to"):
        trainer.train()
    # Updates start at iteration 5 (one per step): 11 good, then bad ones; the log at iteration 30 sees 15 >= 7.
    assert trainer.iteration == 30 and int(agent.faults.skipped) == 15
    state = load_checkpoint(trainer.checkpoint_path("last"), map_location=CPU)
    assert state["counters"]["iteration"] == 30
    for key, value in good["state"].items():
        assert torch.equal(state["agent"][key], value), key
    fresh = MEowAgent(4, 2, CPU)
    fresh.load_state_dict(state["agent"])
    fresh.load_optimizer_state_dict(state["optimizer"])
    assert {int(e["step"]) for e in state["optimizer"]["state"].values()} == {11}


def test_max_bad_updates_is_validated():
    assert TrainConfig().max_bad_updates == 100
    with pytest.raises(ConfigError, match=r"train.max_bad_updates=0; accepted: an integer >= 1"):
        TrainConfig(max_bad_updates=0).validate()


def test_runner_exits_4_with_one_line_and_a_loadable_checkpoint(tmp_path):
    """alpha=1e38 overflows every soft Q: every update is skipped from the first on."""
    args = ["task=Synthetic", "num_envs=4", "train.batch_size=32", "train.replay_size_per_env=50",
            "train.random_steps=5", "train.learning_starts=5", "max_iterations=100", "train.log_interval=10",
            "train.eval_interval=0", "train.alpha=1e38", "train.max_bad_updates=3", "experiment=div",
            "progress_bar=False", "torch_threads=1", "sim_threads=1", "device=cpu"]
    proc = subprocess.run([sys.executable, os.path.join(REPO, "runner.py")] + args, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: training stopped at iteration 10: 6 consecutive")
    state = load_checkpoint(Path(tmp_path) / "runs" / "div" / "nn" / "div.pth", map_location=CPU)
    assert {int(e["step"]) for e in state["optimizer"]["state"].values()} == {0}  # nothing was ever applied
    policy = {k[len("policy."):]: v for k, v in state["agent"].items() if k.startswith("policy.")}
    assert all(torch.equal(state["agent"]["target." + k], v) for k, v in policy.items())
