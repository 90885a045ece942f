"""The classic Gymnasium MuJoCo suite with **v5 semantics** on :class:`~meow_isaac.envs.mujoco_batch.MujocoBatchEnv`.

Each task reproduces ``gymnasium/envs/mujoco/<name>_v5.py`` (gymnasium 1.x) with its default arguments: the same
XML asset (loaded from gymnasium's package), frame skip, reset noise, observation, reward, health check and
``max_episode_steps`` of its ``<Name>-v5`` registration (``gymnasium/envs/__init__.py``). Given the same initial
``qpos``/``qvel`` and controls, observations, rewards and terminations match Gymnasium's to float32 precision
(``tests/test_gym_mujoco.py``).

Actions: the policy acts in ``[-1, 1]``; every model here has a symmetric actuator ``ctrlrange`` ``[-h, h]``, and
``ctrl = a * h`` is the standard rescaling RL libraries apply to a ``Box`` action space (Humanoid: ``h = 0.4``,
InvertedPendulum: ``h = 3``, others ``h = 1``). Control costs use that applied ``ctrl``, which is what Gymnasium
receives as its action.

Contact forces (Ant, Humanoid): Gymnasium calls ``mj_rnePostConstraint`` after ``mj_step``, which computes
``cfrc_ext`` from the data the last integrator evaluation left (for these RK4 models: the last Runge-Kutta stage).
``mujoco.batch`` never calls it (it is skipped unless a force-type sensor exists, and a sensor would compute it in
the *first* RK stage, giving different values), and no bindable field exposes contacts, so these two tasks use a
persistent batch and a per-simulation fallback: ``batch.get_data(i)`` + ``mj_rnePostConstraint`` (about 30 us per
simulation per step, serial). As in Gymnasium, ``cfrc_ext`` is zero in the observation right after a reset
(``mj_resetData`` zeroes it and ``mj_forward`` does not compute it).

MuJoCo Warp (``sim="mjwarp"``, ``meow_isaac/envs/mjwarp.py``): the same classes, float32. ``cfrc_ext`` comes from
MuJoCo Warp's batched ``rne_postconstraint`` (no per-simulation fallback). ``humanoid.xml`` asks for the PGS
solver, which MuJoCo Warp does not implement: on ``sim=mjwarp`` MujocoHumanoid uses Newton (logged once; both
solve the same convex constraint problem, the trajectories agree to ~3e-5 over 5 steps, ``tests/test_mjwarp.py``).
MujocoAnt (RK4 with contacts) agrees to float32 precision until its first ground contact, after which the two
engines' contact responses differ (velocities by ~1 within a step): train and evaluate on one engine.

``env_cfg`` keys (all optional; unknown keys raise ``ValueError``) are Gymnasium's v5 constructor arguments in
camelCase (``ctrl_cost_weight`` -> ``ctrlCostWeight``) plus ``episodeLength`` (default 1000) and ``numEnvs``
(ignored here: the ``num_envs`` argument decides).
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, Mapping, Tuple, Union

import gymnasium
import mujoco
import numpy as np
import torch

from meow_isaac.envs.mujoco_batch import MujocoBatchEnv

ASSETS_DIR = os.path.join(os.path.dirname(gymnasium.__file__), "envs", "mujoco", "assets")
INF = math.inf


def _between(x: torch.Tensor, bounds: Tuple[float, float], inclusive: bool = False) -> torch.Tensor:
    """Elementwise ``lo < x < hi`` (``<=`` if ``inclusive``); NaN is outside."""
    lo, hi = bounds
    return (lo <= x) & (x <= hi) if inclusive else (lo < x) & (x < hi)


class GymMujocoTask(MujocoBatchEnv):
    """Shared v5 machinery: asset loading, cfg overrides, action scaling, reset noise, forward/control reward.

    Subclasses set the class constants and override ``_x_position``, ``_healthy``, ``_extra_obs`` or
    ``_contact_cost`` where their Gymnasium file differs from the defaults below.

    Reward (per env, float64): ``forwardRewardWeight * dx/dt + healthyReward * healthy - ctrlCostWeight *
    sum(ctrl**2) - contact_cost``, with ``dx`` the change of :meth:`_x_position` over the step and ``dt`` the
    control period in seconds. Terminated: ``~healthy`` when ``terminateWhenUnhealthy``.
    """

    XML: str = ""                 #: asset file in gymnasium's ``envs/mujoco/assets``
    FRAME_SKIP: int = 1           #: physics substeps per agent step
    OBS_DIM: int = 0
    SKIP_QPOS: int = 1            #: leading qpos entries (x, or x and y) left out of the observation
    QVEL_CLIP: float = INF        #: observation clips qvel to [-QVEL_CLIP, QVEL_CLIP] (Hopper, Walker2d: 10)
    QVEL_NOISE: str = "uniform"   #: qvel reset noise: "uniform" U(-s, s) or "normal" s * N(0, 1)
    NEEDS_CFRC_EXT: bool = False  #: compute Gymnasium's post-step ``cfrc_ext`` (per-simulation fallback)
    DEFAULTS: Dict[str, Any] = {}  #: accepted ``env_cfg`` keys and their v5 defaults

    def __init__(self, env_cfg: Mapping[str, Any], num_envs: int, seed: int = 0,
                 device: Union[str, torch.device] = "cpu", num_threads: int = 0, sim: str = "mujoco") -> None:
        env_cfg = dict(env_cfg or {})
        for key in env_cfg:
            if key not in self.DEFAULTS:
                raise ValueError(f"{type(self).__name__}: unknown env_cfg key {key!r}; "
                                 f"accepted keys: {', '.join(sorted(self.DEFAULTS))}")
        self.cfg: Dict[str, Any] = {**self.DEFAULTS, **env_cfg}
        model = mujoco.MjModel.from_xml_path(os.path.join(ASSETS_DIR, self.XML))
        low, high = model.actuator_ctrlrange[:, 0], model.actuator_ctrlrange[:, 1]
        if not (model.actuator_ctrllimited.all() and np.array_equal(low, -high)):
            raise ValueError(f"{self.XML}: actuator ctrlrange must be limited and symmetric to map [-1, 1] onto it")
        super().__init__(model, num_envs, obs_dim=self.OBS_DIM, action_dim=model.nu, frame_skip=self.FRAME_SKIP,
                         max_episode_length=int(self.cfg["episodeLength"]), seed=seed, num_threads=num_threads,
                         device=device, persistent=self.NEEDS_CFRC_EXT, sim=sim)
        self.ctrl_high = torch.as_tensor(high, **self.float_kw)  # (action_dim,)
        self._x_before = torch.zeros(self.num_envs, **self.float_kw)
        if self.NEEDS_CFRC_EXT:
            self.cfrc_ext = torch.zeros(self.num_envs, model.nbody, 6, **self.float_kw)

    # ------------------------------------------------------------------ helpers
    def set_state(self, qpos: Union[torch.Tensor, np.ndarray], qvel: Union[torch.Tensor, np.ndarray]) -> torch.Tensor:
        """Gymnasium's ``MujocoEnv.set_state`` for every env: write ``qpos`` ``(N, nq)`` and ``qvel`` ``(N, nv)``,
        run ``mj_forward``; returns the float32 ``(N, obs_dim)`` observation. Episode counters are untouched."""
        self.qpos.copy_(torch.as_tensor(qpos, **self.float_kw))
        self.qvel.copy_(torch.as_tensor(qvel, **self.float_kw))
        self.physics.forward()
        return self._observe().to(self.device, torch.float32)

    def _update_cfrc_ext(self) -> None:
        """``cfrc_ext`` ``(N, nbody, 6)`` as Gymnasium's post-step ``mj_rnePostConstraint`` gives it.

        The engine's ``post_constraint``: on the C engine the per-simulation fallback of the module docstring
        (persistent batch, ``get_data(i)`` + ``mj_rnePostConstraint``), on MuJoCo Warp its batched
        ``rne_postconstraint`` kernel.
        """
        self.cfrc_ext.copy_(self.physics.post_constraint())

    # ------------------------------------------------------------------ task pieces (overridable)
    def _x_position(self) -> torch.Tensor:
        """``(N,)`` x coordinate (m) whose rate is the forward reward; default the root slider ``qpos[:, 0]``."""
        return self.qpos[:, 0]

    def _healthy(self) -> torch.Tensor:
        """``(N,)`` bool health of the current state; default always healthy."""
        return torch.ones(self.num_envs, dtype=torch.bool, device=self.sim_device)

    def _extra_obs(self) -> Tuple[torch.Tensor, ...]:
        """Observation terms after ``qpos``/``qvel``, each ``(N, k)`` float64."""
        return ()

    def _contact_cost(self) -> Union[torch.Tensor, float]:
        """``(N,)`` contact cost of the step just simulated; default 0."""
        return 0.0

    # ------------------------------------------------------------------ MujocoBatchEnv hooks
    def _reset_state(self, ids: torch.Tensor) -> None:
        s, n = float(self.cfg["resetNoiseScale"]), len(ids)
        self.qpos[ids] += self.uniform(-s, s, (n, self.model.nq))
        if self.QVEL_NOISE == "uniform":
            self.qvel[ids] += self.uniform(-s, s, (n, self.model.nv))
        else:
            self.qvel[ids] += self.normal(s, (n, self.model.nv))
        if self.NEEDS_CFRC_EXT:
            self.fill_at(self.cfrc_ext, ids)

    def _apply_action(self, action: torch.Tensor) -> None:
        self.ctrl.copy_(action.to(self.dtype) * self.ctrl_high)

    def _before_physics(self) -> None:
        self._x_before = self._x_position().clone()

    def _observe(self) -> torch.Tensor:
        qvel = self.qvel.clamp(-self.QVEL_CLIP, self.QVEL_CLIP) if self.QVEL_CLIP < INF else self.qvel
        return torch.cat((self.qpos[:, self.SKIP_QPOS:], qvel) + tuple(self._extra_obs()), dim=1)

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.NEEDS_CFRC_EXT:
            self._update_cfrc_ext()
        cfg, healthy = self.cfg, self._healthy()
        x_velocity = (self._x_position() - self._x_before) / self.dt
        reward = (cfg["forwardRewardWeight"] * x_velocity + cfg.get("healthyReward", 0.0) * healthy
                  - (cfg["ctrlCostWeight"] * self.ctrl.square().sum(1) + self._contact_cost()))
        terminated = ~healthy & bool(cfg.get("terminateWhenUnhealthy", False))
        return reward, terminated


def _defaults(**kw: Any) -> Dict[str, Any]:
    """Accepted ``env_cfg`` keys: the task's v5 arguments plus ``episodeLength`` and ``numEnvs`` (the task yaml's
    env count, read by the runner; the ``num_envs`` argument is what this class uses)."""
    return {"numEnvs": None, "episodeLength": 1000, **kw}


class Hopper(GymMujocoTask):
    """Hopper-v5 (``gymnasium/envs/mujoco/hopper_v5.py``): obs 11 = qpos[1:] (5) + clip(qvel, +-10) (6); act 3."""

    XML, FRAME_SKIP, OBS_DIM, QVEL_CLIP = "hopper.xml", 4, 11, 10.0
    DEFAULTS = _defaults(forwardRewardWeight=1.0, ctrlCostWeight=1e-3, healthyReward=1.0, terminateWhenUnhealthy=True,
                         healthyStateRange=(-100.0, 100.0), healthyZRange=(0.7, INF),
                         healthyAngleRange=(-0.2, 0.2), resetNoiseScale=5e-3)

    def _healthy(self) -> torch.Tensor:
        state = torch.cat((self.qpos[:, 2:], self.qvel), dim=1)
        return (_between(state, self.cfg["healthyStateRange"]).all(1)
                & _between(self.qpos[:, 1], self.cfg["healthyZRange"])
                & _between(self.qpos[:, 2], self.cfg["healthyAngleRange"]))


class Walker2d(GymMujocoTask):
    """Walker2d-v5 (``walker2d_v5.py``, ``walker2d_v5.xml``): obs 17 = qpos[1:] (8) + clip(qvel, +-10) (9); act 6."""

    XML, FRAME_SKIP, OBS_DIM, QVEL_CLIP = "walker2d_v5.xml", 4, 17, 10.0
    DEFAULTS = _defaults(forwardRewardWeight=1.0, ctrlCostWeight=1e-3, healthyReward=1.0, terminateWhenUnhealthy=True,
                         healthyZRange=(0.8, 2.0), healthyAngleRange=(-1.0, 1.0), resetNoiseScale=5e-3)

    def _healthy(self) -> torch.Tensor:
        return (_between(self.qpos[:, 1], self.cfg["healthyZRange"])
                & _between(self.qpos[:, 2], self.cfg["healthyAngleRange"]))


class HalfCheetah(GymMujocoTask):
    """HalfCheetah-v5 (``half_cheetah_v5.py``): obs 17 = qpos[1:] (8) + qvel (9); act 6; never terminates."""

    XML, FRAME_SKIP, OBS_DIM, QVEL_NOISE = "half_cheetah.xml", 5, 17, "normal"
    DEFAULTS = _defaults(forwardRewardWeight=1.0, ctrlCostWeight=0.1, resetNoiseScale=0.1)


class MujocoAnt(GymMujocoTask):
    """Ant-v5 (``ant_v5.py``): obs 105 = qpos[2:] (13) + qvel (14) + clip(cfrc_ext[1:], contactForceRange) (13*6);
    act 8. Forward reward from the torso (body 1) ``xpos`` x; healthy: finite state and ``0.2 <= z <= 1``."""

    XML, FRAME_SKIP, OBS_DIM, SKIP_QPOS, QVEL_NOISE, NEEDS_CFRC_EXT = "ant.xml", 5, 105, 2, "normal", True
    DEFAULTS = _defaults(forwardRewardWeight=1.0, ctrlCostWeight=0.5, contactCostWeight=5e-4, healthyReward=1.0,
                         terminateWhenUnhealthy=True, healthyZRange=(0.2, 1.0), contactForceRange=(-1.0, 1.0),
                         resetNoiseScale=0.1)

    def _x_position(self) -> torch.Tensor:
        return self.view("xpos")[:, 1, 0]

    def _contact_forces(self) -> torch.Tensor:
        lo, hi = self.cfg["contactForceRange"]
        return self.cfrc_ext.clamp(lo, hi)

    def _healthy(self) -> torch.Tensor:
        finite = torch.isfinite(self.qpos).all(1) & torch.isfinite(self.qvel).all(1)
        return finite & _between(self.qpos[:, 2], self.cfg["healthyZRange"], inclusive=True)

    def _extra_obs(self) -> Tuple[torch.Tensor, ...]:
        return (self._contact_forces()[:, 1:].flatten(1),)

    def _contact_cost(self) -> torch.Tensor:
        return self.cfg["contactCostWeight"] * self._contact_forces().square().sum((1, 2))


class MujocoHumanoid(GymMujocoTask):
    """Humanoid-v5 (``humanoid_v5.py``): obs 348 = qpos[2:] (22) + qvel (23) + cinert[1:] (13*10) + cvel[1:]
    (13*6) + qfrc_actuator[6:] (17) + cfrc_ext[1:] (13*6); act 17 (ctrl in [-0.4, 0.4]). Forward reward from the
    x of the centre of mass (``mass_center``); healthy: ``1 < z < 2``."""

    XML, FRAME_SKIP, OBS_DIM, SKIP_QPOS, NEEDS_CFRC_EXT = "humanoid.xml", 5, 348, 2, True
    DEFAULTS = _defaults(forwardRewardWeight=1.25, ctrlCostWeight=0.1, contactCostWeight=5e-7,
                         contactCostRange=(-INF, 10.0), healthyReward=5.0, terminateWhenUnhealthy=True,
                         healthyZRange=(1.0, 2.0), resetNoiseScale=1e-2)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_mass = torch.as_tensor(self.model.body_mass, **self.float_kw)  # (nbody,) kg

    def _x_position(self) -> torch.Tensor:
        return torch.einsum("b,nb->n", self.body_mass, self.view("xipos")[:, :, 0]) / self.body_mass.sum()

    def _healthy(self) -> torch.Tensor:
        return _between(self.qpos[:, 2], self.cfg["healthyZRange"])

    def _extra_obs(self) -> Tuple[torch.Tensor, ...]:
        return (self.view("cinert")[:, 1:].flatten(1), self.view("cvel")[:, 1:].flatten(1),
                self.view("qfrc_actuator")[:, 6:], self.cfrc_ext[:, 1:].flatten(1))

    def _contact_cost(self) -> torch.Tensor:
        lo, hi = self.cfg["contactCostRange"]
        return (self.cfg["contactCostWeight"] * self.cfrc_ext.square().sum((1, 2))).clamp(lo, hi)


class InvertedPendulum(GymMujocoTask):
    """InvertedPendulum-v5 (``inverted_pendulum_v5.py``): obs 4 = qpos (2) + qvel (2); act 1 (ctrl in [-3, 3]).
    Reward 1 while ``|pole angle| <= 0.2`` rad and the obs is finite; terminated otherwise (then reward 0)."""

    XML, FRAME_SKIP, OBS_DIM, SKIP_QPOS = "inverted_pendulum.xml", 2, 4, 0
    DEFAULTS = _defaults(resetNoiseScale=0.01)

    def _healthy(self) -> torch.Tensor:
        finite = torch.isfinite(self.qpos).all(1) & torch.isfinite(self.qvel).all(1)
        return finite & (self.qpos[:, 1].abs() <= 0.2)

    def _reward_terminated(self, action: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        healthy = self._healthy()
        return healthy.to(self.dtype), ~healthy
