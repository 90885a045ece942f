"""Fake ``parse_env_cfg(task_name, device, num_envs)``: instantiates the registered env cfg class."""

import importlib

import gymnasium as gym


def parse_env_cfg(task_name, device="cuda:0", num_envs=None, use_fabric=None):
    module, attr = gym.spec(task_name).kwargs["env_cfg_entry_point"].split(":")
    cfg = getattr(importlib.import_module(module), attr)()
    cfg.sim.device = device
    if num_envs is not None:
        cfg.scene.num_envs = num_envs
    return cfg
