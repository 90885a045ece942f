"""Fake of the Isaac Lab 2.x PyPI wheel's top-level ``isaaclab/__init__.py`` (``pip install isaaclab==2.*``).

As the wheel's ``expose_api()``: ``isaaclab/source/isaaclab/isaaclab/app`` goes on ``sys.path``, its
``app_launcher`` module is imported, ``sys.modules["isaaclab.app"]`` becomes an EMPTY module and the class is
registered as ``sys.modules["isaaclab.app.AppLauncher"]`` (only ``from isaaclab.app import AppLauncher`` finds it).
``isaaclab_tasks`` lives in ``isaaclab/source/isaaclab_tasks`` and is not on ``sys.path`` until the app starts.
(The wheel's ``bootstrap_kernel()``, ``import isaacsim``, is left out.)
"""

import os
import sys

PIP_WHEEL_SHIM = True
_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "source", "isaaclab", "isaaclab", "app")
if os.path.exists(_path):
    sys.path.insert(0, _path)
    from app_launcher import AppLauncher  # noqa: E402

    sys.modules["isaaclab.app"] = type(sys)("isaaclab.app")
    sys.modules["isaaclab.app.AppLauncher"] = AppLauncher
