"""Fake ``isaaclab.app``: 2.x ``AppLauncher`` (Kit app, one per process); 3.x adds ``launch_simulation``."""

import contextlib

from isaaclab import VERSION


class Runtime:
    running = False


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
        """3.x: start the runtime the env cfg needs (here: a flag), stop it on exit."""
        if Runtime.running:
            raise RuntimeError("fake launch_simulation: a runtime already runs in this process")
        Runtime.running = True
        try:
            yield None
        finally:
            Runtime.running = False
