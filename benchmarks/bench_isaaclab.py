"""Env steps/s of the real Isaac Lab 3.0 Ant and Humanoid through the adapter against the raw env loop.

For each task and env count N, one process (Isaac Lab runs one simulation per process) builds the env with the
adapter's own ``meow_isaac.envs.isaaclab.make`` (the task's default physics: Newton MuJoCo-Warp, kit-less,
``device=cpu``) and times, with the same random actions in [-1, 1] (drawn up front and cycled):

* *adapter*: ``IsaacLabEnv.step(action)``, the whole ``StepOut``: action clamp, the env step, copies of the
  reused buffers, ``truncated &= ~terminated``, ``final_obs`` from ``extras`` on reset steps, episode sums;
* *raw*: ``env.step(action)`` of the same gymnasium env, i.e. Isaac Lab's own step and nothing else.

Rates are agent steps per second summed over the N envs, per wall second and per CPU second of the process (the
latter is what an idle core gives on a machine shared with other jobs). Each cell times ``--rounds`` interleaved
rounds of the two (``--seconds`` and 30 steps each at least, order alternating) after ``--warmup`` untimed steps
and reports the medians; the ratio adapter/raw is the adapter's cost (1.0 = none).

Run it with the Isaac Lab 3 venv's python and a local asset tree (``scripts/ci_isaaclab3.sh`` builds both):
``ISAACSIM_ASSET_ROOT=DIR ~/.cache/meow-isaac/isaaclab3/bin/python benchmarks/bench_isaaclab.py
[--tasks Ant,Humanoid] [--envs 16,64,256] [--seconds 3] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


MIN_STEPS = 30  # vectorised steps per timed round at least (a slow cell would otherwise time a handful)


def _timed(step, actions, seconds: float, num_envs: int) -> Tuple[float, float]:
    """(steps per wall second, steps per CPU second of this process), summed over envs, of ``step`` over at least
    ``seconds`` of wall time and :data:`MIN_STEPS` calls, cycling ``actions``. The CPU-time rate is what an idle
    core would give when other processes share the machine (torch runs 1 thread; Warp runs CPU kernels on the
    calling thread)."""
    count, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        step(actions[count % len(actions)])
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and count >= MIN_STEPS:
            return count * num_envs / elapsed, count * num_envs / max(time.process_time() - cpu, 1e-9)


def cell(task: str, num_envs: int, seconds: float, rounds: int, warmup: int) -> Dict[str, Any]:
    """One (task, N) measurement in this process."""
    import torch
    from omegaconf import OmegaConf

    from meow_isaac.envs import isaaclab

    torch.set_num_threads(1)
    section = OmegaConf.to_container(OmegaConf.load(f"{REPO}/cfg/task/{task}.yaml")["isaaclab"], resolve=True)
    t0 = time.perf_counter()
    env = isaaclab.make(section, num_envs, 0, torch.device("cpu"))
    build_s = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(0)
    actions = [torch.rand(num_envs, env.action_dim, generator=gen) * 2 - 1 for _ in range(64)]
    env.reset()
    for i in range(warmup):  # kernels compiled / loaded, caches warm, first resets done
        env.step(actions[i % len(actions)])
    timers = {"adapter": env.step, "raw": env.env.step}
    samples: Dict[str, List[Tuple[float, float]]] = {name: [] for name in timers}
    for r in range(rounds):
        for name in (list(timers) if r % 2 == 0 else list(timers)[::-1]):
            samples[name].append(_timed(timers[name], actions, seconds, num_envs))
    out = {"task": task, "env_class": type(env.env.unwrapped).__name__, "num_envs": num_envs, "obs_dim": env.obs_dim,
           "action_dim": env.action_dim, "build_s": build_s}
    for name, values in samples.items():
        out[f"{name}_sps"] = statistics.median(v[0] for v in values)
        out[f"{name}_cpu_sps"] = statistics.median(v[1] for v in values)
    out["ratio"] = out["adapter_sps"] / out["raw_sps"]
    out["cpu_ratio"] = out["adapter_cpu_sps"] / out["raw_cpu_sps"]
    env.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="Ant,Humanoid", help="meow-isaac task names with an isaaclab: section")
    parser.add_argument("--envs", default="16,64,256", help="comma-separated env counts")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per timed round and method")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell (median)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps before the rounds")
    parser.add_argument("--json", default=None, help="write the results to this path")
    parser.add_argument("--cell", default=None, help=argparse.SUPPRESS)  # internal: TASK,N in this process
    args = parser.parse_args()
    if args.cell:
        task, n = args.cell.split(",")
        print("RESULT " + json.dumps(cell(task, int(n), args.seconds, args.rounds, args.warmup)), flush=True)
        return
    if not os.environ.get("ISAACSIM_ASSET_ROOT"):
        sys.exit("bench_isaaclab.py: set ISAACSIM_ASSET_ROOT to a local asset tree "
                 "(python -m meow_isaac.envs.isaaclab_assets OUT_DIR)")
    import importlib.metadata

    print(f"isaaclab {importlib.metadata.version('isaaclab')}, torch {importlib.metadata.version('torch')}, "
          f"{os.cpu_count()} CPUs, {args.rounds} x {args.seconds:g} s rounds, {args.warmup} warm-up steps")
    rows = []
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    for task in args.tasks.split(","):
        for n in args.envs.split(","):
            proc = subprocess.run([sys.executable, __file__, "--cell", f"{task},{n}", "--seconds", str(args.seconds),
                                   "--rounds", str(args.rounds), "--warmup", str(args.warmup)],
                                  capture_output=True, text=True, env=env)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                sys.exit(f"bench_isaaclab.py: {task} N={n} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            rows.append(json.loads(lines[-1][len("RESULT "):]))
            r = rows[-1]
            print(f"  {task} N={n}: adapter {r['adapter_sps']:,.0f}  raw {r['raw_sps']:,.0f} steps/s (wall), "
                  f"adapter {r['adapter_cpu_sps']:,.0f}  raw {r['raw_cpu_sps']:,.0f} steps per CPU s; ratio "
                  f"{r['ratio']:.3f} (wall) {r['cpu_ratio']:.3f} (CPU)  (env built in {r['build_s']:.0f} s)",
                  flush=True)
    print("\n| task | envs | raw steps/s (wall) | adapter steps/s (wall) | ratio | raw steps/CPU-s "
          "| adapter steps/CPU-s | ratio (CPU) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} (obs {r['obs_dim']}, act {r['action_dim']}) | {r['num_envs']} | {r['raw_sps']:,.0f} "
              f"| {r['adapter_sps']:,.0f} | {r['ratio']:.3f} | {r['raw_cpu_sps']:,.0f} | {r['adapter_cpu_sps']:,.0f} "
              f"| {r['cpu_ratio']:.3f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
