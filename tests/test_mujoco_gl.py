"""``meow_isaac.default_mujoco_gl``: on a machine without libEGL (a bare CUDA container, the lent GPU machine of
2026-12-04) ``import mujoco`` with ``MUJOCO_GL=egl`` raised ``AttributeError: 'NoneType' object has no attribute
'eglQueryString'``, so neither mujoco nor mujoco_warp loaded. The subprocess below hides libEGL and libOSMesa
from ``ctypes`` (which PyOpenGL loads them through) to make such a machine here."""

import subprocess
import sys

_NO_GL = r'''
import ctypes, os, sys
_CDLL = ctypes.CDLL
class NoGL(_CDLL):
    def __init__(self, name, *args, **kwargs):
        if name and any(part in str(name) for part in ("EGL", "OSMesa")):
            raise OSError(f"{name}: cannot open shared object file (hidden by the test)")
        super().__init__(name, *args, **kwargs)
ctypes.CDLL = NoGL
ctypes.cdll = ctypes.LibraryLoader(NoGL)
os.environ.pop("MUJOCO_GL", None)
if len(sys.argv) > 1:
    os.environ["MUJOCO_GL"] = sys.argv[1]
import meow_isaac
import mujoco
print("MUJOCO_GL=" + os.environ["MUJOCO_GL"])
import torch
from tasks import make_env
env = make_env("Ant", {}, num_envs=2, seed=0, num_threads=1)
env.reset()
out = env.step(torch.zeros(2, env.action_dim))
print("stepped", tuple(out.obs.shape))
from meow_isaac.video import EpisodeRecorder
try:
    EpisodeRecorder(env)
except RuntimeError as err:
    print("render refused:", err)
'''


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _NO_GL, *args], capture_output=True, text=True, timeout=300)


def test_without_libegl_mujoco_loads_trains_and_rendering_says_what_to_install():
    proc = _run()
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "MUJOCO_GL=disable"
    assert lines[1].startswith("stepped (2, ")
    assert lines[2].startswith("render refused: offscreen rendering failed with MUJOCO_GL=disable")
    assert "apt-get install libegl1" in lines[2]


def test_a_user_choice_of_mujoco_gl_is_kept():
    proc = _run("egl")  # the user's choice, on a machine that lacks it: mujoco's own error, not ours
    assert "eglQueryString" in proc.stderr, proc.stderr[-2000:]
    assert proc.returncode != 0
