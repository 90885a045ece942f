"""Tests of ``tasks/isaac_locomotion.py`` (OIGE Ant / Humanoid on MuJoCo) against ``isaac_tasks.md`` sections 0-3.

Reward and observation terms are recomputed by hand from the spec formulas on constructed torso poses,
velocities and joint positions, independently of the task code.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from tasks import make_env
from tasks.isaac_locomotion import ASSETS, Ant, Humanoid
from tasks.torch_utils import get_euler_xyz, normalize_angle, quat_rotate, quat_rotate_inverse

DIMS = {"Ant": (60, 8), "Humanoid": (87, 21)}
START_Z = {"Ant": 0.5, "Humanoid": 1.34}
MASS = {"nv_ant.xml": 0.911, "nv_humanoid.xml": 40.84}  # kg, sections 2.5 / 3.5
HUMANOID_GEAR = [67.5] * 7 + [45.0] * 2 + [45.0, 45.0, 135.0] * 2 + [90.0] * 2 + [22.5] * 4  # our DOF order


def _make(name, num_envs=4, seed=0, **cfg):
    return make_env(name, cfg, num_envs=num_envs, seed=seed, num_threads=1)


def _rand_actions(env, gen):
    return torch.rand(env.num_envs, env.action_dim, generator=gen) * 2 - 1


@pytest.mark.parametrize("asset", list(MASS))
def test_model_loads_without_warnings_and_has_spec_masses(asset):
    messages = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(messages.append)
    try:
        model = mujoco.MjModel.from_xml_path(str(ASSETS / asset))
        data = mujoco.MjData(model)
        rng = np.random.default_rng(0)
        for _ in range(500):
            data.ctrl[:] = rng.uniform(-1, 1, model.nu)
            mujoco.mj_step(model, data)
    finally:
        mujoco.set_mju_user_warning(previous)
    assert messages == []
    assert all(w.number == 0 for w in data.warning)
    assert model.body_mass.sum() == pytest.approx(MASS[asset], abs=5e-3)
    assert model.opt.timestep == pytest.approx(1 / 120)


@pytest.mark.parametrize("name", ["Ant", "Humanoid"])
def test_dims_timing_and_gears(name):
    env = _make(name)
    assert (env.obs_dim, env.action_dim) == DIMS[name]
    assert env.reset().shape == (4, DIMS[name][0])
    assert env.dt == pytest.approx(1 / 60)
    assert env.max_episode_length == 999  # OIGE: reset at progress >= episodeLength - 1
    gear = [15.0] * 8 if name == "Ant" else HUMANOID_GEAR
    assert env.gear.tolist() == gear
    assert env.motor_effort_ratio.tolist() == pytest.approx([g / max(gear) for g in gear])


@pytest.mark.parametrize("name", ["Ant", "Humanoid"])
def test_reset_distribution(name):
    env = _make(name, num_envs=256, seed=3)
    obs = env.reset()
    n = env.action_dim
    lo, hi = env.dof_lower, env.dof_upper
    q_init = torch.zeros(n, dtype=torch.float64).clamp(lo, hi)
    q = env.qpos[:, env.qpos_idx]
    assert ((q - q_init).abs() <= 0.2 + 1e-12).all()
    assert ((q >= lo) & (q <= hi)).all()
    at_limit = (q == lo) | (q == hi)
    assert at_limit.any(), "the clamp must be hit for some joints"
    assert not at_limit.all()
    qd = env.qvel[:, env.qvel_idx]
    assert (qd.abs() <= 0.1).all() and qd.std() > 0.04
    root = env.qpos[:, :7]
    assert torch.equal(root, torch.tensor([0, 0, START_Z[name], 1, 0, 0, 0], dtype=torch.float64).expand(256, 7))
    assert (env.qvel[:, :6] == 0).all()
    assert torch.allclose(obs[:, 0], torch.tensor(START_Z[name]))
    assert (obs[:, -n:] == 0).all()  # no previous action at the start of an episode
    if name == "Ant":  # ankle ranges exclude 0: q_init is the limit nearest 0 (30 deg or -30 deg)
        assert q_init[4:].abs().tolist() == pytest.approx([math.radians(30)] * 4)


@pytest.mark.parametrize("name", ["Ant", "Humanoid"])
def test_random_actions_are_stable(name):
    env = _make(name, num_envs=16, seed=1)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(320):
        out = env.step(_rand_actions(env, gen))
        assert torch.isfinite(out.obs).all() and torch.isfinite(out.reward).all()
        assert env.qvel.abs().max() < 100.0  # rad/s, m/s
        assert out.reward.abs().max() < 50.0


def _quat_yaw_roll(yaw, roll):
    """``R_z(yaw) R_x(roll)`` as (w, x, y, z)."""
    cy, sy, cr, sr = math.cos(yaw / 2), math.sin(yaw / 2), math.cos(roll / 2), math.sin(roll / 2)
    return [cy * cr, cy * sr, sy * sr, sy * cr]


def _set_state(env, i, pos, quat, lin_vel, ang_vel_body, u, dof_vel):
    """Write env ``i``'s state; joint positions from unscaled values ``u`` in [-1, 1]."""
    lo, hi = env.dof_lower, env.dof_upper
    env.qpos[i, :3] = torch.tensor(pos, dtype=torch.float64)
    env.qpos[i, 3:7] = torch.tensor(quat, dtype=torch.float64)
    env.qvel[i, :3] = torch.tensor(lin_vel, dtype=torch.float64)
    env.qvel[i, 3:6] = torch.tensor(ang_vel_body, dtype=torch.float64)
    env.qpos[i, env.qpos_idx] = lo + (torch.tensor(u, dtype=torch.float64) + 1) / 2 * (hi - lo)
    env.qvel[i, env.qvel_idx] = torch.tensor(dof_vel, dtype=torch.float64)


CASES = {  # yaw, roll [rad]; a heading above / below 0.8 and an up_proj above / below 0.93
    "upright": (0.6, 0.0),  # heading_proj 0.825: just above the 0.8 threshold
    "tilted": (1.2, 0.5),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("name", ["Ant", "Humanoid"])
def test_reward_and_obs_terms_by_hand(name, case):
    env = _make(name, num_envs=2)
    env.reset()
    n = env.action_dim
    yaw, roll = CASES[case]
    pos, prev_pos = (2.0, 1.0, 1.5), (1.9, 1.05, 1.5)
    lin_vel, ang_vel_body = (1.0, 0.5, 0.2), (0.1, -0.2, 0.3)
    if name == "Ant":  # DOF order hip_1..4, ankle_1..4; count of u > 0.99 = 3
        u = [0.995, 0.2, -1.0, 1.0, 0.5, 0.991, -0.3, 0.0]
        limit_cost = 3.0
        scales = dict(ang=1.0, dof_vel=0.2, alive=0.5, act=0.005, energy=0.05)
        gear = [15.0] * 8
        ranges_deg = {0: (-40, 40), 4: (30, 100), 5: (-100, -30)}
    else:  # right_hip_y (gear 135) at 0.99, right_ankle_y (gear 22.5) at -0.995, abdomen_z at 0.97
        u = [0.0] * n
        u[11], u[17], u[0] = 0.99, -0.995, 0.97
        limit_cost = 0.25 * 0.5 * 1.0 + 0.25 * 0.75 * (22.5 / 135)
        scales = dict(ang=0.25, dof_vel=0.1, alive=2.0, act=0.01, energy=0.05)
        gear = HUMANOID_GEAR
        ranges_deg = {0: (-45, 45), 11: (-120, 45), 15: (-160, 2), 17: (-50, 50)}
    for j, (lo, hi) in ranges_deg.items():
        assert (env.dof_lower[j].item(), env.dof_upper[j].item()) == pytest.approx((math.radians(lo), math.radians(hi)))
    dof_vel = [0.5 * (j + 1) * (-1) ** j for j in range(n)]
    action = torch.linspace(-0.9, 0.9, n).expand(2, n).clone()

    _set_state(env, 0, pos, _quat_yaw_roll(yaw, roll), lin_vel, ang_vel_body, u, dof_vel)
    env.batch.forward()
    env.actions = action.double()
    d_prev = math.hypot(1000 - prev_pos[0], 0 - prev_pos[1])
    env.potentials[0] = -d_prev * 60.0
    reward, terminated = env._reward_terminated(action)
    obs = env._observe()[0]

    # section 1, by hand
    d = (1000 - pos[0], 0 - pos[1])
    dist = math.hypot(*d)
    heading_proj = (math.cos(yaw) * d[0] + math.sin(yaw) * d[1]) / dist  # body x = (cos yaw, sin yaw, 0)
    up_proj = math.cos(roll)
    c, s = math.cos(yaw), math.sin(yaw)  # R^T v for R = R_z(yaw) R_x(roll)
    v1 = (c * lin_vel[0] + s * lin_vel[1], -s * lin_vel[0] + c * lin_vel[1], lin_vel[2])
    v_loc = (v1[0], math.cos(roll) * v1[1] + math.sin(roll) * v1[2], -math.sin(roll) * v1[1] + math.cos(roll) * v1[2])
    angle_to_target = math.atan2(0 - pos[2], 1000 - pos[0]) - yaw  # upstream quirk: z, not y
    expected_obs_head = [pos[2], *v_loc, *(w * scales["ang"] for w in ang_vel_body), yaw, roll,
                         angle_to_target, up_proj, heading_proj]
    assert obs[:12].tolist() == pytest.approx(expected_obs_head, abs=1e-9)
    assert obs[12:12 + n].tolist() == pytest.approx(u, abs=1e-9)
    assert obs[12 + n:12 + 2 * n].tolist() == pytest.approx([v * scales["dof_vel"] for v in dof_vel], abs=1e-9)
    assert obs[-n:].tolist() == pytest.approx(action[0].tolist(), abs=1e-7)

    a = action[0].double().tolist()
    heading_r = 0.5 if heading_proj > 0.8 else 0.5 * heading_proj / 0.8
    up_r = 0.1 if up_proj > 0.93 else 0.0
    progress = (d_prev - dist) * 60.0
    act_cost = sum(x * x for x in a)
    elec = sum(abs(a[j] * dof_vel[j] * scales["dof_vel"]) * gear[j] / max(gear) for j in range(n))
    expected = (progress + scales["alive"] + up_r + heading_r - scales["act"] * act_cost
                - scales["energy"] * elec - limit_cost)
    assert (heading_proj > 0.8, up_proj > 0.93) == ((True, True) if case == "upright" else (False, False))
    assert reward[0].item() == pytest.approx(expected, abs=1e-9)
    assert not terminated[0]
    assert env.potentials[0].item() == pytest.approx(-dist * 60.0)


@pytest.mark.parametrize("name", ["Ant", "Humanoid"])
def test_death_cost_replaces_reward_below_termination_height(name):
    env = _make(name, num_envs=2)
    env.reset()
    death, height = (-2.0, 0.31) if name == "Ant" else (-1.0, 0.8)
    env.qpos[0, 2] = height - 0.01  # constructed state: torso just below terminationHeight
    env.qpos[1, 2] = height + 0.01
    env.batch.forward()
    reward, terminated = env._reward_terminated(torch.zeros(2, env.action_dim))
    env._observe()
    assert terminated.tolist() == [True, False]
    assert reward[0].item() == death and reward[1].item() != death


@pytest.mark.parametrize("name", ["Ant", "Humanoid"])
def test_termination_through_step_resets_the_episode(name):
    env = _make(name, num_envs=3, terminationHeight=5.0, deathCost=-7.0)  # every step is "fallen"
    env.reset()
    out = env.step(torch.zeros(3, env.action_dim))
    assert out.terminated.all() and not out.truncated.any()
    assert torch.equal(out.reward, torch.full((3,), -7.0))
    assert out.episode_length.tolist() == [1, 1, 1] and torch.equal(out.episode_return, out.reward)
    assert torch.allclose(out.obs[:, 0], torch.tensor(START_Z[name]))  # auto-reset observation
    assert (out.final_obs[:, 0] < START_Z[name]).all()  # the torso fell for one step before the reset


def test_truncation_at_episode_length_minus_one():
    env = _make("Ant", num_envs=2, episodeLength=10, terminationHeight=-1.0)
    env.reset()
    for t in range(1, 10):
        out = env.step(torch.zeros(2, 8))
        assert not out.terminated.any()
        assert out.truncated.all() == (t == 9) and out.truncated.any() == (t == 9)
    assert out.episode_length.tolist() == [9, 9]
    assert env.progress.tolist() == [0, 0]


def test_env_cfg_overrides_and_unknown_keys():
    env = _make("Humanoid", powerScale=0.5, alive_reward_scale=3.0)
    assert env.cfg.powerScale == 0.5 and env.cfg.alive_reward_scale == 3.0 and env.cfg.upWeight == 0.1
    env.reset()
    env.step(torch.ones(4, 21))
    assert env.ctrl[0].tolist() == [0.5] * 21  # tau = a * gear * powerScale via the motor gear
    with pytest.raises(ValueError, match=r"'headingWieght'.*headingWeight.*episodeLength"):
        _make("Ant", headingWieght=1.0)


def test_seeded_determinism():
    def rollout(seed):
        env = _make("Humanoid", num_envs=8, seed=seed)
        obs = [env.reset()]
        gen = torch.Generator().manual_seed(5)
        for _ in range(60):  # includes falls and auto-resets
            out = env.step(_rand_actions(env, gen))
            obs += [out.obs, out.reward[:, None]]
        return torch.cat(obs, 1)

    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7)[:, :87], rollout(8)[:, :87])


def test_torch_utils():
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(64, 4, generator=gen, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    v = torch.randn(64, 3, generator=gen, dtype=torch.float64)
    assert torch.allclose(quat_rotate_inverse(q, quat_rotate(q, v)), v)
    mat = torch.from_numpy(np.stack([_quat2mat(x) for x in q.numpy()]))
    assert torch.allclose(quat_rotate(q, v), (mat @ v[:, :, None])[:, :, 0])
    roll, pitch, yaw = get_euler_xyz(torch.tensor([_quat_yaw_roll(-0.4, 0.7)], dtype=torch.float64))
    assert (roll.item(), pitch.item(), yaw.item()) == pytest.approx((0.7, 0.0, 2 * math.pi - 0.4))
    x = torch.tensor([-7.0, -math.pi / 2, 0.0, 3.0, 4.0, 10.0], dtype=torch.float64)
    y = normalize_angle(x)
    assert ((y > -math.pi) & (y <= math.pi)).all() and torch.allclose(torch.sin(y), torch.sin(x))


def _quat2mat(q):
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, q)
    return mat.reshape(3, 3)


def test_registry_builds_classes():
    assert isinstance(_make("Ant"), Ant) and isinstance(_make("Humanoid"), Humanoid)
