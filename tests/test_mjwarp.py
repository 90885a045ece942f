"""The embedded tasks on MuJoCo Warp (``sim=mjwarp``, ``meow_isaac/envs/mjwarp.py``) against the C engine.

Runs on warp's CPU device (no GPU here): warp compiles its kernels once with its bundled LLVM/clang into its
kernel cache (``~/.cache/warp``; minutes when cold, seconds when warm) and reuses them in later tests and runs.

Equivalence: from the same seed both engines draw the same reset noise (float64, then cast), so they start in
the same state (float32 rounding); the same action sequence is applied for ``K`` steps and obs, reward,
terminated and truncated must agree within the stated tolerances on every env whose episode has not ended yet
(after an auto-reset the engines draw different noise: the C engine for the finished envs only, MuJoCo Warp for
all envs, sync-free, keeping the others). MuJoCo Warp computes in float32, the C engine in float64; ``K`` per
task stops before contact-rich phases make the two float precisions' trajectories drift apart chaotically
(measured errors in the issue report / ``python tests/test_mjwarp.py``).
"""

from __future__ import annotations

import sys
from typing import Dict, Tuple

import pytest
import torch

import mujoco_warp  # noqa: F401  (the mjwarp extra; CI installs it: a missing one must fail, not skip)
import tasks
from meow_isaac.config import ConfigError
from meow_isaac.envs.guard import NonFiniteGuard
from meow_isaac.factory import resolve_sim
from test_no_host_sync import step_without_host_syncs

pytestmark = pytest.mark.mjwarp

N = 3  # envs per engine
# task -> (K steps, obs tolerance, reward tolerance), max abs differences on envs still in their first episode.
# Ant/Humanoid reward: the OIGE progress term is a difference of two potentials |d| / dt with |d| ~ 1000 m,
# whose float32 rounding is ~4e-3 (as in OIGE itself, which runs in float32).
CASES: Dict[str, Tuple[int, float, float]] = {
    "Hopper": (8, 1e-5, 1e-5),
    "Walker2d": (8, 5e-4, 1e-4),
    "HalfCheetah": (8, 5e-3, 1e-4),
    "InvertedPendulum": (8, 1e-5, 1e-6),
    "MujocoAnt": (2, 1e-4, 1e-4),  # RK4 + contacts: diverges at the first ground contact (step 3)
    "MujocoHumanoid": (5, 5e-4, 1e-4),
    "Ant": (6, 2e-4, 2e-2),
    "Humanoid": (6, 5e-4, 2e-2),
    "Anymal": (6, 1e-4, 1e-5),
    "AllegroHand": (3, 2e-4, 1e-4),  # finger-cube contacts: chaotic from step 4 (obs error 1e-2)
    "FrankaCabinet": (6, 1e-4, 1e-4),
    "Ingenuity": (8, 1e-5, 1e-5),
}


def make(task: str, sim: str, seed: int = 0, env_cfg=None, num_envs: int = N):
    return tasks.make_env(task, env_cfg or {}, num_envs=num_envs, seed=seed, device="cpu", num_threads=1, sim=sim)


def actions(num_steps: int, num_envs: int, action_dim: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(num_envs, action_dim, generator=gen) * 2 - 1 for _ in range(num_steps)]


def max_errors(task: str, num_steps: int) -> Tuple[float, float]:
    """Max abs obs and reward differences (C vs MuJoCo Warp) over ``num_steps`` on envs still in their first
    episode; asserts terminated/truncated agree there."""
    c, w = make(task, "mujoco"), make(task, "mjwarp")
    try:
        obs_err = float((c.reset() - w.reset()).abs().max())
        rew_err = 0.0
        alive = torch.ones(N, dtype=torch.bool)
        for a in actions(num_steps, N, c.action_dim):
            sc, sw = c.step(a), w.step(a)
            assert torch.equal(sc.terminated[alive], sw.terminated[alive]), task
            assert torch.equal(sc.truncated[alive], sw.truncated[alive]), task
            if alive.any():
                rew_err = max(rew_err, float((sc.reward - sw.reward)[alive].abs().max()))
            alive &= ~sc.done
            if alive.any():
                obs_err = max(obs_err, float((sc.obs - sw.obs)[alive].abs().max()))
        return obs_err, rew_err
    finally:
        c.close()
        w.close()


@pytest.mark.parametrize("task", list(CASES))
def test_same_trajectory_as_the_c_engine(task):
    num_steps, obs_tol, rew_tol = CASES[task]
    obs_err, rew_err = max_errors(task, num_steps)
    assert obs_err <= obs_tol and rew_err <= rew_tol, (task, obs_err, rew_err)


def test_views_are_zero_copy_and_float32():
    env = make("Ant", "mjwarp")
    assert env.qpos.dtype == torch.float32 and env.dtype == torch.float32
    env.qpos[1, 0] = 12.5  # writes into the warp array itself
    assert float(env.physics.d.qpos.numpy()[1, 0]) == 12.5
    env.close()


def test_reset_by_index_matches_the_c_engine():
    c, w = make("Ant", "mujoco"), make("Ant", "mjwarp")
    c.reset(), w.reset()
    for a in actions(3, N, c.action_dim):
        c.step(a), w.step(a)
    ids = torch.tensor([1])
    c._reset_ids(ids), w._reset_ids(ids)
    # env 1: the same fresh state (same noise draws, float32 rounding); envs 0, 2: still their trajectories
    assert float((c.qpos[1].float() - w.qpos[1]).abs().max()) < 1e-6
    assert float((c.qvel[1].float() - w.qvel[1]).abs().max()) < 1e-6
    assert float((c.qpos.float() - w.qpos).abs().max()) < 1e-4
    assert w.progress.tolist() == [3, 0, 3] == c.progress.tolist()
    # derived fields of the envs not reset stay as the last step left them (sensordata: foot wrenches)
    sensor_c, sensor_w = c.view("sensordata").float(), w.view("sensordata")
    assert float((sensor_c[1] - sensor_w[1]).abs().max()) < 1e-3
    assert float((sensor_c - sensor_w).abs().max()) < 1e-2 * (1 + float(sensor_c.abs().max()))
    c.close(), w.close()


def test_masked_reset_keeps_the_other_envs():
    w = make("Ant", "mjwarp")
    w.reset()
    for a in actions(4, N, w.action_dim):
        w.step(a)
    before = {k: v.clone() for k, v in (("qpos", w.qpos), ("qvel", w.qvel), ("actions", w.actions),
                                         ("potentials", w.potentials), ("sensordata", w.view("sensordata")))}
    obs = w.reset_envs(torch.tensor([False, True, False]))
    for k, old in before.items():
        new = getattr(w, k) if k in ("actions", "potentials") else w.view(k)
        assert torch.equal(new[[0, 2]], old[[0, 2]]), k
    assert w.qpos[1, :7].tolist() == pytest.approx([0, 0, w.start_height, 1, 0, 0, 0], abs=1e-6)
    assert float(w.qvel[1, :6].abs().max()) == 0.0 and float(w.actions[1].abs().max()) == 0.0
    assert w.progress.tolist() == [4, 0, 4] and obs.shape == (N, w.obs_dim) and torch.isfinite(obs).all()
    w.close()


def test_seeded_determinism_across_auto_resets():
    cfg = {"episodeLength": 4}  # truncates every 3 steps: several sync-free auto-resets
    runs = []
    for _ in range(2):
        env = make("Ant", "mjwarp", seed=7, env_cfg=cfg)
        out = [env.reset()]
        for a in actions(8, N, env.action_dim):
            s = env.step(a)
            out += [s.obs, s.reward, s.final_obs, s.truncated.float()]
        runs.append(torch.cat([o.reshape(-1) for o in out]))
        env.close()
    assert torch.equal(runs[0], runs[1])
    other = make("Ant", "mjwarp", seed=8, env_cfg=cfg)
    assert not torch.equal(other.reset(), runs[0][:N * other.obs_dim].view(N, -1))
    other.close()


def test_nan_from_physics_is_contained():
    env, twin = make("Ant", "mjwarp"), make("Ant", "mjwarp")
    guard = NonFiniteGuard(env)
    assert guard.reset_mode == "reset_envs"  # the sync-free partial reset
    guard.reset(), twin.reset()
    acts = actions(4, N, env.action_dim)
    for a in acts[:2]:
        guard.step(a), twin.step(a)
    env.qvel[1, 0] = float("nan")  # env 1's simulation blows up
    out = guard.step(acts[2])
    ref = twin.step(acts[2])
    assert out.valid.tolist() == [True, False, True] and torch.isfinite(out.obs).all()
    assert torch.equal(out.obs[[0, 2]], ref.obs[[0, 2]])  # the other worlds are untouched
    assert int(env.progress[1]) == 0 and torch.isfinite(env.qpos).all() and int(guard.nonfinite_env_steps) == 1
    out = guard.step(acts[3])
    assert out.valid.all() and torch.isfinite(out.obs).all()
    env.close(), twin.close()


@pytest.mark.parametrize("task", ["Ant", "MujocoHumanoid", "Anymal", "FrankaCabinet", "AllegroHand", "Ingenuity"])
def test_step_reads_nothing_on_the_host(task):
    """``step`` (task hooks, auto-reset included) makes no host read of a tensor value and no call that synchronises
    a CUDA device otherwise (``DeviceSyncOps``: a host scalar written by tensor index, a bool mask, ``nonzero``), so
    on CUDA it queues work without waiting for the GPU. The engine's own calls are not counted: on warp's CPU device
    they read their reset mask (free there); on CUDA the same calls are graph replays with no host read."""
    env = make(task, "mjwarp", env_cfg={"episodeLength": 3} if task in ("Ant", "MujocoHumanoid") else None)
    env.reset()
    acts = actions(5, N, env.action_dim)
    env.step(acts[0])  # first call: nothing special on CPU, but keep the counted steps uniform
    engine = [(env.physics, name) for name in ("reset_mask", "forward_masked", "step", "post_constraint")]
    dones = step_without_host_syncs(env, acts[1:], *engine)
    if task in ("Ant", "MujocoHumanoid"):
        assert int(dones) >= N  # the sync-free auto-reset ran
    env.close()


@pytest.mark.parametrize("sim", ["mujoco", "mjwarp"])
def test_goals_are_resampled_only_where_due(sim):
    """Ingenuity's goal every 500 steps and AllegroHand's goal on a success change in those envs only: by index
    after a host read on the C engine, by mask without one on MuJoCo Warp (``test_step_reads_nothing_on_the_host``
    covers the reads)."""
    heli = make("Ingenuity", sim)
    heli.reset()
    before = heli.targets.clone()
    heli.progress[:] = torch.tensor([499, 500, 1])  # env 1 is due this step
    heli.step(torch.zeros(N, heli.action_dim))
    changed = (heli.targets != before).any(dim=1)
    assert changed.tolist() == [False, True, False]
    torch.testing.assert_close(heli.mocap_pos[:, 0], heli.targets)
    heli.close()

    hand = make("AllegroHand", sim, env_cfg={"successTolerance": 0.5})  # the cube turns ~0.2 rad as it settles
    hand.reset()
    _, quat, _, _ = hand._object_state()
    hand.goal_rot[0] = quat[0]  # env 0 is at its goal orientation: a success (the others are > 2 rad off)
    before = hand.goal_rot.clone()
    hand.step(torch.zeros(N, hand.action_dim))
    changed = (hand.goal_rot != before).any(dim=1)
    assert changed.tolist() == [True, False, False] and float(hand.successes[0]) == 1.0
    torch.testing.assert_close(hand.mocap_quat[:, 0], hand.goal_rot)
    hand.close()


def test_sim_selection(monkeypatch):
    logs = []
    assert resolve_sim("auto", {"name": "Ant"}, log=logs.append, device="cuda:0") == "mjwarp"
    assert resolve_sim("auto", {"name": "Ant"}, log=logs.append, device="cpu") == "mujoco"
    assert resolve_sim("mjwarp", {"name": "Ant"}, log=logs.append, device="cpu") == "mjwarp"
    assert len(logs) == 2 and "mjwarp" in logs[0]
    import meow_isaac.factory as factory

    monkeypatch.setattr(factory, "mjwarp_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"mjwarp.*pip install"):
        resolve_sim("mjwarp", {"name": "Ant"}, log=logs.append)
    assert resolve_sim("auto", {"name": "Ant"}, log=logs.append, device="cuda:0") == "mujoco"


def test_missing_warp_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco_warp", None)  # import mujoco_warp -> ImportError
    with pytest.raises(ImportError, match=r"sim=mjwarp needs MuJoCo Warp.*\[mjwarp\]"):
        make("Hopper", "mjwarp")


def test_runner_without_warp_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from test_bad_config import _check_one_line, _main_in_process

    import meow_isaac.factory as factory

    monkeypatch.setattr(factory, "mjwarp_installed", lambda: False)
    work = tmp_path / "cwd"
    work.mkdir()
    code, err = _main_in_process(["sim=mjwarp"], {}, work, monkeypatch, capsys)
    line = _check_one_line(code, err, "sim='mjwarp'", work)
    assert 'pip install -e ".[mjwarp]"' in line


if __name__ == "__main__":  # the errors behind CASES: python tests/test_mjwarp.py [K]
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    for name, (k, _, _) in CASES.items():
        print(name, steps or k, "max |obs diff| %.2e, max |reward diff| %.2e" % max_errors(name, steps or k),
              flush=True)
