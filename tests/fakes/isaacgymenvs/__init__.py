"""Fake IsaacGymEnvs 1.5.1 (``isaacgymenvs/__init__.py``): resolvers registered unconditionally, ``make``."""

from omegaconf import DictConfig, OmegaConf

# As upstream: no has_resolver check, so importing after another registration raises ValueError.
OmegaConf.register_new_resolver("eq", lambda x, y: x.lower() == y.lower())
OmegaConf.register_new_resolver("contains", lambda x, y: x.lower() in y.lower())
OmegaConf.register_new_resolver("if", lambda pred, a, b: a if pred else b)
OmegaConf.register_new_resolver("resolve_default", lambda default, arg: default if arg == "" else arg)


def make(seed, task, num_envs, sim_device, rl_device, graphics_device_id=-1, headless=False, multi_gpu=False,
         virtual_screen_capture=False, force_render=True, cfg: DictConfig = None):
    """Upstream signature. With ``cfg=None`` upstream composes hydra (and, inside a hydra app, swaps ``task``
    for the app's task choice); the fake only supports the ``cfg`` path meow-isaac uses."""
    if cfg is None:
        raise NotImplementedError("fake isaacgymenvs.make: pass cfg= (meow-isaac always does)")
    from isaacgymenvs.tasks import isaacgym_task_map

    cfg_dict = OmegaConf.to_container(cfg.task, resolve=True)
    return isaacgym_task_map[cfg_dict["name"]](
        cfg=cfg_dict, rl_device=rl_device, sim_device=sim_device, graphics_device_id=graphics_device_id,
        headless=headless, virtual_screen_capture=virtual_screen_capture, force_render=force_render)
