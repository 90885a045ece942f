"""The three Isaac adapters against fakes of their frameworks (``tests/fakes``): the ``StepOut`` contract.

Each fake reproduces its framework's documented quirks (``shared/reference/isaac_api.md``) on a deterministic
system ``s' = 0.9 s + 0.3 tanh(a W)`` and logs the true episodes, so a stored row can be checked to be a real
transition, and every reported episode against the truth.
"""

import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO
from fake_frameworks import fakes, set_isaaclab_version, short_episodes  # noqa: F401  (fixture)
from meow_isaac.config import ConfigError
from meow_isaac.envs.wrappers import ReferenceCompat
from meow_isaac.replay import ReplayBuffer

N, STEPS = 4, 70


def section(sim, task, **extra):
    """The ``<sim>:`` section of ``cfg/task/<task>.yaml`` with short episodes."""
    sec = OmegaConf.to_container(OmegaConf.load(f"{REPO}/cfg/task/{task}.yaml")[sim], resolve=True)
    return dict(sec, **short_episodes(sim, task), **extra)  # 16-step episodes, actions unclipped


def make(sim, task, **extra):
    import importlib

    module = importlib.import_module(f"meow_isaac.envs.{sim}")
    return module.make(section(sim, task, **extra), N, 0, torch.device("cpu"))


def fake_of(env):
    """The fake's dynamics object behind an adapter."""
    inner = getattr(env, "env", env)
    inner = getattr(inner, "task", None) or inner
    return getattr(inner, "unwrapped", inner).dyn


def drive(env, steps=STEPS, seed=0):
    """Random actions (some outside [-1, 1]) into a real replay buffer, as the trainer does."""
    buf = ReplayBuffer(env.num_envs, steps + 1, env.obs_dim, env.action_dim, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    obs, outs = env.reset(), []
    for _ in range(steps):
        action = torch.rand(env.num_envs, env.action_dim, generator=gen) * 2.4 - 1.2
        out = env.step(action)
        buf.add(obs, action, out.reward, out.final_obs, out.terminated, out.valid)
        outs.append((obs, action, out))
        obs = out.obs
    return buf, outs


def stored(buf):
    mask = buf.valid
    return buf.obs[mask], buf.action[mask], buf.next_obs[mask], buf.terminated[mask]


def is_transition(obs, action, next_obs):
    """Per row: ``next_obs`` is the true successor of ``obs`` under the clamped ``action``."""
    from fake_dynamics import transition

    return torch.isclose(transition(obs, action.clamp(-1.0, 1.0)), next_obs, atol=1e-5).all(dim=1)


def check_contract(env, buf, outs, final_obs_exact=True):
    from fake_dynamics import THRESHOLD

    obs, action, next_obs, term = stored(buf)
    valid_rows = sum(int(out.valid.sum()) for _, _, out in outs)
    assert obs.shape[0] == valid_rows > 0.8 * STEPS * N
    real = is_transition(obs, action, next_obs)
    if not final_obs_exact:  # Isaac Lab 2.x: truncations bootstrap from next_obs = obs (the s_t proxy);
        real |= (next_obs == obs).all(dim=1) | (term == 1)  # terminations never read next_obs
    assert bool(real.all())
    truth = {i: [e for e in fake_of(env).episodes if e["env"] == i] for i in range(env.num_envs)}
    reported = {i: [] for i in range(env.num_envs)}
    for prev_obs, _, out in outs:
        assert not bool((out.terminated & out.truncated).any())
        assert torch.equal(out.final_obs[~out.done], out.obs[~out.done])
        for i in (out.done & out.valid).nonzero().reshape(-1).tolist():
            reported[i].append((out, i, prev_obs[i]))
    kinds, died_at_limit = set(), 0
    for i in range(env.num_envs):
        assert len(reported[i]) >= 2 and len(truth[i]) >= len(reported[i])
        for (out, j, prev), ep in zip(reported[i], truth[i]):
            died = bool(ep["final_obs"][0] > THRESHOLD)
            assert out.episode_return[j].item() == pytest.approx(ep["ret"], abs=1e-4)
            assert out.episode_length[j].item() == ep["length"]
            assert bool(out.truncated[j]) == (ep["timeout"] and not (died and env.autoreset == "same_step"))
            assert bool(out.terminated[j]) != bool(out.truncated[j])
            expected = ep["final_obs"] if final_obs_exact or not out.truncated[j] else prev
            if final_obs_exact or out.truncated[j]:
                assert torch.allclose(out.final_obs[j], expected, atol=1e-6)
            kinds.add("truncated" if out.truncated[j] else "terminated")
            died_at_limit += int(died and bool(out.truncated[j]))  # next-step frameworks: reported as time-out
    assert kinds == {"truncated", "terminated"}
    # Truncations bootstrap (stored with terminated=0), terminations do not (terminated=1).
    dead = next_obs[:, 0] > THRESHOLD
    if final_obs_exact:
        assert int((term[dead] == 0).sum()) == died_at_limit and bool((term[~dead] == 0).all())
    else:
        assert int(term.sum()) == sum(int(out.terminated.sum()) for _, _, out in outs)


@pytest.mark.parametrize("sim, task, version", [
    ("isaacgym", "Ant", None),             # reset in the next post_physics_step
    ("isaacgym", "AllegroHand", None),     # reset in the next pre_physics_step
    ("isaacgym", "Ingenuity", None),       # reset in the next pre_physics_step
    ("omniisaacgym", "Anymal", None),      # max_episode_length
    ("omniisaacgym", "Humanoid", None),    # _max_episode_length
    ("isaaclab", "Ant", 3),                # compute_final_obs -> extras["final_obs"]
    ("isaaclab", "FrankaCabinet", 2),      # no final obs: prev_obs fallback
])
def test_contract_against_fake(fakes, monkeypatch, sim, task, version):
    if version:
        set_isaaclab_version(monkeypatch, version)
    env = make(sim, task)
    buf, outs = drive(env)
    check_contract(env, buf, outs, final_obs_exact=version != 2)
    if sim != "isaaclab":  # next-step reset: exactly the row after each done is dropped
        for (_, _, prev), (_, _, out) in zip(outs, outs[1:]):
            assert torch.equal(out.valid, ~prev.done)
    env.close()


def test_isaacgym_warmup_replaces_the_zero_first_obs(fakes):
    env = make("isaacgym", "Ant")
    assert float(env.env.reset()["obs"].abs().sum()) == 0.0  # the documented quirk
    obs = env.reset()
    assert float(obs.abs().sum()) > 0 and torch.equal(obs, fake_of(env).state)


@pytest.mark.parametrize("sim, task", [("isaacgym", "Humanoid"), ("omniisaacgym", "Ingenuity"),
                                       ("isaaclab", "Anymal")])
def test_returned_buffers_are_not_aliased(fakes, sim, task):
    env = make(sim, task)
    env.reset()
    first = env.step(torch.zeros(N, env.action_dim))
    saved = [t.clone() for t in first]
    for _ in range(20):
        env.step(torch.rand(N, env.action_dim) * 2 - 1)
    assert all(torch.equal(a, b) for a, b in zip(first, saved))


@pytest.mark.parametrize("sim, task, version", [("omniisaacgym", "Ant", None), ("isaaclab", "Ant", 2)])
def test_reference_compat_stores_garbage_rows_and_terminal_timeouts(fakes, monkeypatch, sim, task, version):
    if version:
        set_isaaclab_version(monkeypatch, version)
    env = ReferenceCompat(make(sim, task))
    buf, outs = drive(env)
    obs, action, next_obs, term = stored(buf)
    assert obs.shape[0] == STEPS * N  # every row kept
    if sim == "omniisaacgym":  # the rows after resets are not real transitions
        assert int((~is_transition(obs, action, next_obs)).sum()) >= 2 * N
    for _, _, out in outs:
        assert not bool(out.truncated.any()) and bool(out.valid.all())
    assert int(sum(int(out.terminated.sum()) for _, _, out in outs)) >= 2 * N
    env.close()


def test_oige_env_built_off_the_main_thread(fakes):
    """Stock VecEnvBase registers SIGINT; Python forbids it off the main thread (ValueError)."""
    import threading

    from meow_isaac.envs.omniisaacgym import build_vec_env

    from omni.isaac.gym.vec_env import VecEnvBase

    result = {}

    def target():
        try:
            VecEnvBase(headless=True).close()
        except ValueError as err:
            result["stock"] = str(err)
        env = build_vec_env(VecEnvBase, headless=True)
        result["ours"] = env
        env.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert "main thread" in result["stock"] and "ours" in result


def test_sim_resolution(fakes, monkeypatch):
    from meow_isaac import factory

    task = OmegaConf.to_container(OmegaConf.load(f"{REPO}/cfg/task/Ingenuity.yaml"))
    assert factory.resolve_sim("auto", {"name": "Ant", "isaaclab": {"gym_id": "x"}}, log=lambda m: None) == "isaaclab"
    assert factory.resolve_sim("auto", task, log=lambda m: None) == "omniisaacgym"  # no Isaac Lab Ingenuity
    with pytest.raises(ConfigError, match="no `isaaclab:` section"):
        factory.resolve_sim("isaaclab", task)
    monkeypatch.setattr(factory, "installed", lambda sim: False)
    monkeypatch.setattr(factory, "installed_frameworks", lambda: [])
    assert factory.resolve_sim("auto", task, log=lambda m: None) == "mujoco"
    with pytest.raises(ConfigError, match="needs Isaac Gym Preview 4 \\+ IsaacGymEnvs .* install it"):
        factory.resolve_sim("isaacgym", task)


def test_isaacgym_after_torch_is_one_clear_error(fakes, monkeypatch):
    """Without the pre-import (torch already loaded), the fake isaacgym refuses to load, like the real one."""
    from meow_isaac.factory import make_task_env

    monkeypatch.delitem(sys.modules, "isaacgym")
    task = OmegaConf.to_container(OmegaConf.load(f"{REPO}/cfg/task/Ant.yaml"))
    with pytest.raises(ConfigError, match="imported before torch") as err:
        make_task_env(task, "isaacgym", N, 0, "cpu", 1)
    assert "\n" not in str(err.value)


def test_evaluation_handle_shares_the_simulation(fakes):
    """One simulation per process: the eval env is a second handle; training resumes with one dropped row."""
    from meow_isaac.envs.wrappers import SharedSim

    shared = SharedSim(make("omniisaacgym", "Ant"))
    train, evaluation = shared.handle(), shared.handle()
    train.reset()
    train.step(torch.zeros(N, 8))
    evaluation.reset()
    evaluation.step(torch.zeros(N, 8))
    out = train.step(torch.zeros(N, 8))  # the obs the trainer holds is stale: reset, row dropped
    assert not bool(out.valid.any()) and not bool(out.done.any())
    assert torch.equal(out.obs, fake_of(shared.env).state)
    assert bool(train.step(torch.zeros(N, 8)).valid.all())
    evaluation.close()
    assert fake_of(shared.env) is not None and shared.handles == 1
    train.close()
    assert shared.handles == 0


@pytest.mark.parametrize("sim, task, version", [("isaacgym", "Ant", None), ("isaacgym", "AllegroHand", None),
                                                ("omniisaacgym", "Humanoid", None), ("isaaclab", "Ant", 3),
                                                ("isaaclab", "FrankaCabinet", 2)])
def test_adapter_step_adds_no_host_sync(fakes, monkeypatch, sim, task, version):
    """Around the framework's own ``step`` (the fake's, not counted), an adapter reads no tensor value on the host
    and makes no other call that synchronises a CUDA device (``DeviceSyncOps``), so on a GPU it never waits for
    the simulation. 40 steps of 16-step episodes: resets are among them (the real Isaac Lab 3 adapter is checked
    the same way in ``tests/test_isaaclab3_real.py``)."""
    from test_no_host_sync import step_without_host_syncs

    if version:
        set_isaaclab_version(monkeypatch, version)
    env = make(sim, task)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    acts = [torch.rand(env.num_envs, env.action_dim, generator=gen) * 2 - 1 for _ in range(40)]
    dones = step_without_host_syncs(env, acts, (env.env, "step"))
    assert int(dones) >= env.num_envs  # episodes ended (resets) among the counted steps
    env.close()
