"""MEow through rl_games' ``Runner`` (rl-games from PyPI), as an IsaacGymEnvs ``train.py`` would run it.

The env is registered exactly as ``isaacgymenvs/train.py`` does (``env_configurations.register('rlgpu', ...)``
+ ``vecenv.register('RLGPU', ...)`` with an ``RLGPUEnv`` wrapper), around the fake IsaacGymEnvs Ant task.
"""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO
from fake_frameworks import fakes  # noqa: F401  (fixture)

pytest.importorskip("rl_games")


@pytest.fixture
def rl_games_globals():
    """rl_games' Runner flips global torch precision flags; restore them for the other tests."""
    precision = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(precision)
    torch.set_num_threads(1)


def register_ige_style_env(num_envs):
    from isaacgymenvs.tasks import isaacgym_task_map
    from rl_games.common import env_configurations, vecenv

    def create_isaacgym_env(**kwargs):
        cfg = {"name": "Ant", "env": {"numEnvs": num_envs, "episodeLength": 16, "clipActions": 1.0},
               "sim": {"use_gpu_pipeline": False}}
        return isaacgym_task_map["Ant"](cfg=cfg, rl_device="cpu", sim_device="cpu", graphics_device_id=0,
                                        headless=True)

    class RLGPUEnv(vecenv.IVecEnv):  # isaacgymenvs/utils/rlgames_utils.py
        def __init__(self, config_name, num_actors, **kwargs):
            self.env = env_configurations.configurations[config_name]["env_creator"](**kwargs)

        def step(self, actions):
            return self.env.step(actions)

        def reset(self):
            return self.env.reset()

    env_configurations.register("rlgpu", {"vecenv_type": "RLGPU", "env_creator": create_isaacgym_env})
    vecenv.register("RLGPU", lambda config_name, num_actors, **kw: RLGPUEnv(config_name, num_actors, **kw))


def test_meow_trains_and_plays_through_the_rl_games_runner(fakes, rl_games_globals, tmp_path, capsys):
    from rl_games.torch_runner import Runner

    for name in ("eq", "contains", "if", "resolve_default"):  # as in a fresh train.py process, where
        OmegaConf.clear_resolver(name)                          # isaacgymenvs registers them first
    import isaacgymenvs  # noqa: F401

    from meow_isaac.rl_games_bridge import register_meow

    register_ige_style_env(num_envs=4)
    root = OmegaConf.create({"seed": 3, "experiment": "", "max_iterations": 60, "rl_device": "cpu",
                             "task": {"env": {"numEnvs": 4}}})
    root.train = OmegaConf.load(f"{REPO}/cfg/rl_games/AntMEow.yaml")
    cfg = OmegaConf.to_container(root.train, resolve=True)
    cfg["params"]["torch_threads"] = 1
    cfg["params"]["config"].update(batch_size=32, replay_size_per_env=100, random_steps=10, learning_starts=10,
                                   eval_interval=0, log_interval=20, train_dir=str(tmp_path / "runs"),
                                   print_stats=False)
    runner = Runner()
    register_meow(runner)
    runner.load(cfg)
    runner.reset()
    runner.run({"train": True, "play": False, "checkpoint": "", "sigma": None})
    checkpoint = tmp_path / "runs" / "AntMEow" / "nn" / "AntMEow.pth"
    assert checkpoint.is_file() and list((tmp_path / "runs" / "AntMEow" / "summaries").iterdir())
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert state["counters"]["iteration"] == 60 and state["counters"]["updates"] == 51

    runner.run({"train": False, "play": True, "checkpoint": str(checkpoint), "sigma": None})
    assert "rl_games play: mean return" in capsys.readouterr().out


def test_generic_same_step_ivecenv_bootstraps_truncations_from_prev_obs():
    from meow_isaac.rl_games_bridge import RLGamesVecEnv

    class Counter:  # obs = [t], time-out at t == 3 (same-step reset), no final observation
        def __init__(self):
            self.t = torch.zeros(2, 1)

        def get_env_info(self):
            import gymnasium

            return {"observation_space": gymnasium.spaces.Box(-1, 1, (1,)),
                    "action_space": gymnasium.spaces.Box(-1, 1, (2,))}

        def reset(self):
            self.t.zero_()
            return {"obs": self.t.clone()}

        def step(self, actions):
            self.t += 1
            done = self.t[:, 0] >= 3
            self.t[done] = 0
            return {"obs": self.t.clone()}, torch.ones(2), done.long(), {"time_outs": done}

    env = RLGamesVecEnv(Counter(), torch.device("cpu"), 2)
    env.reset()
    outs = [env.step(torch.zeros(2, 2)) for _ in range(3)]
    last = outs[-1]
    assert last.truncated.all() and not last.terminated.any() and last.valid.all()
    assert last.final_obs[:, 0].tolist() == [2.0, 2.0] and last.obs[:, 0].tolist() == [0.0, 0.0]
    assert last.episode_return.tolist() == [3.0, 3.0] and last.episode_length.tolist() == [3, 3]


def test_isaac_lab_env_is_found_inside_its_rl_games_wrappers(fakes):
    """Isaac Lab's train.py registers ``RlGamesGpuEnv`` -> ``RlGamesVecEnvWrapper`` -> gym env (5-tuple step)."""
    import gymnasium as gym
    from isaaclab.app import AppLauncher

    from meow_isaac.envs.isaaclab import IsaacLabEnv
    from meow_isaac.rl_games_bridge import adapt_env

    app = AppLauncher(headless=True).app
    import isaaclab_tasks  # noqa: F401
    from isaaclab_tasks.utils.parse_cfg import parse_env_cfg

    gym_env = gym.make("Isaac-Ant-Direct-v0", cfg=parse_env_cfg("Isaac-Ant-Direct-v0", device="cpu", num_envs=3))

    class RlGamesVecEnvWrapper:  # an rl_games IVecEnv (4-tuple step) exposing the env's unwrapped
        def __init__(self, env):
            self.env, self.unwrapped = env, env.unwrapped

        def get_env_info(self):
            return {}

    class RlGamesGpuEnv:
        def __init__(self, env):
            self.env = env

    env = adapt_env(RlGamesGpuEnv(RlGamesVecEnvWrapper(gym_env)), torch.device("cpu"), {})
    assert isinstance(env, IsaacLabEnv) and env.env is gym_env and env.num_envs == 3
    assert env.reset().shape == (3, 36) and env.step(torch.zeros(3, 8)).obs.shape == (3, 36)
    app.close()
