"""Local stand-ins for the NVIDIA assets that five Isaac Lab 3.0 tasks load, made from this repository's MJCF.

``python -m meow_isaac.envs.isaaclab_assets OUT_DIR`` writes an ``ISAACSIM_ASSET_ROOT`` tree. With
``ISAACSIM_ASSET_ROOT=OUT_DIR`` set before ``isaaclab`` is imported, these tasks run unmodified and offline:

========================================  ==================================================================
task (Isaac Lab 3.0.0 gym id)             files under OUT_DIR (the paths ``isaaclab_assets`` / the task cfgs read)
========================================  ==================================================================
every task                                ``Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/
                                          default_ground_plane.usda`` (``GroundPlaneCfg`` / plane terrain)
``Isaac-Ant-Direct``                      ``Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd``
``Isaac-Humanoid-Direct``                 ``Isaac/Robots/IsaacSim/Humanoid/humanoid_instanceable.usd``
``Isaac-Velocity-Flat-AnymalD``           ``Isaac/IsaacLab/Robots/ANYbotics/ANYmal-D/anymal_d.usd``,
                                          ``Isaac/IsaacLab/ActuatorNets/ANYbotics/anydrive_3_lstm_jit.pt``
``Isaac-Reorient-Cube-Allegro-Direct``    ``Isaac/Robots/WonikRobotics/AllegroHand/allegro_hand_instanceable.usd``,
                                          ``Isaac/Props/Blocks/DexCube/dex_cube_instanceable.usd``
``Isaac-Open-Drawer-Franka-Direct``       ``Isaac/IsaacLab/Robots/FrankaEmika/franka_panda.usda``,
                                          ``Isaac/Props/Sektion_Cabinet/sektion_cabinet_instanceable.usd``
========================================  ==================================================================

They are stand-ins, not copies: geometry (primitive shapes), masses and inertias are those of
``tasks/assets/*.xml`` (``nv_ant``, ``nv_humanoid``, ``anymal``, ``allegro_hand``, ``franka_cabinet``), so results
differ from runs on NVIDIA's meshes. ``README.txt`` in the tree says so. Users with network access keep NVIDIA's
assets (leave ``ISAACSIM_ASSET_ROOT`` unset). The USD is authored for Isaac Lab 3's kit-less Newton backend
(MuJoCo-Warp); multi-axis joints are stacked single-axis joints, which Newton merges into one D6 joint.

How it is made (which interpreter runs what):

1. The MJCF edit and the USD conversion run in a separate Python 3.10-3.12 venv with NVIDIA/Newton's
   ``mujoco-usd-converter`` (it pins ``mujoco>=3.16,<3.17`` and brings ``usd-exchange``'s ``pxr``; Isaac Lab 3.0
   pins ``mujoco==3.12``, so it cannot share Isaac Lab's venv). ``scripts/isaaclab3_assets.sh`` builds that venv at
   ``~/.cache/meow-isaac/usdconv`` when absent. This file runs there as a plain script (``python isaaclab_assets.py
   --usd-only OUT_DIR``: stdlib + ``mujoco`` + ``mujoco_usd_converter`` + ``pxr``, no project imports).
   Per model: a ``mujoco.MjSpec`` pass (drop the floor, lights, cameras, sensors, actuators and keyframes; keep
   the robot's subtree and its contact excludes, which the converter writes as ``UsdPhysics.FilteredPairsAPI``;
   root body at the identity pose, since Isaac Lab's ``init_state`` places it; per-task bodies and joints such as
   ANYmal's ``*_FOOT`` bodies and the cabinet's doors, bottom drawer and ``drawer_handle_top``), then
   ``mujoco_usd_converter.Converter``, then a ``pxr`` pass: every rigid body becomes a direct child of the asset's
   default prim at its world pose at ``qpos0``; joints go to ``<root>/joints`` (for Ant and Humanoid named after
   their child body as NVIDIA's assets are, multi-axis bodies ``right_thigh``, ``right_thigh_1``, ... ordered x, y,
   z so Isaac Lab sees ``right_thigh:0..2``; world-side joint ends get no body target); ``MjcActuator`` prims and
   all ``mjc:`` / ``newton:`` attributes and schemas go (Isaac Lab drives the joints and sets the solver), except
   the joint armature of the robots in ``KEEP_ARMATURE``; masses, centres of mass and inertias are written from
   the compiled ``mujoco.MjModel`` (``UsdPhysics.MassAPI`` on each body); the Franka gets ``UsdPhysics.DriveAPI``
   gains from its MJCF servos (its Isaac Lab cfg reads stiffness/damping from the USD) and a ``NewtonMimicAPI`` on
   ``panda_finger_joint2`` (the cfg leaves that finger undriven).
2. The ANYmal actuator-net file is a TorchScript PD stand-in (``PDStandInActuatorNet``: the LSTM interface of
   ``isaaclab.actuators.ActuatorNetLSTM``, torque = 80 (q_des - q) - 2 qdot, legged_gym's ANYmal-C joint PD),
   written by the interpreter that runs the CLI, which needs ``torch``. Preferably run the CLI with the Python
   that will load the tree (Isaac Lab's venv); a file saved by torch 2.13 was also seen to load in 2.11.
3. The ground plane is written with ``pxr`` in step 1.

The CLI (any Python >= 3.8 with ``torch``) runs step 1 in-process when ``mujoco_usd_converter`` imports, else in the
interpreter named by ``--converter-python`` / ``$MEOW_USDCONV_PYTHON`` / ``~/.cache/meow-isaac/usdconv/bin/python``.

Sources followed: Isaac Lab 3.0.0 ``isaaclab/utils/assets.py`` (``ISAACSIM_ASSET_ROOT`` -> ``ISAAC_NUCLEUS_DIR =
root/Isaac``, ``ISAACLAB_NUCLEUS_DIR = root/Isaac/IsaacLab``), ``isaaclab_assets/robots/{ant,humanoid,anymal,
allegro,franka}.py``, ``isaaclab_tasks/core/{locomotion,velocity,reorient,cabinet}``,
``isaaclab/sim/spawners/from_files/from_files.py`` (ground-plane layout); Newton 1.6 ``newton/_src/utils/
import_usd.py`` (joint merging, mimic); ``isaaclab_newton/assets/articulation/articulation.py`` (DOF names).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Tuple

REPO_ROOT = Path(__file__).resolve().parents[2]
MJCF_DIR = REPO_ROOT / "tasks" / "assets"
DEFAULT_CONVERTER_PYTHON = Path.home() / ".cache" / "meow-isaac" / "usdconv" / "bin" / "python"
CONVERTER_REQUIREMENT = "mujoco-usd-converter>=0.8,<0.9"

GROUND_PLANE = "Isaac/IsaacLab/Environments/Grid/default_ground_plane_checker_v1/default_ground_plane.usda"
ACTUATOR_NET = "Isaac/IsaacLab/ActuatorNets/ANYbotics/anydrive_3_lstm_jit.pt"

# one USD file per entry: relative path -> (MJCF file, top-level bodies kept, spec edit, joint naming)
ROBOTS = {
    "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd": ("nv_ant.xml", ["torso"], None, "child_body"),
    "Isaac/Robots/IsaacSim/Humanoid/humanoid_instanceable.usd": ("nv_humanoid.xml", ["torso"], None, "child_body"),
    "Isaac/IsaacLab/Robots/ANYbotics/ANYmal-D/anymal_d.usd": ("anymal.xml", ["base"], "anymal_feet", "mjcf"),
    "Isaac/Robots/WonikRobotics/AllegroHand/allegro_hand_instanceable.usd": (
        "allegro_hand.xml", ["allegro_mount"], None, "mjcf"),
    "Isaac/Props/Blocks/DexCube/dex_cube_instanceable.usd": ("allegro_hand.xml", ["object"], "cube", "mjcf"),
    "Isaac/IsaacLab/Robots/FrankaEmika/franka_panda.usda": ("franka_cabinet.xml", ["panda_link0"], "franka", "mjcf"),
    "Isaac/Props/Sektion_Cabinet/sektion_cabinet_instanceable.usd": (
        "franka_cabinet.xml", ["cabinet"], "sektion", "mjcf"),
}

# Joint armature [kg m^2] kept from the MJCF (as ``newton:armature``) where the Isaac Lab cfg does not set one and the
# MJCF value is the robot's, not a MuJoCo workaround: the Allegro's 0.001 (IsaacGymEnvs' value) and the Franka's
# 0.1 / 0.2 (Menagerie's Panda rotor inertia; the fingers' keep them from closing through the handle bar). Ant and
# Humanoid get theirs from the cfg; ANYmal's 1.0 in anymal.xml only stabilises the stiff OIGE servo and would make
# the PD stand-in's legs sluggish, so it goes.
KEEP_ARMATURE = {"Isaac/Robots/WonikRobotics/AllegroHand/allegro_hand_instanceable.usd",
                 "Isaac/IsaacLab/Robots/FrankaEmika/franka_panda.usda"}

TASK_FILES = {
    "Isaac-Ant-Direct": [GROUND_PLANE, "Isaac/Robots/IsaacSim/Ant/ant_instanceable.usd"],
    "Isaac-Humanoid-Direct": [GROUND_PLANE, "Isaac/Robots/IsaacSim/Humanoid/humanoid_instanceable.usd"],
    "Isaac-Velocity-Flat-AnymalD": [GROUND_PLANE, "Isaac/IsaacLab/Robots/ANYbotics/ANYmal-D/anymal_d.usd",
                                    ACTUATOR_NET],
    "Isaac-Reorient-Cube-Allegro-Direct": [GROUND_PLANE,
                                           "Isaac/Robots/WonikRobotics/AllegroHand/allegro_hand_instanceable.usd",
                                           "Isaac/Props/Blocks/DexCube/dex_cube_instanceable.usd"],
    "Isaac-Open-Drawer-Franka-Direct": [GROUND_PLANE, "Isaac/IsaacLab/Robots/FrankaEmika/franka_panda.usda",
                                        "Isaac/Props/Sektion_Cabinet/sektion_cabinet_instanceable.usd"],
}
"""Files each supported task loads, relative to ``ISAACSIM_ASSET_ROOT``."""

# PD stand-in for the ANYdrive LSTM: legged_gym's ANYmal-C joint PD (AnymalCRoughCfg.control: stiffness 80 N m/rad,
# damping 2 N m s/rad). Isaac Lab's ANYDRIVE_3_SIMPLE_ACTUATOR_CFG (40 / 5) was tried first: too soft to hold this
# 52 kg model up (it crouched to a mean base height of 0.35 m under random targets), and kd 5 at the 5 ms
# physics step is near the explicit-damping stability limit of the light shank.
ACTUATOR_NET_KP = 80.0
ACTUATOR_NET_KD = 2.0

README_TEXT = """\
Local stand-ins for NVIDIA's Isaac Sim / Isaac Lab assets, written by meow-isaac
(python -m meow_isaac.envs.isaaclab_assets OUT_DIR) from its own MJCF models (tasks/assets/*.xml).

Geometry (primitive shapes), masses and inertias are meow-isaac's, not NVIDIA's: results differ from runs on
NVIDIA's meshes. Meant for offline clusters and CI; with network access leave ISAACSIM_ASSET_ROOT unset and use
NVIDIA's assets. Authored for Isaac Lab 3's kit-less Newton (MuJoCo-Warp) backend.

{actuator_net} is NOT ANYbotics' actuator network: it is a PD stand-in
(PDStandInActuatorNet, torque = {kp} (q_des - q) - {kd} qdot) with the input/output interface of
isaaclab.actuators.ActuatorNetLSTM.

Files per task:
{files}
"""


class AssetError(RuntimeError):
    """A dependency of the asset build is missing or a model does not have what a task needs."""


# ----------------------------------------------------------------------------------------------------------------
# Step 1 (converter venv): MjSpec pass -> mujoco-usd-converter -> pxr pass
# ----------------------------------------------------------------------------------------------------------------

def _spec(mjcf: str, keep: list, edit: str | None):
    """The MjSpec of ``mjcf`` reduced to the bodies ``keep`` (root at the identity pose) plus the edit ``edit``."""
    import mujoco
    spec = mujoco.MjSpec.from_file(str(MJCF_DIR / mjcf))
    for group in (spec.actuators, spec.sensors, spec.keys, spec.cameras, spec.lights):
        for element in list(group):
            spec.delete(element)
    world = spec.worldbody
    for geom in list(world.geoms):
        spec.delete(geom)
    for body in list(world.bodies):
        if body.name not in keep:
            spec.delete(body)
    # contact excludes between kept bodies stay (the converter writes them as UsdPhysics.FilteredPairsAPI, which
    # Newton honours; Allegro's palm / proximal-link pairs overlap at rest)
    for exclude in list(spec.excludes):
        if spec.body(exclude.bodyname1) is None or spec.body(exclude.bodyname2) is None:
            spec.delete(exclude)
    for name in keep:
        body = spec.body(name)
        body.pos = [0.0, 0.0, 0.0]
        body.alt.type = mujoco.mjtOrientation.mjORIENTATION_QUAT
        body.quat = [1.0, 0.0, 0.0, 0.0]
        body.mocap = False
    if edit is not None:
        EDITS[edit](spec)
    return spec


def _edit_anymal_feet(spec):
    """``*_FOOT`` bodies (welded to the shank at the foot frame, carrying the foot sphere), as ANYmal-D's USD has.

    The velocity task's contact sensor and rewards read ``.*FOOT`` bodies. Each foot takes 0.05 kg from its shank
    (total mass unchanged); the foot sphere (r 0.03 m, 0.0225 m above the foot frame) moves onto it.
    """
    import mujoco
    for leg in ("LF", "LH", "RF", "RH"):
        shank = spec.body(f"{leg}_SHANK")
        site = spec.site(f"{leg}_FOOT")
        sphere = spec.geom(f"{leg}_foot")
        foot = shank.add_body(name=f"{leg}_FOOT", pos=list(site.pos))
        foot.explicitinertial = True
        foot.mass = 0.05
        foot.ipos = [0.0, 0.0, 0.0225]
        foot.inertia = [0.4 * 0.05 * 0.03 ** 2] * 3
        shank.mass = shank.mass - 0.05
        geom = dict(name=f"{leg}_foot", type=mujoco.mjtGeom.mjGEOM_SPHERE, size=list(sphere.size),
                    pos=list(sphere.pos - site.pos), friction=list(sphere.friction), condim=sphere.condim,
                    rgba=list(sphere.rgba))
        spec.delete(sphere)
        spec.delete(site)
        foot.add_geom(**geom)


def _edit_cube(spec):
    """The in-hand cube alone: drop its visual face markers (the converter keeps them as guides anyway)."""
    body = spec.body("object")
    for geom in list(body.geoms):
        if geom.name != "object":
            spec.delete(geom)


def _edit_franka(spec):
    """Nothing to add: the Franka's joint and body names are NVIDIA's (``panda_joint1..7``, ``panda_hand``, ...)."""


def _edit_sektion(spec):
    """The cabinet with the four joints and the handle body Isaac Lab's cabinet task reads.

    Isaac Lab's ``CABINET_CFG`` sets ``door_left_joint``, ``door_right_joint``, ``drawer_bottom_joint`` and
    ``drawer_top_joint``; the task reads the body ``drawer_handle_top`` and offsets the grasp frame from it by
    (0.305, 0, 0.01) m. Here the closed lower front of ``franka_cabinet.xml`` becomes a bottom drawer (a copy of
    the top drawer 0.1322 m lower) and two doors (1 kg each) hinged at the outer edges in front of the carcass,
    2 cm clear of it and of the floor; the top drawer's handle geoms move onto ``drawer_handle_top``, placed so that
    the task's offset lands on the handle bar's centre (the MJCF grasp point (0.3, 0.01, 0) in the drawer frame).
    """
    import mujoco
    cab = spec.body("cabinet")
    for name in ("cab_front_lower", "cab_knob_left", "cab_knob_right"):
        spec.delete(spec.geom(name))
    top = spec.body("drawer_top")
    grasp = spec.site("drawer_grasp")
    handle = top.add_body(name="drawer_handle_top", pos=[grasp.pos[0] - 0.305, grasp.pos[1], grasp.pos[2] - 0.01])
    for name in ("handle_bar", "handle_post_left", "handle_post_right"):
        geom = spec.geom(name)
        kw = dict(name=name, type=geom.type, size=list(geom.size), fromto=list(geom.fromto), mass=geom.mass,
                  material=geom.material)
        spec.delete(geom)
        handle.add_geom(**kw)
    # fromto is in the parent frame: shift the moved handle geoms by the handle body's offset
    for geom in handle.geoms:
        ft = list(geom.fromto)
        geom.fromto = [ft[0] - handle.pos[0], ft[1] - handle.pos[1], ft[2] - handle.pos[2],
                       ft[3] - handle.pos[0], ft[4] - handle.pos[1], ft[5] - handle.pos[2]]
    spec.delete(grasp)
    # bottom drawer: the top drawer's box 0.1322 m lower, with its own bar handle
    bottom = cab.add_body(name="drawer_bottom", pos=[top.pos[0], top.pos[1], top.pos[2] - 0.1322])
    bottom.add_joint(name="drawer_bottom_joint", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[1, 0, 0], range=[0, 0.4])
    box = mujoco.mjtGeom.mjGEOM_BOX
    for name, pos, size, mass in (("bottom_front", [0.26, 0, 0], [0.01, 0.37, 0.05], 0.4),
                                  ("bottom_bottom", [0, 0, -0.04], [0.26, 0.35, 0.01], 0.3),
                                  ("bottom_back", [-0.25, 0, -0.005], [0.01, 0.35, 0.03], 0.1),
                                  ("bottom_left", [0, 0.355, -0.005], [0.26, 0.005, 0.03], 0.1),
                                  ("bottom_right", [0, -0.355, -0.005], [0.26, 0.005, 0.03], 0.1)):
        bottom.add_geom(name=name, type=box, pos=pos, size=size, mass=mass, material="drawer")
    bottom.add_geom(name="bottom_handle", type=mujoco.mjtGeom.mjGEOM_CAPSULE, fromto=[0.3, -0.09, 0, 0.3, 0.11, 0],
                    size=[0.01, 0, 0], mass=0.1, material="handle")
    # doors: z from -0.38 to 0.12 in the cabinet frame (the cabinet stands at z = 0.4), hinged at y = +-0.375
    for side, sign, lo, hi in (("left", 1.0, 0.0, 1.5708), ("right", -1.0, -1.5708, 0.0)):
        door = cab.add_body(name=f"door_{side}", pos=[0.342, sign * 0.375, -0.13])
        door.add_joint(name=f"door_{side}_joint", type=mujoco.mjtJoint.mjJNT_HINGE, axis=[0, 0, 1], range=[lo, hi])
        door.add_geom(name=f"door_{side}_panel", type=box, pos=[0, -sign * 0.185, 0], size=[0.01, 0.185, 0.25],
                      mass=1.0, material="wood")
        door.add_geom(name=f"door_{side}_knob", type=mujoco.mjtGeom.mjGEOM_CAPSULE,
                      fromto=[0.025, -sign * 0.33, -0.05, 0.025, -sign * 0.33, 0.1], size=[0.008, 0, 0], mass=0.02,
                      material="handle")


EDITS = {"anymal_feet": _edit_anymal_feet, "cube": _edit_cube, "franka": _edit_franka, "sektion": _edit_sektion}


def _axis_rank(axis) -> float:
    """0/1/2 for a joint axis along x/y/z (either sign), else 3 + nothing: keeps MJCF order for other axes."""
    a = [abs(float(v)) for v in axis]
    n = math.sqrt(sum(v * v for v in a)) or 1.0
    for k in range(3):
        if abs(a[k] / n - 1.0) < 1e-6:
            return k
    return 3


def _joint_names(model, naming: str) -> dict:
    """MJCF joint name -> USD joint name; ``child_body``: NVIDIA's naming (``body``, ``body_1``, ... in x, y, z order).

    Isaac Lab names the DOFs of a merged multi-axis joint ``<first joint prim>:<k>``, so ``right_thigh`` (hip_x),
    ``right_thigh_1`` (hip_y), ``right_thigh_2`` (hip_z) read as ``right_thigh:0..2`` as in NVIDIA's humanoid (its
    gear table gives ``:1`` the 135 N m of hip_y). Returns an insertion-ordered dict (the USD joint order).
    """
    import mujoco
    out = {}
    for b in range(1, model.nbody):
        jids = [j for j in range(model.njnt) if model.jnt_bodyid[j] == b
                and int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))]
        if naming == "child_body":
            body = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b)
            jids.sort(key=lambda j: (_axis_rank(model.jnt_axis[j]), j))
            for k, j in enumerate(jids):
                out[mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)] = body if k == 0 else f"{body}_{k}"
        else:
            for j in jids:
                name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)
                out[name] = name
    return out


def _strip_engine_schemas(layer, keep_armature: bool) -> None:
    """Remove every ``mjc:``/``newton:`` property and every Mjc*/Newton* applied schema from ``layer``.

    With ``keep_armature``, joints keep ``newton:armature`` and their ``NewtonJointAPI``.
    """
    from pxr import Sdf

    def visit(path):
        spec = layer.GetObjectAtPath(path)
        if not isinstance(spec, Sdf.PrimSpec):
            return
        kept_props = False
        for prop in list(spec.properties):
            if keep_armature and prop.name == "newton:armature":
                kept_props = True
            elif prop.name.startswith(("mjc:", "newton:")):
                spec.RemoveProperty(prop)
        schemas = spec.GetInfo("apiSchemas") if spec.HasInfo("apiSchemas") else None
        if schemas is not None:
            kept = [s for s in schemas.GetAddedOrExplicitItems()
                    if not s.startswith(("Mjc", "Newton")) or (kept_props and s == "NewtonJointAPI")]
            spec.SetInfo("apiSchemas", Sdf.TokenListOp.CreateExplicit(kept))
    layer.Traverse(Sdf.Path.absoluteRootPath, visit)


def _gf_quat(q_wxyz):
    from pxr import Gf
    return Gf.Quatf(float(q_wxyz[0]), Gf.Vec3f(float(q_wxyz[1]), float(q_wxyz[2]), float(q_wxyz[3])))


def _build_robot(rel: str, mjcf: str, keep: list, edit, naming: str, out_root: Path, work: Path) -> dict:
    """Write one asset USD at ``out_root / rel``; returns a summary (bodies, joints, total mass)."""
    import mujoco
    import mujoco_usd_converter
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics

    spec = _spec(mjcf, keep, edit)
    model = spec.compile()
    joint_names = _joint_names(model, naming)
    tag = Path(rel).stem
    xml = work / f"{tag}.xml"
    xml.write_text(spec.to_xml())
    conv_dir = work / tag
    asset = mujoco_usd_converter.Converter(layer_structure=False, scene=False).convert(str(xml), str(conv_dir))
    src_stage = Usd.Stage.Open(asset.path)
    for prim in src_stage.Traverse():  # inline instanced materials (no prototype prims outside the asset's root)
        if prim.IsInstanceable():
            prim.SetInstanceable(False)
    src = src_stage.Flatten()
    model_root = src_stage.GetDefaultPrim().GetPath()  # /<modelname>
    root = Sdf.Path(f"/{Path(rel).stem.replace('_instanceable', '')}")

    bodies = [p for p in src_stage.Traverse() if p.HasAPI(UsdPhysics.RigidBodyAPI)]
    joints = [p for p in src_stage.Traverse() if p.IsA(UsdPhysics.Joint)]
    body_names = [p.GetName() for p in bodies]
    if len(set(body_names)) != len(body_names):
        raise AssetError(f"{mjcf}: body names repeat, cannot flatten: {body_names}")
    path_map = {b.GetPath(): root.AppendChild(b.GetName()) for b in bodies}

    out = Sdf.Layer.CreateAnonymous(".usda")
    out.defaultPrim = root.name
    root_spec = Sdf.CreatePrimInLayer(out, root)
    root_spec.specifier = Sdf.SpecifierDef
    root_spec.typeName = "Xform"
    root_spec.kind = "component"
    # materials (visual + physics), renamed under the new root; MjcActuator prims are not copied
    for scope in ("Materials", "Physics"):
        sp = model_root.AppendChild(scope)
        if src.GetPrimAtPath(sp):
            Sdf.CopySpec(src, sp, out, root.AppendChild(scope))
            path_map[sp] = root.AppendChild(scope)
            for child in list(out.GetPrimAtPath(root.AppendChild(scope)).nameChildren):
                if child.typeName == "MjcActuator":
                    del out.GetPrimAtPath(root.AppendChild(scope)).nameChildren[child.name]
    # bodies: direct children of the root, at their world pose at qpos0, without nested bodies / joints
    xcache = UsdGeom.XformCache()
    for b in bodies:
        dst = path_map[b.GetPath()]
        Sdf.CopySpec(src, b.GetPath(), out, dst)
        dspec = out.GetPrimAtPath(dst)
        for child in list(dspec.nameChildren):
            cpath = b.GetPath().AppendChild(child.name)
            cprim = src_stage.GetPrimAtPath(cpath)
            if cprim.HasAPI(UsdPhysics.RigidBodyAPI) or cprim.IsA(UsdPhysics.Joint):
                del dspec.nameChildren[child.name]
        m = xcache.GetLocalToWorldTransform(b)
        tr = m.ExtractTranslation()
        rot = m.ExtractRotationQuat()
        for prop in list(dspec.properties):
            if prop.name.startswith("xformOp") or prop.name == "xformOpOrder":
                dspec.RemoveProperty(prop)
        for name, tname, value in (("xformOp:translate", Sdf.ValueTypeNames.Double3, Gf.Vec3d(tr)),
                                   ("xformOp:orient", Sdf.ValueTypeNames.Quatd, Gf.Quatd(rot)),
                                   ("xformOp:scale", Sdf.ValueTypeNames.Double3, Gf.Vec3d(1, 1, 1))):
            Sdf.AttributeSpec(dspec, name, tname).default = value
        Sdf.AttributeSpec(dspec, "xformOpOrder", Sdf.ValueTypeNames.TokenArray,
                          Sdf.VariabilityUniform).default = ["xformOp:translate", "xformOp:orient", "xformOp:scale"]
    # joints under <root>/joints, renamed and in the order of joint_names
    joints_scope = root.AppendChild("joints")
    if joints:
        js = Sdf.CreatePrimInLayer(out, joints_scope)
        js.specifier = Sdf.SpecifierDef
        js.typeName = "Scope"
    src_by_name = {j.GetName(): j for j in joints}
    ordered = [(src_by_name[m], u) for m, u in joint_names.items() if m in src_by_name]
    missing = [m for m in joint_names if m not in src_by_name]
    if missing:
        raise AssetError(f"{mjcf}: the converter wrote no joint prim for {missing}")
    for j in joints:  # fixed joints (welded bodies, fixed base): named after their child body
        if not (j.IsA(UsdPhysics.RevoluteJoint) or j.IsA(UsdPhysics.PrismaticJoint)):
            b1 = UsdPhysics.Joint(j).GetBody1Rel().GetTargets()
            ordered.append((j, (b1[0].name if b1 else j.GetName()) + ("_fixed" if naming == "mjcf" else "")))
    used = set()
    for j, name in ordered:
        if name in used or name in body_names and naming == "mjcf":
            raise AssetError(f"{mjcf}: joint name {name!r} repeats or equals a body name")
        used.add(name)
        dst = joints_scope.AppendChild(name)
        Sdf.CopySpec(src, j.GetPath(), out, dst)
        path_map[j.GetPath()] = dst
    # Sdf.CopySpec already rewrote targets inside each copied body subtree (e.g. a filtered pair from palm_link to
    # its nested index_link_1 became <root>/palm_link/index_link_0/index_link_1): map those paths too
    body_paths = [b.GetPath() for b in bodies]
    for b in body_paths:
        for d in list(path_map):
            if d != b and d.HasPrefix(b) and d in path_map:
                path_map.setdefault(d.ReplacePrefix(b, path_map[b]), path_map[d])
    # rewrite every relationship target (joint bodies, material bindings, filtered pairs) into the new layout
    def remap(path):
        for old in sorted(path_map, key=lambda p: -p.pathElementCount):
            if path.HasPrefix(old):
                return path.ReplacePrefix(old, path_map[old])
        return path

    new_bodies = {path_map[b] for b in body_paths}

    def fix(path):
        spec_ = out.GetObjectAtPath(path)
        if isinstance(spec_, Sdf.PrimSpec):
            for rel in spec_.relationships:
                items = [remap(t) for t in rel.targetPathList.GetAddedOrExplicitItems()]
                if rel.name in ("physics:body0", "physics:body1"):
                    # the converter points world-side ends at the model's root Xform: no target means world
                    items = [t for t in items if t in new_bodies]
                rel.targetPathList.ClearEdits()
                rel.targetPathList.explicitItems = items
            for attr in spec_.attributes:
                conns = list(attr.connectionPathList.GetAddedOrExplicitItems())
                if conns:
                    attr.connectionPathList.ClearEdits()
                    attr.connectionPathList.explicitItems = [remap(c) for c in conns]
            if spec_.referenceList.GetAddedOrExplicitItems() or spec_.inheritPathList.GetAddedOrExplicitItems():
                pass  # prototypes keep their absolute root paths
    out.Traverse(Sdf.Path.absoluteRootPath, fix)
    _strip_engine_schemas(out, keep_armature=rel in KEEP_ARMATURE)

    stage = Usd.Stage.Open(out)
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    UsdPhysics.SetStageKilogramsPerUnit(stage, 1.0)
    # masses from the compiled MjModel; colliders carry no density so the body values rule
    total = 0.0
    for b in range(1, model.nbody):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b)
        prim = stage.GetPrimAtPath(root.AppendChild(name))
        if not prim:
            raise AssetError(f"{mjcf}: body {name!r} missing after conversion")
        for desc in Usd.PrimRange(prim):
            if desc != prim and desc.HasAPI(UsdPhysics.MassAPI):
                desc.RemoveAPI(UsdPhysics.MassAPI)
                for attr in ("physics:density", "physics:mass"):
                    if desc.HasAttribute(attr):
                        desc.RemoveProperty(attr)
        mass = UsdPhysics.MassAPI.Apply(prim)
        mass.CreateMassAttr(float(model.body_mass[b]))
        mass.CreateCenterOfMassAttr(Gf.Vec3f(*[float(v) for v in model.body_ipos[b]]))
        mass.CreateDiagonalInertiaAttr(Gf.Vec3f(*[float(v) for v in model.body_inertia[b]]))
        mass.CreatePrincipalAxesAttr(_gf_quat(model.body_iquat[b]))
        total += float(model.body_mass[b])
    root_prim = stage.GetPrimAtPath(root)
    if edit == "franka":
        _franka_drives(stage, root, spec)
    if not any(stage.GetPrimAtPath(root.AppendChild(n)).HasAPI(UsdPhysics.ArticulationRootAPI) for n in body_names):
        if len(bodies) > 1 or joints:
            UsdPhysics.ArticulationRootAPI.Apply(root_prim)
    dst_file = out_root / rel
    dst_file.parent.mkdir(parents=True, exist_ok=True)
    out.Export(str(dst_file), comment=f"meow-isaac stand-in made from tasks/assets/{mjcf}; not NVIDIA's asset")
    return {"file": rel, "mjcf": mjcf, "bodies": body_names, "joints": [n for _, n in ordered],
            "mass_kg": round(total, 4)}


def _franka_drives(stage, root, spec) -> None:
    """DriveAPI gains from the MJCF position servos, and finger 2 as a mimic of finger 1.

    Isaac Lab's ``FRANKA_PANDA_CFG`` leaves ``stiffness``/``damping`` ``None`` (read from the USD) and drives only
    ``panda_finger_joint1``. USD angular drive gains are per degree: kp [N m/deg] = kp [N m/rad] * pi / 180.
    """
    from pxr import Sdf, UsdPhysics
    import mujoco
    fc = mujoco.MjSpec.from_file(str(MJCF_DIR / "franka_cabinet.xml"))
    model = fc.compile()
    for a in range(model.nu):
        jname = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, model.actuator_trnid[a, 0])
        prim = stage.GetPrimAtPath(root.AppendChild("joints").AppendChild(jname))
        kp = float(model.actuator_gainprm[a, 0])
        kv = -float(model.actuator_biasprm[a, 2])
        fmax = float(model.actuator_forcerange[a, 1])
        angular = prim.IsA(UsdPhysics.RevoluteJoint)
        scale = math.pi / 180.0 if angular else 1.0
        drive = UsdPhysics.DriveAPI.Apply(prim, "angular" if angular else "linear")
        drive.CreateTypeAttr("force")
        drive.CreateStiffnessAttr(kp * scale)
        drive.CreateDampingAttr(kv * scale)
        drive.CreateMaxForceAttr(fmax)
        drive.CreateTargetPositionAttr(0.0)
    follower = stage.GetPrimAtPath(root.AppendChild("joints").AppendChild("panda_finger_joint2"))
    leader = root.AppendChild("joints").AppendChild("panda_finger_joint1")
    follower.AddAppliedSchema("NewtonMimicAPI")
    follower.CreateRelationship("newton:mimicJoint").SetTargets([leader])
    follower.CreateAttribute("newton:mimicCoef0", Sdf.ValueTypeNames.Float).Set(0.0)
    follower.CreateAttribute("newton:mimicCoef1", Sdf.ValueTypeNames.Float).Set(1.0)


def _write_ground_plane(out_root: Path) -> str:
    """The default ground plane in the layout ``spawn_ground_plane`` edits (``/World`` default prim).

    ``/World/GroundPlane/CollisionPlane`` (an invisible collision ``Plane``, the first ``Plane`` child, which the
    spawner binds the terrain's physics material to), ``/World/Environment`` (scaled by the spawner to ``size``)
    with a 100 m x 100 m quad ``Geometry`` carrying ``primvars:st``, and ``/World/Looks/theGrid/Shader`` (tinted by
    the spawner when a colour is configured).
    """
    from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics, UsdShade
    dst = out_root / GROUND_PLANE
    dst.parent.mkdir(parents=True, exist_ok=True)
    stage = Usd.Stage.CreateNew(str(dst))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    UsdGeom.Xform.Define(stage, "/World/GroundPlane")
    plane = UsdGeom.Plane.Define(stage, "/World/GroundPlane/CollisionPlane")
    plane.CreateAxisAttr("Z")
    plane.CreateWidthAttr(100.0)
    plane.CreateLengthAttr(100.0)
    plane.CreateVisibilityAttr(UsdGeom.Tokens.invisible)
    UsdPhysics.CollisionAPI.Apply(plane.GetPrim())
    env = UsdGeom.Xform.Define(stage, "/World/Environment")
    env.AddScaleOp().Set(Gf.Vec3f(1.0, 1.0, 1.0))
    mesh = UsdGeom.Mesh.Define(stage, "/World/Environment/Geometry")
    h = 50.0
    mesh.CreatePointsAttr([Gf.Vec3f(-h, -h, 0), Gf.Vec3f(h, -h, 0), Gf.Vec3f(h, h, 0), Gf.Vec3f(-h, h, 0)])
    mesh.CreateFaceVertexCountsAttr([4])
    mesh.CreateFaceVertexIndicesAttr([0, 1, 2, 3])
    mesh.CreateExtentAttr([Gf.Vec3f(-h, -h, 0), Gf.Vec3f(h, h, 0)])
    UsdGeom.PrimvarsAPI(mesh).CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex).Set(
        [Gf.Vec2f(-25, -25), Gf.Vec2f(25, -25), Gf.Vec2f(25, 25), Gf.Vec2f(-25, 25)])
    material = UsdShade.Material.Define(stage, "/World/Looks/theGrid")
    shader = UsdShade.Shader.Define(stage, "/World/Looks/theGrid/Shader")
    shader.CreateIdAttr("UsdPreviewSurface")
    shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(0.45, 0.45, 0.45))
    shader.CreateInput("diffuse_tint", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(1.0, 1.0, 1.0))
    material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
    stage.GetRootLayer().Save()
    return GROUND_PLANE


def build_usd(out_root: Path, files: list | None = None) -> list:
    """Step 1: write the ground plane and the robot / prop USD files under ``out_root`` (converter venv).

    Args:
        out_root: the ``ISAACSIM_ASSET_ROOT`` folder (created if absent).
        files: relative paths (keys of ``ROBOTS`` or ``GROUND_PLANE``) to write; ``None``: all.

    Returns:
        One summary dict per file written (``file``, and for robots ``bodies``, ``joints``, ``mass_kg``).

    Raises:
        AssetError: ``mujoco_usd_converter`` / ``pxr`` / ``mujoco`` not importable, or a model lacks what the
            flattening needs.
    """
    try:
        import mujoco  # noqa: F401
        import mujoco_usd_converter  # noqa: F401
        from pxr import Usd  # noqa: F401
    except ImportError as exc:
        raise AssetError(f"{exc.name} is missing: pip install '{CONVERTER_REQUIREMENT}' into a Python 3.10-3.12 "
                         f"venv (scripts/isaaclab3_assets.sh builds one at ~/.cache/meow-isaac/usdconv)") from exc
    wanted = list(ROBOTS) + [GROUND_PLANE] if files is None else list(files)
    unknown = [f for f in wanted if f not in ROBOTS and f != GROUND_PLANE]
    if unknown:
        raise AssetError(f"unknown asset file(s) {unknown}; known: {sorted(ROBOTS) + [GROUND_PLANE]}")
    summary = []
    with tempfile.TemporaryDirectory(prefix="meow-usdconv-") as work:
        for rel in wanted:
            if rel == GROUND_PLANE:
                summary.append({"file": _write_ground_plane(out_root)})
            else:
                mjcf, keep, edit, naming = ROBOTS[rel]
                summary.append(_build_robot(rel, mjcf, keep, edit, naming, out_root, Path(work)))
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Step 2 (caller's Python, with torch): the ANYmal actuator-net stand-in
# ----------------------------------------------------------------------------------------------------------------

def write_actuator_net(out_root: Path) -> str:
    """Write the TorchScript PD stand-in for ANYbotics' ANYdrive LSTM at ``out_root / ACTUATOR_NET``.

    Interface of ``isaaclab.actuators.ActuatorNetLSTM`` (Isaac Lab 3.0 ``isaaclab/actuators/actuator_net.py``):
    ``network(x, (h, c)) -> (torque, (h, c))`` with ``x`` of shape (N, 1, 2) float32 = (q_des - q [rad],
    qdot [rad/s]) per joint, ``h``/``c`` of shape (1, N, 1) (read from ``network.lstm``'s weights: one layer,
    hidden size 1). Output ``torque`` (N, 1) [N m] = ``ACTUATOR_NET_KP * x[:, 0, 0] - ACTUATOR_NET_KD * x[:, 0, 1]``;
    the LSTM runs only to carry the state Isaac Lab resets and stores.

    Raises:
        AssetError: torch is not importable in this interpreter.
    """
    try:
        import torch
    except ImportError as exc:
        raise AssetError("torch is missing: run this CLI with the Python of the Isaac Lab venv (it has torch), "
                         "or pip install torch") from exc

    class PDStandInActuatorNet(torch.nn.Module):
        """PD stand-in (NOT ANYbotics' network) with ActuatorNetLSTM's interface."""

        def __init__(self, kp: float, kd: float):
            super().__init__()
            self.lstm = torch.nn.LSTM(input_size=2, hidden_size=1, num_layers=1, batch_first=True)
            self.kp = kp
            self.kd = kd

        def forward(self, x: torch.Tensor, hc: Tuple[torch.Tensor, torch.Tensor]):
            _, (h, c) = self.lstm(x, hc)
            torque = self.kp * x[:, 0, 0:1] - self.kd * x[:, 0, 1:2]
            return torque, (h, c)

    dst = out_root / ACTUATOR_NET
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(PDStandInActuatorNet(ACTUATOR_NET_KP, ACTUATOR_NET_KD)).save(str(dst))
    return ACTUATOR_NET


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

def _converter_python(explicit: str | None) -> str:
    """The interpreter that runs step 1: ``explicit``, ``$MEOW_USDCONV_PYTHON`` or the default venv's python."""
    for candidate in (explicit, os.environ.get("MEOW_USDCONV_PYTHON"), str(DEFAULT_CONVERTER_PYTHON)):
        if candidate:
            if Path(candidate).is_file():
                return candidate
            if candidate in (explicit, os.environ.get("MEOW_USDCONV_PYTHON")):
                raise AssetError(f"converter python {candidate!r} does not exist")
    raise AssetError(f"mujoco-usd-converter not found (not importable here, no {DEFAULT_CONVERTER_PYTHON}): run "
                     f"scripts/isaaclab3_assets.sh OUT_DIR, or pip install '{CONVERTER_REQUIREMENT}' in a Python "
                     f"3.10-3.12 venv and pass --converter-python")


def _converter_importable() -> bool:
    try:
        import mujoco_usd_converter  # noqa: F401
        from pxr import Usd  # noqa: F401
        return True
    except ImportError:
        return False


def write_tree(out_dir, converter_python: str | None = None) -> dict:
    """Write the whole ``ISAACSIM_ASSET_ROOT`` tree (USD files, actuator-net stand-in, README.txt, manifest.json).

    Args:
        out_dir: destination folder; written into a sibling temp folder and moved in place at the end, so an
            interrupted run never leaves a half tree (an existing ``out_dir`` is replaced).
        converter_python: interpreter with ``mujoco-usd-converter`` when this one lacks it (see module doc).

    Returns:
        The manifest: ``tasks`` (task id -> files), ``assets`` (per-file summaries), ``seconds``.

    Raises:
        AssetError: a dependency is missing (one line saying what to install) or the conversion failed.
    """
    t0 = time.time()
    out = Path(out_dir).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=str(out.parent)))
    try:
        if _converter_importable() and converter_python is None:
            summary = build_usd(tmp)
        else:
            py = _converter_python(converter_python)
            summary_file = tmp / "_summary.json"
            proc = subprocess.run([py, str(Path(__file__).resolve()), "--usd-only", str(tmp),
                                   "--summary", str(summary_file)], capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
                raise AssetError(f"USD conversion with {py} failed (rc {proc.returncode}):\n" + "\n".join(tail))
            summary = json.loads(summary_file.read_text())
            summary_file.unlink()
        summary.append({"file": write_actuator_net(tmp)})
        files = "\n".join(f"  {task}:\n" + "\n".join(f"    {f}" for f in fs) for task, fs in TASK_FILES.items())
        (tmp / "README.txt").write_text(README_TEXT.format(actuator_net=ACTUATOR_NET, kp=ACTUATOR_NET_KP,
                                                           kd=ACTUATOR_NET_KD, files=files))
        manifest = {"tasks": TASK_FILES, "assets": summary, "seconds": round(time.time() - t0, 2)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        missing = [f for fs in TASK_FILES.values() for f in fs if not (tmp / f).is_file()]
        if missing:
            raise AssetError(f"files not written: {missing}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
        return manifest
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    """CLI: ``python -m meow_isaac.envs.isaaclab_assets OUT_DIR [--converter-python PY]``; exit 1 on AssetError."""
    parser = argparse.ArgumentParser(prog="python -m meow_isaac.envs.isaaclab_assets",
                                     description="Write local stand-ins for the NVIDIA assets of five Isaac Lab 3 "
                                                 "tasks (an ISAACSIM_ASSET_ROOT tree) from meow-isaac's MJCF.")
    parser.add_argument("out_dir", help="destination ISAACSIM_ASSET_ROOT folder (replaced if it exists)")
    parser.add_argument("--converter-python", default=None,
                        help="Python with mujoco-usd-converter (default: this one if it has it, else "
                             "$MEOW_USDCONV_PYTHON, else ~/.cache/meow-isaac/usdconv/bin/python)")
    parser.add_argument("--usd-only", action="store_true", help=argparse.SUPPRESS)  # step 1 in the converter venv
    parser.add_argument("--summary", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.usd_only:
            summary = build_usd(Path(args.out_dir))
            if args.summary:
                Path(args.summary).write_text(json.dumps(summary))
            return 0
        manifest = write_tree(args.out_dir, args.converter_python)
    except AssetError as exc:
        print(f"isaaclab_assets: {exc}", file=sys.stderr)
        return 1
    print(f"isaaclab_assets: wrote {len(manifest['assets'])} files to {Path(args.out_dir).resolve()} in "
          f"{manifest['seconds']} s (export ISAACSIM_ASSET_ROOT={Path(args.out_dir).resolve()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
