"""meow-isaac: massively parallel MEow (Chao et al., NeurIPS 2024, arXiv:2405.13629) for Isaac and MuJoCo."""

import ctypes
import os
import sys


def default_mujoco_gl() -> str:
    """The ``MUJOCO_GL`` value to use on Linux when the user set none: ``egl`` where ``libEGL.so.1`` loads, else
    ``osmesa`` where ``libOSMesa.so`` loads, else ``disable``.

    ``import mujoco`` imports the backend that ``MUJOCO_GL`` names (``mujoco/rendering/classic/gl_context.py``),
    and with ``egl`` on a machine without libEGL (bare CUDA containers, the lent GPU machine of 2026-12-04) that
    import raises ``AttributeError: 'NoneType' object has no attribute 'eglQueryString'``, so neither mujoco
    nor mujoco_warp could load at all. With ``disable`` training works and only rendering (videos,
    ``tasks.view``) fails, with the message of :class:`meow_isaac.video.EpisodeRecorder` saying what to install.
    """
    for value, libraries in (("egl", ("libEGL.so.1", "libEGL.so")), ("osmesa", ("libOSMesa.so.8", "libOSMesa.so"))):
        for library in libraries:
            try:
                ctypes.CDLL(library)
            except OSError:
                continue
            return value
    return "disable"


# Offscreen rendering (videos, task previews) without a display: must be chosen before mujoco is imported. Linux
# only: elsewhere MuJoCo's own default (CGL on macOS, WGL on Windows) is kept, and egl/osmesa are invalid there.
if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux"):
    os.environ["MUJOCO_GL"] = default_mujoco_gl()

__version__ = "0.1.0"
