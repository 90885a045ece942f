"""Tests of ``tasks/allegro_hand.py`` (OIGE AllegroHand on MuJoCo) against ``isaac_tasks.md`` sections 0 and 5.

Observation and reward terms are recomputed by hand from the spec formulas on constructed hand/cube states,
with MuJoCo's own quaternion routines (``mju_mulQuat``, ``mju_rotVecQuat``) rather than the task's torch code.
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
from tasks.allegro_hand import ASSETS, AllegroHand, AllegroHandCfg
from tasks.control import position_servo_gains

from conftest import REPO

LIMITS = {  # section 5.6 (rad)
    "joint_0": (-0.5585, 0.5585), "joint_1": (-0.2792, 1.7278), "joint_2": (-0.2792, 1.7278),
    "joint_3": (-0.2792, 1.7278), "thumb_joint_0": (0.2792, 1.5708), "thumb_joint_1": (-0.3316, 1.1519),
    "thumb_joint_2": (-0.2792, 1.7278), "thumb_joint_3": (-0.2792, 1.7627)}
CUP = [0.0, 0.0, 0.0, 1.2, 0.3, 0.3, 0.3, 0.6, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]  # rad, a cradling grasp


def _make(num_envs=2, seed=0, **cfg):
    return make_env("AllegroHand", cfg, num_envs=num_envs, seed=seed, num_threads=1)


def _action_for(env, targets):
    """The absolute-control action whose PD targets are ``targets`` (N, 16)."""
    lo, hi = env.dof_lower, env.dof_upper
    return ((2 * (targets - lo) / (hi - lo) - 1).clamp(-1, 1)).to(torch.float32)


def _mj(fn, *args, size=4):
    out = np.zeros(size)
    fn(out, *[np.asarray(a, dtype=np.float64) for a in args])
    return out


def test_model_loads_without_warnings_and_matches_the_spec():
    messages = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(messages.append)
    try:
        model = mujoco.MjModel.from_xml_path(str(ASSETS / "allegro_hand.xml"))
        data = mujoco.MjData(model)
        rng = np.random.default_rng(0)
        lo, hi = model.jnt_range[model.actuator_trnid[:, 0]].T
        for t in range(600):
            if t % 4 == 0:
                data.ctrl[:] = rng.uniform(lo, hi)
            mujoco.mj_step(model, data)
    finally:
        mujoco.set_mju_user_warning(previous)
    assert messages == [] and all(w.number == 0 for w in data.warning)
    assert model.opt.timestep == pytest.approx(1 / 120)
    hand = [b for b in range(model.nbody) if model.body_rootid[b] == model.body("allegro_mount").id]
    assert model.body_mass[hand].sum() == pytest.approx(1.022, abs=1e-3)  # section 5.6 masses
    assert (model.body_gravcomp[hand] == 1).all()  # no gravity on the hand (5.1)
    assert model.body("object").mass[0] == pytest.approx(0.07087)
    assert model.geom("object").size.tolist() == pytest.approx([0.025] * 3)  # 5 cm cube
    kp, kd, limit = position_servo_gains(model)
    assert kp.tolist() == [3.0] * 16 and kd.tolist() == pytest.approx([0.1] * 16) and limit.tolist() == [0.5] * 16
    jnt = model.actuator_trnid[:, 0]
    assert model.dof_frictionloss[model.jnt_dofadr[jnt]].tolist() == [0.01] * 16
    for j in jnt:
        name = model.joint(j).name
        key = name if name.startswith("thumb") else name.split("_", 1)[1]
        assert model.jnt_range[j].tolist() == pytest.approx(LIMITS[key], abs=1e-4), name
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    assert data.xpos[model.body("allegro_mount").id].tolist() == pytest.approx([0, 0, 0.5])
    assert data.xpos[model.body("object").id].tolist() == pytest.approx([0, -0.2, 0.56])
    # The palm faces up: finger flexion moves the fingertips towards +z.
    tips0 = data.geom_xpos[model.geom("middle_tip").id].copy()
    data.qpos[model.jnt_qposadr[model.joint("middle_joint_1").id]] = 0.5
    mujoco.mj_forward(model, data)
    assert data.geom_xpos[model.geom("middle_tip").id][2] > tips0[2] + 0.02


def test_finger_geometry_is_the_touch_sensor_hand():
    """Fingertips end where the touch-sensor tips of the URDF's meshes end (0.0622 m past joint 3, thumb 0.0771 m;
    IsaacGymEnvs meshes/touchsensor/collision/*tip.obj), and the links are the meshes' 25-29 mm thick."""
    model = mujoco.MjModel.from_xml_path(str(ASSETS / "allegro_hand.xml"))

    def reach(name):  # farthest point of a capsule along its body's x axis
        geom = model.geom(name)
        axis = _mj(mujoco.mju_rotVecQuat, np.array([0.0, 0.0, 1.0]), geom.quat, size=3)
        return geom.pos[0] + abs(axis[0]) * geom.size[1] + geom.size[0]

    for finger in ("index", "middle", "ring", "thumb"):
        assert reach(f"{finger}_tip") == pytest.approx(0.0771 if finger == "thumb" else 0.0622, abs=5e-4), finger
        assert model.geom(f"{finger}_tip").bodyid[0] == model.body(f"{finger}_link_3").id
        for link in (2, 3) if finger == "thumb" else (1, 2, 3):
            assert 0.024 <= 2 * model.geom(f"{finger}_{link}").size[0] <= 0.029, (finger, link)


def test_dims_timing_and_config():
    env = _make()
    assert (env.obs_dim, env.action_dim) == (72, 16)
    assert env.reset().shape == (2, 72)
    assert env.dt == pytest.approx(1 / 30) and env.frame_skip == 4
    assert env.max_episode_length == 599
    assert _make(observationType="full_no_vel").obs_dim == 50
    with pytest.raises(ValueError, match=r"'fallDistanse'.*fallDistance"):
        _make(fallDistanse=0.3)
    with pytest.raises(ValueError, match="observationType"):
        _make(observationType="full_state")
    with pytest.raises(ValueError, match="useRelativeControl"):
        _make(useRelativeControl="yes")


def test_task_yaml_env_matches_the_class_defaults():
    env = yaml.safe_load((Path(REPO) / "cfg" / "task" / "AllegroHand.yaml").read_text())["env"]
    env.pop("numEnvs")
    assert AllegroHandCfg.from_dict(env) == AllegroHandCfg()


def test_reset_distribution():
    env = _make(num_envs=256, seed=3)
    obs = env.reset()
    lo, hi = env.dof_lower, env.dof_upper
    q = env.qpos[:, env.qpos_idx]
    u = (q / 0.2 - lo) / (hi - lo)  # q = 0.2 * (lo + (hi - lo) U(0, 1)), not clamped
    assert ((u >= 0) & (u <= 1)).all() and abs(u.mean().item() - 0.5) < 0.03
    assert (q[:, 3] < lo[3]).any(), "thumb_joint_0 starts below its limit, as in OIGE"
    assert torch.equal(env.ctrl, q) and torch.equal(env.prev_targets, q)
    assert (env.qvel == 0).all()
    a = env.obj_qpos
    pos, quat = env.qpos[:, a:a + 3], env.qpos[:, a + 3:a + 7]
    assert ((pos - torch.tensor([0, -0.2, 0.56], dtype=torch.float64)).abs() <= 0.01).all()
    for rot in (quat, env.goal_rot):  # q_x(pi u0) * q_y(pi u1): w z == x y, |q| = 1, u0, u1 spread over [-1, 1]
        w, x, y, z = rot.unbind(1)
        assert torch.allclose(w * z, x * y, atol=1e-12)
        assert torch.allclose(rot.norm(dim=1), torch.ones(256, dtype=torch.float64))
        u0 = torch.atan2(x, w) * 2 / math.pi  # angle about x (w = c0 c1, x = s0 c1 with c1 >= 0)
        assert u0.min() < -0.9 and u0.max() > 0.9
    assert not torch.allclose(quat, env.goal_rot)
    assert torch.equal(env.mocap_quat[:, 0], env.goal_rot)
    assert (obs[:, 56:] == 0).all() and (obs[:, 16:32] == 0).all()


def _set_state(env, i, q, qd, pos, quat, lin_vel, ang_vel_world, goal_quat):
    f64 = dict(dtype=torch.float64)
    a, b = env.obj_qpos, env.obj_qvel
    env.qpos[i, env.qpos_idx] = torch.tensor(q, **f64)
    env.qvel[i, env.qvel_idx] = torch.tensor(qd, **f64)
    env.qpos[i, a:a + 3] = torch.tensor(pos, **f64)
    env.qpos[i, a + 3:a + 7] = torch.tensor(quat, **f64)
    env.qvel[i, b:b + 3] = torch.tensor(lin_vel, **f64)
    body_w = _mj(mujoco.mju_rotVecQuat, ang_vel_world, _mj(mujoco.mju_negQuat, quat), size=3)  # world -> body
    env.qvel[i, b + 3:b + 6] = torch.tensor(body_w, **f64)
    env.goal_rot[i] = torch.tensor(goal_quat, **f64)


def _quat(axis, angle):
    """Unit quaternion (w, x, y, z) of ``angle`` [rad] about ``axis``."""
    out = np.zeros(4)
    mujoco.mju_axisAngle2Quat(out, np.asarray(axis, dtype=np.float64), angle)
    return out


def test_observation_and_reward_terms_by_hand():
    env = _make(num_envs=2)
    env.reset()
    lo, hi = env.dof_lower.numpy(), env.dof_upper.numpy()
    q = lo + (hi - lo) * np.linspace(0.05, 0.95, 16)
    qd = np.linspace(-3, 3, 16)
    pos = [0.03, -0.15, 0.5]
    goal = _quat([0, 1, 0], 0.9)
    quat = _mj(mujoco.mju_mulQuat, _quat([1, 0, 0], 0.4), _quat([0, 0, 1], -0.7))
    lin_vel, ang_vel = [0.1, -0.2, 0.3], [1.0, -2.0, 0.5]
    _set_state(env, 0, q, qd, pos, quat, lin_vel, ang_vel, goal)
    action = torch.linspace(-0.9, 0.9, 16).expand(2, 16).clone()
    env.actions = action.double()
    env.batch.forward()
    reward, terminated = env._reward_terminated(action)
    obs = env._observe()[0].numpy()

    diff = _mj(mujoco.mju_mulQuat, quat, _mj(mujoco.mju_negQuat, goal))
    expected = np.concatenate([(2 * q - hi - lo) / (hi - lo), 0.2 * qd, pos, quat, lin_vel, 0.2 * np.array(ang_vel),
                               [0, -0.2, 0.52], goal, diff, action[0].numpy()])
    assert obs == pytest.approx(np.clip(expected, -5, 5), abs=1e-6)
    assert (obs[16:32] == pytest.approx(np.clip(0.2 * qd, -5, 5), abs=1e-9))
    goal_dist = np.linalg.norm(np.array(pos) - [0, -0.2, 0.52])
    rot_dist = 2 * math.asin(min(np.linalg.norm(diff[1:]), 1.0))
    # rot_dist is the angle between the two orientations (independent check via the relative rotation)
    rel = np.zeros(3)
    mujoco.mju_subQuat(rel, quat, goal)
    assert rot_dist == pytest.approx(np.linalg.norm(rel), abs=1e-9)
    r = -10 * goal_dist + 1 / (rot_dist + 0.1) - 0.0002 * float((action[0].double() ** 2).sum())
    assert reward[0].item() == pytest.approx(r, abs=1e-9)
    assert rot_dist > 0.1 and goal_dist < 0.24 and not terminated[0]
    assert env.successes[0] == 0


def test_success_bonus_resamples_the_goal_and_continues():
    env = _make(num_envs=2, seed=5)
    env.reset()
    goal = env.goal_rot[0].numpy().copy()
    a = env.obj_qpos
    env.qpos[0, a:a + 3] = torch.tensor([0.0, -0.2, 0.53], dtype=torch.float64)
    env.qpos[0, a + 3:a + 7] = torch.tensor(_mj(mujoco.mju_mulQuat, goal, _quat([0, 0, 1], 0.05)))  # 0.05 rad off
    env.actions.zero_()
    reward, terminated = env._reward_terminated(torch.zeros(2, 16))
    obs = env._observe()
    assert reward[0].item() == pytest.approx(-10 * 0.01 + 1 / (0.05 + 0.1) + 250, abs=1e-6)
    assert not terminated[0] and env.successes.tolist() == [1.0, 0.0]
    assert not np.allclose(env.goal_rot[0].numpy(), goal)  # re-sampled at once ...
    assert torch.allclose(obs[0, 48:52], env.goal_rot[0])  # ... and shown in the returned observation
    assert torch.equal(env.mocap_quat[0, 0], env.goal_rot[0])


def test_fall_terminates_and_auto_resets():
    env = _make(num_envs=3, fallPenalty=-7.0)
    env.reset()
    a = env.obj_qpos
    env.qpos[:, a + 2] = 0.2  # 0.32 m below the goal: the cube has fallen
    out = env.step(torch.zeros(3, 16))
    assert out.terminated.all() and not out.truncated.any()
    assert (out.reward < -1.0).all() and out.episode_length.tolist() == [1, 1, 1]
    assert (out.final_obs[:, 34] < 0.25).all()  # terminal object z
    assert torch.allclose(out.obs[:, 34], torch.tensor(0.56), atol=0.011)  # reset object z


def test_consecutive_success_cap_and_timeout():
    env = _make(num_envs=2, maxConsecutiveSuccesses=1, fallPenalty=-4.0, episodeLength=5)
    env.reset()
    a = env.obj_qpos
    env.progress[:] = 3
    env.qpos[0, a:a + 3] = torch.tensor([0.0, -0.2, 0.52], dtype=torch.float64)
    env.qpos[0, a + 3:a + 7] = env.goal_rot[0]
    env.qpos[1, a:a + 3] = torch.tensor([0.0, -0.2, 0.52], dtype=torch.float64)
    env.progress[:] = 4  # as after the base class's increment of the last step
    reward, terminated = env._reward_terminated(torch.zeros(2, 16))
    env._observe()
    assert terminated.tolist() == [True, False]  # env 0 reached the cap of 1 success
    assert env.progress.tolist() == [0, 4]  # a success restarts the clock
    assert reward[1].item() == pytest.approx(-10 * 0.0 + 1 / (env.reward_terms()["rot_dist"][1].item() + 0.1)
                                             + 0.5 * -4.0, abs=1e-6)  # timeout penalty at progress >= 4
    assert env.consecutive_successes.item() == pytest.approx(0.1 * 0.5)


def test_truncation_at_episode_length_minus_one():
    env = _make(num_envs=2, episodeLength=6, fallDistance=10.0)
    env.reset()
    for t in range(1, 6):
        out = env.step(torch.zeros(2, 16))
        assert not out.terminated.any() and out.truncated.all() == (t == 5)
    assert out.episode_length.tolist() == [5, 5]


def test_action_to_pd_targets():
    env = _make(num_envs=2)
    env.reset()
    lo, hi = env.dof_lower, env.dof_upper
    a = torch.rand(2, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    env.step(a)
    assert torch.allclose(env.ctrl, lo + (a.double() + 1) * (hi - lo) / 2)
    smooth = _make(num_envs=2, actionsMovingAverage=0.25)
    smooth.reset()
    prev = smooth.prev_targets.clone()
    smooth.step(a)
    assert torch.allclose(smooth.ctrl, (0.25 * (lo + (a.double() + 1) * (hi - lo) / 2) + 0.75 * prev).clamp(lo, hi))
    rel = _make(num_envs=2, useRelativeControl=True)
    rel.reset()
    prev = rel.prev_targets.clone()
    rel.step(a)
    assert torch.allclose(rel.ctrl, (prev + 20.0 / 60.0 * a.double()).clamp(lo, hi))


def test_hand_holds_and_turns_the_cube():
    """Contact check: a cradling grasp holds the cube for a whole episode; waving the fingers turns it."""
    env = _make(num_envs=2, seed=0)
    env.reset()
    a = env.obj_qpos
    env.qpos[:, a:a + 7] = torch.tensor([0, -0.2, 0.56, 1, 0, 0, 0], dtype=torch.float64)  # cube upright
    env.batch.forward()
    cup = torch.tensor(CUP, dtype=torch.float64)
    phase = torch.arange(16, dtype=torch.float64) / 8
    start = env.qpos[:, a + 3:a + 7].clone()
    for t in range(598):
        targets = cup.expand(2, 16).clone()
        targets[1] += 0.3 * torch.sin(2 * math.pi * (t / 30 * phase))  # env 1 waves its fingers
        out = env.step(_action_for(env, targets))
        assert not out.terminated.any(), f"the cube fell at step {t}"
    assert (env.reward_terms()["goal_dist"] < 0.1).all()
    turned = [2 * math.acos(min(1.0, abs(float(start[i] @ env.qpos[i, a + 3:a + 7])))) for i in range(2)]
    assert turned[1] > 0.5, turned


def test_stable_at_rest_and_under_random_actions():
    env = _make(num_envs=2, seed=2)
    env.reset()
    rest = _action_for(env, env.prev_targets.clamp(env.dof_lower, env.dof_upper))
    for _ in range(1000):  # hold the reset targets: the hand settles and stays still
        out = env.step(rest)
        assert torch.isfinite(out.obs).all()
    assert env.qvel[:, env.qvel_idx].abs().max() < 0.05
    gen = torch.Generator().manual_seed(0)
    for _ in range(1000):
        out = env.step(torch.rand(2, 16, generator=gen) * 2 - 1)
        assert torch.isfinite(out.obs).all() and torch.isfinite(out.reward).all()
        assert env.qvel.abs().max() < 100.0  # rad/s, m/s
        assert out.obs.abs().max() <= 5.0 and out.reward.abs().max() < 300.0


def test_seeded_determinism():
    def rollout(seed):
        env = _make(num_envs=3, seed=seed)
        obs = [env.reset()]
        gen = torch.Generator().manual_seed(4)
        for _ in range(40):
            out = env.step(torch.rand(3, 16, generator=gen) * 2 - 1)
            obs += [out.obs, out.reward[:, None]]
        return torch.cat(obs, 1)

    assert torch.equal(rollout(7), rollout(7)) and not torch.equal(rollout(7), rollout(8))


def test_runner_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = ["task=AllegroHand", "num_envs=2", "max_iterations=60", "train.random_steps=20",
                 "train.learning_starts=20", "train.eval_interval=0", "train.save_interval=60", "train.eval_envs=2",
                 "train.log_interval=30", "train.batch_size=32", "progress_bar=False", "torch_threads=1",
                 "sim_threads=1", "experiment=allegro", "task.env.episodeLength=40"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        out = run(compose("config", overrides=overrides))
    assert out["iteration"] == 60 and out["frames"] == 120
    assert (Path(out["run_dir"]) / "nn" / "allegro.pth").is_file()
    assert isinstance(make_env("AllegroHand", {}, num_envs=1), AllegroHand)
