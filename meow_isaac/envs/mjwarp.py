"""MuJoCo Warp engine of the embedded tasks (``sim=mjwarp``): N worlds of one model on a GPU (or warp's CPU).

The embedded tasks (``tasks/*.py``) subclass :class:`~meow_isaac.envs.mujoco_batch.MujocoBatchEnv`, which owns
the ``StepOut`` pipeline and calls an engine for the physics; this module is the engine that runs it on
MuJoCo Warp (``mujoco_warp`` >= 4.0 on ``warp-lang``; upstream ``mujoco_warp/_src/io.py``, ``forward.py``):

* ``mujoco_warp.put_model`` + ``make_data(nworld=N)``: one device copy of the model, N worlds of data.
* State as **torch views of the warp arrays** (``wp.to_torch``, zero copy): ``qpos`` ``(N, nq)``, ``xpos``
  ``(N, nbody, 3)``, ``cfrc_ext`` ``(N, nbody, 6)``, ... in float32 (MuJoCo Warp computes in float32) on the
  training device. Task hooks write actions into ``ctrl`` / ``xfrc_applied`` in place.
* ``step``: the ``frame_skip`` substeps (``mujoco_warp.step``, then the forward stage the task asks for) are
  recorded once in a **CUDA graph** (``wp.ScopedCapture``) and replayed on every step; on warp's CPU device
  they are plain kernel launches. Kernels run on torch's current CUDA stream (``wp.stream_from_torch``), so
  torch ops and warp kernels are ordered without synchronising.
* Resets by env index or by mask on the device (``mujoco_warp.reset_data(reset=mask)``); a forward pass of
  the reset worlds keeps the other worlds' derived fields as they were (restored from a copy), as the C
  engine's ``batch.forward(ids)`` does. ``MujocoBatchEnv.step`` then resets finished envs without reading
  ``done`` on the host.

Differences from the C engine: float32 instead of float64 (equivalence tolerances in ``tests/test_mjwarp.py``);
MuJoCo Warp does not reset a world whose state goes NaN (the C engine does, ``mjWARN_BADQPOS``): the NaN guard
(``meow_isaac/envs/guard.py``) sees the non-finite observation and resets the world through ``reset_envs``.
Solvers: MuJoCo Warp has CG and Newton, not PGS; a model asking for PGS is switched to Newton here (one log
line), which converges to the same constraint solution (gymnasium's ``humanoid.xml`` is the one such model).
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import mujoco
import torch

from meow_isaac.envs.mujoco_batch import STAGE_ACC, STAGE_NONE, STAGE_POS, STAGE_VEL

INSTALL_HINT = 'pip install -e ".[mjwarp]" (mujoco-warp and warp-lang)'


def import_warp():
    """``(warp, mujoco_warp)`` modules.

    Raises:
        ImportError: one line naming what to install (:data:`INSTALL_HINT`).
    """
    try:
        import mujoco_warp as mjw
        import warp as wp
    except ImportError as err:
        raise ImportError(f"sim=mjwarp needs MuJoCo Warp, which is not importable ({err}): {INSTALL_HINT}") from None
    return wp, mjw


def warp_device(device: Union[str, torch.device]) -> str:
    """Warp device name for a torch device: ``cuda:i`` for CUDA, ``cpu`` otherwise."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return "cpu"


def supported_model(model: mujoco.MjModel, log=print) -> mujoco.MjModel:
    """``model``, with options MuJoCo Warp does not implement switched to ones it does (logged, one line each).

    PGS solver -> Newton (MuJoCo Warp implements CG and Newton; both solve the same convex constraint problem).
    The model is changed in place; the C engine never sees it (each engine compiles its own model).
    """
    if model.opt.solver == mujoco.mjtSolver.mjSOL_PGS:
        model.opt.solver = mujoco.mjtSolver.mjSOL_NEWTON
        log("[meow-isaac] mjwarp: MuJoCo Warp has no PGS solver; this model uses Newton instead")
    return model


def capacities(model: mujoco.MjModel, nconmax: int = 48) -> Tuple[int, int]:
    """Per-world contact and constraint-row capacities ``(nconmax, njmax)`` for ``make_data``.

    MuJoCo Warp preallocates both (the C engine grows them as needed); a world that needs more drops the excess
    constraints and warns (``nefc overflow``). ``njmax`` covers ``nconmax`` active contacts at the model's
    largest contact dimension (pyramidal cones: ``2 (condim - 1)`` rows each, elliptic: ``condim``), every joint
    limit, equality rows (6 each) and DOF friction loss rows.
    """
    condim = int(model.geom_condim.max()) if model.ngeom else 3
    per_contact = condim if model.opt.cone == mujoco.mjtCone.mjCONE_ELLIPTIC else max(1, 2 * (condim - 1))
    rows = (nconmax * per_contact + int(model.jnt_limited.sum()) + int(model.tendon_limited.sum())
            + 6 * model.neq + int((model.dof_frictionloss > 0).sum()))
    return nconmax, int(max(64, rows))


class WarpPhysics:
    """MuJoCo Warp engine: ``num_envs`` worlds of ``model`` on ``device``; same interface as
    :class:`~meow_isaac.envs.mujoco_batch.CBatchPhysics` (``view``, ``reset``, ``reset_mask``, ``forward``,
    ``forward_masked``, ``step``, ``post_constraint``, ``host_data``, ``close``).

    Args:
        model: host model; copied to the device once (``mujoco_warp.put_model``). A PGS solver is switched to
            Newton (:func:`supported_model`).
        num_envs: worlds ``N`` (``make_data(nworld=N)``, capacities from :func:`capacities`).
        device: torch device of the training; CUDA -> warp ``cuda:i`` with CUDA-graph steps, else warp's CPU.

    Raises:
        ImportError: MuJoCo Warp is not installed (one line, :data:`INSTALL_HINT`).
        NotImplementedError: the model uses a feature MuJoCo Warp does not support (its own message).
    """

    name = "mjwarp"
    dtype = torch.float32
    masked_resets = True  # finished worlds are reset by mask on the device (no host read of ``done``)

    def __init__(self, model: mujoco.MjModel, num_envs: int, device: Union[str, torch.device] = "cpu") -> None:
        self.wp, self.mjw = import_warp()
        wp, mjw = self.wp, self.mjw
        wp.config.quiet = True
        wp.init()
        self.device = torch.device(device) if torch.device(device).type == "cuda" else torch.device("cpu")
        self.wp_device = warp_device(self.device)
        self.host_model = supported_model(model)
        self.num_envs = int(num_envs)
        self.use_graph = self.device.type == "cuda" and bool(wp.get_device(self.wp_device).is_cuda)
        self.nconmax, self.njmax = capacities(model)
        with wp.ScopedDevice(self.wp_device):
            self.m = mjw.put_model(model)
            self.d = mjw.make_data(model, nworld=self.num_envs, nconmax=self.nconmax, njmax=self.njmax)
        self._views: Dict[str, torch.Tensor] = {}
        self._graphs: Dict[object, object] = {}
        self._any: Optional[torch.Tensor] = None  # (1,) int32 device flag of forward_masked
        self._mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)  # fixed buffer (graphs)
        self._mask_wp = wp.from_torch(self._mask, dtype=wp.bool)
        self._host_data: Optional[mujoco.MjData] = None

    # ------------------------------------------------------------------ plumbing
    def _stream(self):
        """Scoped warp stream = torch's current CUDA stream (ordering without sync); a no-op scope on CPU."""
        wp = self.wp
        if self.device.type == "cuda":
            return wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream(self.device)))
        return wp.ScopedDevice(self.wp_device)

    def view(self, name: str) -> torch.Tensor:
        """``(N, ...)`` float32 (int for integer fields) torch tensor sharing memory with ``Data.<name>``.

        Vector/quaternion/spatial element types become a trailing axis (``xpos`` ``(N, nbody, 3)``,
        ``cfrc_ext`` ``(N, nbody, 6)``), as in MuJoCo's ``MjData`` layout.

        Raises:
            ValueError: ``Data`` has no array field ``name``.
        """
        if name not in self._views:
            arr = getattr(self.d, name, None)
            if arr is None or not hasattr(arr, "ptr"):
                raise ValueError(f"mjwarp: Data has no array field {name!r}")
            self._views[name] = self.wp.to_torch(arr, requires_grad=False)
        return self._views[name]

    # ------------------------------------------------------------------ engine interface
    def reset(self, ids: torch.Tensor) -> None:
        """Model defaults (``mj_resetData``) in worlds ``ids`` (int64, on ``device``)."""
        mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        mask.index_fill_(0, ids.to(self.device), True)
        self.reset_mask(mask)

    def reset_mask(self, mask: torch.Tensor) -> None:
        """Model defaults in the worlds where ``mask`` ``(N,)`` bool is True (``mujoco_warp.reset_data``).

        CUDA: replayed as a CUDA graph over a fixed mask buffer, no host read. Warp's CPU device: skipped when
        ``mask`` has no True entry (``reset_data`` costs ~0.1 s of Python per call there; reading a CPU tensor
        waits for no device).
        """
        self._mask.copy_(mask)
        if not self.use_graph and not bool(self._mask.any()):
            return
        self._run("reset_mask", lambda: self.mjw.reset_data(self.m, self.d, reset=self._mask_wp))

    def _run(self, key: object, fn) -> None:
        """Run ``fn`` (warp launches only) on torch's stream; on CUDA the first call runs it directly (loading
        the kernels) and records it as a CUDA graph (on warp's stream) that later calls replay."""
        wp = self.wp
        graph = self._graphs.get(key) if self.use_graph else None
        with self._stream():
            if graph is not None:
                wp.capture_launch(graph)
                return
            fn()
        if self.use_graph:
            wp.synchronize_device(self.wp_device)  # once per key, before recording
            try:
                with wp.ScopedCapture(device=self.wp_device) as capture:
                    fn()  # recorded, not executed
            except Exception as err:  # e.g. conditional nodes need CUDA >= 12.4: plain launches from now on
                print(f"[meow-isaac] mjwarp: CUDA graph capture failed ({type(err).__name__}: {err}); "
                      "launching the kernels one by one instead")
                self.use_graph = False
                return
            self._graphs[key] = capture.graph

    def forward(self, ids: Optional[torch.Tensor] = None) -> None:
        """Forward pass (``mujoco_warp.forward``) of worlds ``ids`` (all if None).

        MuJoCo Warp runs every world; with ``ids`` the other worlds' views (derived fields) are restored, so
        they stay as the last step left them, as with the C engine's ``batch.forward(ids)``.
        """
        keep = None
        if ids is not None:
            mask = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
            mask.index_fill_(0, ids.to(self.device), True)
            keep = {name: v.clone() for name, v in self._views.items()}
        with self._stream():
            self.mjw.forward(self.m, self.d)
        if keep is not None:
            for name, v in self._views.items():
                v.copy_(torch.where(mask.view((-1,) + (1,) * (v.dim() - 1)), v, keep[name]))

    def forward_masked(self, mask: torch.Tensor) -> None:
        """Forward pass of every world if any of ``mask`` ``(N,)`` bool is True, decided on the device.

        ``wp.capture_if`` on a device flag: inside a CUDA graph (recorded at the first call; conditional nodes
        need CUDA >= 12.4) the branch is taken on the GPU without a host read; on warp's CPU device the flag
        is read on the host (no device to wait for). Callers restore the rows of worlds outside ``mask``.
        """
        wp, mjw = self.wp, self.mjw
        if self._any is None:
            self._any = torch.zeros(1, dtype=torch.int32, device=self.device)
            self._any_wp = wp.from_torch(self._any, dtype=wp.int32)
        self._any.copy_(mask.any().to(torch.int32).view(1))

        self._run("forward_masked",
                  lambda: wp.capture_if(self._any_wp, on_true=lambda: mjw.forward(self.m, self.d)))

    def _substeps(self, nstep: int, stage: int) -> None:
        mjw = self.mjw
        for _ in range(nstep):
            mjw.step(self.m, self.d)
        if stage >= STAGE_ACC:
            mjw.forward(self.m, self.d)
        elif stage >= STAGE_POS:
            mjw.fwd_position(self.m, self.d)
            if stage >= STAGE_VEL:
                mjw.fwd_velocity(self.m, self.d)

    def step(self, nstep: int, stage: int = STAGE_NONE) -> None:
        """``nstep`` substeps of every world, then the forward stage ``stage``; replayed as one CUDA graph on
        CUDA (recorded at the first call for each ``(nstep, stage)``, which itself runs the kernels directly).

        The graph is recorded on warp's own stream (CUDA cannot capture torch's legacy default stream) and
        launched on torch's current stream.
        """
        self._run(("step", nstep, stage), lambda: self._substeps(nstep, stage))

    def post_constraint(self) -> torch.Tensor:
        """``cfrc_ext`` ``(N, nbody, 6)`` float32 view after ``mujoco_warp.rne_postconstraint`` of every world."""
        self._run("post_constraint", lambda: self.mjw.rne_postconstraint(self.m, self.d))
        return self.view("cfrc_ext")

    def host_data(self, sim: int) -> Tuple[mujoco.MjModel, mujoco.MjData]:
        """``(MjModel, MjData)`` of world ``sim`` copied to the host (``mujoco_warp.get_data_into``; rendering)."""
        if self._host_data is None:
            self._host_data = mujoco.MjData(self.host_model)
        self.wp.synchronize_device(self.wp_device)
        self.mjw.get_data_into(self._host_data, self.host_model, self.d, world_id=int(sim))
        return self.host_model, self._host_data

    def close(self) -> None:
        self._views.clear()
        self._graphs.clear()
        self.m = self.d = None
