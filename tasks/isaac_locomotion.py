"""Omniverse Isaac Gym (OIGE) **Ant** and **Humanoid** locomotion tasks on the embedded MuJoCo backend.

Every formula and constant is from ``shared/reference/isaac_tasks.md``: section 0 (step pipeline), 1 (shared
locomotion formulas), 2 (Ant), 3 (Humanoid). The MJCF assets are ``tasks/assets/nv_ant.xml`` and
``tasks/assets/nv_humanoid.xml`` (their header comments list how they differ from the IsaacGymEnvs files).

Design (MuJoCo side):
    * Control period 1/60 s = 2 substeps of ``timestep`` 1/120 s (OIGE: ``sim.dt`` 1/120, controlFrequencyInv 2).
    * ``step_stage = STAGE_NONE``: every observation term except the foot wrench is read from the integrated
      state (``qpos``/``qvel``), which is always current; the foot wrench (``force`` + ``torque`` site
      sensors) is then the constraint wrench solved in the last substep, i.e. the force that produced the
      current state -- the same meaning as PhysX's measured joint forces after a step -- at no extra
      forward pass.
    * Torso pose and velocities come from the free joint: ``qpos[:, 0:3]`` position, ``qpos[:, 3:7]`` (w,x,y,z),
      ``qvel[:, 0:3]`` world linear velocity of the torso origin, ``qvel[:, 3:6]`` *body-frame* angular
      velocity (rotated to world by :meth:`LocomotionTask._root_state` so that the section 1 formulas run
      unchanged on a backend that reports world velocities).
    * DOF order = the OIGE articulation order (breadth-first), which is also the actuator order of the MJCF,
      so ``ctrl[:, i]`` drives DOF ``i``; ``qpos``/``qvel`` are gathered through index tensors.
    * Episode: OIGE resets at ``progress >= episodeLength - 1`` (section 0), so ``max_episode_length`` is
      ``episodeLength - 1`` = 999 agent steps for the yaml's 1000.
    * Standard same-step auto-reset (base class) instead of OIGE's next-step reset (section 0 says this is
      fine for RL); the first observation of an episode has zero previous actions.

Upstream quirks kept on purpose (section 1, 2.2):
    * ``walk_target_angle = atan2(T_z - p_z, T_x - p_x)`` uses z, not y.
    * Ant's at-limit cost is a plain count of ``unscale(q) > 0.99`` (upper side only, weight 1 per joint);
      its ``jointsAtLimitCost`` is accepted but unused.
    * ``deathCost`` *replaces* the whole reward on a step with torso height below ``terminationHeight``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Tuple, Union

import mujoco
import torch

from meow_isaac.envs.mujoco_batch import STAGE_NONE, MujocoBatchEnv
from tasks.torch_utils import get_euler_xyz, normalize_angle, quat_rotate, quat_rotate_inverse, unscale

ASSETS = Path(__file__).resolve().parent / "assets"
CONTROL_DT = 1.0 / 60.0  # s, the agent step (section 0) and the potentials' dt (section 1)
TARGET = (1000.0, 0.0, 0.0)  # m, env-local walk target (section 1)


@dataclasses.dataclass(frozen=True)
class LocomotionCfg:
    """Task constants, named as the ``env`` keys of OIGE ``cfg/task/{Ant,Humanoid}.yaml`` (sections 2.2, 3.2)."""

    headingWeight: float
    upWeight: float
    actionsCost: float
    energyCost: float
    dofVelocityScale: float
    angularVelocityScale: float
    contactForceScale: float
    jointsAtLimitCost: float
    deathCost: float
    terminationHeight: float  # m
    alive_reward_scale: float
    powerScale: float
    episodeLength: int  # OIGE maxLen; episodes last at most episodeLength - 1 agent steps

    @classmethod
    def from_dict(cls, defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> "LocomotionCfg":
        """``defaults`` updated with ``overrides``.

        Raises:
            ValueError: an override key is not one of the fields, or ``episodeLength < 2``.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        for key in overrides:
            if key not in names:
                raise ValueError(f"unknown env_cfg key {key!r}; accepted keys: {', '.join(names)}")
        merged = {**defaults, **overrides}
        values = {k: (int(merged[k]) if k == "episodeLength" else float(merged[k])) for k in names}
        if values["episodeLength"] < 2:
            raise ValueError(f"episodeLength={values['episodeLength']} is invalid: expected an integer >= 2")
        return cls(**values)


class LocomotionTask(MujocoBatchEnv):
    """Shared OIGE locomotion task (section 1); subclasses give the asset and constants.

    Observation ``(N, 12 + 3n + 6k)`` for ``n`` DOFs and ``k`` feet (section 1 table)::

        0        torso height p_z [m]
        1:4      body-frame linear velocity [m/s]
        4:7      body-frame angular velocity [rad/s] * angularVelocityScale
        7, 8, 9  normalize_angle(yaw), normalize_angle(roll), normalize_angle(angle_to_target) [rad]
        10, 11   up_proj, heading_proj
        12:12+n  unscale(q_dof, lo, hi) in [-1, 1]
        ..+n     q̇_dof * dofVelocityScale
        ..+6k    per foot (force xyz [N], torque xyz [N m]) in the foot joint frame * contactForceScale
        ..+n     actions applied in this step (zeros on the first observation of an episode)

    Action ``(N, n)`` in ``[-1, 1]``: joint torque ``a * gear * powerScale`` [N m], held for both substeps.
    """

    asset: ClassVar[str]  # file under tasks/assets
    dof_names: ClassVar[Tuple[str, ...]]  # DOF order of obs/actions = actuator order of the asset
    feet: ClassVar[Tuple[str, ...]]  # foot sites; sensors "<foot>_force", "<foot>_torque"
    start_height: ClassVar[float]  # m, initial torso z (root pose has no reset noise)
    defaults: ClassVar[Dict[str, Any]]  # OIGE yaml constants (LocomotionCfg keys)

    def __init__(self, env_cfg: Mapping[str, Any], num_envs: int, seed: int = 0,
                 device: Union[str, torch.device] = "cpu", num_threads: int = 0, sim: str = "mujoco") -> None:
        self.cfg = LocomotionCfg.from_dict(self.defaults, dict(env_cfg or {}))
        model = mujoco.MjModel.from_xml_path(str(ASSETS / self.asset))
        n, k = len(self.dof_names), len(self.feet)
        actuated = [model.joint(int(model.actuator_trnid[i, 0])).name for i in range(model.nu)]
        if actuated != list(self.dof_names):
            raise ValueError(f"{self.asset}: actuators drive {actuated}, expected the DOF order {self.dof_names}")
        super().__init__(
            model, num_envs, obs_dim=12 + 3 * n + 6 * k, action_dim=n,
            frame_skip=round(CONTROL_DT / model.opt.timestep),
            max_episode_length=self.cfg.episodeLength - 1,
            seed=seed, num_threads=num_threads, device=device, step_stage=STAGE_NONE, sim=sim)

        f64 = self.float_kw  # the engine's float dtype and device
        jnt = [model.joint(name).id for name in self.dof_names]
        self.qpos_idx = torch.as_tensor(model.jnt_qposadr[jnt], dtype=torch.long, device=self.sim_device)  # (n,)
        self.qvel_idx = torch.as_tensor(model.jnt_dofadr[jnt], dtype=torch.long, device=self.sim_device)  # (n,)
        self.dof_lower, self.dof_upper = torch.as_tensor(model.jnt_range[jnt], **f64).unbind(1)  # (n,) rad
        # q_init: the asset's zero pose clamped into the limits (section 1 "Reset"; IGE does the same).
        self.dof_init = torch.zeros(n, **f64).clamp(self.dof_lower, self.dof_upper)
        self.gear = torch.as_tensor(model.actuator_gear[:, 0], **f64)  # (n,) N m per unit action
        self.motor_effort_ratio = self.gear / self.gear.max()  # (n,), Ant: all ones
        adr = [int(model.sensor(f"{foot}_{kind}").adr[0]) for foot in self.feet for kind in ("force", "torque")]
        self.foot_idx = torch.tensor([a + j for a in adr for j in range(3)], device=self.sim_device)  # (6k,)
        self.target = torch.tensor(TARGET, **f64)  # (3,) m
        # constants made once here: torch.tensor(...) in a hook would copy host data to a GPU with a blocking copy
        self.start_root = torch.tensor([0.0, 0.0, self.start_height, 1.0, 0.0, 0.0, 0.0], **f64)  # (7,) m, quat
        self.heading_axis = torch.tensor([1.0, 0.0, 0.0], **f64)  # (3,) the body's forward axis
        self.sensordata = self.view("sensordata")
        self.actions = torch.zeros(self.num_envs, n, **f64)  # (N, n) last applied actions
        self.potentials = torch.zeros(self.num_envs, **f64)  # (N,) -|d_xy| / dt
        self._obs_cache: Union[torch.Tensor, None] = None

    # ------------------------------------------------------------------ state access
    def _root_state(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """World torso position ``(N,3)`` [m], quaternion ``(N,4)`` (w,x,y,z), linear ``(N,3)`` [m/s] and
        angular ``(N,3)`` [rad/s] velocity. MuJoCo's free joint stores angular velocity in the body frame."""
        quat = self.qpos[:, 3:7]
        return self.qpos[:, 0:3], quat, self.qvel[:, 0:3], quat_rotate(quat, self.qvel[:, 3:6])

    def _potential(self, pos: torch.Tensor) -> torch.Tensor:
        """``-|(T - p)_xy| / dt`` ``(N,)`` for torso positions ``pos`` ``(N, 3)`` (section 1)."""
        return -torch.linalg.vector_norm((self.target - pos)[:, :2], dim=-1) / CONTROL_DT

    # ------------------------------------------------------------------ task hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        """Section 1 "Reset": fixed root pose at ``start_height``, zero root velocity,
        ``q = clamp(q_init + U(-0.2, 0.2), lo, hi)`` [rad], ``q̇ = U(-0.1, 0.1)`` [rad/s]."""
        m = len(ids)
        rows = ids[:, None]
        self.qpos[ids, 0:7] = self.start_root
        self.fill_at(self.qvel, ids)
        n = len(self.dof_names)
        dof_pos = (self.dof_init + self.uniform(-0.2, 0.2, (m, n))).clamp(self.dof_lower, self.dof_upper)
        self.qpos[rows, self.qpos_idx] = dof_pos
        self.qvel[rows, self.qvel_idx] = self.uniform(-0.1, 0.1, (m, n))
        self.potentials[ids] = self._potential(self.qpos[ids, 0:3])
        self.fill_at(self.actions, ids)

    def _apply_action(self, action: torch.Tensor) -> None:
        """``ctrl = a * powerScale``; the asset's motor gear turns it into ``a * gear * powerScale`` [N m]."""
        self.actions = action.to(self.dtype)
        self.ctrl.copy_(self.actions * self.cfg.powerScale)

    def _compute_obs(self) -> torch.Tensor:
        """Section 1 observation ``(N, obs_dim)`` float64 of the current state (see the class docstring)."""
        cfg = self.cfg
        pos, quat, lin_vel, ang_vel = self._root_state()
        to_target = self.target - pos
        to_target[:, 2] = 0.0
        target_dir = to_target / torch.linalg.vector_norm(to_target, dim=-1, keepdim=True)
        heading_vec = quat_rotate(quat, self.heading_axis.expand_as(pos))
        heading_proj = (heading_vec * target_dir).sum(-1)
        up_proj = 1.0 - 2.0 * (quat[:, 1] ** 2 + quat[:, 2] ** 2)  # z of R(q) e_z
        roll, _, yaw = get_euler_xyz(quat)
        walk_target_angle = torch.atan2(self.target[2] - pos[:, 2], self.target[0] - pos[:, 0])  # quirk: z
        dof_pos = self.qpos[:, self.qpos_idx]
        dof_vel = self.qvel[:, self.qvel_idx]
        return torch.cat([
            pos[:, 2:3],
            quat_rotate_inverse(quat, lin_vel),
            quat_rotate_inverse(quat, ang_vel) * cfg.angularVelocityScale,
            normalize_angle(yaw)[:, None],
            normalize_angle(roll)[:, None],
            normalize_angle(walk_target_angle - yaw)[:, None],
            up_proj[:, None],
            heading_proj[:, None],
            unscale(dof_pos, self.dof_lower, self.dof_upper),
            dof_vel * cfg.dofVelocityScale,
            self.sensordata[:, self.foot_idx] * cfg.contactForceScale,
            self.actions,
        ], dim=-1)

    def _observe(self) -> torch.Tensor:
        """The observation; reuses the one :meth:`_reward_terminated` computed for this same state."""
        obs, self._obs_cache = self._obs_cache, None
        return obs if obs is not None else self._compute_obs()

    def _dof_at_limit_cost(self, dof_pos_unscaled: torch.Tensor) -> torch.Tensor:
        """Task-specific joint-limit cost ``(N,)`` from ``unscale(q)`` ``(N, n)``."""
        raise NotImplementedError

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Section 1 reward (read from the observation, as OIGE does) and ``p_z < terminationHeight``."""
        cfg, n = self.cfg, len(self.dof_names)
        obs = self._obs_cache = self._compute_obs()
        height, up_proj, heading_proj = obs[:, 0], obs[:, 10], obs[:, 11]
        dof_pos_unscaled, dof_vel_scaled = obs[:, 12:12 + n], obs[:, 12 + n:12 + 2 * n]
        potentials = self._potential(self.qpos[:, 0:3])
        progress = potentials - self.potentials  # (|d_prev| - |d_t|) / dt  [m/s]
        self.potentials = potentials
        heading_r = torch.where(heading_proj > 0.8, torch.full_like(heading_proj, cfg.headingWeight),
                                cfg.headingWeight * heading_proj / 0.8)
        up_r = torch.where(up_proj > 0.93, torch.full_like(up_proj, cfg.upWeight), torch.zeros_like(up_proj))
        actions_cost = (self.actions ** 2).sum(-1)
        electricity_cost = ((self.actions * dof_vel_scaled).abs() * self.motor_effort_ratio).sum(-1)
        reward = (progress + cfg.alive_reward_scale + up_r + heading_r
                  - cfg.actionsCost * actions_cost - cfg.energyCost * electricity_cost
                  - self._dof_at_limit_cost(dof_pos_unscaled))
        fallen = height < cfg.terminationHeight
        return torch.where(fallen, cfg.deathCost, reward), fallen


class Ant(LocomotionTask):
    """OIGE Ant (section 2): obs 60, act 8, ``tau = 15 * 0.5 * a`` [N m], start z 0.5 m, terminate z < 0.31 m.

    DOF order: 4 hips then 4 ankles (the breadth-first guess of section 2.1; all gears are equal).
    """

    asset = "nv_ant.xml"
    dof_names = ("hip_1", "hip_2", "hip_3", "hip_4", "ankle_1", "ankle_2", "ankle_3", "ankle_4")
    feet = ("front_left_foot", "front_right_foot", "left_back_foot", "right_back_foot")
    start_height = 0.5
    defaults = dict(headingWeight=0.5, upWeight=0.1, actionsCost=0.005, energyCost=0.05, dofVelocityScale=0.2,
                    angularVelocityScale=1.0, contactForceScale=0.1, jointsAtLimitCost=0.1, deathCost=-2.0,
                    terminationHeight=0.31, alive_reward_scale=0.5, powerScale=0.5, episodeLength=1000)

    def _dof_at_limit_cost(self, dof_pos_unscaled: torch.Tensor) -> torch.Tensor:
        """Upstream quirk (section 2.2): ``#{i : unscale(q_i) > 0.99}``, unweighted, upper side only."""
        return (dof_pos_unscaled > 0.99).sum(-1).to(dof_pos_unscaled.dtype)


class Humanoid(LocomotionTask):
    """OIGE Humanoid (section 3): obs 87, act 21, ``tau = gear * a`` (gear 22.5..135) [N m], start z 1.34 m,
    terminate z < 0.8 m.

    DOF order: OIGE's (section 3.1) with each hip's joints in MJCF order x, z, y; gear 135 on ``*_hip_y``.
    """

    asset = "nv_humanoid.xml"
    dof_names = ("abdomen_z", "abdomen_y", "right_shoulder1", "right_shoulder2", "left_shoulder1",
                 "left_shoulder2", "abdomen_x", "right_elbow", "left_elbow", "right_hip_x", "right_hip_z",
                 "right_hip_y", "left_hip_x", "left_hip_z", "left_hip_y", "right_knee", "left_knee",
                 "right_ankle_y", "right_ankle_x", "left_ankle_y", "left_ankle_x")
    feet = ("left_foot", "right_foot")
    start_height = 1.34
    defaults = dict(headingWeight=0.5, upWeight=0.1, actionsCost=0.01, energyCost=0.05, dofVelocityScale=0.1,
                    angularVelocityScale=0.25, contactForceScale=0.01, jointsAtLimitCost=0.25, deathCost=-1.0,
                    terminationHeight=0.8, alive_reward_scale=2.0, powerScale=1.0, episodeLength=1000)

    def _dof_at_limit_cost(self, dof_pos_unscaled: torch.Tensor) -> torch.Tensor:
        """Section 3.2: ``sum_i [|u_i| > 0.98] * jointsAtLimitCost * (|u_i| - 0.98) / 0.02 * motor_effort_ratio_i``."""
        u = dof_pos_unscaled.abs()
        ramp = self.cfg.jointsAtLimitCost * (u - 0.98) / 0.02 * self.motor_effort_ratio
        return torch.where(u > 0.98, ramp, 0.0).sum(-1)
