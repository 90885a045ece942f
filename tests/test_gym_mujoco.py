"""Tests of ``tasks/gym_mujoco.py``: equivalence with Gymnasium's v5 MuJoCo envs and the StepOut contract.

Tolerance: ``StepOut`` carries float32 observations and rewards, so they are compared with Gymnasium's float64
values at ``rtol = atol = 1e-6`` (float32 rounding is ~6e-8 relative). The physics itself is bit-identical
(``mujoco.batch`` runs the same ``mj_step`` on the same XML), so terminations must match exactly.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeLimit

from tasks import make_env
from tasks.gym_mujoco import GymMujocoTask

GYM_IDS = {
    "Hopper": "Hopper-v5",
    "HalfCheetah": "HalfCheetah-v5",
    "Walker2d": "Walker2d-v5",
    "MujocoAnt": "Ant-v5",
    "MujocoHumanoid": "Humanoid-v5",
    "InvertedPendulum": "InvertedPendulum-v5",
}
DIMS = {"Hopper": (11, 3), "HalfCheetah": (17, 6), "Walker2d": (17, 6), "MujocoAnt": (105, 8),
        "MujocoHumanoid": (348, 17), "InvertedPendulum": (4, 1)}
TOL = dict(rtol=1e-6, atol=1e-6)


def _make(name: str, num_envs: int = 3, seed: int = 0, **cfg) -> GymMujocoTask:
    return make_env(name, cfg, num_envs=num_envs, seed=seed, num_threads=1)


def _synced_pair(name: str, num_envs: int, episode_length: int, seed: int = 100):
    """Our env and ``num_envs`` Gymnasium envs (TimeLimit ``episode_length``) in the same reset states."""
    env = _make(name, num_envs, episodeLength=episode_length)
    env.reset()
    gyms = [TimeLimit(gym.make(GYM_IDS[name]).unwrapped, max_episode_steps=episode_length) for _ in range(num_envs)]
    gym_obs = np.stack([g.reset(seed=seed + i)[0] for i, g in enumerate(gyms)])
    obs = env.set_state(np.stack([g.unwrapped.data.qpos for g in gyms]),
                        np.stack([g.unwrapped.data.qvel for g in gyms]))
    np.testing.assert_allclose(obs.numpy(), gym_obs, **TOL)
    return env, gyms


def _actions(env: GymMujocoTask, rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(rng.uniform(-1.0, 1.0, (env.num_envs, env.action_dim)).astype(np.float32))


def _gym_action(env: GymMujocoTask, action: torch.Tensor) -> np.ndarray:
    """The ctrl-range-scaled action Gymnasium receives (the ctrl our env writes)."""
    return action.double().numpy() * env.ctrl_high.numpy()


@pytest.mark.parametrize("name", list(GYM_IDS))
def test_matches_gymnasium_v5(name):
    env, gyms = _synced_pair(name, num_envs=3, episode_length=60)
    assert (env.obs_dim, env.action_dim) == DIMS[name]
    assert env.obs_dim == gyms[0].observation_space.shape[0]
    rng, alive, compared = np.random.default_rng(0), [True] * 3, 0
    for t in range(80):
        action = _actions(env, rng)
        out = env.step(action)
        gym_actions = _gym_action(env, action)
        assert not bool((out.terminated & out.truncated).any())
        for i, g in enumerate(gyms):
            if not alive[i]:
                continue
            obs, reward, terminated, truncated, _ = g.step(gym_actions[i])
            np.testing.assert_allclose(out.final_obs[i].numpy(), obs, **TOL, err_msg=f"{name} t={t} env={i}")
            np.testing.assert_allclose(out.reward[i].item(), reward, **TOL, err_msg=f"{name} t={t} env={i}")
            assert (bool(out.terminated[i]), bool(out.truncated[i])) == (terminated, truncated), (t, i)
            compared += 1
            alive[i] = not (terminated or truncated)
    assert compared >= 20


def test_final_obs_on_truncation():
    env, gyms = _synced_pair("Hopper", num_envs=3, episode_length=5)
    zero = torch.zeros(3, env.action_dim)
    for t in range(5):
        out = env.step(zero)
        gym_out = [g.step(np.zeros(env.action_dim)) for g in gyms]
    assert out.truncated.all() and not out.terminated.any()
    assert all(o[3] and not o[2] for o in gym_out)
    np.testing.assert_allclose(out.final_obs.numpy(), np.stack([o[0] for o in gym_out]), **TOL)
    assert torch.equal(out.obs, env._observe().float())  # post-reset observation of the new episode
    assert (out.obs - out.final_obs).abs().amax(1).gt(1e-3).all()
    assert (env.progress == 0).all() and (out.episode_length == 5).all()


def test_terminated_vs_truncated():
    env = _make("Hopper", num_envs=4, seed=1)
    env.reset()
    push = torch.ones(4, env.action_dim)
    first_end = None
    for t in range(1, 301):
        out = env.step(push)
        assert not bool((out.terminated & out.truncated).any())
        assert not out.truncated.any()
        if first_end is None and out.terminated[0]:
            first_end = t
    assert first_end is not None, "a Hopper pushed with constant full actions must fall"
    # With the time limit exactly at the fall, termination wins and the flags are never both set.
    env = _make("Hopper", num_envs=4, seed=1, episodeLength=first_end)
    env.reset()
    for t in range(1, first_end + 1):
        out = env.step(push)
        assert not bool((out.terminated & out.truncated).any())
    assert out.terminated[0] and not out.truncated[0]
    assert bool((out.terminated | out.truncated).all())


def test_seeded_reset_determinism():
    a, b, c = (_make("Hopper", num_envs=4, seed=s, episodeLength=20) for s in (7, 7, 8))
    obs_a, obs_b, obs_c = a.reset(), b.reset(), c.reset()
    assert torch.equal(obs_a, obs_b) and not torch.equal(obs_a, obs_c)
    rng = np.random.default_rng(0)
    for _ in range(45):  # crosses two auto-resets
        action = _actions(a, rng)
        out_a, out_b = a.step(action), b.step(action)
        for x, y in zip(out_a, out_b):
            assert torch.equal(x, y)


def test_episode_return_is_sum_of_rewards():
    env = _make("Hopper", num_envs=4, seed=3, episodeLength=25)
    env.reset()
    rng = np.random.default_rng(1)
    acc, steps, ended = np.zeros(4), np.zeros(4, dtype=int), 0
    for _ in range(80):
        out = env.step(_actions(env, rng) * 2.0)  # clamped to [-1, 1]: falls and time-outs both happen
        acc += out.reward.double().numpy()
        steps += 1
        for i in range(4):
            if out.done[i]:
                assert out.episode_return[i].item() == pytest.approx(acc[i], rel=1e-5, abs=1e-5)
                assert out.episode_length[i].item() == steps[i]
                acc[i], steps[i], ended = 0.0, 0, ended + 1
            else:
                assert out.episode_return[i].item() == 0.0 and out.episode_length[i].item() == 0
    assert ended >= 4


def test_env_cfg_validation():
    with pytest.raises(ValueError, match=r"'episodeLenght'.*accepted keys:.*episodeLength"):
        _make("Hopper", episodeLenght=10)
    env = _make("HalfCheetah", num_envs=2, numEnvs=2, episodeLength=7, ctrlCostWeight=0.0)
    assert env.max_episode_length == 7 and env.cfg["ctrlCostWeight"] == 0.0
