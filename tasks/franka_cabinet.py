"""Omniverse Isaac Gym (OIGE) **FrankaCabinet** drawer opening on the embedded MuJoCo backend.

Every formula and constant is from ``shared/reference/isaac_tasks.md`` section 0 (step pipeline) and section 6
(FrankaCabinet); the MJCF is ``tasks/assets/franka_cabinet.xml`` (its header lists the modelling choices).

Design (MuJoCo side):
    * Control period 1/60 s = ``controlFrequencyInv`` (2) substeps of ``timestep`` 1/120 s.
    * The 9 Franka drives are MuJoCo position servos (arm kp 400 / kv 80, fingers kp 1e4 / kv 100, force
      limited); the task integrates the PD targets ``q* += speed_scale * dt * a * actionScale`` (dt = 1/60,
      speed scale 0.1 on the fingers) and writes them into ``ctrl``.
    * Gravity acts on the arm, as in OIGE (its ``franka_cabinet.py`` never calls ``set_franka_properties``, which
      would disable it; IsaacGymEnvs does disable it): the servos hold a reset pose a few hundredths of a radian
      below its targets (``kp (q* - q) = g(q)``, ``tests/test_franka_cabinet.py``).
    * DOF order = ``panda_joint1..7, panda_finger_joint1, panda_finger_joint2`` (the actuator order).
    * Body poses (``xpos``/``xquat`` of panda_link7, the fingers and the drawer) are derived fields, one substep
      behind the state after ``mj_step``; the env therefore steps with ``step_stage = STAGE_POS`` so that the
      grasp frames of the observation and reward are those of the current joint positions (section 6.2). The
      batch is persistent, so the next ``mj_step`` continues from that position stage instead of recomputing
      it (the extra stage costs nearly nothing; memory about 0.2 MB per env).
    * Grasp frames (section 6.2): ``franka_grasp = link7 ⊗ [(0, 0.04, 0.1654), R_z(-pi/4)]`` -- the
      link7 -> finger-midpoint transform of the URDF (hand at z 0.107 turned -45 deg about z, fingers at
      z 0.0584 in the hand) plus OIGE's ``(0, 0.04, 0)`` offset in the link7 frame; ``drawer_grasp = drawer ⊗
      [(0.3, 0.01, 0), identity]``.

Kept as in OIGE (section 6.4): the right-finger position is read from the *left* finger (upstream bug), so the
around-handle and finger-distance terms are always zero and ``open_reward = x_drawer``; set
:attr:`FrankaCabinet.reproduce_rfinger_bug` to False (subclass) for the intended reward.
Deviation: same-step auto-reset (base class); the first observation of an episode follows the reset state.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Dict, Mapping, Tuple, Union

import mujoco
import torch

from meow_isaac.envs.mujoco_batch import STAGE_POS, MujocoBatchEnv
from tasks.allegro_hand import cast_cfg_value
from tasks.control import integrate_targets
from tasks.torch_utils import quat_rotate, tf_combine

ASSETS = Path(__file__).resolve().parent / "assets"
TASK_DT = 1.0 / 60.0  # s, OIGE franka_cabinet's ``dt`` (target integration)
DEFAULT_DOF_POS = (1.157, -1.066, -0.155, -2.239, -1.841, 1.003, 0.469, 0.035, 0.035)  # rad, m (section 6.5)
FINGER_SPEED_SCALE = 0.1
# link7 -> grasp frame: finger midpoint (hand z 0.107 + finger z 0.0584) with OIGE's +0.04 along link7 y.
FRANKA_LOCAL_GRASP_POS = (0.0, 0.04, 0.107 + 0.0584)
FRANKA_LOCAL_GRASP_ROT = (math.cos(-math.pi / 8), 0.0, 0.0, math.sin(-math.pi / 8))  # R_z(-pi/4), (w,x,y,z)
DRAWER_LOCAL_GRASP_POS = (0.3, 0.01, 0.0)  # m, in the drawer_top frame


@dataclasses.dataclass(frozen=True)
class FrankaCabinetCfg:
    """Task constants, named as the ``env`` keys of OIGE ``cfg/task/FrankaCabinet.yaml`` (section 6)."""

    episodeLength: int = 500  # episodes last at most episodeLength - 1 agent steps
    controlFrequencyInv: int = 2  # physics substeps of 1/120 s per agent step
    clipObservations: float = 5.0
    clipActions: float = 1.0
    actionScale: float = 7.5
    dofVelocityScale: float = 0.1
    numProps: int = 4  # 0..4 prop cubes in the top drawer
    aroundHandleRewardScale: float = 10.0
    distRewardScale: float = 2.0
    openRewardScale: float = 7.5
    rotRewardScale: float = 0.5
    fingerDistRewardScale: float = 100.0
    actionPenaltyScale: float = 0.01
    fingerCloseRewardScale: float = 10.0

    @classmethod
    def from_dict(cls, overrides: Mapping[str, Any]) -> "FrankaCabinetCfg":
        """Defaults updated with ``overrides``.

        Raises:
            ValueError: unknown key, ``episodeLength < 2``, ``controlFrequencyInv < 1`` or ``numProps``
                outside ``0..4``.
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key in overrides:
            if key not in fields:
                raise ValueError(f"unknown env_cfg key {key!r}; accepted keys: {', '.join(fields)}")
        cfg = cls(**{k: cast_cfg_value(k, v, fields[k].default) for k, v in overrides.items()})
        if cfg.episodeLength < 2:
            raise ValueError(f"episodeLength={cfg.episodeLength} is invalid: expected an integer >= 2")
        if cfg.controlFrequencyInv < 1:
            raise ValueError(f"controlFrequencyInv={cfg.controlFrequencyInv} is invalid: expected an integer >= 1")
        if not 0 <= cfg.numProps <= 4:
            raise ValueError(f"numProps={cfg.numProps} is invalid: expected an integer in 0..4")
        return cfg


def load_model(num_props: int = 4) -> mujoco.MjModel:
    """The FrankaCabinet MJCF with its first ``num_props`` prop cubes (the others removed)."""
    spec = mujoco.MjSpec.from_file(str(ASSETS / FrankaCabinet.asset))
    for k in range(num_props, 4):
        spec.delete(spec.body(f"prop_{k}"))
    return spec.compile()


def franka_reward(cfg: FrankaCabinetCfg, franka_grasp_pos: torch.Tensor, drawer_grasp_pos: torch.Tensor,
                  franka_grasp_rot: torch.Tensor, drawer_grasp_rot: torch.Tensor, lfinger_pos: torch.Tensor,
                  rfinger_pos: torch.Tensor, finger_q: torch.Tensor, drawer_q: torch.Tensor,
                  actions: torch.Tensor) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
    """OIGE ``compute_franka_reward`` (section 6.4): reward ``(N,)`` and its terms.

    Args:
        franka_grasp_pos, drawer_grasp_pos: ``(N, 3)`` world grasp points [m].
        franka_grasp_rot, drawer_grasp_rot: ``(N, 4)`` world grasp orientations (w, x, y, z).
        lfinger_pos, rfinger_pos: ``(N, 3)`` world finger-link origins [m].
        finger_q: ``(N, 2)`` finger joint positions [m]; drawer_q: ``(N,)`` drawer opening [m].
        actions: ``(N, 9)`` actions of the step.
    """
    d = torch.linalg.vector_norm(franka_grasp_pos - drawer_grasp_pos, dim=-1)
    dist_reward = (1.0 / (1.0 + d ** 2)) ** 2
    dist_reward = torch.where(d <= 0.02, dist_reward * 2.0, dist_reward)

    def axis(q: torch.Tensor, i: int, sign: float = 1.0) -> torch.Tensor:
        # sign * e_i made on q's device (torch.eye), not copied from the host: no blocking copy on a GPU
        return quat_rotate(q, sign * torch.eye(3, dtype=q.dtype, device=q.device)[i].expand(q.shape[0], 3))

    dot1 = (axis(franka_grasp_rot, 2) * axis(drawer_grasp_rot, 0, -1.0)).sum(-1)  # z of the hand . -x of the drawer
    dot2 = (axis(franka_grasp_rot, 1) * axis(drawer_grasp_rot, 2)).sum(-1)  # y of the hand . z of the drawer
    rot_reward = 0.5 * (torch.sign(dot1) * dot1 ** 2 + torch.sign(dot2) * dot2 ** 2)
    handle_z = drawer_grasp_pos[:, 2]
    around = (lfinger_pos[:, 2] > handle_z) & (rfinger_pos[:, 2] < handle_z)
    zero = torch.zeros_like(d)
    around_handle_reward = torch.where(around, zero + 0.5, zero)
    finger_dist_reward = torch.where(
        around, (0.04 - (lfinger_pos[:, 2] - handle_z).abs()) + (0.04 - (rfinger_pos[:, 2] - handle_z).abs()), zero)
    finger_close_reward = torch.where(d <= 0.03, (0.04 - finger_q[:, 0]) + (0.04 - finger_q[:, 1]), zero)
    action_penalty = (actions ** 2).sum(-1)
    open_reward = drawer_q * around_handle_reward + drawer_q
    reward = (cfg.distRewardScale * dist_reward + cfg.rotRewardScale * rot_reward
              + cfg.aroundHandleRewardScale * around_handle_reward + cfg.openRewardScale * open_reward
              + cfg.fingerDistRewardScale * finger_dist_reward - cfg.actionPenaltyScale * action_penalty
              + cfg.fingerCloseRewardScale * finger_close_reward)
    reward = torch.where(drawer_q > 0.01, reward + 0.5, reward)
    reward = torch.where(drawer_q > 0.2, reward + around_handle_reward, reward)
    reward = torch.where(drawer_q > 0.39, reward + 2.0 * around_handle_reward, reward)
    terms = dict(dist=dist_reward, rot=rot_reward, around_handle=around_handle_reward, open=open_reward,
                 finger_dist=finger_dist_reward, finger_close=finger_close_reward, action_penalty=action_penalty)
    return reward, terms


class FrankaCabinet(MujocoBatchEnv):
    """OIGE FrankaCabinet (section 6): a Franka Panda opens the cabinet's top drawer by its handle.

    Observation ``(N, 23)``, clipped to ``±clipObservations``::

        0:9    2 (q - lo) / (hi - lo) - 1           18:21  drawer_grasp_pos - franka_grasp_pos [m] (world)
        9:18   q̇ * dofVelocityScale                 21, 22 drawer opening [m], drawer velocity [m/s]

    Action ``(N, 9)`` in ``[-1, 1]``: ``q* = clamp(q* + s * dt * a * actionScale, lo, hi)``, ``dt = 1/60``,
    ``s = 1`` (arm) or 0.1 (fingers). Termination: drawer opening > 0.39 m; time limit episodeLength - 1.
    """

    asset: ClassVar[str] = "franka_cabinet.xml"
    dof_names: ClassVar[Tuple[str, ...]] = tuple(f"panda_joint{i}" for i in range(1, 8)) + (
        "panda_finger_joint1", "panda_finger_joint2")
    reproduce_rfinger_bug: ClassVar[bool] = True  # OIGE reads the right finger from the left-finger view

    def __init__(self, env_cfg: Mapping[str, Any], num_envs: int, seed: int = 0,
                 device: Union[str, torch.device] = "cpu", num_threads: int = 0, sim: str = "mujoco") -> None:
        self.cfg = cfg = FrankaCabinetCfg.from_dict(dict(env_cfg or {}))
        model = load_model(cfg.numProps)
        actuated = [model.joint(int(model.actuator_trnid[i, 0])).name for i in range(model.nu)]
        if actuated != list(self.dof_names):
            raise ValueError(f"{self.asset}: actuators drive {actuated}, expected the DOF order {self.dof_names}")
        super().__init__(model, num_envs, obs_dim=23, action_dim=len(self.dof_names),
                         frame_skip=cfg.controlFrequencyInv, max_episode_length=cfg.episodeLength - 1,
                         seed=seed, num_threads=num_threads, device=device, step_stage=STAGE_POS,
                         persistent=True, sim=sim)
        f64 = self.float_kw  # the engine's float dtype and device
        n = self.action_dim
        jnt = [model.joint(name).id for name in self.dof_names]
        self.qpos_idx = torch.as_tensor(model.jnt_qposadr[jnt], dtype=torch.long, device=self.sim_device)  # (9,)
        self.qvel_idx = torch.as_tensor(model.jnt_dofadr[jnt], dtype=torch.long, device=self.sim_device)  # (9,)
        self.dof_lower, self.dof_upper = torch.as_tensor(model.jnt_range[jnt], **f64).unbind(1)  # (9,)
        self.default_dof_pos = torch.tensor(DEFAULT_DOF_POS, **f64)
        self.speed_scales = torch.ones(n, **f64)
        self.speed_scales[7:] = FINGER_SPEED_SCALE
        drawer = model.joint("drawer_top_joint")
        self.drawer_qpos = int(model.jnt_qposadr[drawer.id])
        self.drawer_qvel = int(model.jnt_dofadr[drawer.id])
        self.props = [model.joint(f"prop_{k}") for k in range(cfg.numProps)]
        self.prop_qpos_idx = torch.tensor([int(model.jnt_qposadr[j.id]) + i for j in self.props for i in range(7)],
                                          dtype=torch.long, device=self.sim_device)
        self.prop_qvel_idx = torch.tensor([int(model.jnt_dofadr[j.id]) + i for j in self.props for i in range(6)],
                                          dtype=torch.long, device=self.sim_device)
        self.prop_init_qpos = torch.as_tensor(model.qpos0, **f64)[self.prop_qpos_idx]
        self.body_ids = {name: model.body(name).id for name in
                         ("panda_link7", "panda_leftfinger", "panda_rightfinger", "drawer_top")}
        self.xpos = self.view("xpos")  # (N, nbody, 3)
        self.xquat = self.view("xquat")  # (N, nbody, 4)
        self.local_grasp_pos = torch.tensor(FRANKA_LOCAL_GRASP_POS, **f64).expand(num_envs, 3)
        self.local_grasp_rot = torch.tensor(FRANKA_LOCAL_GRASP_ROT, **f64).expand(num_envs, 4)
        self.drawer_local_grasp_pos = torch.tensor(DRAWER_LOCAL_GRASP_POS, **f64).expand(num_envs, 3)
        self.targets = torch.zeros(num_envs, n, **f64)  # PD targets
        self.actions = torch.zeros(num_envs, n, **f64)
        self._obs_cache: Union[torch.Tensor, None] = None

    # ------------------------------------------------------------------ state access
    def grasp_frames(self) -> Dict[str, torch.Tensor]:
        """World grasp frames and finger positions of the current state (section 6.2)."""
        b = self.body_ids
        franka_rot, franka_pos = tf_combine(self.xquat[:, b["panda_link7"]], self.xpos[:, b["panda_link7"]],
                                            self.local_grasp_rot, self.local_grasp_pos)
        drawer_rot = self.xquat[:, b["drawer_top"]]
        drawer_pos = self.xpos[:, b["drawer_top"]] + quat_rotate(drawer_rot, self.drawer_local_grasp_pos)
        lfinger = self.xpos[:, b["panda_leftfinger"]]
        rfinger = lfinger if self.reproduce_rfinger_bug else self.xpos[:, b["panda_rightfinger"]]
        return dict(franka_grasp_pos=franka_pos, franka_grasp_rot=franka_rot, drawer_grasp_pos=drawer_pos,
                    drawer_grasp_rot=drawer_rot, lfinger_pos=lfinger, rfinger_pos=rfinger)

    # ------------------------------------------------------------------ task hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        """Section 6.5: ``q = clamp(q_default + 0.25 (U(0,1) - 0.5), lo, hi)``, ``q̇ = 0``, targets ``= q``;
        drawer closed at rest; props at their initial poses."""
        m, rows = len(ids), ids[:, None]
        q = (self.default_dof_pos + 0.25 * (self.uniform(0.0, 1.0, (m, self.action_dim)) - 0.5)).clamp(
            self.dof_lower, self.dof_upper)
        self.qpos[rows, self.qpos_idx] = q
        self.fill_at(self.qvel, (rows, self.qvel_idx))
        self.fill_at(self.qpos, (ids, self.drawer_qpos))
        self.fill_at(self.qvel, (ids, self.drawer_qvel))
        if self.props:
            self.qpos[rows, self.prop_qpos_idx] = self.prop_init_qpos
            self.fill_at(self.qvel, (rows, self.prop_qvel_idx))
        self.targets[ids] = q
        self.ctrl[ids] = q
        self.fill_at(self.actions, ids)

    def _apply_action(self, action: torch.Tensor) -> None:
        """Section 6.3: integrated PD targets."""
        cfg = self.cfg
        if cfg.clipActions < 1.0:
            action = action.clamp(-cfg.clipActions, cfg.clipActions)
        self.actions = action.to(self.dtype)
        self.targets = integrate_targets(self.targets, self.actions * self.speed_scales, cfg.actionScale, TASK_DT,
                                         self.dof_lower, self.dof_upper)
        self.ctrl.copy_(self.targets)

    def _compute_obs(self, frames: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Section 6.2 observation ``(N, 23)`` float64, clipped."""
        cfg = self.cfg
        q = self.qpos[:, self.qpos_idx]
        dof_pos_scaled = 2.0 * (q - self.dof_lower) / (self.dof_upper - self.dof_lower) - 1.0
        return torch.cat([
            dof_pos_scaled,
            self.qvel[:, self.qvel_idx] * cfg.dofVelocityScale,
            frames["drawer_grasp_pos"] - frames["franka_grasp_pos"],
            self.qpos[:, self.drawer_qpos:self.drawer_qpos + 1],
            self.qvel[:, self.drawer_qvel:self.drawer_qvel + 1],
        ], dim=-1).clamp(-cfg.clipObservations, cfg.clipObservations)

    def _observe(self) -> torch.Tensor:
        """The observation; reuses the one :meth:`_reward_terminated` computed for this same state."""
        obs, self._obs_cache = self._obs_cache, None
        return obs if obs is not None else self._compute_obs(self.grasp_frames())

    def reward_terms(self, frames: Union[Dict[str, torch.Tensor], None] = None
                     ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Reward ``(N,)`` and its terms for the current state and the last actions (section 6.4)."""
        frames = self.grasp_frames() if frames is None else frames
        return franka_reward(self.cfg, frames["franka_grasp_pos"], frames["drawer_grasp_pos"],
                             frames["franka_grasp_rot"], frames["drawer_grasp_rot"], frames["lfinger_pos"],
                             frames["rfinger_pos"], self.qpos[:, self.qpos_idx[7:]],
                             self.qpos[:, self.drawer_qpos], self.actions)

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Section 6.4 reward; terminated when the drawer is open more than 0.39 m."""
        frames = self.grasp_frames()
        reward, _ = self.reward_terms(frames)
        self._obs_cache = self._compute_obs(frames)
        return reward, self.qpos[:, self.drawer_qpos] > 0.39
