"""Tests of ``tasks/franka_cabinet.py`` (OIGE FrankaCabinet on MuJoCo) against ``isaac_tasks.md`` sections 0 and 6.

Kinematics are checked against the Panda's modified-DH parameters (section 6.7), the observation and every
reward term against hand computations on constructed states, and the physics by a scripted grasp-and-pull.
"""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir

from meow_isaac.runner import config_dir, run
from tasks import make_env
from tasks.control import position_servo_gains
from tasks.franka_cabinet import FrankaCabinet, FrankaCabinetCfg, load_model

from conftest import REPO

DEFAULT = [1.157, -1.066, -0.155, -2.239, -1.841, 1.003, 0.469, 0.035, 0.035]
LIMITS = [(-2.8973, 2.8973), (-1.7628, 1.7628), (-2.8973, 2.8973), (-3.0718, -0.0698), (-2.8973, 2.8973),
          (-0.0175, 3.7525), (-2.8973, 2.8973), (0.0, 0.04), (0.0, 0.04)]
HANDLE = np.array([0.0515 + 0.3, 0.01, 0.4 + 0.3172])  # world grasp point of the closed drawer


def _make(num_envs=2, seed=0, **cfg):
    return make_env("FrankaCabinet", cfg, num_envs=num_envs, seed=seed, num_threads=1)


def _dh_link7(q):
    """World pose (4x4) of panda_link7 from the Panda's modified-DH parameters, base at (1, 0, 0) turned 180 deg."""
    a = [0, 0, 0, 0.0825, -0.0825, 0, 0.088]
    d = [0.333, 0, 0.316, 0, 0.384, 0, 0]
    alpha = [0, -math.pi / 2, math.pi / 2, math.pi / 2, -math.pi / 2, math.pi / 2, math.pi / 2]
    pose = np.array([[-1.0, 0, 0, 1], [0, -1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    for i in range(7):
        ca, sa, ct, st = math.cos(alpha[i]), math.sin(alpha[i]), math.cos(q[i]), math.sin(q[i])
        pose = pose @ np.array([[ct, -st, 0, a[i]], [st * ca, ct * ca, -sa, -d[i] * sa],
                                [st * sa, ct * sa, ca, d[i] * ca], [0, 0, 0, 1]])
    return pose


def _rot_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_model_loads_without_warnings_and_matches_the_spec():
    messages = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(messages.append)
    try:
        model = load_model(4)
        data = mujoco.MjData(model)
        rng = np.random.default_rng(0)
        lo, hi = model.jnt_range[model.actuator_trnid[:, 0]].T
        for t in range(500):
            if t % 2 == 0:
                data.ctrl[:] = rng.uniform(lo, hi)
            mujoco.mj_step(model, data)
    finally:
        mujoco.set_mju_user_warning(previous)
    assert messages == [] and all(w.number == 0 for w in data.warning)
    assert model.opt.timestep == pytest.approx(1 / 120)
    jnt = model.actuator_trnid[:, 0]
    assert [model.joint(j).name for j in jnt] == list(FrankaCabinet.dof_names)
    assert model.jnt_range[jnt] == pytest.approx(np.array(LIMITS))
    kp, kd, limit = position_servo_gains(model)
    assert kp.tolist() == [400.0] * 7 + [1e4] * 2 and kd.tolist() == [80.0] * 7 + [100.0] * 2
    assert limit.tolist() == [87.0] * 4 + [12.0] * 3 + [200.0] * 2
    drawer = model.joint("drawer_top_joint")
    assert drawer.type[0] == mujoco.mjtJoint.mjJNT_SLIDE and drawer.range.tolist() == [0.0, 0.4]
    assert model.body("prop_0").mass[0] == pytest.approx(0.08 ** 3 * 100)
    assert load_model(0).nbody == model.nbody - 4
    # kinematics = modified DH, at the default pose and a random one
    for q in (DEFAULT, rng.uniform(lo, hi)):
        data.qpos[model.jnt_qposadr[jnt]] = q
        mujoco.mj_kinematics(model, data)
        pose = _dh_link7(q)
        link7 = model.body("panda_link7").id
        assert data.xpos[link7] == pytest.approx(pose[:3, 3], abs=1e-9)
        assert data.xmat[link7].reshape(3, 3) == pytest.approx(pose[:3, :3], abs=1e-9)
        hand = pose[:3, :3] @ _rot_z(-math.pi / 4)
        finger_base = pose[:3, 3] + pose[:3, :3] @ [0, 0, 0.107] + hand @ [0, 0, 0.0584]
        left, right = data.xpos[model.body("panda_leftfinger").id], data.xpos[model.body("panda_rightfinger").id]
        assert left == pytest.approx(finger_base + hand @ [0, q[7], 0], abs=1e-9)  # fingers open along +-hand y
        assert right == pytest.approx(finger_base - hand @ [0, q[8], 0], abs=1e-9)
    mujoco.mj_resetData(model, data)
    mujoco.mj_kinematics(model, data)
    assert data.xpos[model.body("drawer_top").id] + [0.3, 0.01, 0] == pytest.approx(HANDLE)


def test_dims_timing_and_config():
    env = _make()
    assert (env.obs_dim, env.action_dim) == (23, 9)
    assert env.reset().shape == (2, 23)
    assert env.dt == pytest.approx(1 / 60) and env.max_episode_length == 499
    with pytest.raises(ValueError, match=r"'actionScal'.*actionScale"):
        _make(actionScal=1.0)
    with pytest.raises(ValueError, match="numProps"):
        _make(numProps=5)
    yml = yaml.safe_load((Path(REPO) / "cfg" / "task" / "FrankaCabinet.yaml").read_text())["env"]
    yml.pop("numEnvs")
    assert FrankaCabinetCfg.from_dict(yml) == FrankaCabinetCfg()


def test_reset_distribution():
    env = _make(num_envs=256, seed=3)
    obs = env.reset()
    q = env.qpos[:, env.qpos_idx]
    default = torch.tensor(DEFAULT, dtype=torch.float64)
    lo, hi = env.dof_lower, env.dof_upper
    assert ((q - default).abs() <= 0.125 + 1e-12).all() and ((q >= lo) & (q <= hi)).all()
    assert (q[:, 0] - default[0]).std() == pytest.approx(0.25 / math.sqrt(12), rel=0.15)  # U(-0.125, 0.125)
    assert ((q[:, 7:] == 0.04) | (q[:, 7:] <= 0.04)).all() and (q[:, 7:] == 0.04).any()  # fingers clamped
    assert torch.equal(env.ctrl, q) and torch.equal(env.targets, q)
    assert (env.qvel == 0).all() and (env.qpos[:, env.drawer_qpos] == 0).all()
    assert torch.equal(env.qpos[:, env.prop_qpos_idx], env.prop_init_qpos.expand(256, -1))
    assert torch.allclose(obs[:, :9], (2 * (q - lo) / (hi - lo) - 1).float())
    assert (obs[:, 9:18] == 0).all() and (obs[:, 21:] == 0).all()


def test_grasp_frames_and_observation_by_hand():
    env = _make(num_envs=2)
    env.reset()
    rng = np.random.default_rng(1)
    lo, hi = env.dof_lower.numpy(), env.dof_upper.numpy()
    q = rng.uniform(lo, hi)
    qd = np.linspace(-2, 2, 9)
    env.qpos[0, env.qpos_idx] = torch.tensor(q)
    env.qvel[0, env.qvel_idx] = torch.tensor(qd)
    env.qpos[0, env.drawer_qpos] = 0.17
    env.qvel[0, env.drawer_qvel] = -0.3
    env.batch.forward()
    frames = {k: v[0].numpy() for k, v in env.grasp_frames().items()}
    pose = _dh_link7(q)
    grasp_pos = pose[:3, 3] + pose[:3, :3] @ [0, 0.04, 0.1654]  # OIGE: finger midpoint + 0.04 along link7 y
    assert frames["franka_grasp_pos"] == pytest.approx(grasp_pos, abs=1e-9)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, frames["franka_grasp_rot"])
    assert rot.reshape(3, 3) == pytest.approx(pose[:3, :3] @ _rot_z(-math.pi / 4), abs=1e-9)
    assert frames["drawer_grasp_pos"] == pytest.approx(HANDLE + [0.17, 0, 0], abs=1e-12)
    assert np.array_equal(frames["rfinger_pos"], frames["lfinger_pos"])  # OIGE's right-finger bug
    reward, _ = env._reward_terminated(torch.zeros(2, 9))
    obs = env._observe()[0].numpy()
    expected = np.concatenate([2 * (q - lo) / (hi - lo) - 1, 0.1 * qd, HANDLE + [0.17, 0, 0] - grasp_pos, [0.17, -0.3]])
    assert obs == pytest.approx(np.clip(expected, -5, 5), abs=1e-9)


def _reward_by_hand(d, dot1, dot2, drawer, finger_q, action, lf_z=None, rf_z=None, h_z=None):
    dist = (1 / (1 + d * d)) ** 2 * (2 if d <= 0.02 else 1)
    rot = 0.5 * (math.copysign(dot1 ** 2, dot1) + math.copysign(dot2 ** 2, dot2))
    around = 0.5 if (lf_z is not None and lf_z > h_z and rf_z < h_z) else 0.0
    fdist = (0.04 - abs(lf_z - h_z)) + (0.04 - abs(rf_z - h_z)) if around else 0.0
    fclose = (0.04 - finger_q[0]) + (0.04 - finger_q[1]) if d <= 0.03 else 0.0
    r = (2 * dist + 0.5 * rot + 10 * around + 7.5 * (drawer * around + drawer) + 100 * fdist
         - 0.01 * sum(a * a for a in action) + 10 * fclose)
    return r + 0.5 * (drawer > 0.01) + around * (drawer > 0.2) + 2 * around * (drawer > 0.39)


def _place_grasp(env, i, offset, fingers, drawer):
    """Put env ``i``'s gripper in the OIGE-aligned pose (forward = -x, up = +z) with its grasp point at the
    handle + ``offset``, by damped least squares on the arm joints; returns the resulting frames."""
    model, data = env.model, mujoco.MjData(env.model)
    data.qpos[:] = env.qpos[i].numpy()
    data.qpos[env.drawer_qpos] = drawer
    adr = env.qpos_idx.numpy()
    data.qpos[adr[7:]] = fingers
    target = HANDLE + [drawer, 0, 0] + offset
    want = np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0.0]])  # columns: x, y = +z (up), z = -x (forward)
    link7 = model.body("panda_link7").id
    for _ in range(200):
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        rot = data.xmat[link7].reshape(3, 3) @ _rot_z(-math.pi / 4)
        point = data.xpos[link7] + data.xmat[link7].reshape(3, 3) @ [0, 0.04, 0.1654]
        jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        mujoco.mj_jac(model, data, jp, jr, point, link7)
        err_rot = 0.5 * sum(np.cross(rot[:, k], want[:, k]) for k in range(3))
        jac = np.vstack([jp, jr])[:, env.qvel_idx.numpy()[:7]]
        err = np.concatenate([target - point, err_rot])
        data.qpos[adr[:7]] += jac.T @ np.linalg.solve(jac @ jac.T + 1e-6 * np.eye(6), err)
    env.qpos[i] = torch.from_numpy(data.qpos.copy())
    env.qvel[i] = 0.0


@pytest.mark.parametrize("offset, fingers, drawer", [
    ((0.015, 0.0, 0.0), 0.01, 0.0),  # d <= 0.02: doubled distance reward and finger-close reward
    ((0.0, 0.025, 0.0), 0.03, 0.05),  # 0.02 < d <= 0.03: finger-close only; drawer > 0.01 bonus
    ((0.1, 0.05, -0.02), 0.04, 0.3),  # far: drawer > 0.2 (no around-handle term: OIGE bug)
    ((0.0, 0.0, 0.01), 0.0, 0.395),  # drawer > 0.39: terminated
])
def test_reward_terms_by_hand(offset, fingers, drawer):
    env = _make(num_envs=2)
    env.reset()
    _place_grasp(env, 0, np.array(offset), fingers, drawer)
    env.batch.forward()
    action = torch.linspace(-0.8, 0.8, 9).expand(2, 9).clone()
    env.actions = action.double()
    reward, terminated = env._reward_terminated(action)
    env._observe()
    frames = {k: v[0].numpy() for k, v in env.grasp_frames().items()}
    d = float(np.linalg.norm(frames["franka_grasp_pos"] - frames["drawer_grasp_pos"]))
    assert d == pytest.approx(np.linalg.norm(offset), abs=1e-4)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, frames["franka_grasp_rot"])
    rot = rot.reshape(3, 3)
    dot1, dot2 = float(rot[:, 2] @ [-1, 0, 0]), float(rot[:, 1] @ [0, 0, 1])
    assert dot1 == pytest.approx(1, abs=1e-3) and dot2 == pytest.approx(1, abs=1e-3)
    q = env.qpos[0, env.qpos_idx].numpy()
    expected = _reward_by_hand(d, dot1, dot2, drawer, q[7:], action[0].double().tolist())
    assert reward[0].item() == pytest.approx(expected, abs=1e-9)
    assert bool(terminated[0]) == (drawer > 0.39)


def test_around_handle_terms_without_the_upstream_bug():
    class Fixed(FrankaCabinet):
        reproduce_rfinger_bug = False

    env = Fixed({}, num_envs=1, num_threads=1)
    env.reset()
    # OIGE's grasp point sits 4 cm along link7's y = (0, 0.71, 0.71) from the finger base: open fingers then
    # end 1.2 cm above and 6.8 cm below the handle, i.e. around it.
    _place_grasp(env, 0, np.zeros(3), 0.04, 0.25)
    env.batch.forward()
    reward, _ = env._reward_terminated(torch.zeros(1, 9))
    frames = {k: v[0].numpy() for k, v in env.grasp_frames().items()}
    lf_z, rf_z, h_z = frames["lfinger_pos"][2], frames["rfinger_pos"][2], frames["drawer_grasp_pos"][2]
    assert lf_z > h_z > rf_z
    d = float(np.linalg.norm(frames["franka_grasp_pos"] - frames["drawer_grasp_pos"]))
    expected = _reward_by_hand(d, 1.0, 1.0, 0.25, env.qpos[0, env.qpos_idx].numpy()[7:], [0.0] * 9, lf_z, rf_z, h_z)
    assert reward[0].item() == pytest.approx(expected, abs=1e-5)
    _, terms = env.reward_terms()
    assert terms["around_handle"].item() == 0.5
    # open fingers are 8 cm apart, so this pose's finger-distance term is ~0 (its sign is rounding noise):
    # check it against the formula instead of its sign
    by_hand = (0.04 - abs(lf_z - h_z)) + (0.04 - abs(rf_z - h_z))
    assert terms["finger_dist"].item() == pytest.approx(by_hand, abs=1e-9)


def test_integrated_targets():
    env = _make(num_envs=2)
    env.reset()
    a = torch.rand(2, 9, generator=torch.Generator().manual_seed(1)) * 2 - 1
    prev = env.targets.clone()
    env.step(a)
    scale = torch.tensor([1.0] * 7 + [0.1] * 2, dtype=torch.float64)
    assert torch.allclose(env.ctrl, (prev + scale * 7.5 / 60 * a.double()).clamp(env.dof_lower, env.dof_upper))
    for _ in range(30):
        env.step(torch.ones(2, 9))
    assert torch.equal(env.targets[:, 7:], torch.full((2, 2), 0.04, dtype=torch.float64))  # clamped at the limit


def test_stable_at_rest_and_under_random_actions():
    env = _make(num_envs=2, seed=1, episodeLength=2001)  # no reset within the 1000 resting steps
    env.reset()
    q0 = env.qpos[:, env.qpos_idx].clone()
    for t in range(1000):
        out = env.step(torch.zeros(2, 9))
        assert torch.isfinite(out.obs).all()
        if t == 499:
            q_half = env.qpos[:, env.qpos_idx].clone()
    q = env.qpos[:, env.qpos_idx]
    assert (q - q0).abs().max() < 0.05  # the servos hold the arm against gravity with a small droop
    assert (q - q_half).abs().max() < 1e-6 and env.qvel.abs().max() < 1e-3  # settled
    assert (env.qpos[:, env.drawer_qpos].abs() < 1e-6).all()
    assert (env.qpos[:, env.prop_qpos_idx] - env.prop_init_qpos).abs().max() < 2e-3  # props rest in the drawer
    gen = torch.Generator().manual_seed(0)
    for _ in range(1000):
        out = env.step(torch.rand(2, 9, generator=gen) * 2 - 1)
        assert torch.isfinite(out.obs).all() and torch.isfinite(out.reward).all()
        assert env.qvel.abs().max() < 50.0
        assert out.obs.abs().max() <= 5.0


def test_gravity_acts_on_the_arm_as_in_oige():
    """OIGE's FrankaCabinet keeps gravity on the arm (it never calls ``set_franka_properties``): at rest the arm
    settles where the servo torque ``kp (q* - q)`` carries the gravity torque of the links (``qfrc_bias``)."""
    env = _make(num_envs=1, seed=2, episodeLength=2001)
    model = env.model
    robot = [model.body(f"panda_link{i}").id for i in range(1, 8)]
    robot += [model.body(name).id for name in ("panda_hand", "panda_leftfinger", "panda_rightfinger")]
    assert model.opt.gravity.tolist() == [0.0, 0.0, -9.81] and (model.body_gravcomp[robot] == 0).all()
    env.reset()
    for _ in range(600):
        env.step(torch.zeros(1, 9))
    data = env.batch.get_data(0)
    mujoco.mj_forward(model, data)
    kp = position_servo_gains(model)[0][:7]
    arm_q, arm_v = env.qpos_idx.numpy()[:7], env.qvel_idx.numpy()[:7]
    servo = kp * (env.targets[0, :7].numpy() - data.qpos[arm_q])
    assert servo == pytest.approx(data.qfrc_bias[arm_v], abs=0.05)  # static balance, N m
    assert abs(data.qfrc_bias[arm_v][1]) > 5.0  # joint 2 carries the arm's weight


def test_scripted_grasp_opens_the_drawer():
    """Physics check: IK (with gravity feed-forward) to the handle, close the fingers at half speed, pull: the
    drawer opens past 0.39 m."""
    env = _make(num_envs=1, seed=0)
    env.reset()
    model = env.model
    hand = model.body("panda_hand").id
    want = np.array([[0, 0, -1], [-1, 0, 0], [0, 1, 0.0]])
    pad = np.array([0, 0, 0.0584 + 0.03])  # between the finger pads
    arm = env.qvel_idx.numpy()[:7]
    kp = position_servo_gains(model)[0][:7]

    def step(target, finger):
        data = env.batch.get_data(0)
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        rot = data.xmat[hand].reshape(3, 3)
        point = data.xpos[hand] + rot @ pad
        jp, jr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        mujoco.mj_jac(model, data, jp, jr, point, hand)
        err = np.concatenate([target - point, 0.5 * sum(np.cross(rot[:, k], want[:, k]) for k in range(3))])
        jac = np.vstack([jp, jr])[:, arm]
        mujoco.mj_forward(model, data)
        sag = data.qfrc_bias[arm] / kp  # gravity feed-forward: the servos hold the arm kp^-1 g(q) below target
        q_des = data.qpos[env.qpos_idx.numpy()[:7]] + sag + jac.T @ np.linalg.solve(jac @ jac.T + 1e-3 * np.eye(6),
                                                                                     err)
        action = np.r_[np.clip((q_des - env.targets[0, :7].numpy()) / (7.5 / 60), -1, 1), finger, finger]
        return env.step(torch.tensor(action, dtype=torch.float32)[None])

    for _ in range(80):
        step(HANDLE + [0.15, 0, 0], 1.0)  # pre-grasp, fingers open
    for _ in range(60):
        step(HANDLE, 1.0)
    for _ in range(30):
        step(HANDLE, -0.5)  # close at half speed
    fingers = env.qpos[0, env.qpos_idx[7:]]
    assert ((fingers > 0.007) & (fingers < 0.011)).all(), fingers  # pinching the 2 cm bar
    opened = 0.0
    for t in range(250):
        out = step(HANDLE + [min(0.45, 0.003 * t), 0, 0], -0.5)
        if out.terminated.item():
            break
        opened = env.qpos[0, env.drawer_qpos].item()
    assert out.terminated.item(), f"the drawer only opened to {opened:.3f} m"


def test_runner_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = ["task=FrankaCabinet", "num_envs=2", "max_iterations=60", "train.random_steps=20",
                 "train.learning_starts=20", "train.eval_interval=0", "train.save_interval=60", "train.eval_envs=2",
                 "train.log_interval=30", "train.batch_size=32", "progress_bar=False", "torch_threads=1",
                 "sim_threads=1", "experiment=franka", "task.env.episodeLength=40", "task.env.numProps=0"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        out = run(compose("config", overrides=overrides))
    assert out["iteration"] == 60 and out["frames"] == 120
    assert (Path(out["run_dir"]) / "nn" / "franka.pth").is_file()
    assert isinstance(make_env("FrankaCabinet", {}, num_envs=1), FrankaCabinet)
