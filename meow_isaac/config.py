"""Typed, validated view of the hydra config (``cfg/config.yaml`` + ``cfg/train/<Task>MEow.yaml`` / ``<Task>SAC.yaml``).

Every check names the key, the bad value and what is accepted, so the runner can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from typing import Any, List, Mapping

import torch

SIMS = ("auto", "mujoco", "isaacgym", "omniisaacgym", "isaaclab")
ALGOS = ("meow", "sac")  # train.algo: meow_isaac.agents.make_agent builds the agent


class ConfigError(ValueError):
    """A config value is invalid; the message is one line: key, value, what is accepted."""


def _fail(key: str, value: Any, accepted: str) -> None:
    raise ConfigError(f"invalid config: {key}={value!r}; accepted: {accepted}")


@dataclass
class TrainConfig:
    """Agent hyperparameters and the trainer schedule (``cfg/train/*MEow.yaml``, ``cfg/train/*SAC.yaml``); steps
    are *vectorised* steps. Keys marked "MEow only" / "SAC only" are ignored by the other algorithm.

    Reference values: ``shared/reference/meow_algorithm.md`` section 6 (MEow); CleanRL
    ``sac_continuous_action.py`` and the IsaacGymEnvs ``AntSAC``/``HumanoidSAC`` configs (SAC, cited per yaml).
    """

    name: str = "MEow"
    algo: str = "meow"                 # meow | sac
    alpha: float = 0.2                 # temperature (SAC: initial value when learnable_temperature)
    tau: float = 0.005                 # Polyak rate of the target flow (SAC: of the target critics)
    gamma: float = 0.99
    learning_rate: float = 1e-3        # MEow only
    grad_norm: float = 30.0            # max global gradient norm (SAC: of critic and actor each; .inf = no clip)
    sigma_max: float = -0.3            # MEow only: bounds of log sigma(s)
    sigma_min: float = -5.0
    dropout: float = 0.1               # MEow only: coupling dropout
    actor_lr: float = 3e-4             # SAC only: Adam step size of the actor
    critic_lr: float = 1e-3            # SAC only: Adam step size of the twin critics
    alpha_lr: float = 1e-3             # SAC only: Adam step size of log alpha
    learnable_temperature: bool = True  # SAC only: learn alpha towards target entropy -action_dim
    units: List[int] = field(default_factory=lambda: [256, 256])  # SAC only: hidden widths (actor, critics)
    log_std_min: float = -5.0          # SAC only: bounds of the actor's log std
    log_std_max: float = 2.0
    batch_size: int = 256
    updates_per_step: int = 1          # UTD: gradient updates per vectorised step
    replay_size_per_env: int = 1000000
    random_steps: int = 5000           # vectorised steps with uniform random actions
    learning_starts: int = 5000        # vectorised steps before the first update
    max_iterations: int = 1000000      # vectorised steps of the whole run
    normalize_input: bool = False      # running observation normaliser
    two_pass: bool = False             # reference formulation: one flow pass per shift head
    log_interval: int = 1000           # vectorised steps between log lines / TensorBoard points
    eval_interval: int = 10000         # vectorised steps between evaluations (0: only at the end)
    eval_envs: int = 5                 # parallel deterministic evaluation episodes
    save_interval: int = 10000         # vectorised steps between 'last' checkpoints
    save_replay: bool = False          # store the replay buffer in checkpoints (exact resume of the data)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "TrainConfig":
        """Build and validate from the ``train`` config node.

        Raises:
            ConfigError: an unknown key or a value out of range.
        """
        names = {f.name for f in fields(cls)}
        for key in cfg:
            if key not in names:
                _fail(f"train.{key}", cfg[key], "one of " + ", ".join(sorted(names)))
        out = cls(**{k: cfg[k] for k in cfg})
        out.validate()
        return out

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first invalid value."""
        for f in fields(self):
            value = getattr(self, f.name)
            if str(f.type) == "List[int]":
                if (not isinstance(value, (list, tuple)) or not value
                        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
                    _fail(f"train.{f.name}", value, "a non-empty list of integers >= 1, e.g. [256, 256]")
                setattr(self, f.name, [int(v) for v in value])
                continue
            typ = {"float": float, "int": int, "bool": bool, "str": str}[str(f.type)]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                _fail(f"train.{f.name}", value, f"a value of type {typ.__name__}")
        if self.algo not in ALGOS:
            _fail("train.algo", self.algo, ", ".join(ALGOS))
        for key in ("alpha", "learning_rate", "grad_norm", "actor_lr", "critic_lr", "alpha_lr"):
            if not getattr(self, key) > 0:
                _fail(f"train.{key}", getattr(self, key), "a number > 0")
        for key in ("tau", "gamma"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                _fail(f"train.{key}", getattr(self, key), "a number in [0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            _fail("train.dropout", self.dropout, "a number in [0, 1)")
        if not self.sigma_min < self.sigma_max:
            _fail("train.sigma_min", self.sigma_min, f"a number < train.sigma_max={self.sigma_max}")
        if not self.log_std_min < self.log_std_max:
            _fail("train.log_std_min", self.log_std_min, f"a number < train.log_std_max={self.log_std_max}")
        for key in ("batch_size", "updates_per_step", "replay_size_per_env", "max_iterations", "log_interval",
                    "eval_envs", "save_interval"):
            if getattr(self, key) < 1:
                _fail(f"train.{key}", getattr(self, key), "an integer >= 1")
        for key in ("random_steps", "learning_starts", "eval_interval"):
            if getattr(self, key) < 0:
                _fail(f"train.{key}", getattr(self, key), "an integer >= 0")

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with ``changes`` applied."""
        out = dataclasses.replace(self, **changes)
        out.validate()
        return out


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda:0`` when available, else ``cpu``; otherwise the named device.

    Raises:
        ConfigError: unparsable device, or CUDA requested but unavailable.
    """
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        _fail("device", device, "'auto', 'cpu', 'cuda' or 'cuda:<index>'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        _fail("device", device, "'cpu' or 'auto' (no CUDA device is available here)")
    if dev.type not in ("cpu", "cuda"):
        _fail("device", device, "'auto', 'cpu', 'cuda' or 'cuda:<index>'")
    return dev


def usable_cpus() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_threads(key: str, value: Any) -> int:
    """``auto`` -> physics (``sim_threads``): half the usable CPUs; torch (``torch_threads``): the other half.

    Physics and update alternate, but torch's OpenMP workers spin-wait and stall whenever a core they wait for
    is busy: on the 2-core dev machine a batch-1024 Humanoid update took 58 ms with 1 torch thread and 1950 ms
    with 2 while any other process ran (2 threads only won, 13 vs 16 ms per Hopper step, on an idle machine).
    Disjoint thread counts that add up to the CPU count never oversubscribe (README, "CPU threads").

    Raises:
        ConfigError: not 'auto' and not an integer >= 1.
    """
    if value == "auto":
        sim = max(1, usable_cpus() // 2)
        return sim if key == "sim_threads" else max(1, usable_cpus() - sim)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(key, value, "'auto' or an integer >= 1")
    return int(value)
