"""Omniverse Isaac Gym (OIGE) **Anymal** flat-terrain velocity-tracking task on the embedded MuJoCo backend.

Every formula and constant is from ``shared/reference/isaac_tasks.md``: section 0 (step pipeline and timing
table) and section 4 (Anymal). The MJCF asset is ``tasks/assets/anymal.xml`` (an ANYmal-C-like model from
primitive shapes; its header lists the robot facts used and the simulation choices).

Timing, reproduced from OIGE on purpose (section 0 table):
    * Physics: ``timestep`` 0.01 s x 2 substeps per agent step -> **50 Hz control** (OIGE ``sim.dt`` 0.01,
      ``controlFrequencyInv`` 2).
    * Task formulas use ``dt = 1/60`` (OIGE hard-codes it in ``tasks/anymal.py``) although an agent step lasts
      0.02 s: target integration ``13.5 * a / 60`` per step, every reward scale multiplied by 1/60, and the
      episode length ``int(episodeLength_s / (1/60) + 0.5) = 3000`` steps, i.e. 60 s of simulated time for
      ``episodeLength_s = 50``. ``TASK_DT`` is that 1/60; ``self.dt`` (0.02 s) is the real control period.

Design (MuJoCo side):
    * PD drive = 12 MuJoCo ``position`` servos (kp 22918.3 N m/rad, kv 2291.8 N m s/rad, |tau| <= 1000 N m: the
      OIGE ``set_drive(400, 40, 1000)`` per-degree gains in SI, section 4.3), damping integrated implicitly by
      ``implicitfast``; ``ctrl`` = the integrated joint targets ``clamp(q*_{t-1} + 13.5 a / 60, lo, hi)``.
      The MJCF adds 1.0 kg m^2 joint armature so that the explicit 1000 N m clamp does not chatter at the 0.01 s
      step (its header explains the choice and the alternatives measured).
    * DOF order = OIGE's (all HAA, then HFE, then KFE; legs LF, LH, RF, RH) = the actuator order of the MJCF;
      ``qpos``/``qvel`` columns are gathered through index tensors (the MJCF nests the joints leg by leg).
    * Base state from the free joint: ``qpos[:, 0:3]`` position, ``qpos[:, 3:7]`` (w,x,y,z), ``qvel[:, 0:3]``
      world linear velocity of the base origin (rotated to the body frame here), ``qvel[:, 3:6]`` body-frame
      angular velocity (already what OIGE computes with ``quat_rotate_inverse``).
    * ``step_stage = STAGE_NONE``: everything is read from the integrated state, which is always current.
    * Episode: time-out at ``progress >= maxLen - 1`` (section 0), so ``max_episode_length = 2999``.
    * Standard same-step auto-reset (base class) instead of OIGE's next-step reset (section 0); the first
      observation of an episode has zero previous actions, as OIGE's ``last_actions`` after a reset.

Upstream quirks kept on purpose (section 4):
    * Projected gravity is ``R(q) (0, 0, -1)`` (rotation *by* q), not the body-frame ``R(q)^T g``.
    * The joint-acceleration term is the squared *velocity difference* (not divided by dt).
    * The total reward is clipped at 0, then replaced by -1 on a step with base z < 0.51 m (which also ends the
      episode). There is no contact termination in OIGE flat Anymal.
    * ``control.stiffness`` / ``control.damping`` (85, 2) are accepted, as OIGE reads them, but unused: the
      drive OIGE actually applies is the one in the MJCF.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import mujoco
import torch

from meow_isaac.envs.mujoco_batch import STAGE_NONE, MujocoBatchEnv
from tasks.control import integrate_targets, sample_uniform
from tasks.env_config import merge_env_cfg
from tasks.torch_utils import quat_rotate, quat_rotate_inverse

ASSETS = Path(__file__).resolve().parent / "assets"
TASK_DT = 1.0 / 60.0  # s, the dt of OIGE's Anymal formulas (not the 0.02 s control period; module docstring)
FRAME_SKIP = 2  # substeps of 0.01 s per agent step (controlFrequencyInv)
BASE_INIT_POS = (0.0, 0.0, 0.62)  # m, OIGE prim translation; identity orientation
FALL_HEIGHT = 0.51  # m, base z below which the robot has fallen (reward -1, episode ends)
DOF_VEL_RESET = 0.1  # rad/s, reset joint velocities ~ U(-0.1, 0.1)

DOF_NAMES = ("LF_HAA", "LH_HAA", "RF_HAA", "RH_HAA", "LF_HFE", "LH_HFE", "RF_HFE", "RH_HFE",
             "LF_KFE", "LH_KFE", "RF_KFE", "RH_KFE")

#: ``env`` keys and defaults: OIGE ``cfg/task/Anymal.yaml`` names and values (section 4), nested as there.
DEFAULTS: Dict[str, Any] = {
    "clipObservations": 5.0,
    "randomCommandVelocityRanges": {
        "linear_x": [-2.0, 2.0],  # m/s
        "linear_y": [-1.0, 1.0],  # m/s
        "yaw": [-1.0, 1.0],  # rad/s
    },
    "control": {
        "stiffness": 85.0,  # read by OIGE, never applied (module docstring)
        "damping": 2.0,  # read by OIGE, never applied
        "actionScale": 13.5,
    },
    "defaultJointAngles": {  # rad; reset pose and initial PD targets
        "LF_HAA": 0.03, "LH_HAA": 0.03, "RF_HAA": -0.03, "RH_HAA": -0.03,
        "LF_HFE": 0.4, "LH_HFE": -0.4, "RF_HFE": 0.4, "RH_HFE": -0.4,
        "LF_KFE": -0.8, "LH_KFE": 0.8, "RF_KFE": -0.8, "RH_KFE": 0.8,
    },
    "learn": {
        "linearVelocityXYRewardScale": 1.0,
        "angularVelocityZRewardScale": 0.5,
        "linearVelocityZRewardScale": -0.03,
        "jointAccRewardScale": -0.0003,
        "actionRateRewardScale": -0.006,
        "cosmeticRewardScale": -0.06,
        "linearVelocityScale": 2.0,
        "angularVelocityScale": 0.25,
        "dofPositionScale": 1.0,
        "dofVelocityScale": 0.05,
        "episodeLength_s": 50.0,
    },
}


class Anymal(MujocoBatchEnv):
    """OIGE Anymal (section 4): obs 48, act 12, PD targets ``+= 13.5 a / 60``, 50 Hz, 2999-step episodes.

    Observation ``(N, 48)``, clipped to ``±clipObservations``::

        0:3    body-frame base linear velocity * linearVelocityScale
        3:6    body-frame base angular velocity * angularVelocityScale
        6:9    projected gravity R(q) (0, 0, -1)
        9:12   commands (v_x*, v_y*, w_z*) * (linearVelocityScale, linearVelocityScale, angularVelocityScale)
        12:24  (q - q_default) * dofPositionScale
        24:36  q̇ * dofVelocityScale
        36:48  actions applied in this step (zeros on the first observation of an episode)

    Reward (every scale multiplied by ``TASK_DT`` = 1/60), with body-frame base velocities ``v``, ``w``::

        lin  = linearVelocityXYRewardScale * exp(-|c_xy - v_xy|^2 / 0.25)
        ang  = angularVelocityZRewardScale * exp(-(c_yaw - w_z)^2 / 0.25)
        vz   = linearVelocityZRewardScale * v_z^2
        jacc = jointAccRewardScale * sum_j (q̇_{t-1,j} - q̇_{t,j})^2
        rate = actionRateRewardScale * sum_j (a_{t-1,j} - a_{t,j})^2
        cosm = cosmeticRewardScale * sum_{HAA j} |q_j - q_default,j|
        r = max(lin + ang + vz + jacc + rate + cosm, 0);  r = -1 where base z < 0.51 m (terminated)
    """

    dof_names = DOF_NAMES

    def __init__(self, env_cfg: Optional[Mapping[str, Any]], num_envs: int, seed: int = 0,
                 device: Union[str, torch.device] = "cpu", num_threads: int = 0, sim: str = "mujoco") -> None:
        cfg = self.cfg = merge_env_cfg(DEFAULTS, dict(env_cfg or {}))
        learn = cfg["learn"]
        max_len = int(learn["episodeLength_s"] / TASK_DT + 0.5)  # OIGE maxLen
        if max_len < 2:
            raise ValueError(f"learn.episodeLength_s={learn['episodeLength_s']} is invalid: expected >= 0.025 s "
                             "(at least 2 steps of 1/60 s)")
        if cfg["clipObservations"] <= 0:
            raise ValueError(f"clipObservations={cfg['clipObservations']} is invalid: expected > 0")
        model = mujoco.MjModel.from_xml_path(str(ASSETS / "anymal.xml"))
        actuated = [model.joint(int(model.actuator_trnid[i, 0])).name for i in range(model.nu)]
        if actuated != list(DOF_NAMES):
            raise ValueError(f"anymal.xml: actuators drive {actuated}, expected the DOF order {DOF_NAMES}")
        super().__init__(model, num_envs, obs_dim=48, action_dim=12, frame_skip=FRAME_SKIP,
                         max_episode_length=max_len - 1, seed=seed, num_threads=num_threads, device=device,
                         step_stage=STAGE_NONE, sim=sim)

        f64 = self.float_kw  # the engine's float dtype and device
        jnt = [model.joint(name).id for name in DOF_NAMES]
        self.qpos_idx = torch.as_tensor(model.jnt_qposadr[jnt], dtype=torch.long, device=self.sim_device)  # (12,)
        self.qvel_idx = torch.as_tensor(model.jnt_dofadr[jnt], dtype=torch.long, device=self.sim_device)  # (12,)
        self.dof_lower, self.dof_upper = torch.as_tensor(model.jnt_range[jnt], **f64).unbind(1)  # (12,) rad
        self.default_dof_pos = torch.tensor([cfg["defaultJointAngles"][n] for n in DOF_NAMES], **f64)  # (12,)
        ranges = cfg["randomCommandVelocityRanges"]
        self.command_low, self.command_high = torch.tensor(
            [ranges["linear_x"], ranges["linear_y"], ranges["yaw"]], **f64).unbind(1)  # (3,)
        self.rew_scales = {k: learn[k] * TASK_DT for k in (
            "linearVelocityXYRewardScale", "angularVelocityZRewardScale", "linearVelocityZRewardScale",
            "jointAccRewardScale", "actionRateRewardScale", "cosmeticRewardScale")}
        lin_s, ang_s = learn["linearVelocityScale"], learn["angularVelocityScale"]
        self.commands_scale = torch.tensor([lin_s, lin_s, ang_s], **f64)
        self.gravity_vec = torch.tensor([0.0, 0.0, -1.0], **f64)
        # constants made once here: torch.tensor(...) in a hook would copy host data to a GPU with a blocking copy
        self.base_init_root = torch.tensor(list(BASE_INIT_POS) + [1.0, 0.0, 0.0, 0.0], **f64)  # (7,) m, quat
        self.dof_vel_reset_high = torch.full((12,), DOF_VEL_RESET, dtype=torch.float64, device=self.sim_device)  # rad/s
        n = self.num_envs
        self.targets = self.default_dof_pos.expand(n, 12).clone()  # (N, 12) rad, PD targets
        self.commands = torch.zeros(n, 3, **f64)  # (N, 3) v_x* [m/s], v_y* [m/s], w_z* [rad/s]
        self.actions = torch.zeros(n, 12, **f64)  # (N, 12) actions applied in the current step
        self.last_actions = torch.zeros(n, 12, **f64)  # (N, 12) actions of the previous step
        self.last_dof_vel = torch.zeros(n, 12, **f64)  # (N, 12) rad/s, joint velocities of the previous step
        self._obs_cache: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ state access
    def base_velocities(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Body-frame base linear ``(N, 3)`` [m/s] and angular ``(N, 3)`` [rad/s] velocity."""
        return quat_rotate_inverse(self.qpos[:, 3:7], self.qvel[:, 0:3]), self.qvel[:, 3:6]

    # ------------------------------------------------------------------ task hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        """Section 4.5: root at (0, 0, 0.62) upright at rest, ``q = q_default``, ``q̇ ~ U(-0.1, 0.1)``,
        targets ``q_default``, commands ``~ U(ranges)``, previous actions and joint velocities 0."""
        m = len(ids)
        rows = ids[:, None]
        self.qpos[ids, 0:7] = self.base_init_root
        self.fill_at(self.qvel, ids)
        self.qpos[rows, self.qpos_idx] = self.default_dof_pos
        self.qvel[rows, self.qvel_idx] = sample_uniform(self.generator, -self.dof_vel_reset_high,
                                                        self.dof_vel_reset_high, m, dtype=self.dtype)
        self.targets[ids] = self.default_dof_pos
        self.ctrl[ids] = self.default_dof_pos
        self.commands[ids] = sample_uniform(self.generator, self.command_low, self.command_high, m, dtype=self.dtype)
        self.fill_at(self.actions, ids)
        self.fill_at(self.last_actions, ids)
        self.fill_at(self.last_dof_vel, ids)

    def _apply_action(self, action: torch.Tensor) -> None:
        """Section 4.3: ``targets = clamp(targets + actionScale * a * TASK_DT, lo, hi)`` -> servo ``ctrl``."""
        self.actions = action.to(self.dtype)
        self.targets = integrate_targets(self.targets, self.actions, self.cfg["control"]["actionScale"], TASK_DT,
                                         self.dof_lower, self.dof_upper)
        self.ctrl.copy_(self.targets)

    def _compute_obs(self) -> torch.Tensor:
        """Section 4.2 observation ``(N, 48)`` float64 of the current state (see the class docstring)."""
        learn = self.cfg["learn"]
        lin_vel, ang_vel = self.base_velocities()
        quat = self.qpos[:, 3:7]
        obs = torch.cat([
            lin_vel * learn["linearVelocityScale"],
            ang_vel * learn["angularVelocityScale"],
            quat_rotate(quat, self.gravity_vec.expand(self.num_envs, 3)),  # quirk: R(q) g, not R(q)^T g
            self.commands * self.commands_scale,
            (self.qpos[:, self.qpos_idx] - self.default_dof_pos) * learn["dofPositionScale"],
            self.qvel[:, self.qvel_idx] * learn["dofVelocityScale"],
            self.actions,
        ], dim=-1)
        clip = self.cfg["clipObservations"]
        return obs.clamp(-clip, clip)

    def _observe(self) -> torch.Tensor:
        """The observation; reuses the one :meth:`_reward_terminated` computed for this same state."""
        obs, self._obs_cache = self._obs_cache, None
        return obs if obs is not None else self._compute_obs()

    def reward_terms(self) -> Dict[str, torch.Tensor]:
        """The six section 4.4 reward terms ``(N,)`` of the current state (scales already times 1/60)."""
        s = self.rew_scales
        lin_vel, ang_vel = self.base_velocities()
        dof_vel = self.qvel[:, self.qvel_idx]
        dof_pos = self.qpos[:, self.qpos_idx]
        lin_err = ((self.commands[:, :2] - lin_vel[:, :2]) ** 2).sum(-1)
        ang_err = (self.commands[:, 2] - ang_vel[:, 2]) ** 2
        return {
            "lin_vel_xy": torch.exp(-lin_err / 0.25) * s["linearVelocityXYRewardScale"],
            "ang_vel_z": torch.exp(-ang_err / 0.25) * s["angularVelocityZRewardScale"],
            "lin_vel_z": lin_vel[:, 2] ** 2 * s["linearVelocityZRewardScale"],
            "joint_acc": ((self.last_dof_vel - dof_vel) ** 2).sum(-1) * s["jointAccRewardScale"],
            "action_rate": ((self.last_actions - self.actions) ** 2).sum(-1) * s["actionRateRewardScale"],
            "cosmetic": (dof_pos[:, :4] - self.default_dof_pos[:4]).abs().sum(-1) * s["cosmeticRewardScale"],
        }

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Section 4.4 reward and the fall termination (base z < 0.51 m); then shifts the previous-step buffers."""
        self._obs_cache = self._compute_obs()  # OIGE computes the observation before the reward
        total = torch.stack(list(self.reward_terms().values())).sum(0).clamp(min=0.0)
        self.last_actions = self.actions.clone()
        self.last_dof_vel = self.qvel[:, self.qvel_idx]  # advanced indexing: a copy
        fallen = self.qpos[:, 2] < FALL_HEIGHT
        return torch.where(fallen, -1.0, total), fallen
