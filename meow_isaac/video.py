"""Headless episode videos of embedded MuJoCo envs: MuJoCo offscreen rendering + imageio/ffmpeg.

Rendering needs an OpenGL platform without a display: EGL (``libegl1``/``libegl-mesa0``, GPU or Mesa) or
OSMesa (``libosmesa6``). Unless the user chose ``MUJOCO_GL``, ``meow_isaac`` sets it on import
(:func:`meow_isaac.default_mujoco_gl`: ``egl`` where libEGL loads, else ``osmesa``, else ``disable``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List

import numpy as np
import torch



def can_render(env: Any) -> bool:
    """True for envs of the embedded MuJoCo backend (a ``model`` and a ``mujoco.batch`` or a physics engine with
    ``host_data``, e.g. MuJoCo Warp)."""
    return hasattr(env, "model") and (getattr(env, "batch", None) is not None
                                      or hasattr(getattr(env, "physics", None), "host_data"))


class EpisodeRecorder:
    """Renders simulation ``sim`` of a MuJoCo batch env into RGB frames with one reusable offscreen renderer.

    Args:
        env: an embedded-backend env (``MujocoBatchEnv``). width, height: pixels. sim: which simulation.

    Raises:
        RuntimeError: no OpenGL platform could be created (the message says what to install).
    """

    def __init__(self, env: Any, width: int = 320, height: int = 240, sim: int = 0) -> None:
        import mujoco

        self.env, self.sim, self._mujoco = env, sim, mujoco
        self.model = env.model
        self.data = mujoco.MjData(self.model)
        try:
            self.renderer = mujoco.Renderer(self.model, height=height, width=width)
        except Exception as err:  # mujoco raises FatalError/RuntimeError/AttributeError by platform
            raise RuntimeError(f"offscreen rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')}: {err}; "
                               "install EGL (apt-get install libegl1) or OSMesa (apt-get install libosmesa6 "
                               "and set MUJOCO_GL=osmesa)") from err
        self.camera = _tracking_camera(mujoco, self.model)

    def frame(self) -> np.ndarray:
        """``(height, width, 3)`` uint8 RGB of the simulation's current state."""
        data = self.data
        if getattr(self.env, "batch", None) is not None:
            self.env.batch.get_data(self.sim, data)
        else:  # a device engine: its world copied to the host (video capture only, off the training hot path)
            data = self.env.physics.host_data(self.sim)[1]
        self._mujoco.mj_forward(self.model, data)
        self.renderer.update_scene(data, camera=self.camera)
        return self.renderer.render().copy()

    def close(self) -> None:
        self.renderer.close()


def _tracking_camera(mujoco: Any, model: Any) -> Any:
    """A free camera that tracks body 1 (the robot's root) from the side."""
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid = 1 if model.nbody > 1 else 0
    cam.distance = float(min(max(3.0 * model.stat.extent, 1.5), 4.0))  # extent includes large floor planes
    cam.azimuth, cam.elevation = 90.0, -15.0
    return cam


@torch.no_grad()
def record_episode(agent: Any, env: Any, path: Path, max_frames: int = 1000, fps: int = 30) -> Path:
    """Play one deterministic episode of sim 0 of ``env`` and write it to ``path`` (mp4 via imageio-ffmpeg).

    Returns the path. Stops at the first episode end of sim 0 or after ``max_frames`` frames.
    """
    import imageio.v2 as imageio

    recorder = EpisodeRecorder(env)
    frames: List[np.ndarray] = []
    device = agent.normalizer.mean.device
    obs = env.reset().to(device)
    frames.append(recorder.frame())
    for _ in range(max_frames - 1):
        out = env.step(agent.act(obs, deterministic=True).to(env.device))
        if bool(out.done[0]):
            break
        frames.append(recorder.frame())
        obs = out.obs.to(device)
    recorder.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(str(path), frames, fps=fps, macro_block_size=1)
    return path
