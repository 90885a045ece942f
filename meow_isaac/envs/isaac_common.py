"""Pieces shared by the Isaac adapters: episode bookkeeping, framework config loading, one-line errors.

Nothing here imports an Isaac framework; the adapters import theirs lazily, inside their ``make`` functions.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from meow_isaac.envs.contract import StepOut

# The OmegaConf resolvers of IsaacGymEnvs / OmniIsaacGymEnvs (``isaacgymenvs/__init__.py``,
# ``omniisaacgymenvs/utils/hydra_cfg/hydra_utils.py``); meow-isaac's runner registers the same four.
RESOLVERS: Dict[str, Callable[..., Any]] = {
    "eq": lambda x, y: x.lower() == y.lower(),
    "contains": lambda x, y: x.lower() in y.lower(),
    "if": lambda pred, a, b: a if pred else b,
    "resolve_default": lambda default, arg: default if arg == "" else arg,
}

_LOGGED: set = set()


class FrameworkError(RuntimeError):
    """An Isaac framework cannot be used as configured; the message is one line (the runner exits 2)."""


def log_once(key: str, message: str) -> None:
    """Print ``[meow-isaac] message`` the first time ``key`` is seen in this process."""
    if key not in _LOGGED:
        _LOGGED.add(key)
        print(f"[meow-isaac] {message}", flush=True)


def import_framework(module: str) -> Any:
    """Import an Isaac framework module whose import registers the four resolvers unconditionally.

    ``isaacgymenvs/__init__.py`` calls ``OmegaConf.register_new_resolver('eq', ...)`` without checking, which
    raises ``ValueError: resolver 'eq' is already registered`` after meow-isaac's runner registered them.
    The resolvers are identical, so ours are cleared for the import and restored (if missing) afterwards.

    Raises:
        FrameworkError: the module cannot be imported.
    """
    if module in sys.modules:
        return sys.modules[module]
    for name in RESOLVERS:
        OmegaConf.clear_resolver(name)
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise FrameworkError(f"cannot import {module}: {err}") from err
    finally:
        for name, fn in RESOLVERS.items():
            if not OmegaConf.has_resolver(name):
                OmegaConf.register_new_resolver(name, fn)


def resolve_dotted(spec: str) -> Any:
    """``"package.module:attr"`` -> the object.

    Raises:
        FrameworkError: malformed or not importable.
    """
    module, sep, attr = str(spec).partition(":")
    if not sep:
        raise FrameworkError(f"{spec!r} is not of the form 'package.module:ClassName'")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise FrameworkError(f"cannot import {spec!r}: {err}") from err


def _load_yaml_with_defaults(path: Path) -> DictConfig:
    """Load a hydra task yaml, merging the sibling files named in its ``defaults`` list (``_self_`` last)."""
    if not path.is_file():
        raise FrameworkError(f"framework task config {path} does not exist")
    node = OmegaConf.load(path)
    defaults = node.pop("defaults", None) or []
    merged = OmegaConf.create()
    for entry in defaults:
        if isinstance(entry, str) and entry != "_self_":
            merged = OmegaConf.merge(merged, _load_yaml_with_defaults(path.parent / f"{entry}.yaml"))
    return OmegaConf.merge(merged, node)


def framework_config(package: Any, task: str, cfg_file: Optional[str], root: Mapping[str, Any],
                     overrides: Optional[Mapping[str, Any]]) -> DictConfig:
    """Compose a framework's hydra config the way its ``train.py`` would, without hydra.

    ``<package>/cfg/config.yaml`` (minus ``defaults``/``hydra``) with ``root`` merged on top, ``task`` =
    ``<package>/cfg/task/<task>.yaml`` (or ``cfg_file``) with ``overrides`` merged in, ``train`` = a stub
    (only ``train.params.config.name`` is referenced from the root, by ``wandb_name``). Hydra itself is not
    used because meow-isaac's runner already holds the global hydra instance.

    Raises:
        FrameworkError: the task yaml does not exist.
    """
    cfg_dir = Path(package.__file__).resolve().parent / "cfg"
    base = OmegaConf.load(cfg_dir / "config.yaml") if (cfg_dir / "config.yaml").is_file() else OmegaConf.create()
    for key in ("defaults", "hydra"):
        base.pop(key, None)
    task_cfg = _load_yaml_with_defaults(Path(cfg_file) if cfg_file else cfg_dir / "task" / f"{task}.yaml")
    if overrides:
        task_cfg = OmegaConf.merge(task_cfg, OmegaConf.create(dict(overrides)))
    out = OmegaConf.merge(base, OmegaConf.create(dict(root)))
    out.task = task_cfg
    out.train = {"params": {"config": {"name": task}}}
    if "task_name" not in out:
        out.task_name = "${task.name}"
    return out


def torch_device_parts(device: torch.device) -> Tuple[str, int, str]:
    """``device`` -> (IsaacGymEnvs ``sim_device`` string, GPU index, ``pipeline`` 'gpu'|'cpu')."""
    if device.type == "cuda":
        index = device.index if device.index is not None else 0
        return f"cuda:{index}", index, "gpu"
    return "cpu", 0, "cpu"


class EpisodeAccumulator:
    """Per-env undiscounted return and length of the running episodes, on ``device``.

    Only *counted* rows add to them (rows that belong to an episode: every valid row, plus, for tasks that
    reset at the start of the next step, the row right after a reset, whose transition starts from the reset
    state). At a done row the sums are emitted and zeroed.
    """

    def __init__(self, num_envs: int, device: torch.device) -> None:
        self.ret = torch.zeros(num_envs, device=device)
        self.len = torch.zeros(num_envs, dtype=torch.long, device=device)

    def reset(self) -> None:
        """Forget the running episodes (a full reset of every env)."""
        self.ret.zero_()
        self.len.zero_()

    def update(self, reward: torch.Tensor, counted: torch.Tensor,
               done: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Add ``reward`` ``(N,)`` where ``counted``; return ``(episode_return, episode_length)`` of done rows."""
        self.ret += reward * counted
        self.len += counted.long()
        ep_ret = torch.where(done, self.ret, torch.zeros_like(self.ret))
        ep_len = torch.where(done, self.len, torch.zeros_like(self.len))
        self.ret.masked_fill_(done, 0.0)
        self.len.masked_fill_(done, 0)
        return ep_ret, ep_len


def next_step_out(obs: torch.Tensor, reward: torch.Tensor, done: torch.Tensor, truncated: torch.Tensor,
                  prev_done: torch.Tensor, count_reset_row: bool,
                  episodes: EpisodeAccumulator) -> StepOut:
    """Map one step of a *next-step* auto-reset framework (IsaacGymEnvs, OIGE) onto :class:`StepOut`.

    Mapping (all ``(N, ...)`` on the adapter device):
        * ``obs`` of a done row is the true terminal observation (the framework resets at the start of the
          next step), so ``final_obs = obs``, and it is also what the agent acts on next: that action is
          spent on the reset step, whose row is garbage (terminal obs -> obs after the reset).
        * ``valid = ~prev_done``: the row after every done is dropped from replay and statistics.
        * ``truncated &= done``; ``terminated = done & ~truncated``.
        * Episode sums count valid rows, and also the reset row when the framework applies the action from
          the reset state (``count_reset_row``: reset in ``pre_physics_step``), whose reward is the first of
          the new episode.
    """
    truncated = truncated & done
    terminated = done & ~truncated
    valid = ~prev_done
    counted = torch.ones_like(valid) if count_reset_row else valid
    ep_ret, ep_len = episodes.update(reward, counted, done)
    return StepOut(obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=obs,
                   valid=valid, episode_return=ep_ret, episode_length=ep_len)
