"""The Isaac Lab adapter against the REAL Isaac Lab 3.0 (kit-less, Newton MuJoCo-Warp physics, ``device=cpu``).

Runs only in ``scripts/ci_isaaclab3.sh`` (marker ``isaaclab3``): a Python 3.12 venv with ``isaaclab==3.0.0`` and
this project, ``ISAACSIM_ASSET_ROOT`` pointing at the local asset tree (``python -m
meow_isaac.envs.isaaclab_assets OUT_DIR``, no download at run time). The main suite deselects these tests where
Isaac Lab is not installed (``tests/conftest.py``). Checked against NVIDIA's own code:

* the ``StepOut`` contract over several hundred steps with short episodes: ``final_obs`` is the env's true
  pre-reset observation (taken from a hook on the env's ``_reset_idx``, independent of ``extras``),
  terminated/truncated are the env's ``terminated`` / ``time_outs`` (``truncated &= ~terminated``), exactly the
  valid rows reach the replay buffer, and episode returns are the sums of the env's raw rewards;
* what the fakes claim about 3.0 (``extras["final_obs"]`` only on reset steps, one persistent dict);
* NaN injected into the env's observation is contained by ``NonFiniteGuard`` as on the other backends;
* ``runner.py task=<T> sim=isaaclab device=cpu`` for the five tasks (train, checkpoint, resume, play).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO

pytestmark = pytest.mark.isaaclab3

CONTRACT_STEPS = 300
N = 16
GYM_IDS = {"Ant": "Isaac-Ant-Direct", "Humanoid": "Isaac-Humanoid-Direct", "Anymal": "Isaac-Velocity-Flat-AnymalD",
           "AllegroHand": "Isaac-Reorient-Cube-Allegro-Direct", "FrankaCabinet": "Isaac-Open-Drawer-Franka-Direct"}


def _require_assets():
    root = os.environ.get("ISAACSIM_ASSET_ROOT", "")
    assert root and Path(root).is_dir(), (
        "ISAACSIM_ASSET_ROOT must name the local asset tree (scripts/ci_isaaclab3.sh writes it with "
        "python -m meow_isaac.envs.isaaclab_assets OUT_DIR); Isaac Lab would download NVIDIA's otherwise")
    return root


def _section(task, episode_length_s):
    from omegaconf import OmegaConf

    sec = OmegaConf.to_container(OmegaConf.load(f"{REPO}/cfg/task/{task}.yaml")["isaaclab"], resolve=True)
    sec["env_cfg"] = {"episode_length_s": episode_length_s}
    return sec


class Recorder:
    """Hooks on the raw env: what ``step`` returned (cloned) and the true obs of each env just before its reset."""

    def __init__(self, raw):
        self.raw, self.steps, self.pre_reset, self.last_final = raw, [], None, None
        self._step, self._reset_idx = raw.step, raw._reset_idx
        raw.step, raw._reset_idx = self.step, self.reset_idx
        self.extras_ids = set()

    def undo(self):
        del self.raw.step, self.raw._reset_idx  # the instance attributes: the class methods again

    def obs_now(self):
        if hasattr(self.raw, "observation_manager"):  # manager-based (ANYmal-D)
            return self.raw.observation_manager.compute()["policy"].clone()
        return self.raw._get_observations()["policy"].clone()

    def reset_idx(self, env_ids, *args, **kwargs):
        if self.pre_reset is not None:
            ids = torch.as_tensor(env_ids, dtype=torch.long).reshape(-1).cpu()
            self.pre_reset[ids] = self.obs_now()[ids].cpu()
        return self._reset_idx(env_ids, *args, **kwargs)

    def step(self, action):
        self.pre_reset = torch.full((self.raw.num_envs, self.obs_dim), float("nan"))
        obs, rew, terminated, time_outs, extras = self._step(action)
        self.extras_ids.add(id(extras))
        final = extras.get("final_obs")  # a reference is kept, so a new object cannot reuse the old one's id
        self.steps.append({"obs": obs["policy"].clone().cpu(), "reward": rew.clone().cpu(),
                           "terminated": terminated.clone().cpu(), "time_outs": time_outs.clone().cpu(),
                           "final_obs_written": final is not None and final is not self.last_final,
                           "pre_reset": self.pre_reset})
        self.last_final = final
        self.pre_reset = None
        return obs, rew, terminated, time_outs, extras


@pytest.fixture(scope="module")
def ant_env():
    """One real Isaac-Ant-Direct through the adapter (one simulation per process), 0.5 s = 30-step episodes."""
    _require_assets()
    from meow_isaac.envs import isaaclab

    env = isaaclab.make(_section("Ant", 0.5), N, 0, torch.device("cpu"))
    yield env
    env.close()


@pytest.mark.xdist_group(name="ant_env")  # one env for both (pytest -n 2 --dist loadgroup in scripts/ci_isaaclab3.sh)
def test_contract_against_the_real_env(ant_env):
    from meow_isaac.replay import ReplayBuffer

    env = ant_env
    raw = env.env.unwrapped
    assert type(raw).__module__.startswith("isaaclab_tasks.") and raw.cfg.compute_final_obs
    rec = Recorder(raw)
    rec.obs_dim = env.obs_dim
    buf = ReplayBuffer(N, CONTRACT_STEPS + 1, env.obs_dim, env.action_dim, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    obs = env.reset()
    returns, lengths = torch.zeros(N), torch.zeros(N, dtype=torch.long)
    counts = {"done": 0, "terminated": 0, "truncated": 0, "stored": 0}
    expected_next = []
    termination_height = raw.cfg.termination_height
    for t in range(CONTRACT_STEPS):
        if t == CONTRACT_STEPS // 2:  # random actions rarely topple the Ant: from here on, half the envs die
            raw.cfg.termination_height = float(raw.torso_position[:, 2].median())
        action = torch.rand(N, env.action_dim, generator=gen) * 2.4 - 1.2
        out = env.step(action)
        raw_t = rec.steps[-1]
        done = raw_t["terminated"] | raw_t["time_outs"]
        assert torch.equal(out.obs, raw_t["obs"])
        assert torch.equal(out.reward, raw_t["reward"])
        assert torch.equal(out.terminated, raw_t["terminated"])
        assert torch.equal(out.truncated, raw_t["time_outs"] & ~raw_t["terminated"])
        assert bool(out.valid.all())  # same-step reset: every row is a real transition
        # final_obs: the true pre-reset obs on done rows, the returned obs elsewhere
        assert torch.equal(out.final_obs[~done], out.obs[~done])
        if bool(done.any()):
            assert raw_t["final_obs_written"]
            assert torch.allclose(out.final_obs[done], raw_t["pre_reset"][done], atol=1e-5)
            assert not torch.allclose(out.final_obs[done], out.obs[done])  # not the post-reset obs
        else:
            assert not raw_t["final_obs_written"]  # 3.0 writes extras["final_obs"] only on reset steps
        # episode returns = sums of the raw rewards
        returns += raw_t["reward"]
        lengths += 1
        assert torch.allclose(out.episode_return[done], returns[done], atol=1e-4)
        assert torch.equal(out.episode_length[done], lengths[done])
        assert bool((out.episode_return[~done] == 0).all())
        returns[done], lengths[done] = 0.0, 0
        buf.add(obs, action, out.reward, out.final_obs, out.terminated, out.valid)
        expected_next.append(torch.where(done[:, None], raw_t["pre_reset"], raw_t["obs"]))
        counts["done"] += int(done.sum())
        counts["terminated"] += int(out.terminated.sum())
        counts["truncated"] += int(out.truncated.sum())
        counts["stored"] += int(out.valid.sum())
        obs = out.obs
    rec.undo()
    raw.cfg.termination_height = termination_height
    assert len(rec.extras_ids) == 1  # one persistent extras dict, as the fakes model it
    # the replay buffer holds exactly the valid rows, each a real (s, s') pair of the env
    stored_next = buf.next_obs[buf.valid]
    assert stored_next.shape[0] == counts["stored"] == CONTRACT_STEPS * N
    truth = torch.stack(expected_next, 0)  # (T, N, obs_dim), the buffer's layout (rows, envs, ...)
    assert torch.allclose(buf.next_obs[:CONTRACT_STEPS], truth, atol=1e-5)
    assert counts["truncated"] >= N and counts["terminated"] >= 1, counts  # both kinds were exercised
    print(f"[isaaclab3] contract: {CONTRACT_STEPS} steps x {N} envs, {counts['done']} episode ends "
          f"({counts['terminated']} terminated, {counts['truncated']} truncated), {counts['stored']} rows stored")


@pytest.mark.xdist_group(name="ant_env")
def test_the_adapter_adds_no_host_sync_to_the_real_step(ant_env):
    """Around Isaac Lab's own ``step`` (not counted: NVIDIA's code), the adapter reads no tensor value on the host
    and makes no call that synchronises a CUDA device otherwise (``DeviceSyncOps``: a host scalar written by
    tensor index, a bool mask, ``nonzero``), so under ``device=cuda:0`` it adds no wait for the GPU. 40 steps of
    30-step episodes: reset steps with ``extras["final_obs"]`` are among them."""
    from test_no_host_sync import step_without_host_syncs

    env = ant_env
    gen = torch.Generator().manual_seed(1)
    acts = [torch.rand(N, env.action_dim, generator=gen) * 2 - 1 for _ in range(40)]
    env.reset()
    dones = step_without_host_syncs(env, acts, (env.env, "step"))
    assert int(dones) >= N  # episode ends (the extras["final_obs"] path) were among the counted steps


@pytest.mark.xdist_group(name="ant_env")
def test_nan_in_the_real_obs_is_contained(ant_env):
    from meow_isaac.envs.guard import NonFiniteGuard
    from meow_isaac.replay import ReplayBuffer

    env = ant_env
    raw = env.env.unwrapped
    guard = NonFiniteGuard(env)
    assert guard.reset_mode == "episode_length_buf"
    gen = torch.Generator().manual_seed(1)
    real_obs = raw._get_observations
    poisoned = {"left": 1}

    def nan_obs():
        obs = real_obs()
        if poisoned["left"]:
            poisoned["left"] -= 1
            obs["policy"][2] = float("nan")
        return obs

    buf = ReplayBuffer(N, 8, env.obs_dim, env.action_dim, torch.device("cpu"))
    obs, outs = guard.reset(), []
    raw._get_observations = nan_obs  # the next step's observation of env 2 is NaN
    try:
        for _ in range(4):
            action = torch.rand(N, env.action_dim, generator=gen) * 2 - 1
            outs.append(guard.step(action))
            buf.add(obs, action, outs[-1].reward, outs[-1].final_obs, outs[-1].terminated, outs[-1].valid)
            obs = outs[-1].obs
    finally:
        raw._get_observations = real_obs
    # invalid rows never reach the replay buffer: env 2 stored 2 rows, the others 4, all finite
    assert buf.valid[:, 2].sum() == 2 and bool(buf.valid[:4, [0, 1, 3]].all())
    assert torch.isfinite(buf.next_obs[buf.valid]).all() and torch.isfinite(buf.obs[buf.valid]).all()
    for out in outs:
        assert torch.isfinite(out.obs).all() and torch.isfinite(out.final_obs).all()
        assert torch.isfinite(out.reward).all()
    # the poisoned step and the step that resets env 2 are dropped; then env 2 runs normally again
    assert [bool(o.valid[2]) for o in outs] == [False, False, True, True]
    assert int(guard.nonfinite_env_steps) == 1


SMALL = ["device=cpu", "num_envs=16", "train.random_steps=16", "train.learning_starts=16", "train.batch_size=64",
         "train.replay_size_per_env=200", "train.eval_envs=2", "train.log_interval=20", "train.compile=False",
         "progress_bar=False", "torch_threads=1", "headless=True"]


def _runner(args, cwd, timeout=600):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "runner.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout


@pytest.mark.parametrize("task", ["Ant", "Humanoid"])
def test_runner_trains_checkpoints_resumes_and_plays(tmp_path, task):
    _require_assets()
    base = [f"task={task}", "sim=isaaclab", f"experiment={task.lower()}", "+task.isaaclab.env_cfg.episode_length_s=0.5",
            "train.eval_interval=40", "train.save_interval=40"] + SMALL
    first = _runner(base + ["max_iterations=60"], tmp_path)
    assert f"gym id {GYM_IDS[task]}" in first and f"{task} on isaaclab: 16 envs" in first
    ckpt = tmp_path / "runs" / task.lower() / "nn" / f"{task.lower()}.pth"
    assert ckpt.is_file()
    saved = torch.load(ckpt, weights_only=False)["counters"]
    assert saved["iteration"] == 60 and saved["updates"] > 0
    resumed = _runner(base + ["checkpoint=auto", "max_iterations=100"], tmp_path)
    assert "resuming from" in resumed or "resumed from" in resumed
    after = torch.load(ckpt, weights_only=False)["counters"]
    assert after["iteration"] == 100 and after["updates"] > saved["updates"]
    played = _runner([f"task={task}", "sim=isaaclab", "+task.isaaclab.env_cfg.episode_length_s=0.5", "test=True",
                      f"checkpoint={ckpt}"] + SMALL, tmp_path)
    assert f"test: {task} checkpoint" in played and "deterministic episodes" in played


@pytest.mark.parametrize("task", ["Anymal", "AllegroHand", "FrankaCabinet"])
def test_runner_short_training(tmp_path, task):
    _require_assets()
    out = _runner([f"task={task}", "sim=isaaclab", f"experiment={task.lower()}", "max_iterations=40",
                   "+task.isaaclab.env_cfg.episode_length_s=0.5", "train.eval_interval=0"] + SMALL + ["num_envs=8"],
                  tmp_path)
    assert f"gym id {GYM_IDS[task]}" in out and f"{task} on isaaclab: 8 envs" in out
    assert "done: iteration 40" in out
    assert (tmp_path / "runs" / task.lower() / "nn" / f"{task.lower()}.pth").is_file()
