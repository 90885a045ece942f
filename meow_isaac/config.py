"""Typed, validated view of the hydra config (``cfg/config.yaml`` + ``cfg/train/<Task>MEow.yaml``).

Every check names the key, the bad value and what is accepted, so the runner can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch

SIMS = ("auto", "mujoco", "isaacgym", "omniisaacgym", "isaaclab")


class ConfigError(ValueError):
    """A config value is invalid; the message is one line: key, value, what is accepted."""


def _fail(key: str, value: Any, accepted: str) -> None:
    raise ConfigError(f"invalid config: {key}={value!r}; accepted: {accepted}")


@dataclass
class TrainConfig:
    """MEow hyperparameters and the trainer schedule (``cfg/train/*MEow.yaml``); steps are *vectorised* steps.

    Reference values: ``shared/reference/meow_algorithm.md`` section 6.
    """

    name: str = "MEow"
    algo: str = "meow"
    alpha: float = 0.2                 # temperature
    tau: float = 0.005                 # Polyak rate of the target flow
    gamma: float = 0.99
    learning_rate: float = 1e-3
    grad_norm: float = 30.0            # max global gradient norm
    sigma_max: float = -0.3            # bounds of log sigma(s)
    sigma_min: float = -5.0
    dropout: float = 0.1               # coupling dropout
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
            typ = {"float": float, "int": int, "bool": bool, "str": str}[str(f.type)]
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                _fail(f"train.{f.name}", value, f"a value of type {typ.__name__}")
        if self.algo != "meow":
            _fail("train.algo", self.algo, "'meow'")
        for key in ("alpha", "learning_rate", "grad_norm"):
            if not getattr(self, key) > 0:
                _fail(f"train.{key}", getattr(self, key), "a number > 0")
        for key in ("tau", "gamma"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                _fail(f"train.{key}", getattr(self, key), "a number in [0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            _fail("train.dropout", self.dropout, "a number in [0, 1)")
        if not self.sigma_min < self.sigma_max:
            _fail("train.sigma_min", self.sigma_min, f"a number < train.sigma_max={self.sigma_max}")
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
    """``auto`` -> torch: all usable CPUs; physics (``sim_threads``): half of them (at least 1).

    Physics and update alternate, but torch's OpenMP workers keep spinning for a while after each parallel
    region and then compete with the physics pool; on the 2-core dev machine 2 torch + 1 physics thread was
    the fastest combination for Hopper (1 env) and Humanoid (128 envs) (README, "CPU threads").

    Raises:
        ConfigError: not 'auto' and not an integer >= 1.
    """
    if value == "auto":
        return usable_cpus() if key == "torch_threads" else max(1, usable_cpus() // 2)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(key, value, "'auto' or an integer >= 1")
    return int(value)
