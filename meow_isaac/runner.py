"""Hydra entry point: ``python runner.py task=<Task> [key=value ...]`` (or the ``meow-isaac`` command).

Config layout as in IsaacGymEnvs (``cfg/config.yaml``, ``cfg/task/<Task>.yaml``, ``cfg/train/<Task>MEow.yaml``).
Invalid config: one line on stderr naming the key, the value and what is accepted; exit code 2.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from meow_isaac.sim_probe import preimport_for_argv

# Isaac Gym must be imported before torch: done here, first, when this run uses it (sim=isaacgym / auto).
preimport_for_argv(sys.argv[1:])

import hydra  # noqa: E402 (after the Isaac Gym pre-import)
import torch
from omegaconf import DictConfig, OmegaConf

from meow_isaac.agents import make_agent
from meow_isaac.checkpoint import load_checkpoint, seed_everything
from meow_isaac.config import ConfigError, TrainConfig, resolve_device, resolve_threads
from meow_isaac.distributed import broadcast_module, init_distributed, params_in_sync
from meow_isaac.export import FORMATS, export_policy
from meow_isaac.factory import make_task_env, resolve_sim
from meow_isaac.logger import Logger
from meow_isaac.trainer import Trainer, evaluate

EXIT_CONFIG_ERROR = 2
EXIT_PREEMPTED = 3  # SIGTERM/SIGUSR1: checkpoint written, run can be resumed with checkpoint=auto


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
    dirs = [config_dir()] + list(extra_dirs or [])
    options = sorted({p.stem for d in dirs for p in (d / group).glob("*.yaml")})
    if value not in options:
        raise ConfigError(f"invalid config: {group}={value!r}; accepted: {', '.join(options)}")


def precheck_argv(argv: list) -> None:
    """Validate ``task=``/``train=`` choices before hydra composes (hydra's own error is a traceback)."""
    extra = user_config_dirs(argv)
    for arg in argv:
        for group in ("task", "train"):
            if arg.startswith(group + "=") and "," not in arg:
                _check_choice(group, arg.split("=", 1)[1], extra)


def _int_key(cfg: DictConfig, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid config: {key}={value!r}; accepted: an integer >= 1")
    return value


def run(cfg: DictConfig) -> Dict[str, Any]:
    """Train, resume or play according to ``cfg``; returns a summary dict (for tests and scripts).

    Raises:
        ConfigError: any invalid value (caught by :func:`main`: one line, exit 2).
    """
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
        raise ConfigError(f"invalid config: export={export} needs checkpoint=<path to a .pth>")
    if cfg.test and not checkpoint:
        raise ConfigError("invalid config: test=True needs checkpoint=<path to a .pth>")
    if checkpoint and not Path(checkpoint).is_file():
        raise ConfigError(f"invalid config: checkpoint={checkpoint!r}; accepted: an existing checkpoint file")
    sim = resolve_sim(str(cfg.sim), task_dict)

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
    agent = make_agent(probe.obs_dim, probe.action_dim, device, tcfg)
    if dist_info.enabled:
        broadcast_module(agent)
        agent.world_size = dist_info.world_size
    if export:
        _load_agent(agent, checkpoint, device, tcfg.algo)
        probe.close()
        suffix = ".onnx" if export == "onnx" else ".pt"
        path = export_policy(agent.deterministic_actor(), agent.normalizer, probe.obs_dim,
                             Path(checkpoint).with_suffix(suffix), export)
        print(f"[meow-isaac] exported the deterministic policy (normaliser included) to {path}")
        return {"export_path": str(path)}
    if cfg.test:
        _load_agent(agent, checkpoint, device, tcfg.algo)
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
    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(resolved), run_dir / "config.yaml")
    wandb_cfg = None
    if cfg.wandb_activate and dist_info.is_main:
        wandb_cfg = {"project": cfg.wandb_project, "entity": cfg.wandb_entity, "group": cfg.wandb_group,
                     "name": cfg.wandb_name, "tags": list(cfg.wandb_tags), "config": resolved}
    trainer = Trainer(probe, lambda: make_env(tcfg.eval_envs, cfg.seed + 10_000), agent, tcfg, run_dir,
                      Logger(run_dir, wandb_cfg) if dist_info.is_main else None, tcfg.name, device,
                      config_dict=resolved, show_progress=bool(cfg.progress_bar), is_main=dist_info.is_main)
    print(f"[meow-isaac] {'rank ' + str(dist_info.rank) + '/' + str(dist_info.world_size) + ': ' if dist_info.enabled else ''}"
          f"{task_dict['name']} on {sim}: {num_envs} envs, obs {probe.obs_dim}, action "
          f"{probe.action_dim}, device {device}, torch threads {torch_threads}, sim threads {sim_threads}; "
          f"replay {trainer.replay.nbytes / 2**20:.1f} MiB ({num_envs} x {tcfg.replay_size_per_env} slots); "
          f"run folder {run_dir}")
    if checkpoint:
        trainer.load(Path(checkpoint))
        print(f"[meow-isaac] resumed from {checkpoint} at iteration {trainer.iteration} ({trainer.frames} frames)")
        if trainer.replay.num_adds == 0:
            print(f"[meow-isaac] the checkpoint holds no replay buffer (train.save_replay=False): updates resume "
                  f"after {tcfg.learning_starts} vectorised steps refill it")
    if cfg.capture_video:
        trainer.video_freq = _int_key(cfg, "capture_video_freq", cfg.capture_video_freq)
        trainer.video_len = _int_key(cfg, "capture_video_len", cfg.capture_video_len)
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


def _load_agent(agent: Any, checkpoint: str, device: torch.device, algo: str) -> None:
    """Load a checkpoint's networks into ``agent`` (test / export).

    Raises:
        ConfigError: the checkpoint was trained with another ``train.algo`` (e.g. SAC without ``train=<Task>SAC``).
    """
    state = load_checkpoint(checkpoint, map_location=device)
    trained = (state.get("config") or {}).get("train", {}).get("algo", algo)
    if trained != algo:
        raise ConfigError(f"invalid config: train.algo={algo!r}; accepted: {trained!r}, the algorithm of "
                          f"checkpoint={checkpoint} (select its train config, e.g. train=<Task>{trained.upper()})")
    agent.load_state_dict(state["agent"])


def write_task_artifacts(env: Any, agent: Any, out_dir: Path) -> list:
    """Call the task env's optional ``write_artifacts(agent, out_dir)`` hook (e.g. the MultiGoal pictures,
    ``tasks/multigoal_plots.py``) after training and on ``test=True``; tasks without one write nothing."""
    hook = getattr(env, "write_artifacts", None)
    return list(hook(agent, out_dir)) if callable(hook) else []


def find_latest_checkpoint(experiment: str, name: str, root: Path = Path("runs")) -> str:
    """Newest ``nn/*.pth`` (not ``*_best.pth``) of ``runs/<experiment>`` (or of ``runs/<name>_*``); '' if none."""
    folders = [root / experiment] if experiment else sorted(root.glob(f"{name}_*"))
    found = [p for folder in folders for p in (folder / "nn").glob("*.pth") if not p.stem.endswith("_best")]
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
    """SIGTERM/SIGUSR1 (Slurm preemption) ask the trainer to checkpoint and stop (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum: int, frame: Any) -> None:
        print(f"[meow-isaac] received signal {signum}: checkpointing and stopping", flush=True)
        trainer.stop_requested = True
        trainer.stop_signal = signum

    previous = {}
    # USR2: submitit's time-out signal; its own handler (requeue) is called after our checkpoint.
    for sig in (signal.SIGTERM, getattr(signal, "SIGUSR1", None), getattr(signal, "SIGUSR2", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_handlers(previous: Dict[int, Any], trainer: Trainer) -> None:
    """Put back the handlers that were installed before; if a signal stopped us after its checkpoint, pass it on
    to the previous Python handler (e.g. submitit's requeue on a time-out)."""
    import signal

    for sig, handler in previous.items():
        signal.signal(sig, handler)
    signum = getattr(trainer, "stop_signal", None)
    if signum is not None and callable(previous.get(signum)):
        previous[signum](signum, None)


register_resolvers()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="config")
def _hydra_main(cfg: DictConfig) -> Optional[Dict[str, Any]]:
    try:
        result = run(cfg)
    except (ConfigError, MemoryError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
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
