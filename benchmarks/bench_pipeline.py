"""End-to-end trainer throughput with a costless synthetic torch env (framework overhead alone).

For each num_envs (default 1, 64, 1024, 4096) the real ``Trainer`` loop runs act -> step -> store -> update on
:class:`~meow_isaac.envs.synthetic.SyntheticVecEnv` (obs 60, action 8: Ant-sized) on the chosen device and
reports transitions ingested per second and updates per second, measured after a warm-up. The ratio column is
throughput relative to 1 env, measured in the same run. Writes a PNG plot of throughput vs num_envs.

    python benchmarks/bench_pipeline.py [--device cuda] [--batch 1024] [--utd 1] [--seconds 5] [--profile 30]

``--profile K`` then runs K more iterations at the largest num_envs under ``torch.profiler`` and prints where one
iteration's time goes: wall-clock ms, the device's busy ms (the sum of kernel self times; CUDA only), the host's
ms in torch ops, and the top ops by host and by device time, so that a host-bound loop (launches, syncs) is told
apart from a device-bound one. It is written into the JSON under ``profile``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from meow_isaac.agents.meow import MEowAgent
from meow_isaac.compile import AMP_CHOICES, COMPILE_CHOICES
from meow_isaac.cpu_alloc import retain_freed_memory
from meow_isaac.config import TrainConfig
from meow_isaac.envs.synthetic import SyntheticVecEnv
from meow_isaac.trainer import Trainer


def make_trainer(num_envs: int, device: torch.device, batch: int, utd: int, tmp: Path, compile_: str = "auto",
                 amp: str = "none") -> Trainer:
    """The real ``Trainer`` on :class:`SyntheticVecEnv` (obs 60, action 8), learning from the first step, with no
    logging, evaluation or checkpoint inside the measured loop."""
    env = SyntheticVecEnv(num_envs, obs_dim=60, action_dim=8, max_episode_length=1000, device=device)
    cfg = TrainConfig(batch_size=batch, updates_per_step=utd, replay_size_per_env=max(64, 200_000 // num_envs),
                      random_steps=0, learning_starts=1, max_iterations=10**9, log_interval=10**9,
                      eval_interval=0, save_interval=10**9, normalize_input=True)
    agent = MEowAgent(60, 8, device, normalize_input=True, compile=compile_, amp=amp)
    trainer = Trainer(env, lambda: env, agent, cfg, tmp, None, "bench", device, show_progress=False)
    trainer.save = lambda path: path  # type: ignore[assignment]
    return trainer


def _sync(device: torch.device) -> None:
    """Wait for the device (CUDA) so that a clock reading covers the queued work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _after_each_add(trainer: Trainer, hook) -> None:
    """Call ``hook(num_adds)`` after each ``trainer.replay.add`` (once per vectorised step): where the benchmarks
    start clocks and the profiler and stop the run."""
    original_add = trainer.replay.add

    def add(*args: torch.Tensor) -> None:
        original_add(*args)
        hook(trainer.replay.num_adds)

    trainer.replay.add = add  # type: ignore[assignment]


def measure(num_envs: int, device: torch.device, batch: int, utd: int, seconds: float, tmp: Path,
            compile_: str = "auto", amp: str = "none") -> dict:
    """Run the trainer loop for ~``seconds`` after 20 warm-up iterations; returns throughput figures."""
    trainer = make_trainer(num_envs, device, batch, utd, tmp, compile_, amp)
    state = {"t0": 0.0, "it0": 0}

    def after_add(n: int) -> None:
        if n == 20:
            _sync(device)
            state["t0"], state["it0"] = time.perf_counter(), n
        elif n > 20 and n % 10 == 0 and time.perf_counter() - state["t0"] > seconds:
            trainer.stop_requested = True

    _after_each_add(trainer, after_add)
    trainer.train()
    _sync(device)
    elapsed = time.perf_counter() - state["t0"]
    iters = trainer.iteration - state["it0"]
    return {"num_envs": num_envs, "transitions_per_s": iters * num_envs / elapsed,
            "updates_per_s": iters * utd / elapsed, "iterations": iters}


def profile(num_envs: int, device: torch.device, batch: int, utd: int, iters: int, tmp: Path,
            compile_: str = "auto", amp: str = "none", top: int = 12) -> dict:
    """``iters`` trainer iterations at ``num_envs`` under ``torch.profiler`` after 30 warm-up iterations (compiling
    and CUDA-graph recording done). Returns ``{"num_envs", "iterations", "wall_ms", "host_op_ms", "device_ms",
    "top_host", "top_device"}`` per iteration (ms); ``device_ms`` is None on the CPU."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    trainer = make_trainer(num_envs, device, batch, utd, tmp, compile_, amp)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    prof = torch_profile(activities=activities)
    state: dict = {}

    def after_add(n: int) -> None:
        if n == 30:
            _sync(device)
            prof.__enter__()
            state["t0"] = time.perf_counter()
        elif n == 30 + iters:
            _sync(device)
            state["wall"] = time.perf_counter() - state["t0"]
            prof.__exit__(None, None, None)
            trainer.stop_requested = True

    _after_each_add(trainer, after_add)
    trainer.train()
    events = prof.key_averages()
    host_ms = sum(e.self_cpu_time_total for e in events) / 1e3 / iters
    dev_attr = "self_device_time_total" if hasattr(events[0], "self_device_time_total") else "self_cuda_time_total"
    device_ms = (sum(getattr(e, dev_attr) for e in events) / 1e3 / iters) if device.type == "cuda" else None

    def top_by(attr: str) -> list:
        ranked = sorted(events, key=lambda e: getattr(e, attr), reverse=True)[:top]
        return [{"op": e.key, "ms": getattr(e, attr) / 1e3 / iters, "calls": e.count / iters} for e in ranked
                if getattr(e, attr) > 0]

    return {"num_envs": num_envs, "iterations": iters, "wall_ms": state["wall"] * 1e3 / iters,
            "host_op_ms": host_ms, "device_ms": device_ms, "top_host": top_by("self_cpu_time_total"),
            "top_device": top_by(dev_attr) if device.type == "cuda" else []}


def print_profile(p: dict) -> None:
    """Print :func:`profile`'s result as two markdown tables."""
    dev = "n/a (CPU)" if p["device_ms"] is None else f"{p['device_ms']:.3f} ms"
    print(f"\nprofile at {p['num_envs']} envs, {p['iterations']} iterations: per iteration wall {p['wall_ms']:.3f} ms, "
          f"host in torch ops {p['host_op_ms']:.3f} ms, device busy {dev}")
    for key, what in (("top_host", "host"), ("top_device", "device")):
        if p[key]:
            print(f"\n| op (by {what} self time) | ms / iteration | calls / iteration |\n|---|---|---|")
            for row in p[key]:
                print(f"| {row['op'][:70]} | {row['ms']:.4f} | {row['calls']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--envs", default="1,64,1024,4096")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--utd", type=int, default=1, help="updates per vectorised step")
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per point")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads (CPU)")
    parser.add_argument("--compile", default="auto", choices=COMPILE_CHOICES, help="train.compile (default auto)")
    parser.add_argument("--amp", default="none", choices=AMP_CHOICES, help="train.amp (default none)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the PNG plot and JSON")
    parser.add_argument("--profile", type=int, default=0, metavar="K",
                        help="then profile K iterations at the largest num_envs (0: no profile)")
    args = parser.parse_args()
    if args.profile < 0:
        parser.error(f"--profile {args.profile}: give a number of iterations >= 0")
    retain_freed_memory()  # the runner's cpu_malloc=retain default
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} torch threads"
    print(f"device {device} ({name}), batch {args.batch}, UTD {args.utd}, compile {args.compile}, amp {args.amp}, "
          f"torch {torch.__version__}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [measure(int(n), device, args.batch, args.utd, args.seconds, out, args.compile, args.amp)
            for n in args.envs.split(",")]
    base = rows[0]["transitions_per_s"]
    print("\n| num_envs | transitions/s | updates/s | vs first |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['num_envs']} | {r['transitions_per_s']:,.0f} | {r['updates_per_s']:,.1f} | "
              f"{r['transitions_per_s'] / base:.1f}x |")
    prof = None
    if args.profile:
        prof = profile(max(int(n) for n in args.envs.split(",")), device, args.batch, args.utd, args.profile, out,
                       args.compile, args.amp)
        print_profile(prof)
    (out / "bench_pipeline.json").write_text(json.dumps({"device": name, "batch": args.batch, "utd": args.utd,
                                                         "compile": args.compile, "amp": args.amp, "rows": rows,
                                                         "profile": prof}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    xs = [r["num_envs"] for r in rows]
    ax.loglog(xs, [r["transitions_per_s"] for r in rows], "o-", label="transitions ingested / s")
    ax.loglog(xs, [r["updates_per_s"] for r in rows], "s--", label="updates / s")
    ax.set_xlabel("num_envs")
    ax.set_title(f"MEow trainer, synthetic env ({name}, batch {args.batch}, amp {args.amp})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "bench_pipeline.png", dpi=120)
    print(f"plot: {out / 'bench_pipeline.png'}")


if __name__ == "__main__":
    main()
