"""Omniverse Isaac Gym (OIGE) **AllegroHand** in-hand cube reorientation on the embedded MuJoCo backend.

Every formula and constant is from ``shared/reference/isaac_tasks.md`` section 0 (step pipeline) and section 5
(AllegroHand); the MJCF is ``tasks/assets/allegro_hand.xml`` (its header lists the modelling choices).

Design (MuJoCo side):
    * Control period 1/30 s = ``controlFrequencyInv`` (4) substeps of ``timestep`` 1/120 s.
    * The 16 finger drives are MuJoCo position servos (kp 3, kv 0.1, |tau| <= 0.5 N m): the task writes PD
      targets into ``ctrl`` (absolute ``scale(a)`` with the action moving average, or relative integration).
    * DOF order (observation, action) = the actuator order of the MJCF: breadth-first over the hand tree
      (index, middle, ring, thumb joint_0, then joint_1, ...), the order Isaac Sim gives the articulation.
    * Object pose/velocity from its free joint; MuJoCo stores the angular velocity in the body frame, which is
      rotated to the world frame (OIGE reports world velocities).
    * Goal orientation: sampled at reset and after every success; the visual goal cube is a mocap body.

Deviations from OIGE's step pipeline (all standard for a gym-style port, section 0):
    * Same-step auto-reset (base class): the observation after a done step is the new episode's first one;
      the previous-action slot of that observation is zero.
    * After a success the goal is re-sampled at the end of the same step (OIGE: at the start of the next), so
      the returned observation already shows the goal the next reward is computed against.

Kept as in OIGE: the hand reset ``q = 0.2 * U(lo, hi)`` is not clamped (it starts ``thumb_joint_0`` below its
lower limit in most episodes; the joint limit pushes it back), the object reset orientation uses the goal's
law (``resetRotationNoise`` is ignored upstream, so it is not a key here), no object pose noise other than
``resetPositionNoise``, and timeouts at ``progress >= episodeLength - 1``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Tuple, Union

import mujoco
import torch

from meow_isaac.envs.mujoco_batch import STAGE_NONE, MujocoBatchEnv
from tasks.control import absolute_targets, integrate_targets
from tasks.torch_utils import (quat_conjugate, quat_from_angle_axis, quat_mul, quat_rotate, quat_rotation_distance,
                               unscale)

ASSETS = Path(__file__).resolve().parent / "assets"
TASK_DT = 1.0 / 60.0  # s, OIGE in_hand_manipulation's ``dt`` (relative control only)
OBJECT_INIT_POS = (0.0, -0.2, 0.56)  # m, hand position + (0, -0.2, 0.06) (section 5.1)
GOAL_POS = (0.0, -0.2, 0.52)  # m, object init - (0, 0, 0.04): the reward's goal position
GOAL_DISPLAY_OFFSET = (-0.2, -0.06, 0.12)  # m, where the visual goal cube is drawn relative to GOAL_POS
OBS_DIMS = {"full_no_vel": 50, "full": 72}


@dataclasses.dataclass(frozen=True)
class AllegroHandCfg:
    """Task constants, named as the ``env`` keys of OIGE ``cfg/task/AllegroHand.yaml`` (section 5)."""

    episodeLength: int = 600  # agent steps (20 s at 30 Hz); episodes last at most episodeLength - 1
    controlFrequencyInv: int = 4  # physics substeps of 1/120 s per agent step
    clipObservations: float = 5.0
    clipActions: float = 1.0
    useRelativeControl: bool = False
    dofSpeedScale: float = 20.0  # rad/s per unit action (relative control)
    actionsMovingAverage: float = 1.0
    resetPositionNoise: float = 0.01  # m, object position noise U(-1, 1) * this
    resetDofPosRandomInterval: float = 0.2  # hand q = this * U(lo, hi)
    resetDofVelRandomInterval: float = 0.0  # hand q̇ = this * U(-1, 1)
    distRewardScale: float = -10.0
    rotRewardScale: float = 1.0
    rotEps: float = 0.1
    actionPenaltyScale: float = -0.0002
    reachGoalBonus: float = 250.0
    fallDistance: float = 0.24  # m
    fallPenalty: float = 0.0
    velObsScale: float = 0.2
    observationType: str = "full"  # "full" (72) or "full_no_vel" (50)
    successTolerance: float = 0.1  # rad
    maxConsecutiveSuccesses: int = 0  # 0 = no cap
    averFactor: float = 0.1  # smoothing of the consecutive-successes statistic

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any]) -> "AllegroHandCfg":
        """Defaults updated with ``overrides`` (values cast to the field types).

        Raises:
            ValueError: unknown key, unknown ``observationType``, ``episodeLength < 2``,
                ``controlFrequencyInv < 1`` or ``actionsMovingAverage`` outside ``(0, 1]``.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in overrides:
            if key not in fields:
                raise ValueError(f"unknown env_cfg key {key!r}; accepted keys: {', '.join(fields)}")
        values = {key: cast_cfg_value(key, value, fields[key].default) for key, value in overrides.items()}
        cfg = cls(**values)
        if cfg.observationType not in OBS_DIMS:
            raise ValueError(f"observationType={cfg.observationType!r} is invalid: expected one of {list(OBS_DIMS)}")
        if cfg.episodeLength < 2:
            raise ValueError(f"episodeLength={cfg.episodeLength} is invalid: expected an integer >= 2")
        if cfg.controlFrequencyInv < 1:
            raise ValueError(f"controlFrequencyInv={cfg.controlFrequencyInv} is invalid: expected an integer >= 1")
        if not 0.0 < cfg.actionsMovingAverage <= 1.0:
            raise ValueError(f"actionsMovingAverage={cfg.actionsMovingAverage} is invalid: expected 0 < value <= 1")
        return cfg


def cast_cfg_value(key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default`` (bool, int, float or str).

    Raises:
        ValueError: ``value`` does not have that type (bools are not numbers; an int needs an integral value).
    """
    kind = type(default)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is str:
        ok = isinstance(value, str)
    else:
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and (kind is float or float(value) == int(value)))
    if not ok:
        expected = {bool: "true or false", str: "a string", int: "an integer", float: "a number"}[kind]
        raise ValueError(f"env_cfg key {key!r}={value!r} is invalid: expected {expected}")
    return kind(value)


def random_goal_rotation(u0: torch.Tensor, u1: torch.Tensor) -> torch.Tensor:
    """OIGE ``randomize_rotation``: ``q_x(pi u0) ⊗ q_y(pi u1)`` ``(m, 4)`` for ``u0, u1`` ``(m,)`` in ``[-1, 1]``."""
    eye = torch.eye(3, dtype=u0.dtype, device=u0.device)  # made on the device: no host-to-device copy
    x_axis, y_axis = eye[0].expand(u0.shape[0], 3), eye[1].expand(u0.shape[0], 3)
    return quat_mul(quat_from_angle_axis(math.pi * u0, x_axis), quat_from_angle_axis(math.pi * u1, y_axis))


class AllegroHand(MujocoBatchEnv):
    """OIGE AllegroHand (section 5): 16 finger PD targets turn a 5 cm cube to a random goal orientation.

    Observation ``full`` ``(N, 72)``, clipped to ``±clipObservations``::

        0:16    unscale(q, lo, hi)                   32:35  object position [m] (world = env frame)
        16:32   q̇ * velObsScale                      35:39  object quaternion (w, x, y, z)
        39:42   object linear velocity [m/s]         42:45  object angular velocity * velObsScale (world)
        45:48   goal position [m]                    48:52  goal quaternion
        52:56   object ⊗ conj(goal)                  56:72  actions of this step (zeros after a reset)

    ``full_no_vel`` ``(N, 50)``: ``unscale(q)``, object pos, quat, goal pos, quat, quat diff, actions.
    Action ``(N, 16)`` in ``[-1, 1]``: absolute targets ``scale(a, lo, hi)`` smoothed by
    ``actionsMovingAverage``, or relative ``q* += dofSpeedScale / 60 * a``; clamped to the joint limits.

    Reward (section 5.4): ``distRewardScale * |p - p_goal| + rotRewardScale / (rot_dist + rotEps)
    + actionPenaltyScale * |a|^2``, ``+ reachGoalBonus`` when ``rot_dist <= successTolerance`` (the goal is
    re-sampled, the episode continues), ``+ fallPenalty`` and termination when ``|p - p_goal| >= fallDistance``.

    Statistics: ``successes`` ``(N,)`` (goals reached this episode) and ``consecutive_successes`` (running
    average over finished episodes, OIGE's logged metric).
    """

    asset: ClassVar[str] = "allegro_hand.xml"
    dof_names: ClassVar[Tuple[str, ...]] = tuple(
        f"{finger}_joint_{k}" for k in range(4) for finger in ("index", "middle", "ring", "thumb"))

    def __init__(self, env_cfg: Mapping[str, Any], num_envs: int, seed: int = 0,
                 device: Union[str, torch.device] = "cpu", num_threads: int = 0, sim: str = "mujoco") -> None:
        self.cfg = cfg = AllegroHandCfg.from_dict(dict(env_cfg or {}))
        model = mujoco.MjModel.from_xml_path(str(ASSETS / self.asset))
        actuated = [model.joint(int(model.actuator_trnid[i, 0])).name for i in range(model.nu)]
        if actuated != list(self.dof_names):
            raise ValueError(f"{self.asset}: actuators drive {actuated}, expected the DOF order {self.dof_names}")
        super().__init__(model, num_envs, obs_dim=OBS_DIMS[cfg.observationType], action_dim=len(self.dof_names),
                         frame_skip=cfg.controlFrequencyInv, max_episode_length=cfg.episodeLength - 1,
                         seed=seed, num_threads=num_threads, device=device, step_stage=STAGE_NONE, sim=sim)
        f64 = self.float_kw  # the engine's float dtype and device
        n = self.action_dim
        jnt = [model.joint(name).id for name in self.dof_names]
        self.qpos_idx = torch.as_tensor(model.jnt_qposadr[jnt], dtype=torch.long, device=self.sim_device)  # (16,)
        self.qvel_idx = torch.as_tensor(model.jnt_dofadr[jnt], dtype=torch.long, device=self.sim_device)  # (16,)
        self.dof_lower, self.dof_upper = torch.as_tensor(model.jnt_range[jnt], **f64).unbind(1)  # (16,) rad
        obj = model.joint("object")
        self.obj_qpos = int(model.jnt_qposadr[obj.id])  # position at [a, a+3), quaternion at [a+3, a+7)
        self.obj_qvel = int(model.jnt_dofadr[obj.id])  # world linear [b, b+3), body angular [b+3, b+6)
        self.object_init_pos = torch.tensor(OBJECT_INIT_POS, **f64)
        self.goal_pos = torch.tensor(GOAL_POS, **f64)
        self.goal_rot = torch.zeros(num_envs, 4, **f64)
        self.goal_rot[:, 0] = 1.0
        self.mocap_pos = self.view("mocap_pos")  # (N, 1, 3): the visual goal cube
        self.mocap_quat = self.view("mocap_quat")  # (N, 1, 4)
        self.mocap_pos[:] = self.goal_pos + torch.tensor(GOAL_DISPLAY_OFFSET, **f64)
        self.prev_targets = torch.zeros(num_envs, n, **f64)  # rad, PD targets of the last step
        self.actions = torch.zeros(num_envs, n, **f64)  # actions of the last step (observation)
        self.successes = torch.zeros(num_envs, **f64)  # goals reached in the current episode
        self.consecutive_successes = torch.zeros((), **f64)  # OIGE's running statistic
        self._obs_cache: Union[torch.Tensor, None] = None

    # ------------------------------------------------------------------ state access
    def _object_state(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """World object position ``(N,3)``, quaternion ``(N,4)``, linear ``(N,3)`` and angular ``(N,3)`` velocity."""
        a, b = self.obj_qpos, self.obj_qvel
        quat = self.qpos[:, a + 3:a + 7]
        return self.qpos[:, a:a + 3], quat, self.qvel[:, b:b + 3], quat_rotate(quat, self.qvel[:, b + 3:b + 6])

    def _sample_goals(self, ids: torch.Tensor, where: Union[torch.Tensor, None] = None) -> None:
        """New goal orientations for envs ``ids`` (section 5.5) and their visual goal cubes; with ``where``
        ``(len(ids),)`` bool only in those rows (the others keep theirs), without a host read."""
        u = self.uniform(-1.0, 1.0, (len(ids), 2))
        rot = random_goal_rotation(u[:, 0], u[:, 1])
        if where is not None:
            rot = torch.where(where[:, None], rot, self.goal_rot[ids])
        self.goal_rot[ids] = rot
        self.mocap_quat[ids, 0] = rot

    # ------------------------------------------------------------------ task hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        """Section 5.5: new goal; object at ``init + noise * U(-1,1)^3`` with a random orientation (the goal's
        law) at rest; hand ``q = interval * U(lo, hi)`` (not clamped), ``q̇ = vel_interval * U(-1, 1)``,
        PD targets ``= q``."""
        cfg, m, n, a = self.cfg, len(ids), self.action_dim, self.obj_qpos
        rows = ids[:, None]
        self._sample_goals(ids)
        self.qpos[ids, a:a + 3] = self.object_init_pos + cfg.resetPositionNoise * self.uniform(-1.0, 1.0, (m, 3))
        u = self.uniform(-1.0, 1.0, (m, 2))
        self.qpos[ids, a + 3:a + 7] = random_goal_rotation(u[:, 0], u[:, 1])
        self.fill_at(self.qvel, (ids, slice(self.obj_qvel, self.obj_qvel + 6)))
        lo, hi = self.dof_lower, self.dof_upper
        q = cfg.resetDofPosRandomInterval * (lo + (hi - lo) * self.uniform(0.0, 1.0, (m, n)))
        self.qpos[rows, self.qpos_idx] = q
        self.qvel[rows, self.qvel_idx] = cfg.resetDofVelRandomInterval * self.uniform(-1.0, 1.0, (m, n))
        self.prev_targets[ids] = q
        self.ctrl[ids] = q
        self.fill_at(self.actions, ids)
        self.fill_at(self.successes, ids)

    def _apply_action(self, action: torch.Tensor) -> None:
        """Section 5.3: absolute (``scale`` + moving average) or relative PD targets, clamped to the limits."""
        cfg = self.cfg
        if cfg.clipActions < 1.0:
            action = action.clamp(-cfg.clipActions, cfg.clipActions)
        self.actions = action.to(self.dtype)
        if cfg.useRelativeControl:
            targets = integrate_targets(self.prev_targets, self.actions, cfg.dofSpeedScale, TASK_DT,
                                        self.dof_lower, self.dof_upper)
        else:
            targets = absolute_targets(self.actions, self.prev_targets, self.dof_lower, self.dof_upper,
                                       cfg.actionsMovingAverage)
        self.prev_targets = targets
        self.ctrl.copy_(targets)

    def _compute_obs(self) -> torch.Tensor:
        """Section 5.2 observation ``(N, obs_dim)`` float64 of the current state, clipped."""
        cfg = self.cfg
        pos, quat, lin_vel, ang_vel = self._object_state()
        goal_pos = self.goal_pos.expand_as(pos)
        quat_diff = quat_mul(quat, quat_conjugate(self.goal_rot))
        dof_pos = unscale(self.qpos[:, self.qpos_idx], self.dof_lower, self.dof_upper)
        if cfg.observationType == "full":
            parts = [dof_pos, self.qvel[:, self.qvel_idx] * cfg.velObsScale, pos, quat, lin_vel,
                     ang_vel * cfg.velObsScale, goal_pos, self.goal_rot, quat_diff, self.actions]
        else:
            parts = [dof_pos, pos, quat, goal_pos, self.goal_rot, quat_diff, self.actions]
        return torch.cat(parts, dim=-1).clamp(-cfg.clipObservations, cfg.clipObservations)

    def _observe(self) -> torch.Tensor:
        """The observation; reuses the one :meth:`_reward_terminated` computed for this same state."""
        obs, self._obs_cache = self._obs_cache, None
        return obs if obs is not None else self._compute_obs()

    def reward_terms(self) -> Dict[str, torch.Tensor]:
        """``goal_dist`` [m] and ``rot_dist`` [rad] ``(N,)`` of the current state (section 5.4)."""
        pos, quat, _, _ = self._object_state()
        return {"goal_dist": torch.linalg.vector_norm(pos - self.goal_pos, dim=-1),
                "rot_dist": quat_rotation_distance(quat, self.goal_rot)}

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Section 5.4 reward, success bookkeeping (goal re-sampling), fall termination."""
        cfg = self.cfg
        terms = self.reward_terms()
        goal_dist, rot_dist = terms["goal_dist"], terms["rot_dist"]
        reward = (cfg.distRewardScale * goal_dist + cfg.rotRewardScale / (rot_dist.abs() + cfg.rotEps)
                  + cfg.actionPenaltyScale * (self.actions ** 2).sum(-1))
        success = rot_dist.abs() <= cfg.successTolerance
        self.successes += success.to(self.dtype)
        reward = reward + cfg.reachGoalBonus * success.to(self.dtype)
        fell = goal_dist >= cfg.fallDistance
        reward = torch.where(fell, reward + cfg.fallPenalty, reward)
        terminated = fell
        if cfg.maxConsecutiveSuccesses > 0:
            self.progress[success] = 0  # a success restarts the episode clock (OIGE)
            terminated = terminated | (self.successes >= cfg.maxConsecutiveSuccesses)
        timeout = self.progress >= self.max_episode_length
        if cfg.maxConsecutiveSuccesses > 0:
            reward = torch.where(timeout, reward + 0.5 * cfg.fallPenalty, reward)
        done = terminated | timeout
        num_done = done.sum()  # the running average moves only on steps where episodes end (no host read)
        finished = (self.successes * done).sum() / num_done.clamp(min=1)
        self.consecutive_successes = torch.where(
            num_done > 0, cfg.averFactor * finished + (1.0 - cfg.averFactor) * self.consecutive_successes,
            self.consecutive_successes)
        new_goal = success & ~done
        if self.physics.masked_resets:  # device engine: drawn for all envs, kept where a goal was reached
            with self.masked_stream():
                self._sample_goals(self._all_ids, where=new_goal)
        elif bool(new_goal.any()):
            self._sample_goals(new_goal.nonzero().squeeze(1))
        self._obs_cache = self._compute_obs()
        return reward, terminated
