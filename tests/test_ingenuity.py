"""Tests of ``tasks/ingenuity.py`` (OIGE Ingenuity on MuJoCo) against ``isaac_tasks.md`` sections 0 and 7.

Thrust, observation and reward are recomputed by hand (numpy, independent of the task code) on constructed
root poses, velocities, goals and actions.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from tasks import make_env
from tasks.ingenuity import ASSETS, Ingenuity

MASS = 1.5  # kg, section 7.5 (chassis 0.0864 + 2 x 0.7069)
G_MARS = 3.721  # m/s^2


def _make(num_envs=4, seed=0, **cfg):
    return make_env("Ingenuity", cfg, num_envs=num_envs, seed=seed, num_threads=1)


def _quat(yaw, pitch, roll):
    q = np.zeros(4)
    mujoco.mju_euler2Quat(q, np.array([roll, pitch, yaw]), "XYZ")
    return q


def _mat(q):
    m = np.zeros(9)
    mujoco.mju_quat2Mat(m, np.asarray(q, dtype=np.float64))
    return m.reshape(3, 3)


def _hover_action(n, mass=MASS):
    """Vertical action per rotor that balances Mars gravity: 2 rotors x 20 N x a = m g."""
    a = torch.zeros(n, 6, dtype=torch.float64)
    a[:, 2] = a[:, 5] = mass * G_MARS / 40.0
    return a


def test_model_loads_without_warnings_with_spec_mass_and_mars_gravity():
    messages = []
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(messages.append)
    try:
        model = mujoco.MjModel.from_xml_path(str(ASSETS / "ingenuity.xml"))
        data = mujoco.MjData(model)
        rng = np.random.default_rng(0)
        rotors = [model.body(f"rotor_physics_{k}").id for k in range(2)]
        for _ in range(500):
            data.xfrc_applied[rotors, :3] = rng.uniform(-4, 4, (2, 3)) + [0, 0, 4]
            mujoco.mj_step(model, data)
    finally:
        mujoco.set_mju_user_warning(previous)
    assert messages == [] and all(w.number == 0 for w in data.warning)
    assert model.body("chassis").mass[0] == pytest.approx(0.0864)
    assert model.body("rotor_physics_0").mass[0] == pytest.approx(0.7069, abs=1e-4)
    assert model.body_mass.sum() == pytest.approx(MASS, abs=1e-3)
    assert model.opt.gravity.tolist() == [0.0, 0.0, -G_MARS] and model.opt.timestep == 0.01
    assert model.nu == 0 and model.nq == 7  # free root only; thrusts are applied forces


def test_dims_timing_and_episode_length():
    env = _make()
    assert (env.obs_dim, env.action_dim) == (13, 6)
    assert env.reset().shape == (4, 13)
    assert env.frame_skip == 1 and env.dt == pytest.approx(0.01)  # 100 Hz
    assert env.max_episode_length == 1999
    short = _make(num_envs=2, maxEpisodeLength=6)
    short.reset()
    short.qpos[:, 2] = 5.0  # high above the 0.5 m floor of the episode
    for t in range(1, 6):
        out = short.step(_hover_action(2))
        assert not out.terminated.any() and out.truncated.all() == (t == 5)


def test_thrust_law_world_frame_forces():
    env = _make(num_envs=3)
    env.reset()
    a = torch.tensor([[0.5, -1.0, 0.25, 1.0, 2.0, -0.5],  # clamped action entries are clipped to [-1, 1] first
                      [0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
                      [-0.3, 0.7, -1.0, 0.1, -0.1, 0.0]])
    env._apply_action(a.clamp(-1, 1))
    an = a.clamp(-1, 1).double().numpy()
    for i in range(3):
        for k in range(2):
            fz = 0.01 * np.clip(2000 * an[i, 3 * k + 2], -2000, 2000)
            lat = np.clip(0.2 * an[i, 3 * k:3 * k + 2], -0.2, 0.2)
            force = env.xfrc_applied[i, env.rotor_ids[k], :3].numpy()
            assert force == pytest.approx([fz * lat[0], fz * lat[1], fz], abs=1e-12)
            assert (env.xfrc_applied[i, env.rotor_ids[k], 3:] == 0).all()
    assert env.xfrc_applied[1, env.rotor_ids, 2].tolist() == [20.0, 20.0]  # |Fz| <= 20 N per rotor
    # world frame: a pure vertical thrust on a craft tilted by 30 deg accelerates its centre of mass straight up
    # (body-frame thrust would push it sideways at 40 N x sin 30 deg / 1.5 kg = 13 m/s^2)
    env = _make(num_envs=1)
    env.reset()
    env.qpos[0, 3:7] = torch.as_tensor(_quat(0.4, 0.0, math.radians(30)))
    env.qpos[0, 2] = 3.0
    env.batch.forward()
    env.step(torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 1.0]]))
    model, data = env.batch.get_model(0), env.batch.get_data(0)
    mujoco.mj_forward(model, data)
    mujoco.mj_subtreeVel(model, data)
    acc = data.subtree_linvel[model.body("chassis").id] / 0.01  # started at rest
    assert acc[:2] == pytest.approx([0.0, 0.0], abs=0.01)  # vs 13 m/s^2 for a body-frame thrust
    assert acc[2] == pytest.approx(40.0 / model.body_mass.sum() - G_MARS, rel=1e-3)


def test_hovers_stably_for_1000_steps():
    env = _make(num_envs=4, seed=1)
    env.reset()
    z0 = env.qpos[:, :3].clone()
    a = _hover_action(4, env.model.body_mass.sum())
    for _ in range(1000):
        out = env.step(a)
        assert torch.isfinite(out.obs).all() and not out.done.any()
    assert (env.qpos[:, :3] - z0).abs().max() < 0.01  # m
    assert env.qvel.abs().max() < 1e-3
    assert torch.allclose(env.qpos[:, 3:7], torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(4, 4))


def test_random_actions_are_stable_for_1000_steps():
    env = _make(num_envs=16, seed=2)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    ends = 0
    for _ in range(1000):
        out = env.step(torch.rand(16, 6, generator=gen) * 2 - 1)
        assert torch.isfinite(out.obs).all() and torch.isfinite(out.reward).all()
        assert env.qvel.abs().max() < 20.0  # m/s, rad/s (measured max ~4)
        assert out.obs.abs().max() <= 5.0
        assert ((out.reward > 0) & (out.reward <= 3.0)).all()
        ends += int(out.terminated.sum())
    assert ends > 0


def test_reset_distribution():
    env = _make(num_envs=1024, seed=3)
    obs = env.reset()
    pos = env.qpos[:, :3]
    for j, centre in enumerate((0.0, 0.0, 1.0)):
        assert pos[:, j].min() >= centre - 0.5 and pos[:, j].max() <= centre + 0.5
        assert pos[:, j].std().item() == pytest.approx(1 / math.sqrt(12), rel=0.08)
    assert torch.equal(env.qpos[:, 3:7], torch.tensor([1.0, 0, 0, 0], dtype=torch.float64).expand(1024, 4))
    assert (env.qvel == 0).all()
    t = env.targets
    for j, (lo, hi) in enumerate([(-1, 1), (-1, 1), (1, 2)]):
        assert t[:, j].min() >= lo and t[:, j].max() <= hi
        assert t[:, j].mean().item() == pytest.approx((lo + hi) / 2, abs=0.05 * (hi - lo))
    assert torch.equal(env.mocap_pos[:, 0], t)  # the goal ball follows
    assert torch.allclose(obs[:, :3], ((t - pos) / 3).float()) and (obs[:, 7:] == 0).all()


def test_targets_are_resampled_every_500_steps():
    env = _make(num_envs=5, seed=4)
    env.reset()
    env.qpos[:, 2] = 5.0
    first = env.targets.clone()
    env.progress[:] = torch.tensor([0, 498, 499, 500, 1000])  # before the physics of this step
    env.step(_hover_action(5))
    changed = (env.targets != first).any(1)
    assert changed.tolist() == [False, False, False, True, True]  # progress 0: the reset's goal is kept
    assert torch.equal(env.mocap_pos[:, 0], env.targets)
    assert ((env.targets[:, 2] >= 1) & (env.targets[:, 2] <= 2)).all()


CASES = {  # root position, goal, (yaw, pitch, roll), world linear velocity, body angular velocity
    "near": ((0.2, -0.1, 1.3), (0.5, 0.3, 1.6), (0.3, 0.1, -0.2), (0.5, -0.4, 0.2), (0.3, -0.5, 1.2)),
    "far_tilted": ((4.0, -9.0, 0.9), (-1.0, 1.0, 1.5), (2.0, 0.6, 0.9), (3.0, 8.0, -2.0), (2.0, 1.0, -4.0)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reward_and_obs_by_hand(case):
    env = _make(num_envs=2)
    env.reset()
    pos, goal, (yaw, pitch, roll), v, w_body = (np.array(x, dtype=np.float64) if i != 2 else x
                                                for i, x in enumerate(CASES[case]))
    quat = _quat(yaw, pitch, roll)
    env.qpos[0, :3] = torch.as_tensor(pos)
    env.qpos[0, 3:7] = torch.as_tensor(quat)
    env.qvel[0, :3] = torch.as_tensor(v)
    env.qvel[0, 3:6] = torch.as_tensor(w_body)
    env.targets[0] = torch.as_tensor(goal)
    reward, terminated = env._reward_terminated(torch.zeros(2, 6))
    obs = env._observe()[0].numpy()

    R = _mat(quat)
    w = R @ w_body  # world angular velocity
    d = np.linalg.norm(goal - pos)
    pos_r = 1 / (1 + 2.5 * d * d)
    tilt = abs(1 - R[2, 2])
    up_r = 1 / (1 + 30 * tilt * tilt)
    spin_r = 1 / (1 + 10 * w[2] ** 2)
    assert reward[0].item() == pytest.approx(pos_r + pos_r * (up_r + spin_r), rel=1e-12)
    assert not terminated[0]
    expected_obs = np.concatenate([(goal - pos) / 3, quat, v / 2, w / math.pi]).clip(-5, 5)
    assert obs == pytest.approx(expected_obs, abs=1e-6)
    if case == "far_tilted":
        assert abs(w[2] - w_body[2]) > 0.5  # the world-frame spin differs from the body-frame one
        assert obs[7:13].max() > 0 and np.abs(obs).max() <= 5.0


def test_termination_far_from_goal_or_low():
    env = _make(num_envs=4)
    env.reset()
    env.targets[:] = torch.tensor([0.0, 0.0, 1.5], dtype=torch.float64)
    env.qpos[:, :3] = torch.tensor([[0.0, 0.0, 0.49], [0.0, 0.0, 0.51], [20.1, 0.0, 1.5], [19.9, 0.0, 1.5]],
                                   dtype=torch.float64)
    env.batch.forward()
    _, terminated = env._reward_terminated(torch.zeros(4, 6))
    env._observe()
    assert terminated.tolist() == [True, False, True, False]


def test_env_cfg_errors():
    with pytest.raises(ValueError, match=r"'maxEpisodeLen'.*maxEpisodeLength.*clipObservations"):
        _make(maxEpisodeLen=10)
    with pytest.raises(ValueError, match=r"'maxEpisodeLength'=10.5.*integer"):
        _make(maxEpisodeLength=10.5)
    assert _make(clipObservations=1.0).reset().abs().max() <= 1.0


def test_seeded_determinism():
    def rollout(seed):
        env = _make(num_envs=4, seed=seed)
        obs = [env.reset()]
        gen = torch.Generator().manual_seed(5)
        for _ in range(120):  # includes crashes and auto-resets
            out = env.step(torch.rand(4, 6, generator=gen) * 2 - 1)
            obs += [out.obs, out.reward[:, None]]
        return torch.cat(obs, 1)

    assert torch.equal(rollout(7), rollout(7))
    assert not torch.equal(rollout(7)[:, :13], rollout(8)[:, :13])


def test_registry_and_runner_end_to_end(tmp_path, monkeypatch):
    from hydra import compose, initialize_config_dir

    from meow_isaac.runner import config_dir, run

    assert isinstance(_make(num_envs=1), Ingenuity)
    monkeypatch.chdir(tmp_path)
    overrides = ["task=Ingenuity", "num_envs=2", "max_iterations=40", "train.random_steps=20",
                 "train.learning_starts=20", "train.batch_size=32", "train.eval_interval=0", "train.eval_envs=1",
                 "train.log_interval=20", "progress_bar=False", "torch_threads=1", "sim_threads=1",
                 "experiment=ingenuity_e2e", "task.env.maxEpisodeLength=30"]
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        out = run(compose("config", overrides=overrides))
    assert out["iteration"] == 40 and out["frames"] == 80
    assert (tmp_path / "runs" / "ingenuity_e2e" / "nn" / "ingenuity_e2e.pth").is_file()
