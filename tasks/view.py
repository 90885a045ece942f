"""Render the initial pose of a registered embedded task to a PNG, to check a model by eye.

    python -m tasks.view <Task> [--out PATH] [--width 640] [--height 480] [--seed 0] [--camera NAME]
                               [--azimuth 135] [--elevation -20]

Builds the task with one environment, resets it (so the picture shows the task's reset state, not the MJCF
defaults) and renders it with MuJoCo's offscreen renderer from a free camera looking at the robot's root body
(or from a named MJCF camera). Default output: ``runs/view/<Task>.png``.

Offscreen OpenGL: the ``MUJOCO_GL`` backend is chosen before MuJoCo loads, by trying ``$MUJOCO_GL`` (the
``tasks`` package defaults it to ``egl``), then ``egl``, ``osmesa`` and, with a display, ``glfw``, each in a
short subprocess. If none works the command exits 2 naming what to install (Debian/Ubuntu: ``libegl1`` for
EGL or ``libosmesa6`` for OSMesa).
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import List, Optional

_PROBE = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1\"/></worldbody>"
          "</mujoco>'); r = mujoco.Renderer(m, 8, 8); r.update_scene(mujoco.MjData(m)); r.render()")
INSTALL_HINT = ("install an offscreen OpenGL platform: EGL (Debian/Ubuntu: apt-get install libegl1) or OSMesa "
                "(apt-get install libosmesa6, then MUJOCO_GL=osmesa)")


def gl_candidates() -> List[str]:
    """Backends to try, in order: ``$MUJOCO_GL`` first, then egl, osmesa, and glfw if there is a display."""
    names = [os.environ.get("MUJOCO_GL", ""), "egl", "osmesa"] + (["glfw"] if os.environ.get("DISPLAY") else [])
    return [n for i, n in enumerate(names) if n and n not in names[:i]]


def pick_gl_backend(candidates: Optional[List[str]] = None) -> Optional[str]:
    """First backend of ``candidates`` with which MuJoCo renders in a subprocess; None if none does."""
    for name in gl_candidates() if candidates is None else candidates:
        env = dict(os.environ, MUJOCO_GL=name)
        env.pop("PYOPENGL_PLATFORM", None)
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=120)
        except subprocess.TimeoutExpired:
            continue
        if proc.returncode == 0:
            return name
    return None


def write_png(path: Path, rgb) -> None:
    """Write an ``(H, W, 3)`` uint8 array as an 8-bit RGB PNG (zlib only, no imaging library)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))  # filter type 0 per row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
                     + chunk(b"IEND", b""))


def render_initial_pose(task: str, width: int = 640, height: int = 480, seed: int = 0,
                        camera: Optional[str] = None, azimuth: float = 135.0, elevation: float = -20.0):
    """``(height, width, 3)`` uint8 RGB of env 0 of ``task`` right after ``reset()``.

    Raises:
        ValueError: unknown task, or the task is not an embedded MuJoCo env, or an unknown camera.
    """
    import mujoco

    import tasks

    env = tasks.make_env(task, {}, num_envs=1, seed=seed, num_threads=1)
    if not (hasattr(env, "batch") and hasattr(env, "model")):
        raise ValueError(f"task {task!r} is not an embedded MuJoCo task; nothing to render")
    env.reset()
    model = env.batch.get_model(0)
    data = env.batch.get_data(0)
    mujoco.mj_forward(model, data)
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    if camera is not None:
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            names = [model.camera(i).name for i in range(model.ncam)]
            raise ValueError(f"camera {camera!r} is not in the model; its cameras: {names}")
        cam = camera
    else:
        cam = _root_camera(mujoco, model, data, azimuth, elevation)
    with mujoco.Renderer(model, height=height, width=width) as renderer:
        renderer.update_scene(data, camera=cam)
        image = renderer.render().copy()
    env.close()
    return image


def _root_camera(mujoco, model, data, azimuth: float, elevation: float):
    """Free camera on the root body (body 1) at ``azimuth``/``elevation`` [deg], framing the robot's geoms."""
    import numpy as np

    root = 1 if model.nbody > 1 else 0
    center = data.xpos[root].copy()
    mine = [g for g in range(model.ngeom) if model.body_rootid[model.geom_bodyid[g]] == root and root > 0]
    radius = max([np.linalg.norm(data.geom_xpos[g] - center) + model.geom_rbound[g] for g in mine] or [1.0])
    cam = mujoco.MjvCamera()
    cam.type = mujoco.mjtCamera.mjCAMERA_FREE
    cam.lookat[:] = center
    cam.distance = 2.6 * radius
    cam.azimuth, cam.elevation = azimuth, elevation
    return cam


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.view", description=__doc__.split("\n")[0])
    parser.add_argument("task", help="registered task name, e.g. Anymal")
    parser.add_argument("--out", default=None, help="PNG path (default runs/view/<Task>.png)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--seed", type=int, default=0, help="reset seed")
    parser.add_argument("--camera", default=None, help="a named MJCF camera instead of the free camera")
    parser.add_argument("--azimuth", type=float, default=135.0, help="free camera azimuth [deg] (90: side view)")
    parser.add_argument("--elevation", type=float, default=-20.0, help="free camera elevation [deg]")
    args = parser.parse_args(argv)

    backend = pick_gl_backend()
    if backend is None:
        print(f"tasks.view: no offscreen OpenGL backend works (tried MUJOCO_GL={', '.join(gl_candidates())}); "
              f"{INSTALL_HINT}", file=sys.stderr)
        return 2
    os.environ["MUJOCO_GL"] = backend  # before mujoco is imported
    try:
        image = render_initial_pose(args.task, args.width, args.height, args.seed, args.camera, args.azimuth,
                                    args.elevation)
    except ValueError as err:
        print(f"tasks.view: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("runs") / "view" / f"{args.task}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_png(out, image)
    print(f"tasks.view: {args.task} initial pose -> {out} ({args.width}x{args.height}, MUJOCO_GL={backend})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
