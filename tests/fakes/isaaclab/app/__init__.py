"""Fake ``isaaclab.app``: 2.x ``AppLauncher`` (Kit app, one per process); 3.x adds ``launch_simulation``.

3.x ``launch_simulation(cfg, launcher_args)`` (``isaaclab/app/sim_launcher.py`` of 3.0) reads the physics preset
of ``cfg.sim.physics``: ``physx`` resolves to kit-less OvPhysX, ``isaacsim_physx`` needs Isaac Sim's Kit, which
these fakes (like a pip-only Isaac Lab 3) do not have: it prints Isaac Lab's error and exits 1 (``SystemExit``),
as 3.0 does. It yields the resolved physics preset name.
"""

import contextlib
import sys

from isaaclab import VERSION

KIT_PHYSICS = ("isaacsim_physx",)


class Runtime:
    running = False
    physics = None


class _App:
    def close(self):
        Runtime.running = False


class AppLauncher:
    def __init__(self, launcher_args=None, **kwargs):
        if Runtime.running:
            raise RuntimeError("fake AppLauncher: the simulation app already runs in this process")
        Runtime.running = True
        self.app = _App()


if VERSION >= 3:
    @contextlib.contextmanager
    def launch_simulation(cfg, launcher_args=None):
        """3.x: start the runtime the env cfg's physics preset needs (here: a flag), stop it on exit."""
        if Runtime.running:
            raise RuntimeError("fake launch_simulation: a runtime already runs in this process")
        physics = "ovphysx" if cfg.sim.physics == "physx" else cfg.sim.physics
        if physics in KIT_PHYSICS:
            print("[ERROR] Isaac Sim is not installed or not found on PYTHONPATH.\n\n  This environment requires "
                  "Isaac Sim and Omniverse Kit.", file=sys.stderr)
            raise SystemExit(1)
        cfg.sim.physics = physics
        Runtime.running, Runtime.physics = True, physics
        try:
            yield physics
        finally:
            Runtime.running, Runtime.physics = False, None
