"""The local Isaac Lab 3 asset tree (``python -m meow_isaac.envs.isaaclab_assets``) on the REAL Isaac Lab 3.0.

Marked ``isaaclab3``: run inside the Isaac Lab 3 venv (Python 3.12, ``isaaclab==3.0.0``, ``pxr`` from
usd-exchange), with the converter venv of ``scripts/isaaclab3_assets.sh`` present (``$MEOW_USDCONV_PYTHON`` or
``~/.cache/meow-isaac/usdconv/bin/python``):

    ~/.cache/meow-isaac/isaaclab3/bin/python -m pytest -m isaaclab3 tests/test_isaaclab_assets.py

The tree is written fresh into a temp folder by this module's fixture. Layout tests read it with ``pxr``; the
physics smoke tests run each of the five real tasks unmodified in a subprocess (``tests/isaaclab3_smoke.py``,
device cpu, random actions) and check physics, not only shapes: root height sensible and not thrown, no
non-finite values, bounded velocities, and episodes that end as the task's rules make plausible.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.isaaclab3

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "isaaclab3_smoke.py"


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def assets():
    from meow_isaac.envs import isaaclab_assets
    return isaaclab_assets


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("isaaclab_assets") / "root"
    proc = subprocess.run([sys.executable, "-m", "meow_isaac.envs.isaaclab_assets", str(out)], env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _stage(tree, rel):
    from pxr import Usd
    stage = Usd.Stage.Open(str(tree / rel))
    assert stage is not None and stage.GetDefaultPrim(), rel
    return stage


def _bodies(stage):
    from pxr import Usd, UsdPhysics
    return [p for p in Usd.PrimRange(stage.GetDefaultPrim()) if p.HasAPI(UsdPhysics.RigidBodyAPI)]


def _joints(stage):
    from pxr import Usd, UsdPhysics
    return [p for p in Usd.PrimRange(stage.GetDefaultPrim()) if p.IsA(UsdPhysics.Joint)]


def test_tree_has_every_file_each_task_loads(tree, assets):
    manifest = json.loads((tree / "manifest.json").read_text())
    assert manifest["tasks"] == assets.TASK_FILES
    assert set(assets.TASK_FILES) == {"Isaac-Ant-Direct", "Isaac-Humanoid-Direct", "Isaac-Velocity-Flat-AnymalD",
                                      "Isaac-Reorient-Cube-Allegro-Direct", "Isaac-Open-Drawer-Franka-Direct"}
    for files in assets.TASK_FILES.values():
        for rel in files:
            assert (tree / rel).is_file(), rel
            if rel.endswith((".usd", ".usda")):
                _stage(tree, rel)
    readme = (tree / "README.txt").read_text()
    assert "not NVIDIA" in readme.replace("NOT", "not") or "are meow-isaac's, not NVIDIA's" in readme


def test_paths_are_the_ones_isaac_lab_reads(assets):
    """The relative paths are those of Isaac Lab 3.0's asset cfgs under ISAAC_NUCLEUS_DIR / ISAACLAB_NUCLEUS_DIR."""
    from isaaclab_assets.robots.allegro import ALLEGRO_HAND_CFG
    from isaaclab_assets.robots.ant import ANT_CFG
    from isaaclab_assets.robots.anymal import ANYDRIVE_3_LSTM_ACTUATOR_CFG, ANYMAL_D_CFG
    from isaaclab_assets.robots.franka import FRANKA_PANDA_CFG
    from isaaclab_assets.robots.humanoid import HUMANOID_CFG
    from isaaclab.sim.spawners.from_files import from_files_cfg
    from isaaclab.utils.assets import NUCLEUS_ASSET_ROOT_DIR
    from isaaclab_tasks.core.cabinet.cabinet_env_cfg import CABINET_CFG
    from isaaclab_tasks.core.reorient.config.allegro_hand.allegro_hand_common import CUBE_CFG

    def rel(path):
        assert path.startswith(NUCLEUS_ASSET_ROOT_DIR + "/"), path
        return path[len(NUCLEUS_ASSET_ROOT_DIR) + 1:]

    read = {rel(c.spawn.usd_path) for c in (ANT_CFG, HUMANOID_CFG, ANYMAL_D_CFG, ALLEGRO_HAND_CFG,
                                            FRANKA_PANDA_CFG, CABINET_CFG, CUBE_CFG)}
    read |= {rel(ANYDRIVE_3_LSTM_ACTUATOR_CFG.network_file), rel(from_files_cfg._DEFAULT_GROUND_PLANE_USD)}
    written = {f for files in assets.TASK_FILES.values() for f in files}
    assert written == read


def test_robot_layout_matches_what_the_tasks_read(tree, assets):
    """Bodies are direct children of the default prim, no floor, no MJCF actuators, root at the identity pose."""
    from pxr import Gf, UsdGeom
    for rel in assets.ROBOTS:
        stage = _stage(tree, rel)
        root = stage.GetDefaultPrim()
        bodies = _bodies(stage)
        assert bodies, rel
        assert all(b.GetParent() == root for b in bodies), rel
        for prim in stage.Traverse():
            assert not prim.GetTypeName().startswith("Mjc"), prim.GetPath()
            assert not prim.IsA(UsdGeom.Plane), f"{rel}: a floor {prim.GetPath()} inside the asset"
            for rel_ in prim.GetRelationships():  # joint bodies, bindings, filtered pairs: all resolve
                for target in rel_.GetTargets():
                    assert stage.GetPrimAtPath(target.GetPrimPath()), f"{rel}: {rel_.GetPath()} -> {target}"
            for name in prim.GetAuthoredPropertyNames():  # not the fallbacks of a registered NewtonJointAPI
                assert not name.startswith("mjc:"), f"{prim.GetPath()}.{name}"
                assert (not name.startswith("newton:") or name.startswith("newton:mimic")
                        or name == "newton:armature" and rel in assets.KEEP_ARMATURE), f"{prim.GetPath()}.{name}"
        first = UsdGeom.Xformable(bodies[0]).ComputeLocalToWorldTransform(0)
        assert first.ExtractTranslation() == Gf.Vec3d(0, 0, 0), rel
        assert abs(first.ExtractRotationQuat().GetReal()) == pytest.approx(1.0), rel


def test_names_the_task_regexes_match(tree):
    stage = _stage(tree, "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd")
    legs = ["front_left", "front_right", "left_back", "right_back"]
    assert {j.GetName() for j in _joints(stage)} == {f"{l}_{p}" for l in legs for p in ("leg", "foot")}
    stage = _stage(tree, "Isaac/Robots/IsaacSim/Humanoid/humanoid_instanceable.usd")
    joints = [j.GetName() for j in _joints(stage)]
    i = joints.index("right_thigh")
    assert joints[i:i + 3] == ["right_thigh", "right_thigh_1", "right_thigh_2"]
    # right_thigh_1 is hip_y (axis y): Isaac Lab's gear table gives ``right_thigh:1`` 135 N m, as hip_y's motor
    from pxr import UsdPhysics
    axis = {j.GetName(): UsdPhysics.RevoluteJoint(j).GetAxisAttr().Get() for j in _joints(stage)
            if j.IsA(UsdPhysics.RevoluteJoint)}
    assert (axis["right_thigh"], axis["right_thigh_1"], axis["right_thigh_2"]) == ("X", "Y", "Z")
    stage = _stage(tree, "Isaac/IsaacLab/Robots/ANYbotics/ANYmal-D/anymal_d.usd")
    names = {b.GetName() for b in _bodies(stage)}
    for leg in ("LF", "LH", "RF", "RH"):
        assert {f"{leg}_HIP", f"{leg}_THIGH", f"{leg}_SHANK", f"{leg}_FOOT"} <= names
    stage = _stage(tree, "Isaac/Props/Sektion_Cabinet/sektion_cabinet_instanceable.usd")
    assert {"door_left_joint", "door_right_joint", "drawer_bottom_joint", "drawer_top_joint"} <= {
        j.GetName() for j in _joints(stage)}
    assert "drawer_handle_top" in {b.GetName() for b in _bodies(stage)}
    stage = _stage(tree, "Isaac/Robots/WonikRobotics/AllegroHand/allegro_hand_instanceable.usd")
    assert {f"{f}_link_3" for f in ("index", "middle", "ring", "thumb")} <= {b.GetName() for b in _bodies(stage)}


def test_masses_are_those_of_the_mjcf(tree, assets):
    """Total mass per asset equals the compiled MJCF subtree's (mujoco of the Isaac Lab venv, independent)."""
    import mujoco
    from pxr import UsdPhysics
    for rel, (mjcf, keep, edit, _) in assets.ROBOTS.items():
        if edit == "sektion":  # edited geometry (doors, bottom drawer): checked in the cabinet smoke test
            continue
        model = mujoco.MjModel.from_xml_path(str(REPO / "tasks" / "assets" / mjcf))
        roots = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, k) for k in keep]
        expected = sum(model.body_mass[b] for b in range(1, model.nbody)
                       if model.body_rootid[b] in roots)
        stage = _stage(tree, rel)  # keep the stage alive while its prims are read
        got = sum(UsdPhysics.MassAPI(b).GetMassAttr().Get() for b in _bodies(stage))
        assert got == pytest.approx(expected, rel=1e-4), rel


def test_actuator_net_is_a_pd_stand_in(tree, assets):
    import torch
    net = torch.jit.load(str(tree / assets.ACTUATOR_NET)).eval()
    sd = net.lstm.state_dict()
    layers, hidden = len(sd) // 4, sd["weight_hh_l0"].shape[1]  # how ActuatorNetLSTM reads them
    n = 6
    x = torch.stack([torch.linspace(-1, 1, n), torch.linspace(3, -2, n)], dim=-1).view(n, 1, 2)
    h = torch.zeros(layers, n, hidden)
    torque, (h2, c2) = net(x, (h, h.clone()))
    expected = assets.ACTUATOR_NET_KP * x[:, 0, 0] - assets.ACTUATOR_NET_KD * x[:, 0, 1]
    torch.testing.assert_close(torque.reshape(n), expected)
    assert h2.shape == c2.shape == (layers, n, hidden)


def test_missing_converter_is_one_clear_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "meow_isaac.envs.isaaclab_assets", str(tmp_path / "t")],
                          env=_env(HOME=str(tmp_path), MEOW_USDCONV_PYTHON=""), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "mujoco-usd-converter" in lines[0] and "isaaclab3_assets.sh" in lines[0], lines
    assert not (tmp_path / "t").exists()
    proc = subprocess.run([sys.executable, "-m", "meow_isaac.envs.isaaclab_assets", str(tmp_path / "t"),
                           "--converter-python", str(tmp_path / "nope")], env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and str(tmp_path / "nope") in proc.stderr and len(proc.stderr.splitlines()) == 1


# ---------------------------------------------------------------------------------------------------------------
# Physics on the REAL tasks
# ---------------------------------------------------------------------------------------------------------------

NUM_ENVS, STEPS = 4, 240


def _smoke(tree, task, episode_length_s=None):
    cmd = [sys.executable, str(SMOKE), task, str(NUM_ENVS), str(STEPS), "0"]
    if episode_length_s is not None:
        cmd.append(str(episode_length_s))
    proc = subprocess.run(cmd, env=_env(ISAACSIM_ASSET_ROOT=str(tree), OMP_NUM_THREADS="1"), capture_output=True,
                          text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for bad in ("overflow", "nconmax", "njmax", "Traceback", "NaN"):
        assert bad not in log, f"{bad!r} in the log of {task}:\n" + "\n".join(
            line for line in log.splitlines() if bad in line)[:3000]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("SMOKE "))
    out = json.loads(line[len("SMOKE "):])
    print(f"\n{task}: " + json.dumps({k: v for k, v in out.items() if k not in ("joint_names", "body_names",
                                                                                    "masses")}))
    assert out["nonfinite"] is False
    assert all(1 <= n <= out["max_episode_length"] for n in out["episode_lengths"])
    return out


def test_ant_stands_walks_and_times_out(tree):
    # 2 s episodes (120 env steps): every env must reach at least one time-out in 240 steps unless it died
    out = _smoke(tree, "Isaac-Ant-Direct", episode_length_s=2.0)
    assert 0.45 <= out["root_z_first"] <= 0.6  # init 0.5 m, on its legs, not inside a floor
    assert out["root_z_min"] > 0.2 and out["root_z_max"] < 1.5  # never thrown (a robot in its floor flies metres)
    assert out["max_abs_root_lin_vel"] < 10.0 and out["max_abs_joint_vel"] < 100.0
    assert out["truncated"] >= NUM_ENVS and out["terminated"] <= out["truncated"]
    assert min(out["episode_lengths"]) >= 10  # nothing dies at reset
    assert sum(out["masses"]) == pytest.approx(0.9109, abs=1e-3)  # nv_ant.xml, as Isaac Lab sees it


def test_humanoid_falls_like_a_ragdoll(tree):
    out = _smoke(tree, "Isaac-Humanoid-Direct")
    assert 1.2 <= out["root_z_first"] <= 1.42  # init 1.34 m
    assert out["root_z_max"] < 2.0 and out["max_abs_root_lin_vel"] < 10.0 and out["max_abs_joint_vel"] < 200.0
    # random torques cannot balance it: it falls below 0.8 m (terminated), but not faster than free fall allows
    # (1.34 -> 0.8 m takes 0.33 s = 20 env steps; < 10 steps means thrown or started in the floor)
    assert out["terminated"] >= NUM_ENVS
    assert min(out["episode_lengths"]) >= 10
    assert {"right_thigh:0", "right_thigh:1", "right_thigh:2", "lower_waist:0", "pelvis"} <= set(out["joint_names"])
    assert sum(out["masses"]) == pytest.approx(40.84, abs=0.01)


def test_anymal_d_stands_on_its_feet(tree):
    out = _smoke(tree, "Isaac-Velocity-Flat-AnymalD")
    assert 0.4 <= out["root_z_first"] <= 0.75  # init 0.65 m
    assert out["root_z_max"] < 1.0 and out["max_abs_root_lin_vel"] < 10.0 and out["max_abs_joint_vel"] < 100.0
    assert out["root_z_mean"] > 0.3  # mostly standing under random position targets (the PD stand-in holds it)
    assert all(n >= 10 for n in out["episode_lengths"])
    assert {f"{leg}_FOOT" for leg in ("LF", "LH", "RF", "RH")} <= set(out["body_names"])
    # the task's add_base_mass event randomises the base (+-5 kg): the other 16 bodies are anymal.xml's
    masses = dict(zip(out["body_names"], out["masses"]))
    assert sum(m for b, m in masses.items() if b != "base") == pytest.approx(52.13 - 26.37, abs=0.01)
    assert 26.37 - 5.01 <= masses["base"] <= 26.37 + 5.01


def test_allegro_hand_holds_still_and_the_cube_rests_or_drops(tree):
    out = _smoke(tree, "Isaac-Reorient-Cube-Allegro-Direct")
    assert abs(out["root_z_min"] - 0.5) < 0.01 and abs(out["root_z_max"] - 0.5) < 0.01  # fixed base at 0.5 m
    z = out["object_z"]
    assert 0.45 <= z[0] <= 0.7  # the cube starts in / just above the palm, not shot away
    assert max(z) < 0.8 and min(z) > -0.05  # never launched, never through the ground
    assert out["max_abs_joint_vel"] < 100.0
    assert all(n >= 5 for n in out["episode_lengths"])


def test_franka_reaches_and_the_drawer_stays_in_range(tree):
    out = _smoke(tree, "Isaac-Open-Drawer-Franka-Direct", episode_length_s=1.0)
    assert abs(out["root_z_min"]) < 0.01 and abs(out["root_z_max"]) < 0.01  # fixed base on the floor
    assert out["max_abs_joint_vel"] < 50.0
    cab = out["cabinet_joint_pos_max"]
    assert set(cab) == {"drawer_top_joint", "drawer_bottom_joint", "door_left_joint", "door_right_joint"}
    assert cab["drawer_top_joint"] <= 0.41 and cab["drawer_bottom_joint"] <= 0.41  # prismatic range [0, 0.4] m
    assert cab["door_left_joint"] <= 1.58 and cab["door_right_joint"] <= 1.58  # hinge range 90 deg
    # gains as Isaac Lab reads them from the USD drives (stiffness None in FRANKA_PANDA_CFG): the MJCF servos
    kp = dict(zip(out["joint_names"], out["joint_stiffness"]))
    assert kp["panda_joint1"] == pytest.approx(400.0, rel=1e-3) and kp["panda_finger_joint1"] == pytest.approx(1e4)
    assert out["truncated"] >= NUM_ENVS  # 1 s episodes end by time-out
    assert {"panda_joint1", "panda_finger_joint1", "panda_finger_joint2"} <= set(out["joint_names"])
    assert not math.isnan(sum(out["masses"]))
