"""A team adds a task without touching this repository: one yaml (+ a dotted path) or one register_task call.

The task module and its yamls are written to ``tmp_path`` (outside the repo); the yaml is found through
``$MEOW_ISAAC_CONFIG_PATH`` (or ``hydra.searchpath``), the module through ``PYTHONPATH``/``sys.path``.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import REPO
from fake_frameworks import fakes  # noqa: F401  (fixture)
from meow_isaac.runner import config_dir, run

TEAM_MODULE = '''
"""A team's own task: 2-D point reaching the origin (torch only), following meow_isaac.envs.contract.VecEnv."""
import torch
from meow_isaac.envs.contract import StepOut


class Reach:
    def __init__(self, env_cfg, num_envs, seed=0, device="cpu", num_threads=0):
        self.num_envs, self.obs_dim, self.action_dim = num_envs, 2, 2
        self.device = torch.device(device)
        self.max_episode_length = int(env_cfg.get("episodeLength", 20))
        self.gen = torch.Generator().manual_seed(seed)
        self.pos = torch.zeros(num_envs, 2)
        self.t = torch.zeros(num_envs, dtype=torch.long)
        self.ret = torch.zeros(num_envs)

    def _spawn(self, ids):
        self.pos[ids] = torch.rand(len(ids), 2, generator=self.gen) * 2 - 1
        self.t[ids] = 0
        self.ret[ids] = 0.0

    def reset(self):
        self._spawn(torch.arange(self.num_envs))
        return self.pos.clone()

    def step(self, action):
        self.pos += 0.1 * action.clamp(-1, 1)
        self.t += 1
        reward = -self.pos.norm(dim=1)
        self.ret += reward
        terminated = self.pos.norm(dim=1) > 3.0
        truncated = (self.t >= self.max_episode_length) & ~terminated
        done = terminated | truncated
        final = self.pos.clone()
        ep_ret = torch.where(done, self.ret, torch.zeros_like(self.ret))
        ep_len = torch.where(done, self.t, torch.zeros_like(self.t))
        ids = done.nonzero().reshape(-1)
        if len(ids):
            self._spawn(ids)
        return StepOut(self.pos.clone(), reward, terminated, truncated, final, torch.ones_like(done), ep_ret, ep_len)

    def close(self):
        pass


def make_reach(env_cfg, num_envs, seed=0, device="cpu", num_threads=0):
    return Reach(env_cfg, num_envs, seed, device, num_threads)
'''

TASK_YAML = """\
name: {name}
entry_point: '{entry_point}'
env:
  numEnvs: ${{resolve_default:4,${{...num_envs}}}}
  episodeLength: 20
"""


def write_team_files(root: Path, name: str, entry_point: str) -> Path:
    """The team's package (``root/pkg/team_tasks.py``) and config dir (``root/cfg/{task,train}``)."""
    (root / "pkg").mkdir(exist_ok=True)
    (root / "pkg" / "team_tasks.py").write_text(TEAM_MODULE)
    for sub in ("task", "train"):
        (root / "cfg" / sub).mkdir(parents=True, exist_ok=True)
    (root / "cfg" / "task" / f"{name}.yaml").write_text(TASK_YAML.format(name=name, entry_point=entry_point))
    train = (Path(config_dir()) / "train" / "InvertedPendulumMEow.yaml").read_text()
    (root / "cfg" / "train" / f"{name}MEow.yaml").write_text(train.replace("InvertedPendulumMEow", f"{name}MEow"))
    return root / "cfg"


SMALL = ["max_iterations=60", "train.random_steps=20", "train.learning_starts=20", "train.batch_size=32",
         "train.eval_interval=0", "train.eval_envs=2", "train.log_interval=20", "progress_bar=False",
         "torch_threads=1", "sim_threads=1"]


def test_yaml_entry_point_task_from_outside_the_repo_trains_via_the_cli(tmp_path):
    cfg_dir = write_team_files(tmp_path, "TeamReach", "team_tasks:make_reach")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "pkg"), MEOW_ISAAC_CONFIG_PATH=str(cfg_dir))
    proc = subprocess.run([sys.executable, f"{REPO}/runner.py", "task=TeamReach", "sim=auto", "experiment=run"]
                          + SMALL, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TeamReach on mujoco: 4 envs, obs 2, action 2" in proc.stdout
    assert (tmp_path / "runs" / "run" / "nn" / "run.pth").is_file()


def test_register_task_from_the_teams_package(tmp_path, monkeypatch):
    import tasks

    cfg_dir = write_team_files(tmp_path, "TeamReach2", "")
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tasks, "_REGISTRY", dict(tasks._REGISTRY))
    from team_tasks import make_reach

    tasks.register_task("TeamReach2", make_reach)  # one call from the team's package
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        out = run(compose("config", overrides=[f"hydra.searchpath=[file://{cfg_dir}]", "task=TeamReach2",
                                               "sim=mujoco", "experiment=reg"] + SMALL))
    assert out["iteration"] == 60 and out["scalars"]["episode/count"] > 0
    with pytest.raises(ValueError, match="already registered"):
        tasks.register_task("TeamReach2", make_reach)


def test_isaac_task_class_from_outside_the_repo(fakes, tmp_path, monkeypatch):
    """Isaac Gym: a team's own VecTask subclass and its task yaml, referenced from the task yaml section."""
    (tmp_path / "team_ige.py").write_text(textwrap.dedent('''
        from isaacgymenvs.tasks import FakeVecTask   # stands for isaacgymenvs.tasks.base.vec_task.VecTask

        class Hopper2D(FakeVecTask):
            num_obs_, num_act_ = 5, 2
    '''))
    (tmp_path / "Hopper2D.yaml").write_text(textwrap.dedent('''
        name: Hopper2D
        env: {numEnvs: 8, episodeLength: 16, clipActions: 1.0}
        sim: {use_gpu_pipeline: false}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    task = {"name": "Hopper2D", "env": {"numEnvs": 3},
            "isaacgym": {"task_class": "team_ige:Hopper2D", "cfg_file": str(tmp_path / "Hopper2D.yaml")}}
    from meow_isaac.factory import make_task_env

    env = make_task_env(task, "isaacgym", 3, 0, "cpu", 1)
    obs = env.reset()
    assert obs.shape == (3, 5) and env.step(obs.new_zeros(3, 2)).reward.shape == (3,)
    env.close()
