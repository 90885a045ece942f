"""Tests of ``tasks/anymal.py`` (OIGE Anymal on MuJoCo) against ``isaac_tasks.md`` sections 0 and 4.

Reward and observation terms are recomputed by hand (numpy, independent of the task code) on constructed base
poses, velocities, joint states, actions and commands.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from tasks import make_env
from tasks.anymal import ASSETS, DOF_NAMES, Anymal
from tasks.control import pd_torque, position_servo_gains, usd_angular_drive_gains

DEFAULT = np.array([0.03, 0.03, -0.03, -0.03, 0.4, -0.4, 0.4, -0.4, -0.8, 0.8, -0.8, 0.8])  # section 4.1
DT = 1.0 / 60.0  # OIGE's task dt


def _make(num_envs=4, seed=0, **cfg):
    return make_env("Anymal", cfg, num_envs=num_envs, seed=seed, num_threads=1)


def _quat(yaw, pitch, roll):
    """``R_z(yaw) R_y(pitch) R_x(roll)`` as (w, x, y, z)."""
    q = np.zeros(4)
    mujoco.mju_euler2Quat(q, np.array([roll, pitch, yaw]), "XYZ")  # extrinsic x, then y, then z
    return q


def _mat(q):
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, dtype=np.float64))
    return m.reshape(3, 3)


def test_model_loads_without_warnings_with_spec_masses_kinematics_and_drive():
    messages = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(messages.append)
    try:
        model = mujoco.MjModel.from_xml_path(str(ASSETS / "anymal.xml"))
        data = mujoco.MjData(model)
        mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
        rng = np.random.default_rng(0)
        for _ in range(300):
            data.ctrl[:] = DEFAULT + rng.uniform(-0.3, 0.3, 12)
            mujoco.mj_step(model, data)
    finally:
        mujoco.set_mju_user_warning(previous)
    assert messages == [] and all(w.number == 0 for w in data.warning)
    # section 4.7 masses: base 26.37, HIP 2.781, THIGH 3.071, SHANK 0.588 kg; total 52.13 kg
    assert model.body("base").mass[0] == pytest.approx(26.37)
    for leg in ("LF", "LH", "RF", "RH"):
        for link, mass in (("HIP", 2.781), ("THIGH", 3.071), ("SHANK", 0.588)):
            assert model.body(f"{leg}_{link}").mass[0] == pytest.approx(mass)
    assert model.body_mass.sum() == pytest.approx(52.13, abs=1e-3)
    assert model.opt.timestep == 0.01 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # joint limits and axes (all HAA about base x, all HFE/KFE about base y at zero angles)
    for name in DOF_NAMES:
        j = model.joint(name)
        lo, hi = {"LF_HAA": (-0.72, 0.49), "LH_HAA": (-0.72, 0.49), "RF_HAA": (-0.49, 0.72),
                  "RH_HAA": (-0.49, 0.72)}.get(name, (-3 * math.pi, 3 * math.pi))
        assert j.range.tolist() == pytest.approx([lo, hi], abs=1e-9)
        assert j.axis.tolist() == ([1, 0, 0] if name.endswith("HAA") else [0, 1, 0])
    # zero-angle kinematics: LF foot at (0.448, 0.301, -0.623) from the base, the others mirrored
    data = mujoco.MjData(model)
    data.qpos[2] = 1.0
    mujoco.mj_forward(model, data)
    for leg, sx, sy in (("LF", 1, 1), ("LH", -1, 1), ("RF", 1, -1), ("RH", -1, -1)):
        foot = data.site(f"{leg}_FOOT").xpos - data.body("base").xpos
        assert foot.tolist() == pytest.approx([0.44775 * sx, 0.30116 * sy, -0.62297], abs=1e-5)
    # the OIGE drive: set_drive(400, 40, 1000) per degree -> SI, in the DOF order
    kp, kd, limit = position_servo_gains(model)
    kp_si, kd_si = usd_angular_drive_gains(400.0, 40.0)
    assert kp == pytest.approx([kp_si] * 12, rel=1e-6) and kd == pytest.approx([kd_si] * 12, rel=1e-6)
    assert limit.tolist() == [1000.0] * 12
    assert [model.joint(model.actuator_trnid[i, 0]).name for i in range(12)] == list(DOF_NAMES)


def test_servo_applies_the_pd_law():
    env = _make(num_envs=2)
    force = env.view("actuator_force")  # derived field: bound before the call that computes it
    env.reset()
    gen = torch.Generator().manual_seed(0)
    q = env.default_dof_pos + 0.05 * torch.randn(2, 12, generator=gen, dtype=torch.float64)
    qd = torch.randn(2, 12, generator=gen, dtype=torch.float64)
    target = env.default_dof_pos + torch.tensor([[0.0] * 11 + [0.2], [0.01] * 12], dtype=torch.float64)
    env.qpos[:, env.qpos_idx] = q
    env.qvel[:, env.qvel_idx] = qd
    env.ctrl.copy_(target)
    env.batch.forward()
    kp, kd = usd_angular_drive_gains(400.0, 40.0)
    expected = pd_torque(q, qd, target, kp, kd, 1000.0)
    assert torch.allclose(force, expected, rtol=1e-6, atol=1e-6)  # the MJCF rounds the gains to 7 digits
    assert (expected.abs() == 1000.0).any() and (expected.abs() < 1000.0).any()  # clamped and free cases


def test_dims_timing_and_episode_length():
    env = _make()
    assert (env.obs_dim, env.action_dim) == (48, 12)
    assert env.reset().shape == (4, 48)
    assert env.frame_skip == 2 and env.dt == pytest.approx(0.02)  # 50 Hz control
    assert env.max_episode_length == 2999  # int(50 / (1/60) + 0.5) = 3000, reset at progress >= 2999
    short = _make(num_envs=2, learn={"episodeLength_s": 10 / 60})  # maxLen 10 -> 9 agent steps
    short.reset()
    for t in range(1, 10):
        out = short.step(torch.zeros(2, 12))
        assert not out.terminated.any() and out.truncated.all() == (t == 9)
    assert out.episode_length.tolist() == [9, 9]


def test_stands_still_at_rest_for_1000_steps():
    env = _make(num_envs=3, seed=1)
    env.reset()
    for _ in range(1000):
        out = env.step(torch.zeros(3, 12))
        assert torch.isfinite(out.obs).all() and not out.done.any()
    assert env.qpos[:, 2].tolist() == pytest.approx([0.541] * 3, abs=0.005)  # standing height [m]
    assert env.qvel.abs().max() < 1e-3  # at rest: no hopping, no drift
    assert env.qpos[:, :2].abs().max() < 0.02
    assert torch.allclose(env.qpos[:, env.qpos_idx], env.default_dof_pos, atol=0.02)


def test_random_actions_are_stable_for_1000_steps():
    env = _make(num_envs=6, seed=2)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    falls = 0
    for _ in range(1000):
        out = env.step(torch.rand(6, 12, generator=gen) * 2 - 1)
        assert torch.isfinite(out.obs).all() and torch.isfinite(out.reward).all()
        assert env.qvel[:, 6:].abs().max() < 40.0  # rad/s (measured max ~18; URDF limit 20)
        assert env.qvel[:, :6].abs().max() < 25.0  # m/s, rad/s (measured max ~11)
        assert out.obs.abs().max() <= 5.0
        assert ((out.reward >= 0) & (out.reward <= 1.5 / 60 + 1e-6) | (out.reward == -1)).all()
        falls += int(out.terminated.sum())
    assert falls > 0  # random targets make it fall: termination works


def test_reset_distribution():
    env = _make(num_envs=512, seed=3)
    obs = env.reset()
    assert torch.equal(env.qpos[:, env.qpos_idx], torch.as_tensor(DEFAULT).expand(512, 12))
    qd = env.qvel[:, env.qvel_idx]
    assert (qd.abs() <= 0.1).all() and qd.std().item() == pytest.approx(0.2 / math.sqrt(12), rel=0.05)
    root = torch.tensor([0, 0, 0.62, 1, 0, 0, 0], dtype=torch.float64)
    assert torch.equal(env.qpos[:, :7], root.expand(512, 7)) and (env.qvel[:, :6] == 0).all()
    c = env.commands
    for j, (lo, hi) in enumerate([(-2, 2), (-1, 1), (-1, 1)]):
        assert c[:, j].min() >= lo and c[:, j].max() <= hi
        assert c[:, j].min() < lo + 0.1 * (hi - lo) and c[:, j].max() > hi - 0.1 * (hi - lo)
        assert c[:, j].mean().item() == pytest.approx((lo + hi) / 2, abs=0.1 * (hi - lo))
    assert torch.equal(env.targets, env.default_dof_pos.expand(512, 12))
    # observation at reset: zero base velocity, upright gravity, scaled commands, q - q_default = 0
    assert (obs[:, 0:6] == 0).all()
    assert torch.equal(obs[:, 6:9], torch.tensor([0.0, 0.0, -1.0]).expand(512, 3))
    assert torch.allclose(obs[:, 9:12], (c * torch.tensor([2.0, 2.0, 0.25], dtype=torch.float64)).float())
    assert (obs[:, 12:24] == 0).all() and (obs[:, 36:48] == 0).all()
    assert torch.allclose(obs[:, 24:36], (qd * 0.05).float())


def test_action_integrates_clamped_targets():
    env = _make(num_envs=2)
    env.reset()
    a = torch.tensor([[1.0] * 12, [-0.5] * 12])
    for k in range(1, 4):
        env.step(a)
        expected = np.clip(DEFAULT + k * 13.5 * a.numpy().astype(np.float64) * DT, env.dof_lower.numpy(),
                           env.dof_upper.numpy())
        assert env.targets.numpy() == pytest.approx(expected, abs=1e-6)
        assert torch.equal(env.ctrl, env.targets)
    for _ in range(30):  # HAA targets saturate at the joint limits
        env.step(a)
    assert env.targets[0, :4].tolist() == pytest.approx(env.dof_upper[:4].tolist())


CASES = {  # yaw, pitch, roll [rad]; base velocity world [m/s]; body angular velocity [rad/s]; command
    "tracking": ((0.3, 0.05, -0.1), (0.9, 0.4, 0.05), (0.02, -0.03, 0.4), (1.0, 0.5, 0.5)),
    "tilted": ((1.2, 0.3, 0.5), (-0.5, 1.0, 0.3), (0.5, -0.2, -0.7), (1.5, -0.8, -0.6)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reward_and_obs_terms_by_hand(case):
    env = _make(num_envs=2)
    env.reset()
    (yaw, pitch, roll), v_world, w_body, cmd = (np.array(x, dtype=np.float64) if i else x
                                               for i, x in enumerate(CASES[case]))
    quat = _quat(yaw, pitch, roll)
    rng = np.random.default_rng(7)
    q = DEFAULT + rng.uniform(-0.3, 0.3, 12)
    qd = rng.uniform(-2, 2, 12)
    last_qd = rng.uniform(-2, 2, 12)
    act, last_act = rng.uniform(-1, 1, 12), rng.uniform(-1, 1, 12)
    env.qpos[0, :3] = torch.tensor([0.3, -0.2, 0.55], dtype=torch.float64)
    env.qpos[0, 3:7] = torch.as_tensor(quat)
    env.qvel[0, :3] = torch.as_tensor(v_world)
    env.qvel[0, 3:6] = torch.as_tensor(w_body)
    env.qpos[0, env.qpos_idx] = torch.as_tensor(q)
    env.qvel[0, env.qvel_idx] = torch.as_tensor(qd)
    env.commands[0] = torch.as_tensor(np.array(cmd))
    env.actions[0] = torch.as_tensor(act)
    env.last_actions[0] = torch.as_tensor(last_act)
    env.last_dof_vel[0] = torch.as_tensor(last_qd)
    terms = {k: v[0].item() for k, v in env.reward_terms().items()}
    reward, terminated = env._reward_terminated(env.actions.float())
    obs = env._observe()[0].numpy()

    R = _mat(quat)
    v_b, w_b = R.T @ v_world, w_body  # MuJoCo's free-joint angular velocity is already in the body frame
    c = np.array(cmd)
    expected = {
        "lin_vel_xy": 1.0 * DT * math.exp(-np.sum((c[:2] - v_b[:2]) ** 2) / 0.25),
        "ang_vel_z": 0.5 * DT * math.exp(-((c[2] - w_b[2]) ** 2) / 0.25),
        "lin_vel_z": -0.03 * DT * v_b[2] ** 2,
        "joint_acc": -0.0003 * DT * np.sum((last_qd - qd) ** 2),
        "action_rate": -0.006 * DT * np.sum((last_act - act) ** 2),
        "cosmetic": -0.06 * DT * np.sum(np.abs(q[:4] - DEFAULT[:4])),
    }
    assert terms == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert reward[0].item() == pytest.approx(max(sum(expected.values()), 0.0), abs=1e-12)
    assert not terminated[0]
    gravity = R @ np.array([0.0, 0.0, -1.0])  # OIGE quirk: rotation by q, not R^T g
    expected_obs = np.concatenate([v_b * 2.0, w_b * 0.25, gravity, c * [2.0, 2.0, 0.25], q - DEFAULT, qd * 0.05,
                                   act]).clip(-5, 5)
    assert obs == pytest.approx(expected_obs, abs=1e-6)
    if case == "tilted":
        assert not np.allclose(gravity[:2], (R.T @ np.array([0.0, 0.0, -1.0]))[:2], atol=1e-3)
    # the previous-step buffers now hold this step's actions and joint velocities
    assert env.last_actions[0].numpy() == pytest.approx(act) and env.last_dof_vel[0].numpy() == pytest.approx(qd)


def test_reward_is_clipped_at_zero_and_minus_one_when_fallen():
    env = _make(num_envs=3)
    env.reset()
    env.commands[:] = torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64)  # far from the zero base velocity
    env.last_actions[:] = 1.0  # large action-rate penalty with zero actions
    env.qpos[1, 2] = 0.509  # base below 0.51 m: fallen
    env.qpos[2, 2] = 0.511
    env.batch.forward()
    terms = env.reward_terms()
    assert sum(v[0].item() for v in terms.values()) < 0
    reward, terminated = env._reward_terminated(torch.zeros(3, 12))
    env._observe()
    assert reward.tolist() == [0.0, -1.0, 0.0] and terminated.tolist() == [False, True, False]


def test_auto_reset_clears_the_previous_step_buffers():
    env = _make(num_envs=2, seed=5)
    env.reset()
    env.step(torch.full((2, 12), 0.7))
    assert (env.last_actions != 0).all() and (env.last_dof_vel != 0).any()
    env.qpos[0, 2] = 0.3  # env 0 falls in the next step
    out = env.step(torch.full((2, 12), 0.7))
    assert out.terminated.tolist() == [True, False] and out.reward[0].item() == -1.0
    assert (env.last_actions[0] == 0).all() and (env.last_dof_vel[0] == 0).all() and (env.actions[0] == 0).all()
    assert torch.equal(env.targets[0], env.default_dof_pos) and (out.obs[0, 36:48] == 0).all()
    assert (env.last_actions[1] != 0).all() and env.progress.tolist() == [0, 2]


def test_env_cfg_overrides_and_errors():
    env = _make(num_envs=2, learn={"cosmeticRewardScale": -1.0}, control={"actionScale": 6.0},
                randomCommandVelocityRanges={"linear_x": [0.5, 0.5]})
    assert env.rew_scales["cosmeticRewardScale"] == pytest.approx(-1.0 / 60)
    assert env.rew_scales["linearVelocityXYRewardScale"] == pytest.approx(1.0 / 60)
    env.reset()
    assert (env.commands[:, 0] == 0.5).all()
    env.step(torch.ones(2, 12))
    assert env.targets[0, 4].item() == pytest.approx(0.4 + 6.0 / 60)
    with pytest.raises(ValueError, match=r"'learn\.cosmeticRewardScal'.*learn\.cosmeticRewardScale"):
        _make(learn={"cosmeticRewardScal": 0.0})
    with pytest.raises(ValueError, match=r"'clipObs'.*clipObservations.*learn"):
        _make(clipObs=5.0)
    with pytest.raises(ValueError, match=r"'randomCommandVelocityRanges\.yaw'.*list of 2"):
        _make(randomCommandVelocityRanges={"yaw": 1.0})
    with pytest.raises(ValueError, match=r"'learn'.*mapping"):
        _make(learn=3)


def test_seeded_determinism():
    def rollout(seed):
        env = _make(num_envs=4, seed=seed)
        obs = [env.reset()]
        gen = torch.Generator().manual_seed(5)
        for _ in range(80):  # includes falls and auto-resets
            out = env.step(torch.rand(4, 12, generator=gen) * 2 - 1)
            obs += [out.obs, out.reward[:, None]]
        return torch.cat(obs, 1)

    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7)[:, :48], rollout(8)[:, :48])


def test_registry_and_runner_end_to_end(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from meow_isaac.runner import config_dir, run

    assert isinstance(_make(num_envs=1), Anymal)
    monkeypatch.chdir(tmp_path)
    overrides = ["task=Anymal", "num_envs=2", "max_iterations=40", "train.random_steps=20",
                 "train.learning_starts=20", "train.batch_size=32", "train.eval_interval=0", "train.eval_envs=1",
                 "train.log_interval=20", "progress_bar=False", "torch_threads=1", "sim_threads=1",
                 "experiment=anymal_e2e", "task.env.learn.episodeLength_s=0.5"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        out = run(compose("config", overrides=overrides))
    assert out["iteration"] == 40 and out["frames"] == 80
    assert (tmp_path / "runs" / "anymal_e2e" / "nn" / "anymal_e2e.pth").is_file()
