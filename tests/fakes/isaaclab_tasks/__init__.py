"""Fake ``isaaclab_tasks``: registers the gym ids of the installed version (isaac_api.md 3.2).

2.x: importing it before the Kit app runs fails (the task modules import omni/pxr modules).
3.x: ANYmal-C direct is the contrib task ``IsaacContrib-Velocity-Flat-AnymalC-Direct`` (PhysX only, so it needs
Isaac Sim's Kit); the core ships the kit-less ``Isaac-Velocity-Flat-AnymalD`` (``isaaclab_tasks/core/velocity``).
"""

import gymnasium as gym
from isaaclab import VERSION
from isaaclab.app import Runtime

if VERSION < 3 and not Runtime.running:
    raise ImportError("fake isaaclab_tasks (2.x): imported before AppLauncher started the simulation app "
                      "(No module named 'omni.physics')")

TASKS = {  # 3.x id, 2.x id, cfg class
    "Ant": ("Isaac-Ant-Direct", "Isaac-Ant-Direct-v0", "AntEnvCfg"),
    "Humanoid": ("Isaac-Humanoid-Direct", "Isaac-Humanoid-Direct-v0", "HumanoidEnvCfg"),
    "Anymal": ("Isaac-Velocity-Flat-AnymalD", "Isaac-Velocity-Flat-Anymal-C-Direct-v0", "AnymalFlatEnvCfg"),
    "AllegroHand": ("Isaac-Reorient-Cube-Allegro-Direct", "Isaac-Repose-Cube-Allegro-Direct-v0", "AllegroHandEnvCfg"),
    "FrankaCabinet": ("Isaac-Open-Drawer-Franka-Direct", "Isaac-Franka-Cabinet-Direct-v0", "FrankaCabinetEnvCfg"),
}
if VERSION >= 3:
    TASKS["AnymalC"] = ("IsaacContrib-Velocity-Flat-AnymalC-Direct", None, "AnymalCContribEnvCfg")
for _v3, _v2, _cfg in TASKS.values():
    if (_v3 if VERSION >= 3 else _v2) is None:
        continue
    gym.register(id=_v3 if VERSION >= 3 else _v2, entry_point="isaaclab_tasks.fake_env:FakeDirectRLEnv",
                 disable_env_checker=True, kwargs={"env_cfg_entry_point": f"isaaclab_tasks.fake_env:{_cfg}"})
