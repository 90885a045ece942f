"""Env steps/s of the embedded ``mujoco.batch`` backend against raw ``mujoco.mj_step`` in a Python loop.

For each task and env count N:

* *ours*: ``env.step(actions)`` of ``tasks.make_env(task, {}, num_envs=N)`` with random actions in [-1, 1]
  (drawn up front and cycled). This is the whole agent step: action clamp and scaling, ``frame_skip``
  physics substeps on the batch's thread pool (``--threads``), observation, reward, termination, same-step
  auto-reset and episode statistics.
* *raw*: the same ``MjModel`` in N plain ``MjData``, started from the env's reset state, stepped in a Python
  loop: per env, write the same controls (the env's own action -> ctrl mapping of the same random actions)
  and call ``mujoco.mj_step(model, data, nstep=frame_skip)``. Single-threaded, no observation, reward or
  reset (fallen bodies keep simulating on the ground).
* *batch physics* (for reference): ``env.batch.step(nstep=frame_skip)`` alone on the env's batch, i.e. ours
  without the task math and reset handling (controls left as they are).

Rates are agent steps per second summed over the N envs (one step = ``frame_skip`` substeps in both). Each cell
times ``--rounds`` interleaved rounds of the three (``--seconds`` each) and reports the medians.

Run: ``python benchmarks/bench_env.py [--tasks Ant,Hopper,Humanoid] [--envs 1,16,64,256] [--threads 2]``

Backends side by side (``--backends``, ``--device`` or ``--plot`` given): ``env.step`` rates of the same task on
each physics engine, ``mujoco`` (C ``mujoco.batch`` on the CPU thread pool; tensors moved to ``--device``) and
``mjwarp`` (MuJoCo Warp on ``--device``: a CUDA GPU, or warp's CPU device), the ratio mjwarp/mujoco per cell,
and a steps/s-vs-envs plot (log-log)::

    python benchmarks/bench_env.py --tasks Ant,Humanoid --envs 1024,4096,16384 --backends mujoco,mjwarp \
        --device cuda --json OUT.json --plot OUT.png

``--json`` then holds a list of rows ``{task, backend, num_envs, device, steps_per_s}``. On ``--device cuda`` the C
backend is measured only up to ``--mujoco-max-envs`` envs (default 4096: beyond that its CPU time, not the GPU,
is what is measured); skipped cells are printed. Timings on CUDA end with ``torch.cuda.synchronize()``; the
first steps (kernel loading, CUDA graph capture) are excluded by a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Dict, List

import mujoco
import numpy as np
import torch

import tasks


def rate_ours(env, actions: List[torch.Tensor], seconds: float) -> float:
    """Agent steps/s (all envs) of ``env.step`` over at least ``seconds``."""
    steps, t0 = 0, time.perf_counter()
    while True:
        env.step(actions[steps % len(actions)])
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps * env.num_envs / elapsed


def rate_raw(model: mujoco.MjModel, datas: List[mujoco.MjData], ctrls: np.ndarray, frame_skip: int,
             seconds: float) -> float:
    """Agent steps/s (all envs) of a Python loop of ``mj_step(nstep=frame_skip)`` over ``datas``."""
    steps, t0 = 0, time.perf_counter()
    while True:
        ctrl = ctrls[steps % len(ctrls)]
        for i, data in enumerate(datas):
            data.ctrl[:] = ctrl[i]
            mujoco.mj_step(model, data, frame_skip)
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps * len(datas) / elapsed


def rate_physics(env, seconds: float) -> float:
    """Agent steps/s (all envs) of the batch physics alone: ``env.batch.step(nstep=frame_skip)``."""
    steps, t0 = 0, time.perf_counter()
    while True:
        env.batch.step(nstep=env.frame_skip, stage=env.step_stage)
        steps += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps * env.num_envs / elapsed


def bench_cell(task: str, num_envs: int, threads: int, seconds: float, rounds: int) -> Dict[str, float]:
    """Median ours, raw and batch-physics rates of one (task, N) cell."""
    env = tasks.make_env(task, {}, num_envs=num_envs, seed=0, num_threads=threads)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand(num_envs, env.action_dim, generator=gen) * 2 - 1 for _ in range(16)]
    ctrls = []
    for action in actions:  # the env's own action -> ctrl mapping
        env._apply_action(action)
        ctrls.append(env.ctrl.numpy().copy())
    datas = []
    for i in range(num_envs):  # raw sims start from the env's reset state
        data = mujoco.MjData(env.model)
        data.qpos[:], data.qvel[:] = env.qpos[i].numpy(), env.qvel[i].numpy()
        mujoco.mj_forward(env.model, data)
        datas.append(data)
    ctrls_np = np.stack(ctrls)
    rate_ours(env, actions, 0.05)  # warm up
    rate_raw(env.model, datas, ctrls_np, env.frame_skip, 0.05)
    timers = {"ours": lambda: rate_ours(env, actions, seconds),
              "raw": lambda: rate_raw(env.model, datas, ctrls_np, env.frame_skip, seconds),
              "physics": lambda: rate_physics(env, seconds)}
    samples: Dict[str, List[float]] = {name: [] for name in timers}
    for r in range(rounds):  # interleaved, order rotated each round
        names = list(timers)[r % 3:] + list(timers)[:r % 3]
        for name in names:
            samples[name].append(timers[name]())
        env.reset()  # the physics-only rounds do not reset fallen bodies
    result = {"task": task, "num_envs": num_envs, "frame_skip": env.frame_skip, "obs_dim": env.obs_dim,
              "action_dim": env.action_dim, **{f"{k}_sps": statistics.median(v) for k, v in samples.items()}}
    result["ratio"] = result["ours_sps"] / result["raw_sps"]
    env.close()
    return result


def rate_env(env, actions: List[torch.Tensor], seconds: float, cuda: bool) -> float:
    """Agent steps/s (all envs) of ``env.step`` over at least ``seconds``; on CUDA synchronised at the end."""
    steps, t0 = 0, time.perf_counter()
    while True:
        for _ in range(8):  # between clock reads
            env.step(actions[steps % len(actions)])
            steps += 1
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return steps * env.num_envs / elapsed


def backend_cell(task: str, backend: str, num_envs: int, device: str, threads: int, seconds: float,
                 rounds: int) -> float:
    """Median ``env.step`` rate (agent steps/s, all envs) of ``task`` on ``backend`` with ``num_envs`` envs."""
    env = tasks.make_env(task, {}, num_envs=num_envs, seed=0, device=device, num_threads=threads, sim=backend)
    env.reset()
    gen = torch.Generator().manual_seed(0)
    actions = [(torch.rand(num_envs, env.action_dim, generator=gen) * 2 - 1).to(device) for _ in range(16)]
    cuda = torch.device(device).type == "cuda"
    for a in actions[:4]:  # warm-up: kernel loading, CUDA graph capture
        env.step(a)
    rates = [rate_env(env, actions, seconds, cuda) for _ in range(rounds)]
    env.close()
    return statistics.median(rates)


def compare_backends(args: argparse.Namespace) -> None:
    """The ``--backends`` mode (module docstring): rows, ratios, JSON list, plot."""
    backends = [b for b in (args.backends or "mujoco").split(",") if b]
    for b in backends:
        if b not in ("mujoco", "mjwarp"):
            raise SystemExit(f"bench_env: --backends {b!r} is invalid; accepted: mujoco, mjwarp")
    device = args.device or "cpu"
    cuda = torch.device(device).type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit(f"bench_env: --device {device} but torch sees no CUDA device")
    cap = args.mujoco_max_envs if args.mujoco_max_envs is not None else (4096 if cuda else None)
    gpu = torch.cuda.get_device_name(torch.device(device)) if cuda else "CPU"
    print(f"backends {', '.join(backends)} on {device} ({gpu}); mujoco {mujoco.__version__}, torch "
          f"{torch.__version__}, C physics threads {args.threads}, {args.rounds} x {args.seconds:g} s rounds"
          + (f"; C backend only up to {cap} envs" if cap else ""))
    rows = []
    for task in args.tasks.split(","):
        for num_envs in (int(n) for n in args.envs.split(",")):
            for backend in backends:
                if backend == "mujoco" and cap is not None and num_envs > cap:
                    print(f"  {task} N={num_envs} mujoco: skipped (above --mujoco-max-envs {cap})", flush=True)
                    continue
                sps = backend_cell(task, backend, num_envs, device, args.threads, args.seconds, args.rounds)
                rows.append({"task": task, "backend": backend, "num_envs": num_envs, "device": device,
                             "steps_per_s": sps})
                print(f"  {task} N={num_envs} {backend}: {sps:,.0f} steps/s", flush=True)
    print("\n| task | envs | " + " | ".join(f"{b} steps/s" for b in backends)
          + (" | ratio mjwarp/mujoco |" if len(backends) > 1 else " |"))
    print("|---|---|" + "---|" * (len(backends) + (len(backends) > 1)))
    for task in args.tasks.split(","):
        for num_envs in (int(n) for n in args.envs.split(",")):
            cell = {r["backend"]: r["steps_per_s"] for r in rows if r["task"] == task and r["num_envs"] == num_envs}
            line = f"| {task} | {num_envs} | " + " | ".join(f"{cell[b]:,.0f}" if b in cell else "skipped"
                                                           for b in backends)
            if len(backends) > 1:
                both = "mujoco" in cell and "mjwarp" in cell
                line += f" | {cell['mjwarp'] / cell['mujoco']:.2f}" if both else " | -"
            print(line + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for task in args.tasks.split(","):
            for backend in backends:
                pts = sorted((r["num_envs"], r["steps_per_s"]) for r in rows
                             if r["task"] == task and r["backend"] == backend)
                if pts:
                    ax.plot(*zip(*pts), marker="o", linestyle="-" if backend == "mjwarp" else "--",
                            label=f"{task} {backend}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("num_envs")
        ax.set_ylabel("env steps/s (all envs)")
        ax.set_title(f"env.step throughput on {device} ({gpu})", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot -> {args.plot}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="Ant,Hopper,Humanoid", help="registered task names (tasks.make_env)")
    parser.add_argument("--envs", default="1,16,64,256", help="comma-separated env counts")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="physics threads of the batch "
                        "(default: all CPUs)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--seconds", type=float, default=0.2, help="seconds per timed round and method")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell (median)")
    parser.add_argument("--json", default=None, help="write the results to this path")
    parser.add_argument("--backends", default=None, help="compare physics backends: comma-separated of mujoco, "
                        "mjwarp (default mujoco when --device or --plot is given)")
    parser.add_argument("--device", default=None, help="training device of the backend comparison (cpu, cuda)")
    parser.add_argument("--plot", default=None, help="backend comparison: write a steps/s-vs-envs plot (PNG)")
    parser.add_argument("--mujoco-max-envs", type=int, default=None, help="backend comparison: largest env count "
                        "for the C backend (default: 4096 on CUDA, no limit on CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    if args.backends or args.device or args.plot:
        compare_backends(args)
        return
    print(f"mujoco {mujoco.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"physics threads {args.threads} (of {os.cpu_count()} CPUs), {args.rounds} x {args.seconds:g} s rounds")

    rows = []
    for task in args.tasks.split(","):
        for num_envs in (int(n) for n in args.envs.split(",")):
            rows.append(bench_cell(task, num_envs, args.threads, args.seconds, args.rounds))
            r = rows[-1]
            print(f"  {task} N={num_envs}: ours {r['ours_sps']:,.0f}  raw {r['raw_sps']:,.0f}  "
                  f"batch physics {r['physics_sps']:,.0f} steps/s", flush=True)

    print("\n| task | frame_skip | envs | ours steps/s | raw mj_step steps/s | ratio (ours/raw) "
          "| batch physics only steps/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} (obs {r['obs_dim']}, act {r['action_dim']}) | {r['frame_skip']} | {r['num_envs']} "
              f"| {r['ours_sps']:,.0f} | {r['raw_sps']:,.0f} | {r['ratio']:.2f} | {r['physics_sps']:,.0f} |")
    if args.json:
        meta = {"mujoco": mujoco.__version__, "torch": torch.__version__, "physics_threads": args.threads,
                "torch_threads": args.torch_threads, "seconds": args.seconds, "rounds": args.rounds}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
