"""Typed, validated view of the hydra config (``cfg/config.yaml`` + ``cfg/train/<Task>MEow.yaml`` / ``<Task>SAC.yaml``).

Every check names the key, the bad value and what is accepted, so the runner can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, List, Mapping

import torch

from meow_isaac.flows import ACTIVATIONS  # train.activation (MEow)

SIMS = ("auto", "mujoco", "mjwarp", "isaacgym", "omniisaacgym", "isaaclab")
ALGOS = ("meow", "sac")  # train.algo: meow_isaac.agents.make_agent builds the agent


class ConfigError(ValueError):
    """A config value is invalid; the message is one line: key, value, what is accepted."""


def _fail(key: str, value: Any, accepted: str) -> None:
    raise ConfigError(f"invalid config: {key}={value!r}; accepted: {accepted}")


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``options`` to a misspelt ``name``, else ''."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


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
    activation: str = "swish"          # MEow only: swish (the authors' network) | relu (the earlier network)
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
    max_bad_updates: int = 100         # stop (checkpoint, exit 4) after this many consecutive skipped NaN/Inf updates
    compile: str = "auto"              # MEow only: compile: auto (CUDA; CPU >= 50k updates) | True | False
    amp: str = "none"                  # MEow only: none | bf16 (autocast of the loss)
    overlap_env: bool = False          # CPU env + CPU device: step physics on a worker thread during the update

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> "TrainConfig":
        """Build and validate from the ``train`` config node.

        Raises:
            ConfigError: an unknown key or a value out of range.
        """
        names = {f.name for f in fields(cls)}
        for key in cfg:
            if key not in names:
                _fail(f"train.{key}", cfg[key], "a key of the train config" + did_you_mean(key, names) + ": "
                      + ", ".join(sorted(names)))
        out = cls(**{k: cfg[k] for k in cfg})
        out.validate()
        return out

    def validate(self) -> None:
        """Raise :class:`ConfigError` for the first invalid value."""
        if isinstance(self.compile, bool):  # train.compile=True parses as a bool
            self.compile = str(self.compile)
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
        if self.compile not in ("auto", "True", "False"):
            _fail("train.compile", self.compile, "auto, True, False")
        if self.amp not in ("none", "bf16"):
            _fail("train.amp", self.amp, "none, bf16")
        if self.activation not in ACTIVATIONS:
            _fail("train.activation", self.activation, ", ".join(ACTIVATIONS))
        for key in ("alpha", "learning_rate", "grad_norm", "actor_lr", "critic_lr", "alpha_lr"):
            if not getattr(self, key) > 0:
                _fail(f"train.{key}", getattr(self, key), "a number > 0")
        if not 0.0 < self.tau <= 1.0:  # a Polyak rate of 0 would never move the target
            _fail("train.tau", self.tau, "a number in (0, 1]")
        if not 0.0 <= self.gamma <= 1.0:
            _fail("train.gamma", self.gamma, "a number in [0, 1]")
        if not 0.0 <= self.dropout < 1.0:
            _fail("train.dropout", self.dropout, "a number in [0, 1)")
        if not self.sigma_min < self.sigma_max:
            _fail("train.sigma_min", self.sigma_min, f"a number < train.sigma_max={self.sigma_max}")
        if not self.log_std_min < self.log_std_max:
            _fail("train.log_std_min", self.log_std_min, f"a number < train.log_std_max={self.log_std_max}")
        for key in ("batch_size", "updates_per_step", "replay_size_per_env", "max_iterations", "log_interval",
                    "eval_envs", "save_interval", "max_bad_updates"):
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
    if dev.type not in ("cpu", "cuda"):
        _fail("device", device, "'auto', 'cpu', 'cuda' or 'cuda:<index>'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        _fail("device", device, "'cpu' or 'auto' (no CUDA device is available here)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        _fail("device", device, f"'cpu', 'auto', 'cuda' or 'cuda:<index>' with index < "
              f"{torch.cuda.device_count()} (the CUDA devices visible here)")
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


def check_int(key: str, value: Any, minimum: int = 1, default_ok: bool = False) -> int:
    """``value`` as an int >= ``minimum`` (``default_ok``: '' means "the default" and is returned as 0).

    Raises:
        ConfigError: not an integer (bools and floats are not), or below ``minimum``.
    """
    if default_ok and value == "":
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(key, value, ("'' (the default) or " if default_ok else "") + f"an integer >= {minimum}")
    return int(value)


def check_bool(key: str, value: Any) -> bool:
    """``value`` if it is a bool.

    Raises:
        ConfigError: anything else (e.g. ``test=yes`` or ``headless=1``).
    """
    if not isinstance(value, bool):
        _fail(key, value, "True or False")
    return value


def check_known_keys(values: Mapping[str, Any], known: Iterable[str], where: str = "") -> None:
    """Every key of ``values`` is in ``known`` (``where``: names the level in the message, e.g. 'top-level').

    Raises:
        ConfigError: the first unknown key, with the closest known key and the whole list.
    """
    known = sorted(known)
    for key, value in values.items():
        if key not in known:
            _fail(str(key), value, f"a known {where + ' ' if where else ''}key{did_you_mean(str(key), known)}: "
                  + ", ".join(known))


def check_distributed_env(environ: Mapping[str, str], device: torch.device) -> int:
    """Check the ``torchrun`` environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``) before joining a process group; returns the world size (1: not distributed).

    ``num_envs`` is per rank (every rank steps its own ``num_envs`` envs), so it needs no divisibility by the
    world size; what can be wrong is a half-set launch environment, which would otherwise fail with a traceback
    inside ``init_process_group`` or wait for peers that never come.

    Raises:
        ConfigError: ``WORLD_SIZE`` not an integer >= 1; a variable torchrun sets is missing; ``RANK`` not in
            ``[0, WORLD_SIZE)``; ``LOCAL_RANK`` negative, or not a visible CUDA device when training on CUDA.
    """
    raw = environ.get("WORLD_SIZE", "1")
    try:
        world = int(raw)
    except ValueError:
        world = 0
    if world < 1:
        _fail("WORLD_SIZE (environment)", raw, "an integer >= 1 (torchrun sets it)")
    if world == 1:
        return 1
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if not environ.get(k)]
    if missing:
        _fail("WORLD_SIZE (environment)", raw, f"1, or a torchrun launch (it also sets {', '.join(missing)}, "
              "missing here)")
    for key, upper in (("RANK", world), ("LOCAL_RANK", None)):
        value = environ[key]
        try:
            index = int(value)
        except ValueError:
            index = -1
        if index < 0 or (upper is not None and index >= upper):
            _fail(f"{key} (environment)", value, f"an integer in [0, {upper})" if upper else "an integer >= 0")
    if device.type == "cuda" and int(environ["LOCAL_RANK"]) >= torch.cuda.device_count():
        _fail("LOCAL_RANK (environment)", environ["LOCAL_RANK"],
              f"an integer < {torch.cuda.device_count()} (one visible CUDA device per local rank)")
    return world
