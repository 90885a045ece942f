"""Omniverse Isaac Gym (OIGE) **Ingenuity** Mars-helicopter goal-reaching task on the embedded MuJoCo backend.

Every formula and constant is from ``shared/reference/isaac_tasks.md`` section 0 (step pipeline) and section 7
(Ingenuity). The MJCF asset is ``tasks/assets/ingenuity.xml`` (the IsaacGymEnvs procedural stand-in of 1.5 kg;
its header lists how it differs).

Design (MuJoCo side):
    * Control period 0.01 s = 1 substep of ``timestep`` 0.01 s (OIGE ``sim.dt`` 0.01, no controlFrequencyInv);
      thrust formula ``dt`` = 0.01 s as in OIGE (``dt = sim.dt``). Mars gravity 3.721 m/s^2 (in the MJCF).
    * Rotor thrusts are world-frame forces at the two rotor bodies' centres of mass, written into the batch's
      ``xfrc_applied`` rows (OIGE ``RigidPrimView.apply_forces``, ``is_global`` default; section 7.2).
    * Root state from the free joint of the chassis: ``qpos[:, 0:3]`` position (env-local, so OIGE's
      ``root_pos - env_pos``), ``qpos[:, 3:7]`` (w,x,y,z), ``qvel[:, 0:3]`` world linear velocity of the
      chassis origin (= its centre of mass), ``qvel[:, 3:6]`` body-frame angular velocity, rotated to world
      here (OIGE observes and rewards world angular velocity).
    * Targets are re-sampled at reset and whenever ``progress % 500 == 0`` before the physics step (steps 500,
      1000, 1500), as OIGE's ``pre_physics_step``; the mocap ball ``target`` follows (visual only).
    * Episode: time-out at ``progress >= maxEpisodeLength - 1`` (section 0), so ``max_episode_length = 1999``.
    * Standard same-step auto-reset (base class) instead of OIGE's next-step reset. OIGE zeroes the thrust
      of envs being reset in a step because that step's action was chosen for the terminal state; here the
      action is always chosen for the current (already reset) state, so it is applied as is.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import mujoco
import torch

from meow_isaac.envs.mujoco_batch import STAGE_NONE, MujocoBatchEnv
from tasks.control import sample_uniform
from tasks.env_config import merge_env_cfg
from tasks.torch_utils import quat_rotate

ASSETS = Path(__file__).resolve().parent / "assets"
THRUST_DT = 0.01  # s, OIGE's dt in the thrust law (= sim.dt)
THRUST_LIMIT = 2000.0  # OIGE thrust_limit: |Fz| <= THRUST_DT * 2000 = 20 N per rotor
LATERAL_FRACTION = 0.2  # OIGE thrust_lateral_component
INIT_POS = (0.0, 0.0, 1.0)  # m, initial root position (identity orientation)
INIT_POS_NOISE = 0.5  # m, reset position += U(-0.5, 0.5) per axis
TARGET_LOW, TARGET_HIGH = (-1.0, -1.0, 1.0), (1.0, 1.0, 2.0)  # m, goal x, y ~ U(-1, 1), z ~ U(1, 2)
TARGET_PERIOD = 500  # agent steps between goal re-samples
MAX_TARGET_DIST = 20.0  # m, episode ends beyond this distance to the goal
MIN_HEIGHT = 0.5  # m, episode ends with the root below this height

#: ``env`` keys and defaults: OIGE ``cfg/task/Ingenuity.yaml`` names and values (section 7).
DEFAULTS: Dict[str, Any] = {
    "maxEpisodeLength": 2000,
    "clipObservations": 5.0,
}


class Ingenuity(MujocoBatchEnv):
    """OIGE Ingenuity (section 7): obs 13, act 6 -> two rotor forces, 100 Hz, 1999-step episodes.

    Observation ``(N, 13)``, clipped to ``±clipObservations``::

        0:3    (p_target - p_root) / 3 [m]
        3:7    root quaternion (w, x, y, z)
        7:10   world root linear velocity / 2 [m/s]
        10:13  world root angular velocity / pi [rad/s]

    Action ``(N, 6)`` in ``[-1, 1]``, per rotor ``k`` the three entries ``a[3k:3k+3]``::

        Fz_k = 0.01 * clamp(2000 a[3k+2], -2000, 2000)   [N]  (|Fz| <= 20 N)
        F_k  = (Fz_k * l_x, Fz_k * l_y, Fz_k),  (l_x, l_y) = clamp(0.2 a[3k:3k+2], -0.2, 0.2)   world frame

    Reward: ``d = |p_target - p_root|``, ``pos = 1/(1 + 2.5 d^2)``, ``up = 1/(1 + 30 tilt^2)`` with
    ``tilt = |1 - (R(q) e_z)_z|``, ``spin = 1/(1 + 10 w_z^2)`` (world ``w_z``); ``r = pos + pos (up + spin)``.
    Terminated when ``d > 20`` m or the root is below 0.5 m.
    """

    def __init__(self, env_cfg: Optional[Mapping[str, Any]], num_envs: int, seed: int = 0,
                 device: Union[str, torch.device] = "cpu", num_threads: int = 0, sim: str = "mujoco") -> None:
        cfg = self.cfg = merge_env_cfg(DEFAULTS, dict(env_cfg or {}))
        if cfg["maxEpisodeLength"] < 2:
            raise ValueError(f"maxEpisodeLength={cfg['maxEpisodeLength']} is invalid: expected an integer >= 2")
        if cfg["clipObservations"] <= 0:
            raise ValueError(f"clipObservations={cfg['clipObservations']} is invalid: expected > 0")
        model = mujoco.MjModel.from_xml_path(str(ASSETS / "ingenuity.xml"))
        super().__init__(model, num_envs, obs_dim=13, action_dim=6, frame_skip=1,
                         max_episode_length=cfg["maxEpisodeLength"] - 1, seed=seed, num_threads=num_threads,
                         device=device, step_stage=STAGE_NONE, sim=sim)
        f64 = self.float_kw  # the engine's float dtype and device
        self.rotor_ids = torch.tensor([model.body(f"rotor_physics_{k}").id for k in range(2)],
                                      device=self.sim_device)  # (2,)
        self.xfrc_applied = self.view("xfrc_applied")  # (N, nbody, 6) world force [N], torque [N m] at COMs
        self.mocap_pos = self.view("mocap_pos")  # (N, 1, 3) the visual goal ball
        self.target_low = torch.tensor(TARGET_LOW, **f64)
        self.target_high = torch.tensor(TARGET_HIGH, **f64)
        # constants made once here: torch.tensor(...) in a hook would copy host data to a GPU with a blocking copy
        self.init_root = torch.tensor(list(INIT_POS) + [1.0, 0.0, 0.0, 0.0], **f64)  # (7,) m, quat
        self.init_noise_high = torch.full((3,), INIT_POS_NOISE, dtype=torch.float64, device=self.sim_device)  # m
        self.targets = torch.tensor(INIT_POS, **f64).expand(self.num_envs, 3).clone()  # (N, 3) m, goals
        self.thrusts = torch.zeros(self.num_envs, 2, 3, **f64)  # (N, 2, 3) N, world rotor forces
        self._obs_cache: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ state access
    def root_state(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Root position ``(N,3)`` [m], quaternion ``(N,4)``, world linear ``(N,3)`` [m/s] and world angular
        ``(N,3)`` [rad/s] velocity (MuJoCo's free joint stores angular velocity in the body frame)."""
        quat = self.qpos[:, 3:7]
        return self.qpos[:, 0:3], quat, self.qvel[:, 0:3], quat_rotate(quat, self.qvel[:, 3:6])

    def _set_targets(self, ids: torch.Tensor, where: Optional[torch.Tensor] = None) -> None:
        """Section 7.4: new goals ``x, y ~ U(-1, 1)``, ``z ~ U(1, 2)`` [m] for envs ``ids``; with ``where``
        ``(len(ids),)`` bool only in those rows (the others keep theirs), without a host read."""
        new = sample_uniform(self.generator, self.target_low, self.target_high, len(ids), dtype=self.dtype)
        if where is not None:
            new = torch.where(where[:, None], new, self.targets[ids])
        self.targets[ids] = new
        self.mocap_pos[ids, 0] = new

    # ------------------------------------------------------------------ task hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        """Section 7.4: root at ``(0, 0, 1) + U(-0.5, 0.5)^3`` upright at rest, new goal."""
        noise = sample_uniform(self.generator, -self.init_noise_high, self.init_noise_high, len(ids), dtype=self.dtype)
        self.qpos[ids, 0:7] = self.init_root
        self.qpos[ids, 0:3] += noise
        self.fill_at(self.qvel, ids)
        self._set_targets(ids)

    def _apply_action(self, action: torch.Tensor) -> None:
        """Goal re-sampling every 500 steps, then section 7.2 thrusts -> world forces at the rotor bodies."""
        due = (self.progress % TARGET_PERIOD == 0) & (self.progress > 0)  # progress 0: sampled at reset
        if self.physics.masked_resets:  # device engine: drawn for all envs, kept where due (no host read)
            with self.masked_stream():
                self._set_targets(self._all_ids, where=due)
        elif bool(due.any()):
            self._set_targets(due.nonzero().squeeze(1))
        a = action.to(self.dtype).view(-1, 2, 3)
        fz = THRUST_DT * torch.clamp(a[:, :, 2] * THRUST_LIMIT, -THRUST_LIMIT, THRUST_LIMIT)  # (N, 2)
        lateral = torch.clamp(a[:, :, 0:2] * LATERAL_FRACTION, -LATERAL_FRACTION, LATERAL_FRACTION)  # (N, 2, 2)
        self.thrusts = torch.cat([fz[:, :, None] * lateral, fz[:, :, None]], dim=-1)
        self.xfrc_applied[:, self.rotor_ids, 0:3] = self.thrusts

    def _compute_obs(self) -> torch.Tensor:
        """Section 7.1 observation ``(N, 13)`` float64 (see the class docstring)."""
        pos, quat, lin_vel, ang_vel = self.root_state()
        obs = torch.cat([(self.targets - pos) / 3.0, quat, lin_vel / 2.0, ang_vel / math.pi], dim=-1)
        clip = self.cfg["clipObservations"]
        return obs.clamp(-clip, clip)

    def _observe(self) -> torch.Tensor:
        """The observation; reuses the one :meth:`_reward_terminated` computed for this same state."""
        obs, self._obs_cache = self._obs_cache, None
        return obs if obs is not None else self._compute_obs()

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Section 7.3 reward; terminated when ``d > 20`` m or root z < 0.5 m."""
        self._obs_cache = self._compute_obs()
        pos, quat, _, ang_vel = self.root_state()
        dist = torch.linalg.vector_norm(self.targets - pos, dim=-1)
        pos_reward = 1.0 / (1.0 + 2.5 * dist * dist)
        up_z = 1.0 - 2.0 * (quat[:, 1] ** 2 + quat[:, 2] ** 2)  # z of R(q) e_z
        tilt = (1.0 - up_z).abs()
        up_reward = 1.0 / (1.0 + 30.0 * tilt * tilt)
        spin_reward = 1.0 / (1.0 + 10.0 * ang_vel[:, 2] ** 2)
        reward = pos_reward + pos_reward * (up_reward + spin_reward)
        terminated = (dist > MAX_TARGET_DIST) | (pos[:, 2] < MIN_HEIGHT)
        return reward, terminated
