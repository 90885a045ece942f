"""Fake ``isaaclab/app/app_launcher.py`` as the Isaac Lab 2.x PyPI wheel imports it: a top-level module.

Starting the app emulates Kit's extension loading: ``isaaclab/source/isaaclab`` and ``.../isaaclab_tasks`` go on
``sys.path`` and the wheel's shim modules leave ``sys.modules``, so that afterwards ``import isaaclab`` is the
full package and ``import isaaclab_tasks`` works. Then the fake app of ``isaaclab.app`` starts.
"""

import os
import sys


class AppLauncher:
    def __init__(self, launcher_args=None, **kwargs):
        source = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
        if os.path.basename(source) != "source":  # not inside the wheel layout
            raise RuntimeError("fake app_launcher: only the PyPI wheel layout imports this module")
        for extension in ("isaaclab", "isaaclab_tasks"):
            sys.path.insert(0, os.path.join(source, extension))
        for name in [m for m in sys.modules if m == "isaaclab" or m.startswith("isaaclab.")]:
            del sys.modules[name]
        from isaaclab.app import AppLauncher as KitApp

        self.app = KitApp(launcher_args, **kwargs).app
