"""Fake ``omniisaacgymenvs/utils/task_util.py`` (isaac_api.md 2.3)."""


def import_tasks():
    from omniisaacgymenvs.tasks import TASKS  # imports omni.isaac.core: needs the SimulationApp

    return dict(TASKS), {}


def initialize_task(config, env, init_sim=True):
    from omniisaacgymenvs.utils.config_utils.sim_config import SimConfig

    sim_config = SimConfig(config)
    task_map, task_map_warp = import_tasks()
    cfg = sim_config.config
    task = task_map[cfg["task_name"]](name=cfg["task_name"], sim_config=sim_config, env=env)
    backend = "warp" if cfg["warp"] else "torch"
    env.set_task(task=task, sim_params=sim_config.get_physics_params(), backend=backend, init_sim=init_sim,
                 rendering_dt=sim_config.get_physics_params()["rendering_dt"])
    return task
