"""Hydra entry point: ``python runner.py task=<Task> [key=value ...]`` (or the ``meow-isaac`` command).

Config layout as in IsaacGymEnvs (``cfg/config.yaml``, ``cfg/task/<Task>.yaml``, ``cfg/train/<Task>MEow.yaml``).
Invalid config: one line on stderr naming the key, the value and what is accepted; exit code 2.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from meow_isaac.sim_probe import preimport_for_argv

# Isaac Gym must be imported before torch: done here, first, when this run uses it (sim=isaacgym / auto).
preimport_for_argv(sys.argv[1:])

import hydra  # noqa: E402 (after the Isaac Gym pre-import)
import torch
from omegaconf import DictConfig, OmegaConf

from meow_isaac.agents import make_agent
from meow_isaac.checkpoint import (CheckpointWriteError, check_checkpoint_error, check_compatible, checkpoint_meta,
                                   load_checkpoint, seed_everything)
from meow_isaac.cpu_alloc import CHOICES as CPU_MALLOC_CHOICES, retain_freed_memory
from meow_isaac.config import (ConfigError, TrainConfig, check_bool, check_distributed_env, check_int,
                               check_known_keys, did_you_mean, resolve_device, resolve_threads)
from meow_isaac.distributed import broadcast_module, init_distributed, params_in_sync
from meow_isaac.export import FORMATS, SUFFIXES, export_policy
from meow_isaac.factory import make_task_env, resolve_sim
from meow_isaac.logger import Logger
from meow_isaac.trainer import Trainer, evaluate

EXIT_CONFIG_ERROR = 2
EXIT_PREEMPTED = 3  # SIGTERM/SIGUSR1/Ctrl-C: checkpoint written, run can be resumed with checkpoint=auto


def config_dir() -> Path:
    """The ``cfg/`` folder: the repo's (source checkout / editable install) or the installed copy."""
    repo = Path(__file__).resolve().parents[1] / "cfg"
    return repo if repo.is_dir() else Path(__file__).resolve().parent / "cfg"


def register_resolvers() -> None:
    """OmegaConf resolvers of IsaacGymEnvs (``isaacgymenvs/__init__.py``)."""
    resolvers = {
        "eq": lambda x, y: x.lower() == y.lower(),
        "contains": lambda x, y: x.lower() in y.lower(),
        "if": lambda pred, a, b: a if pred else b,
        "resolve_default": lambda default, arg: default if arg == "" else arg,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


CONFIG_PATH_ENV = "MEOW_ISAAC_CONFIG_PATH"  # extra config dirs (os.pathsep-separated) with task/, train/ yamls


def _searchpath_items(argv: List[str]) -> List[str]:
    """Entries of a ``hydra.searchpath=[a,b]`` override in ``argv``."""
    items: List[str] = []
    for arg in argv:
        if arg.lstrip("+").startswith("hydra.searchpath="):
            value = arg.split("=", 1)[1].strip().strip("[]")
            items += [v.strip().strip("'\"") for v in value.split(",") if v.strip()]
    return items


def user_config_dirs(argv: List[str]) -> List[Path]:
    """Extra config dirs: ``$MEOW_ISAAC_CONFIG_PATH`` and ``file://`` entries of ``hydra.searchpath=[...]``."""
    dirs = [d for d in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if d]
    dirs += [item[len("file://"):] for item in _searchpath_items(argv) if item.startswith("file://")]
    return [Path(d).resolve() for d in dirs]


def with_user_searchpath(argv: List[str]) -> List[str]:
    """``argv`` with ``$MEOW_ISAAC_CONFIG_PATH`` dirs added to hydra's config search path (one override)."""
    env_dirs = [d for d in os.environ.get(CONFIG_PATH_ENV, "").split(os.pathsep) if d]
    if not env_dirs:
        return list(argv)
    items = _searchpath_items(argv) + [f"file://{Path(d).resolve()}" for d in env_dirs]
    rest = [a for a in argv if not a.lstrip("+").startswith("hydra.searchpath=")]
    return rest + [f"hydra.searchpath=[{','.join(items)}]"]


def _check_choice(group: str, value: str, extra_dirs: Optional[List[Path]] = None) -> None:
    """Raise :class:`ConfigError` unless ``value`` names a ``<group>/<value>.yaml`` in ``cfg/`` or ``extra_dirs``."""
    dirs = [config_dir()] + list(extra_dirs or [])
    options = sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml")})
    if value not in options:
        raise ConfigError(f"invalid config: {group}={value!r}; accepted: {', '.join(options)}")


def precheck_argv(argv: list) -> None:
    """Validate the command line before hydra composes, whose own errors are several lines and exit code 1:
    ``task=``/``train=`` choices, the override syntax, a sweep without ``-m``, and overrides of keys that do not
    exist (``num_env=4``, ``train.bath_size=64``).

    Raises:
        ConfigError: one line naming the override, its value and what is accepted.
    """
    extra = user_config_dirs(argv)
    for arg in argv:
        for group in ("task", "train"):
            if arg.startswith(group + "=") and "," not in arg:
                _check_choice(group, arg.split("=", 1)[1], extra)
    _precheck_overrides(argv)


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _precheck_overrides(argv: List[str]) -> None:
    """Parse every override and compose the config once (about 0.1 s) so that hydra's composition errors become
    one-line :class:`ConfigError` s. Skipped for hydra flags other than ``-m`` (``--cfg``, ``--config-dir``, ...:
    hydra handles those) and for sweeps (each job is composed, and validated by :func:`run`, on its own)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import ConfigCompositionException, HydraException

    flags = [a for a in argv if a.startswith("-")]
    if any(f not in ("-m", "--multirun") for f in flags) or GlobalHydra.instance().is_initialized():
        return
    parser = OverridesParser.create()
    parsed = {}
    for arg in argv:
        if arg.startswith("-"):
            continue
        try:
            parsed[arg] = parser.parse_override(arg)
        except HydraException as err:
            raise ConfigError(f"invalid config: {arg!r} cannot be parsed ({_one_line(err).split(' See ')[0]}); "
                              "accepted: key=value, +key=value (a new key), ~key (delete) in hydra's override "
                              "grammar; quote values with special characters") from None
    sweeps = [arg for arg, o in parsed.items() if o.is_sweep_override()]
    if sweeps:
        if not flags:
            raise ConfigError(f"invalid config: {sweeps[0]} is a sweep; accepted: one value, or the sweep with -m "
                              "(--multirun)")
        return
    overrides = with_user_searchpath([a for a in argv if not a.startswith("-")])
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            compose("config", overrides=overrides)
    except ConfigCompositionException as err:
        message = _one_line(err)
        for arg, o in parsed.items():
            key = o.key_or_group
            if message.startswith(f"Could not override '{key}'"):
                parent, _, leaf = key.rpartition(".")
                known = _keys_at(parent, [a for a, p in parsed.items()
                                          if p.key_or_group in ("task", "train") or "/" in p.key_or_group
                                          or p.key_or_group.startswith("hydra.")])
                hint = ""
                if parent == "train":  # TrainConfig keys that this train yaml leaves out need a '+'
                    known = sorted(f.name for f in dataclasses.fields(TrainConfig))
                    hint = " (a key the train yaml does not set needs a +)"
                elif parent.split(".")[0] in ("task", "hydra"):
                    hint = f" (+{key}=... adds a new one)"
                listing = f": {', '.join(known)}" if known else ""
                raise ConfigError(f"invalid config: {key}={o.value()!r} (no such key); accepted: an existing key"
                                  f"{did_you_mean(leaf, known)}{listing}{hint}") from None
        raise ConfigError(f"invalid config: {' '.join(parsed)}: {message}; accepted: key=value for an existing "
                          "key, +key=value for a new one, ++key=value for either") from None
    except HydraException as err:
        raise ConfigError(f"invalid config: {' '.join(parsed)}: {_one_line(err)}; accepted: see the message "
                          "(config groups: README, Adding your own task)") from None


def _keys_at(parent: str, group_overrides: List[str]) -> List[str]:
    """Keys of the config node ``parent`` ('' = top level) after the group choices in ``group_overrides``."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("config", overrides=with_user_searchpath(group_overrides))
        node = OmegaConf.select(cfg, parent) if parent else cfg
    except Exception:  # only for the message
        return []
    return sorted(str(k) for k in node.keys()) if isinstance(node, DictConfig) else []


def known_top_level_keys() -> List[str]:
    """Top-level keys of ``cfg/config.yaml`` plus its config groups (``task``, ``train``)."""
    raw = OmegaConf.load(config_dir() / "config.yaml")
    keys = {str(k) for k in raw.keys() if k not in ("defaults", "hydra")}
    for entry in raw.get("defaults", []):
        if isinstance(entry, DictConfig):
            keys |= {str(k) for k in entry.keys() if not str(k).startswith("override ") and "/" not in str(k)}
    return sorted(keys)


def _check_resolvable(cfg: DictConfig) -> Dict[str, Any]:
    """``cfg`` resolved to plain containers; an interpolation that does not resolve is a :class:`ConfigError`."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        raw: Any = OmegaConf.to_container(cfg, resolve=False)
        for part in str(key).split("."):
            raw = raw.get(part, "?") if isinstance(raw, dict) else "?"
        raise ConfigError(f"invalid config: {key}={raw!r} does not resolve ({_one_line(getattr(err, 'msg', '') or err).split(' full_key:')[0]}); "
                          "accepted: a value, or an interpolation ${...} of an existing key") from None


def _int_key(cfg: DictConfig, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid config: {key}={value!r}; accepted: an integer >= 1")
    return value


def run(cfg: DictConfig, trainer_cls: Callable[..., Trainer] = Trainer) -> Dict[str, Any]:
    """Train, resume or play according to ``cfg``; returns a summary dict (for tests and scripts).

    ``trainer_cls``: called with :class:`~meow_isaac.trainer.Trainer`'s arguments to build the trainer (a
    subclass, e.g. ``benchmarks/bench_train.py``'s timed one); default :class:`~meow_isaac.trainer.Trainer`.

    Every check runs before anything is written: an invalid config leaves no run folder behind.

    Raises:
        ConfigError: any invalid value (caught by :func:`main`: one line, exit 2).
    """
    check_known_keys(_check_resolvable(cfg), known_top_level_keys(), "top-level")
    check_int("max_iterations", cfg.max_iterations, default_ok=True)
    check_int("num_envs", cfg.num_envs, default_ok=True)
    for key in ("test", "headless", "torch_deterministic", "progress_bar", "capture_video", "reference_compat",
                "wandb_activate"):
        if key in cfg:
            check_bool(key, cfg[key])
    train_dict = OmegaConf.to_container(cfg.train, resolve=True)
    task_dict = OmegaConf.to_container(cfg.task, resolve=True)
    tcfg = TrainConfig.from_mapping(train_dict)
    device = resolve_device(str(cfg.device))
    torch_threads = resolve_threads("torch_threads", cfg.torch_threads)
    sim_threads = resolve_threads("sim_threads", cfg.sim_threads)
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"invalid config: seed={cfg.seed!r}; accepted: an integer")
    num_envs = _int_key(cfg, "num_envs", task_dict["env"]["numEnvs"])
    capacity = num_envs * tcfg.replay_size_per_env
    if tcfg.batch_size > capacity:
        raise ConfigError(f"invalid config: train.batch_size={tcfg.batch_size}; accepted: at most the replay "
                          f"capacity num_envs x train.replay_size_per_env = {capacity}")
    checkpoint = str(cfg.checkpoint or "")
    if checkpoint == "auto":
        # in a sweep each job resumes its own folder runs/<experiment>_<job>
        checkpoint = find_latest_checkpoint(f"{cfg.experiment}{_multirun_job_suffix()}" if cfg.experiment else "",
                                            tcfg.name)
        print(f"[meow-isaac] checkpoint=auto: "
              f"{'resuming from ' + checkpoint if checkpoint else 'no checkpoint found, starting fresh'}")
    export = str(cfg.export or "")
    if export and export not in FORMATS:
        raise ConfigError(f"invalid config: export={export!r}; accepted: {', '.join(FORMATS)}")
    if export and not checkpoint:
        raise ConfigError(f"invalid config: export={export!r} with checkpoint=''; accepted: export with "
                          "checkpoint=<path to a .pth>, or export=''")
    if cfg.test and not checkpoint:
        raise ConfigError("invalid config: test=True with checkpoint=''; accepted: test=True with "
                          "checkpoint=<path to a .pth>, or test=False")
    if checkpoint and not Path(checkpoint).is_file():
        raise ConfigError(f"invalid config: checkpoint={checkpoint!r}; accepted: an existing checkpoint file")
    checkpoint_error = check_checkpoint_error(cfg.get("checkpoint_error", "warn"))
    video_freq = check_int("capture_video_freq", cfg.capture_video_freq) if cfg.capture_video else 0
    video_len = check_int("capture_video_len", cfg.capture_video_len) if cfg.capture_video else 0
    check_distributed_env(os.environ, device)
    sim = resolve_sim(str(cfg.sim), task_dict, device=str(device))

    cpu_malloc = str(cfg.get("cpu_malloc", "retain"))
    if cpu_malloc not in CPU_MALLOC_CHOICES:
        raise ConfigError(f"invalid config: cpu_malloc={cpu_malloc!r}; accepted: {', '.join(CPU_MALLOC_CHOICES)}")

    if cpu_malloc == "retain":
        retain_freed_memory()
    torch.set_num_threads(torch_threads)
    dist_info = init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    seed = int(cfg.seed) + dist_info.rank  # each rank explores differently; parameters are broadcast below
    seed_everything(seed, bool(cfg.torch_deterministic))

    def make_env(n: int, seed: int) -> Any:
        return make_task_env(task_dict, sim, num_envs=n, seed=seed, device=str(device), num_threads=sim_threads,
                             headless=bool(cfg.headless), reference_compat=bool(cfg.get("reference_compat", False)))

    probe = make_env(num_envs if not cfg.test else tcfg.eval_envs, seed)
    planned_updates = 0 if (cfg.test or export) else \
        max(0, tcfg.max_iterations - tcfg.learning_starts) * tcfg.updates_per_step
    agent = make_agent(probe.obs_dim, probe.action_dim, device, tcfg, planned_updates)
    if dist_info.enabled:
        broadcast_module(agent)
        agent.world_size = dist_info.world_size
    meta = checkpoint_meta(tcfg.algo, task_dict["name"], probe.obs_dim, probe.action_dim, tcfg.activation)
    if export:
        _load_agent(agent, checkpoint, device, meta)
        probe.close()
        path = export_policy(agent.deterministic_actor(), agent.normalizer, probe.obs_dim,
                             Path(checkpoint).with_suffix(SUFFIXES[export]), export)
        print(f"[meow-isaac] exported the deterministic policy (normaliser included) to {path}")
        return {"export_path": str(path)}
    if cfg.test:
        _load_agent(agent, checkpoint, device, meta)
        returns = evaluate(agent, probe)
        if cfg.capture_video:
            from meow_isaac.video import can_render, record_episode

            if can_render(probe):
                folder = Path(checkpoint).resolve().parent.parent / "videos"
                path = record_episode(agent, probe, folder / f"test_{Path(checkpoint).stem}.mp4",
                                      int(cfg.capture_video_len))
                print(f"[meow-isaac] video: {path}")
            else:
                print("[meow-isaac] capture_video: this env cannot render offscreen; no video")
        ckpt = Path(checkpoint).resolve()
        write_task_artifacts(probe, agent, (ckpt.parent.parent if ckpt.parent.name == "nn" else ckpt.parent)
                             / "plots" / f"test_{ckpt.stem}")
        probe.close()
        print(f"[meow-isaac] test: {task_dict['name']} checkpoint {checkpoint}: mean return "
              f"{float(returns.mean()):.2f} +- {float(returns.std(unbiased=False)):.2f} over {returns.numel()} "
              "deterministic episodes")
        return {"test_returns": returns.tolist()}

    if checkpoint and Path(checkpoint).parent.name == "nn":
        run_dir = Path(checkpoint).resolve().parent.parent
    else:
        stamp = datetime.datetime.now().strftime("%d-%H-%M-%S")
        job = _multirun_job_suffix()
        run_dir = Path("runs") / (f"{cfg.experiment}{job}" if cfg.experiment else f"{tcfg.name}_{stamp}{job}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved["git_revision"] = git_revision()
    resolved["world_size"] = dist_info.world_size
    # The replay buffer is allocated (MemoryError: exit 2) before the run folder is created.
    trainer = trainer_cls(probe, lambda: make_env(tcfg.eval_envs, cfg.seed + 10_000), agent, tcfg, run_dir,
                          None, tcfg.name, device,
                          config_dict=resolved, show_progress=bool(cfg.progress_bar), is_main=dist_info.is_main)
    trainer.checkpoint_error = checkpoint_error
    if checkpoint:  # validated and loaded before anything is written: a wrong checkpoint leaves its folder as it was
        trainer.load(Path(checkpoint))
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(resolved), run_dir / "config.yaml")
    wandb_cfg = None
    if cfg.wandb_activate and dist_info.is_main:
        wandb_cfg = {"project": cfg.wandb_project, "entity": cfg.wandb_entity, "group": cfg.wandb_group,
                     "name": cfg.wandb_name, "tags": list(cfg.wandb_tags), "config": resolved}
    trainer.logger = Logger(run_dir, wandb_cfg) if dist_info.is_main else None
    print(f"[meow-isaac] {'rank ' + str(dist_info.rank) + '/' + str(dist_info.world_size) + ': ' if dist_info.enabled else ''}"
          f"{task_dict['name']} on {sim}: {num_envs} envs, obs {probe.obs_dim}, action "
          f"{probe.action_dim}, device {device}, torch threads {torch_threads}, sim threads {sim_threads}; "
          f"replay {trainer.replay.nbytes / 2**20:.1f} MiB ({num_envs} x {tcfg.replay_size_per_env} slots); "
          f"{'compiled' if getattr(agent, 'compiled', False) else 'eager'} update (train.compile={tcfg.compile}); "
          f"run folder {run_dir}")
    if checkpoint:
        print(f"[meow-isaac] resumed from {checkpoint} at iteration {trainer.iteration} ({trainer.frames} frames)")
        if trainer.replay.num_adds == 0:
            print(f"[meow-isaac] the checkpoint holds no replay buffer (train.save_replay=False): updates resume "
                  f"after {tcfg.learning_starts} vectorised steps refill it")
    if cfg.capture_video:
        trainer.video_freq, trainer.video_len = video_freq, video_len
    previous = _install_stop_handlers(trainer)
    try:
        scalars = trainer.train()
    finally:
        trainer.close()
        _restore_handlers(previous, trainer)
    print(f"[meow-isaac] done: iteration {trainer.iteration}, frames {trainer.frames}, updates {trainer.updates}, "
          f"last eval return {trainer.last_eval}, best {trainer.best_return:.2f}; checkpoints in {run_dir / 'nn'}")
    in_sync = params_in_sync(agent)
    if in_sync is not None:
        print(f"[meow-isaac] rank {dist_info.rank}: parameters identical on all {dist_info.world_size} ranks: "
              f"{in_sync}")
    if dist_info.is_main and not trainer.stop_requested:
        write_task_artifacts(trainer.env, agent, run_dir / "plots")
    if trainer.stop_requested:
        print(f"[meow-isaac] stopped by signal: checkpoint {trainer.checkpoint_path('last')} written; resume with "
              f"checkpoint=auto experiment={run_dir.name} (exit code {EXIT_PREEMPTED})")
    return {"run_dir": str(run_dir), "iteration": trainer.iteration, "preempted": trainer.stop_requested, "frames": trainer.frames,
            "updates": trainer.updates, "last_eval": trainer.last_eval, "best_return": trainer.best_return,
            "scalars": scalars}


def _load_agent(agent: Any, checkpoint: str, device: torch.device, meta: Dict[str, Any]) -> None:
    """Load a checkpoint's networks into ``agent`` (test / export), after checking it against ``meta``
    (:func:`~meow_isaac.checkpoint.checkpoint_meta` of this run) and the agent's keys and shapes.

    Raises:
        CheckpointError: (a :class:`ConfigError`) unreadable, untrusted or incompatible checkpoint, e.g. trained with
            another ``train.algo`` (SAC without ``train=<Task>SAC``), another task, or a newer format.
    """
    state = load_checkpoint(checkpoint, map_location=device)
    check_compatible(state, checkpoint, meta, agent.state_dict())
    agent.load_state_dict(state["agent"])


def write_task_artifacts(env: Any, agent: Any, out_dir: Path) -> list:
    """Call the task env's optional ``write_artifacts(agent, out_dir)`` hook (e.g. the MultiGoal pictures,
    ``tasks/multigoal_plots.py``) after training and on ``test=True``; tasks without one write nothing."""
    hook = getattr(env, "write_artifacts", None)
    return list(hook(agent, out_dir)) if callable(hook) else []


def find_latest_checkpoint(experiment: str, name: str, root: Path = Path("runs")) -> str:
    """Newest ``nn/*.pth`` (not ``*_best.pth``) of ``runs/<experiment>`` (or of ``runs/<name>_*``); '' if none.

    Temp files of a write that was killed (``<name>.pth.<random>.tmp``) never match; the next save of that
    checkpoint removes them (:func:`~meow_isaac.checkpoint.save_checkpoint`). Empty files are skipped.
    """
    folders = [root / experiment] if experiment else sorted(root.glob(f"{name}_*"))
    found = [p for folder in folders for p in (folder / "nn").glob("*.pth")
             if not p.stem.endswith("_best") and p.is_file() and p.stat().st_size > 0]
    return str(max(found, key=lambda p: p.stat().st_mtime)) if found else ""


def git_revision() -> str:
    """``git rev-parse HEAD`` of the source checkout (+ ``-dirty``), or 'unknown'."""
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev + ("-dirty" if dirty else "")) if rev else "unknown"


def _multirun_job_suffix() -> str:
    """``_<job number>`` inside a hydra multirun (each sweep job gets its own run folder), else ''."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return f"_{hc.job.num}" if hc.mode == RunMode.MULTIRUN else ""
    except (ValueError, ImportError):
        return ""


def _install_stop_handlers(trainer: Trainer) -> Dict[int, Any]:
    """SIGTERM/SIGUSR1 (Slurm preemption) and a first Ctrl-C (SIGINT, where Python's default handler is in place)
    ask the trainer to checkpoint and stop (main thread only); a second Ctrl-C interrupts at once, as usual."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT:
            print("[meow-isaac] Ctrl-C: checkpointing and stopping after this step (Ctrl-C again to abort at once)",
                  flush=True)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        else:
            print(f"[meow-isaac] received signal {signum}: checkpointing and stopping", flush=True)
        trainer.stop_requested = True
        trainer.stop_signal = signum

    previous = {}
    # USR2: submitit's time-out signal; its own handler (requeue) is called after our checkpoint.
    for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None), getattr(signal, "SIGUSR2", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not a handler someone else installed
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, handler)
    return previous


def _restore_handlers(previous: Dict[int, Any], trainer: Trainer) -> None:
    """Put back the handlers that were installed before; if a signal stopped us after its checkpoint, pass it on
    to the previous Python handler (e.g. submitit's requeue on a time-out)."""
    import signal

    for sig, handler in previous.items():
        signal.signal(sig, handler)
    signum = getattr(trainer, "stop_signal", None)
    if signum is not None and signum != signal.SIGINT and callable(previous.get(signum)):  # SIGINT's would raise
        previous[signum](signum, None)


register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> Optional[Dict[str, Any]]:
    from meow_isaac.agents.base import NonFiniteUpdatesError

    try:
        result = run(cfg)
    except (ConfigError, MemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    except (NonFiniteUpdatesError, CheckpointWriteError) as err:  # exit 4 (last good state saved) / 5 (write failed)
        if not getattr(err, "quiet", False):  # torchrun: rank 0 printed the line already, every rank stops
            print(f"error: {err}", file=sys.stderr)
        if getattr(err, "quiet", False):
            import torch.distributed as dist

            dist.barrier()  # every rank raised at the same save point: leave together, after each one's cleanup
        sys.exit(err.exit_code)
    if result.get("preempted"):
        sys.exit(EXIT_PREEMPTED)
    return result


def main() -> None:
    """Console entry point (``meow-isaac``) and ``python runner.py``."""
    try:
        precheck_argv(sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    sys.argv = sys.argv[:1] + with_user_searchpath(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
