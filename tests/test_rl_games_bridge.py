"""MEow through rl_games' ``Runner`` (rl-games from PyPI, the ``rl-games`` extra that ``.ci/run`` installs), as
an IsaacGymEnvs ``train.py`` and OmniIsaacGymEnvs ``rlgames_train.py`` would run it.

The env is registered exactly as ``isaacgymenvs/train.py`` does (``env_configurations.register('rlgpu', ...)``
+ ``vecenv.register('RLGPU', ...)`` with an ``RLGPUEnv`` wrapper), around the fake IsaacGymEnvs Ant task; as
``rlgames_train.py`` does (``env_creator`` returns the script's ``VecEnvRLGames``) around the fake OIGE one.
"""

import copy
import math

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO
from fake_frameworks import fakes  # noqa: F401  (fixture)


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


def ant_meow_config(tmp_path, max_iterations=60):
    """cfg/rl_games/AntMEow.yaml resolved against an IsaacGymEnvs-style root config, made small."""
    for name in ("eq", "contains", "if", "resolve_default"):  # as in a fresh train.py process, where
        OmegaConf.clear_resolver(name)                          # isaacgymenvs registers them first
    import isaacgymenvs  # noqa: F401

    root = OmegaConf.create({"seed": 3, "experiment": "", "max_iterations": max_iterations, "rl_device": "cpu",
                             "task": {"env": {"numEnvs": 4}}})
    root.train = OmegaConf.load(f"{REPO}/cfg/rl_games/AntMEow.yaml")
    cfg = OmegaConf.to_container(root.train, resolve=True)
    cfg["params"]["torch_threads"] = 1
    cfg["params"]["config"].update(batch_size=32, replay_size_per_env=100, random_steps=10, learning_starts=10,
                                   eval_interval=0, log_interval=20, train_dir=str(tmp_path / "runs"),
                                   print_stats=False)
    return cfg


def test_meow_trains_and_plays_through_the_rl_games_runner(fakes, rl_games_globals, tmp_path, capsys):
    from rl_games.torch_runner import Runner

    from meow_isaac.rl_games_bridge import register_meow

    cfg = ant_meow_config(tmp_path)
    register_ige_style_env(num_envs=4)
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


class CounterVecEnv:
    """An rl_games ``IVecEnv``: obs = [t], done (a time-out) at ``t == done_at`` with a same-step reset, reward
    ``reward(t)`` (default ``t - 2``: negative, zero and positive)."""

    def __init__(self, num_actors, done_at=4, reward=lambda t: t - 2.0):
        self.t = torch.zeros(num_actors, 1)
        self.done_at, self.reward = done_at, reward
        self.closed = 0

    def get_env_info(self):
        import gymnasium

        return {"observation_space": gymnasium.spaces.Box(-1, 1, (1,)),
                "action_space": gymnasium.spaces.Box(-1, 1, (2,))}

    def reset(self):
        self.t.zero_()
        return {"obs": self.t.clone()}

    def step(self, actions):
        self.t += 1
        reward = self.reward(self.t[:, 0])
        done = self.t[:, 0] >= self.done_at
        self.t[done] = 0
        return {"obs": self.t.clone()}, reward, done.long(), {"time_outs": done}

    def close(self):
        self.closed += 1


def test_generic_same_step_ivecenv_bootstraps_truncations_from_prev_obs():
    from meow_isaac.rl_games_bridge import RLGamesVecEnv

    # obs = [t], reward 1, time-out at t == 3 (same-step reset), no final observation
    env = RLGamesVecEnv(CounterVecEnv(2, done_at=3, reward=torch.ones_like), torch.device("cpu"), 2)
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


def test_a_sigma_override_is_one_clear_error(fakes, rl_games_globals, tmp_path):
    """rl_games' Runner applies ``sigma`` to ``agent.model.a2c_network`` (PPO's fixed std): MEow has none."""
    from rl_games.torch_runner import Runner

    from meow_isaac.rl_games_bridge import register_meow

    cfg = ant_meow_config(tmp_path, max_iterations=5)
    register_ige_style_env(num_envs=4)
    runner = Runner()
    register_meow(runner)
    runner.load(cfg)
    for mode in ({"train": True, "play": False}, {"train": False, "play": True}):
        with pytest.raises(ValueError, match="sigma") as err:
            runner.run(dict(mode, checkpoint="", sigma=0.5))
        assert "\n" not in str(err.value)
    assert not (tmp_path / "runs" / "AntMEow" / "nn").exists()  # refused before any training


SHAPERS = [
    {"scale_value": 0.5},
    {"shift_value": 2.0, "scale_value": 0.5, "min_val": 0.25, "max_val": 1.75, "log_val": True},
    {"shift_value": -1.0, "max_val": 0.5},
]


@pytest.mark.parametrize("shaper", SHAPERS)
def test_reward_shaper_is_applied_as_rl_games_applies_it(shaper):
    from rl_games.common.tr_helpers import DefaultRewardsShaper

    from meow_isaac.rl_games_bridge import reward_shaper

    reward = torch.linspace(-3.0, 3.0, 25)
    expected = DefaultRewardsShaper(**shaper)(reward)
    for given in (shaper, DefaultRewardsShaper(**shaper)):  # before / after Runner.load
        got = reward_shaper({"reward_shaper": given})(reward)
        assert torch.allclose(got, expected, equal_nan=True)
    assert reward_shaper({"reward_shaper": {"scale_value": 1.0}}) is None
    with pytest.raises(ValueError, match="scale"):
        reward_shaper({"reward_shaper": {"scale": 2.0}})


def test_the_agent_trains_on_shaped_rewards_and_reports_raw_returns(rl_games_globals, tmp_path):
    from rl_games.common import env_configurations, vecenv
    from rl_games.common.tr_helpers import DefaultRewardsShaper
    from rl_games.torch_runner import Runner

    from meow_isaac.rl_games_bridge import register_meow

    made = []
    env_configurations.register("meow_counter", {"vecenv_type": "MEOW_COUNTER", "env_creator": lambda **kw: None})
    vecenv.register("MEOW_COUNTER", lambda name, num_actors, **kw: made.append(CounterVecEnv(num_actors)) or made[-1])
    shaper = SHAPERS[1]
    config = {"name": "Counter", "env_name": "meow_counter", "num_actors": 2, "device": "cpu",
              "train_dir": str(tmp_path), "max_epochs": 1, "reward_shaper": dict(shaper), "torch_compile": False}
    runner = Runner()
    register_meow(runner)
    runner.load({"params": {"seed": 1, "torch_threads": 1, "algo": {"name": "meow"}, "config": config}})
    agent = runner.algo_factory.create("meow", base_name="run", params=runner.params)
    agent.env.reset()
    outs = [agent.env.step(torch.zeros(2, 2)) for _ in range(4)]
    raw = torch.tensor([-1.0, 0.0, 1.0, 2.0])
    expected = DefaultRewardsShaper(**shaper)(raw)
    got = torch.stack([out.reward[0] for out in outs])
    assert torch.allclose(got, expected) and math.isclose(float(got[0]), math.log(0.5), rel_tol=1e-6)
    assert outs[-1].episode_return.tolist() == [2.0, 2.0]  # raw, as rl_games reports game rewards
    agent.trainer.close()
    assert made[0].closed == 0  # the script owns the env


def test_under_omniverse_isaac_gym_the_env_is_closed_once_by_rlgames_train(fakes, rl_games_globals, tmp_path,
                                                                           monkeypatch):
    """OIGE's ``rlgames_train.py``: ``env_creator`` returns the script's ``VecEnvRLGames``, ``runner.run`` trains,
    then the script calls ``env.close()``; the bridge must not close it first."""
    from rl_games.common import env_configurations, vecenv
    from rl_games.torch_runner import Runner

    from meow_isaac.envs import omniisaacgym
    from meow_isaac.rl_games_bridge import register_meow

    section = OmegaConf.to_container(OmegaConf.load(f"{REPO}/cfg/task/Ant.yaml")["omniisaacgym"], resolve=True)
    env = omniisaacgym.make(section, 4, 0, torch.device("cpu")).env  # the script's VecEnvRLGames, task set
    closes = []
    original_close = env.close
    monkeypatch.setattr(env, "close", lambda: closes.append(1) or original_close())

    class RLGPUEnv(vecenv.IVecEnv):  # omniisaacgymenvs/utils/rlgames/rlgames_utils.py
        def __init__(self, config_name, num_actors, **kwargs):
            self.env = env_configurations.configurations[config_name]["env_creator"](**kwargs)

    vecenv.register("RLGPU", lambda config_name, num_actors, **kw: RLGPUEnv(config_name, num_actors, **kw))
    env_configurations.register("rlgpu", {"vecenv_type": "RLGPU", "env_creator": lambda **kwargs: env})
    config = {"name": "AntOIGE", "full_experiment_name": "AntOIGE", "env_name": "rlgpu", "num_actors": 4,
              "device": "cpu", "train_dir": str(tmp_path), "max_epochs": 30, "batch_size": 16,
              "replay_size_per_env": 50, "random_steps": 5, "learning_starts": 5, "eval_interval": 0,
              "log_interval": 10, "reward_shaper": {"scale_value": 1.0}, "torch_compile": False}
    runner = Runner()
    register_meow(runner)
    runner.load({"params": {"seed": 1, "torch_threads": 1, "algo": {"name": "meow"}, "config": config}})
    runner.run({"train": True, "play": False, "checkpoint": "", "sigma": None})
    assert (tmp_path / "AntOIGE" / "nn" / "AntOIGE.pth").is_file() and closes == []
    runner.run({"train": False, "play": True, "checkpoint": str(tmp_path / "AntOIGE" / "nn" / "AntOIGE.pth"),
                "sigma": None})
    assert closes == []
    env.close()  # rlgames_train.py, after runner.run
    assert closes == [1]


def test_playing_a_checkpoint_of_the_other_network_is_one_line(fakes, rl_games_globals, tmp_path):
    """A checkpoint of the ReLU network (``activation: relu``) played with the default (Swish) config is refused
    with the one-line ``train.activation`` error before anything is loaded (not a missing-``beta`` KeyError);
    with ``activation: relu`` it plays."""
    from rl_games.torch_runner import Runner

    from meow_isaac.checkpoint import CheckpointError
    from meow_isaac.rl_games_bridge import register_meow

    swish = ant_meow_config(tmp_path, max_iterations=15)  # AntMEow.yaml sets no activation: the default
    relu = copy.deepcopy(swish)
    relu["params"]["config"]["activation"] = "relu"
    register_ige_style_env(num_envs=4)
    runner = Runner()
    register_meow(runner)
    runner.load(relu)
    runner.run({"train": True, "play": False, "checkpoint": "", "sigma": None})
    checkpoint = tmp_path / "runs" / "AntMEow" / "nn" / "AntMEow.pth"
    runner.load(swish)
    with pytest.raises(CheckpointError, match=r"train.activation='swish'; accepted: 'relu'") as err:
        runner.run({"train": False, "play": True, "checkpoint": str(checkpoint), "sigma": None})
    assert "\n" not in str(err.value)
    runner.load(relu)
    runner.run({"train": False, "play": True, "checkpoint": str(checkpoint), "sigma": None})
