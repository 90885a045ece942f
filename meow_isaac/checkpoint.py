"""Checkpoint files: atomic, durable writes; safe (``weights_only``), validated loads; exact RNG resume.

Format (``FORMAT_VERSION`` 2): a dict of tensors and plain containers only, so that it loads with
``torch.load(weights_only=True)`` (no pickled code): ``format_version``, ``meta`` (``algo``, ``task``, ``obs_dim``,
``action_dim``, and for MEow ``activation``), ``agent``, ``optimizer``, ``counters``, ``rng``, ``config`` and
optionally ``env_rng`` and ``env_rng_masked`` (the states of the env's ``torch.Generator`` s ``generator`` and
``masked_generator``) with ``env_rng_device`` (their device type; a run resumed on another device kind does not
restore them) and ``replay``. Files without ``format_version`` are read as version 1 (same structure, NumPy
RNG state as an array).
"""

from __future__ import annotations

import errno
import glob
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch

from meow_isaac.config import ConfigError

FORMAT_VERSION = 2
TRAIN_SUFFIX = {"meow": "MEow", "sac": "SAC"}  # train.algo -> cfg/train/<Task><suffix>.yaml
LEGACY_ACTIVATION = "relu"  # the network of MEow checkpoints whose meta has no 'activation' (before train.activation)
CHECKPOINT_ERROR_MODES = ("warn", "stop")  # checkpoint_error: a failed write warns and trains on, or stops


class CheckpointError(ConfigError):
    """A checkpoint cannot be used: unreadable or truncated, untrusted content, a newer format, or written for
    another algorithm / task / model size. One line naming the file and the mismatch (expected vs found);
    nothing has been loaded when it is raised. Through the CLI: ``error: ...``, exit code 2."""


class CheckpointWriteError(RuntimeError):
    """Writing a checkpoint failed (disk full, unwritable folder) with ``checkpoint_error=stop``; the previous
    checkpoint is intact. The runner prints the one-line message and exits with ``exit_code``.

    Under torchrun only rank 0 writes: it prints the line when the write fails, and every rank then stops at that
    iteration's save point with a ``quiet`` one (nothing more printed), with the same exit code."""

    exit_code = 5

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = bool(quiet)


def check_checkpoint_error(value: Any) -> str:
    """Validate the ``checkpoint_error`` config key.

    Raises:
        ConfigError: ``value`` is not one of :data:`CHECKPOINT_ERROR_MODES`.
    """
    if value not in CHECKPOINT_ERROR_MODES:
        raise ConfigError(f"invalid config: checkpoint_error={value!r}; accepted: {', '.join(CHECKPOINT_ERROR_MODES)}"
                          " (warn: print the error and keep training; stop: exit 5)")
    return str(value)


# ---------------------------------------------------------------------------------------------------- writing
def temp_files(path: Union[str, Path]) -> List[Path]:
    """Temp files that :func:`save_checkpoint` left next to ``path`` (a write killed before its rename)."""
    path = Path(path)
    return [Path(p) for p in glob.glob(os.path.join(glob.escape(str(path.parent)), glob.escape(path.name) + ".*.tmp"))]


def _os_error(err: BaseException) -> Optional[OSError]:
    """The OSError behind ``err`` (``torch.save`` wraps a failed ``write`` into a RuntimeError), or None."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, OSError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); a no-op where directories cannot be opened or synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # e.g. Windows
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def save_checkpoint(path: Union[str, Path], state: Dict[str, Any]) -> Path:
    """Write ``state`` with ``torch.save`` to a temp file in the same folder, fsync it, rename it onto ``path``
    and fsync the folder.

    A crash, SIGKILL or power cut at any moment leaves either the previous or the new checkpoint at ``path``
    (``os.replace`` is atomic on POSIX). Temp files of earlier writes to ``path`` that were killed are removed
    first (they would otherwise take disk space); on failure the temp file is removed and ``path`` is untouched.

    Raises:
        OSError: the folder cannot be created or written (disk full, file too large, read-only, ...); the
            message names ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in temp_files(path):
            stale.unlink()
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        cause = _os_error(err)
        if cause is not None and not isinstance(err, KeyboardInterrupt):
            raise OSError(cause.errno, cause.strerror, str(path)) from err
        raise
    return path


# ---------------------------------------------------------------------------------------------------- reading
def _numpy_safe_globals() -> list:
    """What a version-1 file needs beyond plain data: NumPy arrays and dtypes (no code)."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _fail(path: Union[str, Path], problem: str, accepted: str) -> CheckpointError:
    return CheckpointError(f"invalid config: checkpoint={str(path)!r}: {problem}; accepted: {accepted}")


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> Dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``: tensors and
    plain containers only, so a file cannot run code. Does not check it against a model: see
    :func:`check_compatible`. The result always has ``format_version`` (1 for unversioned files).

    Raises:
        FileNotFoundError: ``path`` does not exist (message names it).
        CheckpointError: truncated or corrupt; holds pickled objects other than plain data (names them);
            not a meow-isaac checkpoint; a newer ``format_version`` than this meow-isaac reads.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint={str(path)!r} does not exist")
    safe = getattr(torch.serialization, "safe_globals", None)
    try:
        if safe is None:  # torch < 2.5: plain data only
            state = torch.load(path, map_location=map_location, weights_only=True)
        else:
            with safe(_numpy_safe_globals()):
                state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 (any unpickling / zip error: reported as one line)
        text = " ".join(str(err).split())
        if "Weights only load failed" in text or "WeightsUnpickler" in text:
            named = re.search(r"GLOBAL (\S+?)\.?(?: |$)", text)
            found = f"GLOBAL {named.group(1)}" if named else \
                text.split("WeightsUnpickler error: ", 1)[-1].split(". ")[0][:160]
            raise _fail(path, f"holds pickled objects that are not plain data ({found}); refused, nothing was "
                              "loaded or run", "a checkpoint of tensors and plain containers, as meow-isaac "
                              "writes them") from None
        raise _fail(path, f"is truncated or corrupt ({type(err).__name__}: {text.split('. ')[0][:160]})",
                    "a complete checkpoint file (a killed write never replaces one; use the previous file)") from None
    if not isinstance(state, dict) or "agent" not in state or "counters" not in state:
        raise _fail(path, "is not a meow-isaac checkpoint (no 'agent'/'counters')",
                    "a .pth written by meow-isaac (runs/<experiment>/nn/)")
    version = state.setdefault("format_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        newer = " (written by a newer meow-isaac)" if isinstance(version, int) and version > FORMAT_VERSION else ""
        raise _fail(path, f"format_version: expected 1..{FORMAT_VERSION}, found {version!r}{newer}",
                    f"format_version 1..{FORMAT_VERSION}, or upgrade meow-isaac")
    return state


def checkpoint_meta(algo: str, task: Optional[str], obs_dim: int, action_dim: int,
                    activation: Optional[str] = None) -> Dict[str, Any]:
    """The ``meta`` block of a checkpoint (and what a loader expects); ``activation`` (``train.activation``) is
    recorded for MEow only (SAC's networks have no such switch)."""
    meta: Dict[str, Any] = {"algo": algo, "task": task, "obs_dim": int(obs_dim), "action_dim": int(action_dim)}
    if algo == "meow" and activation is not None:
        meta["activation"] = activation
    return meta


def _check_activation(meta: Mapping[str, Any], path: Union[str, Path], expected: Mapping[str, Any]) -> None:
    """A MEow checkpoint's network (``meta['activation']``; :data:`LEGACY_ACTIVATION` for files written before
    ``train.activation`` existed) against this run's ``train.activation``.

    Raises:
        CheckpointError: they differ: one line naming the value that loads the file.
    """
    want = expected.get("activation")
    if want is None or meta.get("algo", "meow") != "meow":
        return
    found = meta.get("activation") or LEGACY_ACTIVATION
    if found != want:
        when = " (written before train.activation existed)" if not meta.get("activation") else ""
        raise CheckpointError(f"invalid config: train.activation={want!r}; accepted: {found!r}, the network of "
                              f"checkpoint={str(path)}{when}: add train.activation={found}")


def _meta_of(state: Mapping[str, Any]) -> Dict[str, Any]:
    """``state['meta']``; for version-1 files the parts that the stored config gives (algo, task)."""
    meta = state.get("meta")
    if isinstance(meta, dict):
        return meta
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    train, task = config.get("train") or {}, config.get("task") or {}
    return {"algo": train.get("algo", "meow") if isinstance(train, dict) else None,
            "task": task.get("name") if isinstance(task, dict) else None}


def _shape(value: Any) -> Any:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _state_mismatches(name: str, found: Any, expected: Mapping[str, Any]) -> List[str]:
    """Key-set and tensor-shape differences between ``found`` and ``expected`` (a template state dict)."""
    if not isinstance(found, dict):
        return [f"{name}: expected a dict of tensors, found {type(found).__name__}"]
    problems = []
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing:
        problems.append(f"{name} keys missing: {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} "
                        f"({len(missing)})")
    if unexpected:
        problems.append(f"{name} keys unexpected: {', '.join(unexpected[:3])}"
                        f"{' ...' if len(unexpected) > 3 else ''} ({len(unexpected)})")
    for key in sorted(set(found) & set(expected)):
        want = expected[key]
        if isinstance(want, torch.Tensor) and (not isinstance(found[key], torch.Tensor)
                                               or found[key].shape != want.shape):
            problems.append(f"{name}.{key}: expected shape {_shape(want)}, found {_shape(found[key])}")
    return problems


def check_compatible(state: Mapping[str, Any], path: Union[str, Path], expected: Mapping[str, Any],
                     agent: Mapping[str, Any], replay: Optional[Mapping[str, Any]] = None) -> None:
    """Check a loaded checkpoint against what it is loaded into, before anything is assigned: the ``meta``
    block against ``expected`` (:func:`checkpoint_meta`; ``None`` values are not compared; an ``algo``
    mismatch is reported alone, as ``train.algo``, and so is a MEow ``activation`` mismatch, as
    ``train.activation``), the agent's
    state-dict keys and tensor shapes against ``agent``, the replay buffer's against ``replay`` (when given and
    saved), the counters and the RNG states.

    Raises:
        CheckpointError: every mismatch found, in one line ("<what>: expected X, found Y").
    """
    meta = _meta_of(state)
    found_algo, want_algo = meta.get("algo"), expected.get("algo")
    if want_algo is not None and found_algo is not None and found_algo != want_algo:
        raise CheckpointError(f"invalid config: train.algo={want_algo!r}; accepted: {found_algo!r}, the algorithm of "
                              f"checkpoint={str(path)} (select its train config, e.g. "
                              f"train=<Task>{TRAIN_SUFFIX.get(str(found_algo), str(found_algo).upper())})")
    _check_activation(meta, path, expected)
    problems = [f"{key}: expected {want!r}, found {meta.get(key)!r}" for key, want in expected.items()
                if want is not None and meta.get(key) is not None and meta.get(key) != want]
    if not problems:
        problems += _state_mismatches("agent", state["agent"], agent)
        if replay is not None and "replay" in state:
            problems += _state_mismatches("replay", state["replay"], replay)
        counters = state["counters"]
        if not isinstance(counters, dict) or not all(isinstance(counters.get(k), (int, float))
                                                     for k in ("iteration", "updates", "best_return")):
            problems.append("counters: expected iteration, updates, best_return numbers, found "
                            f"{counters!r:.120}")
        try:
            _decode_rng(state.get("rng"))
        except (TypeError, ValueError, KeyError, IndexError) as err:
            problems.append(f"rng: unreadable ({err})")
    if problems:
        hint = (" (a saved replay buffer also needs the same num_envs and train.replay_size_per_env)"
                if any(p.startswith("replay") for p in problems) else "")
        raise _fail(path, "; ".join(problems), "a checkpoint of the same algorithm, task and model as this run"
                    + hint)


# ---------------------------------------------------------------------------------------------------- RNG
def rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch CPU and (if present) CUDA generator states, as tensors and plain containers (so that
    they load with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    algorithm, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": [int(version), [int(v) for v in internal], gauss],
        "numpy": {"algorithm": str(algorithm), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _decode_rng(state: Any) -> Dict[str, Any]:
    """:func:`rng_state`'s output (or a version-1 file's) as the arguments of the ``set_state`` functions.

    Raises:
        TypeError, ValueError, KeyError, IndexError: malformed.
    """
    py = state["python"]
    python = (int(py[0]), tuple(int(v) for v in py[1]), None if py[2] is None else float(py[2]))
    if len(python[1]) != len(random.getstate()[1]):
        raise ValueError(f"python state has {len(python[1])} words, expected {len(random.getstate()[1])}")
    npy = state["numpy"]
    if isinstance(npy, dict):
        keys = npy["keys"].cpu().numpy() if isinstance(npy["keys"], torch.Tensor) else np.asarray(npy["keys"])
        numpy = (str(npy["algorithm"]), keys.astype(np.uint32), int(npy["pos"]), int(npy["has_gauss"]),
                 float(npy["cached_gaussian"]))
    else:  # version 1: np.random.get_state() itself
        numpy = (str(npy[0]), np.asarray(npy[1]).astype(np.uint32), int(npy[2]), int(npy[3]), float(npy[4]))
    if numpy[1].shape != (624,):
        raise ValueError(f"numpy state has shape {numpy[1].shape}, expected (624,)")
    cpu = state["torch"]
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8 or cpu.shape != torch.get_rng_state().shape:
        raise ValueError(f"torch state: expected a uint8 tensor of shape {tuple(torch.get_rng_state().shape)}")
    return {"python": python, "numpy": numpy, "torch": cpu.cpu(), "cuda": state.get("cuda")}


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state` (or by a version-1 checkpoint).

    Raises:
        TypeError, ValueError, KeyError, IndexError: ``state`` is malformed (nothing restored).
    """
    decoded = _decode_rng(state)
    random.setstate(decoded["python"])
    np.random.set_state(decoded["numpy"])
    torch.set_rng_state(decoded["torch"])
    if decoded["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in decoded["cuda"]])


def seed_everything(seed: int, torch_deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch; optionally request deterministic torch kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch_deterministic:
        torch.use_deterministic_algorithms(True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
