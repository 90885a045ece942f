"""Fake ``parse_env_cfg``: instantiates the registered env cfg class.

2.x: ``parse_env_cfg(task_name, device, num_envs, use_fabric)``. 3.x adds ``overrides`` (hydra-style
``key=value`` strings, ``isaaclab_tasks/utils/hydra.py`` ``register_task``): ``physics=NAME`` selects one of the
task's physics presets (``cfg.sim.physics``), ``presets=A,B`` global presets (these fakes declare only physics
ones); an unknown name raises ``ValueError("Unknown preset(s): ...")`` listing the available ones, as 3.0 does.
"""

import importlib

import gymnasium as gym
from isaaclab import VERSION


def _load(task_name, device, num_envs):
    module, attr = gym.spec(task_name).kwargs["env_cfg_entry_point"].split(":")
    cfg = getattr(importlib.import_module(module), attr)()
    if device is not None:
        cfg.sim.device = device
    if num_envs is not None:
        cfg.scene.num_envs = num_envs
    return cfg


def _apply_presets(cfg, overrides):
    if isinstance(overrides, str):
        raise TypeError(f"'overrides' must be a list or tuple of 'key=value' strings, not a bare string: {overrides!r}")
    available = sorted(cfg.physics_presets)
    for arg in overrides:
        key, _, value = arg.partition("=")
        names = [v.strip() for v in value.split(",") if v.strip()]
        if key not in ("physics", "presets"):
            raise ValueError(f"fake parse_env_cfg: override {arg!r} not modelled by the fakes")
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(f"Unknown preset(s): {', '.join(unknown)}\n\nAvailable presets (grouped by affected "
                             f"paths):\n\n  {', '.join(available)}\n    -> env.sim.physics\n")
        cfg.sim.physics = names[-1]
    return cfg


if VERSION >= 3:
    def parse_env_cfg(task_name, device=None, num_envs=None, use_fabric=None, overrides=()):
        return _apply_presets(_load(task_name, device, num_envs), overrides)
else:
    def parse_env_cfg(task_name, device="cuda:0", num_envs=None, use_fabric=None):
        return _load(task_name, device, num_envs)
