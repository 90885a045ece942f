"""Isaac Lab adapter defects found by reading the real Isaac Lab 2.x wheel and 3.0 code, against the fakes.

* 3.0 writes ``extras["final_obs"]`` only on steps with a reset, into one persistent dict it never clears;
* the 2.x PyPI wheel hides ``AppLauncher`` behind an empty ``isaaclab.app`` and ``isaaclab_tasks`` until the
  app starts;
* 3.0 registers ANYmal-C direct only as a PhysX-only contrib task; ``task=Anymal`` maps to core ANYmal-D;
* the physics backend is a task preset (``parse_env_cfg(..., overrides=["physics=NAME"])``).

(``tests/test_isaaclab3_real.py`` checks the same against the real Isaac Lab 3.0 in its own venv.)
"""

import importlib
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO
from fake_frameworks import fakes, fakes_pip, set_isaaclab_version  # noqa: F401  (fixtures)
from meow_isaac import factory, sim_probe
from meow_isaac.config import ConfigError
from meow_isaac.envs import isaac_common
from meow_isaac.envs.isaac_common import FrameworkError

N = 4


def section(task, **extra):
    sec = OmegaConf.to_container(OmegaConf.load(f"{REPO}/cfg/task/{task}.yaml")["isaaclab"], resolve=True)
    return dict(sec, env_cfg={"episode_length_s": 0.26}, **extra)


def make(task="Ant", **extra):
    from meow_isaac.envs import isaaclab

    return isaaclab.make(section(task, **extra), N, 0, torch.device("cpu"))


@pytest.fixture
def fresh_log(monkeypatch):
    monkeypatch.setattr(isaac_common, "_LOGGED", set())


def test_v3_final_obs_only_on_reset_steps_is_no_2x_fallback(fakes, monkeypatch, capsys, fresh_log):
    """First step without a reset: 3.x has no extras['final_obs'] yet; that is not Isaac Lab 2.x."""
    set_isaaclab_version(monkeypatch, 3)
    env = make()
    raw = env.env.unwrapped
    env.reset()
    out = env.step(torch.zeros(N, env.action_dim))
    assert "final_obs" not in raw.extras and not bool(out.done.any())  # the real 3.0 behaviour, reproduced
    assert torch.equal(out.final_obs, out.obs)
    seen_reset = False
    for _ in range(40):
        out = env.step(torch.rand(N, env.action_dim) * 2 - 1)
        if bool(out.done.any()):
            seen_reset = True
            done = out.done
            fresh = raw.extras["final_obs"]["policy"]
            assert torch.equal(out.final_obs[done], fresh[done]) and not torch.equal(out.obs[done], fresh[done])
    assert seen_reset
    assert "Isaac Lab 2.x" not in capsys.readouterr().out
    env.close()


def test_v3_stale_final_obs_is_not_reused(fakes, monkeypatch):
    """A done row on a step that wrote no final obs (e.g. a UI-requested reset) must not read the old one."""
    set_isaaclab_version(monkeypatch, 3)
    env = make()
    raw = env.env.unwrapped
    obs = env.reset()
    while "final_obs" not in raw.extras:  # run until one reset step has written a final obs
        obs = env.step(torch.rand(N, env.action_dim) * 2 - 1).obs
    obs = env.step(torch.zeros(N, env.action_dim)).obs  # the state moves on (s' = 0.9 s + ...)
    real_step = raw.step

    def step_with_a_forced_timeout(action):  # row 0 reported timed out by the env, no reset, extras untouched
        result = list(real_step(action))
        result[3] = result[3].clone()
        result[3][0] = True
        return tuple(result)

    monkeypatch.setattr(raw, "step", step_with_a_forced_timeout)
    before = raw.extras.get("final_obs")
    out = env.step(torch.zeros(N, env.action_dim))
    assert bool(out.truncated[0]) or bool(out.terminated[0])
    if raw.extras.get("final_obs") is before and not bool(out.terminated[0]):  # nothing new written
        assert not torch.allclose(out.final_obs[0], before["policy"][0])
        assert torch.equal(out.final_obs[0], obs[0])  # the documented fallback: s_t
    env.close()


def test_v2_says_once_that_final_obs_is_missing(fakes, capsys, fresh_log):
    env = make("FrankaCabinet")
    env.reset()
    for _ in range(3):
        env.step(torch.zeros(N, env.action_dim))
    lines = [line for line in capsys.readouterr().out.splitlines() if "compute_final_obs" in line and "2.x" in line]
    assert len(lines) == 1 and "final_obs_fallback=prev_obs" in lines[0]
    env.close()


def test_anymal_on_v3_is_core_anymal_d(fakes, monkeypatch, capsys, fresh_log):
    set_isaaclab_version(monkeypatch, 3)
    env = make("Anymal")
    assert type(env.env.unwrapped.cfg).__name__ == "AnymalDFlatEnvCfg"
    assert env.obs_dim == 48 and env.action_dim == 12
    assert "gym id Isaac-Velocity-Flat-AnymalD" in capsys.readouterr().out
    env.close()
    import gymnasium as gym

    assert "IsaacContrib-Velocity-Flat-AnymalC-Direct" in gym.registry  # registered, but PhysX only:
    with pytest.raises(FrameworkError, match="needs Isaac Sim's Kit"):
        make("Anymal", gym_id="IsaacContrib-Velocity-Flat-AnymalC-Direct")


def test_v2_pip_wheel_layout_is_found_and_launched(fakes_pip):
    """2.x from PyPI: isaaclab.app is empty and isaaclab_tasks hidden until AppLauncher starts the app."""
    assert importlib.util.find_spec("isaaclab_tasks") is None
    assert sim_probe.installed("isaaclab") and "isaaclab" in sim_probe.installed_frameworks()
    app = importlib.import_module("isaaclab.app")
    assert not hasattr(app, "AppLauncher") and not hasattr(app, "launch_simulation")  # the wheel's empty module
    env = make("Ant")
    assert env.num_envs == N and "isaaclab_tasks" in sys.modules
    env.reset()
    out = env.step(torch.zeros(N, env.action_dim))
    assert out.obs.shape == (N, env.obs_dim)
    env.close()


def test_probe_without_isaaclab_tasks_anywhere(fakes_pip, tmp_path, monkeypatch):
    """The wheel fallback needs the wheel's isaaclab_tasks folder: a bare isaaclab package is not Isaac Lab."""
    (tmp_path / "isaaclab").mkdir()
    (tmp_path / "isaaclab" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.split(".")[0] == "isaaclab"]:
        monkeypatch.delitem(sys.modules, name)
    assert not sim_probe.installed("isaaclab")


@pytest.mark.parametrize("physics, resolved", [("", "newton_mjwarp"), ("newton_mjwarp", "newton_mjwarp"),
                                               ("physx", "ovphysx")])
def test_v3_physics_preset_reaches_parse_env_cfg(fakes, monkeypatch, physics, resolved):
    set_isaaclab_version(monkeypatch, 3)
    env = make(physics=physics)
    from isaaclab.app import Runtime

    assert Runtime.physics == resolved == env.env.unwrapped.cfg.sim.physics
    env.close()


@pytest.mark.parametrize("extra, message", [
    ({"physics": "nope"}, r"rejects physics=nope: Unknown preset\(s\): nope .*newton_mjwarp"),
    ({"presets": ["nope"]}, r"rejects presets=nope"),
    ({"physics": "isaacsim_physx"}, r"physics=isaacsim_physx.*needs Isaac Sim's Kit"),
    ({"physics": "a=b"}, r"task.isaaclab.physics='a=b'; accepted"),
    ({"presets": "inference"}, r"task.isaaclab.presets='inference'; accepted: a list"),
])
def test_v3_bad_physics_preset_is_one_line(fakes, monkeypatch, extra, message):
    set_isaaclab_version(monkeypatch, 3)
    task = {"name": "Ant", "isaaclab": dict(section("Ant"), **extra)}
    with pytest.raises(ConfigError, match=message) as info:
        factory.make_task_env(task, "isaaclab", N, 0, "cpu", 1)
    assert "\n" not in str(info.value)
    from isaaclab.app import Runtime

    assert not Runtime.running  # nothing left started


def test_v2_physics_preset_is_refused(fakes):
    with pytest.raises(FrameworkError, match="physics=physx needs Isaac Lab 3.x"):
        make(physics="physx")
