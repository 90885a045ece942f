"""Soak benchmark: one real training run for a long time, its resident memory and throughput sampled from outside.

The hydra runner (``runner.py``) is started as a subprocess with a huge ``max_iterations``; every ``--interval``
seconds this script records the run's resident set size (psutil, else ``/proc/<pid>/status`` VmRSS; the process
and any children), its CPU seconds and thread count, the machine's 1-minute load, and the run's progress: the
iteration count of the runner's own progress bar (the live ``n/total`` of its tqdm line; frames = iteration x
num_envs) and the fps between two samples. ``--minutes`` after the run's first progress report (start-up not
counted) it sends SIGTERM: the runner checkpoints and exits 3, which is the expected clean end. At the end the
run's TensorBoard scalars (``info/iteration``, ``performance/total_fps``) are read back as a cross-check.

Writes ``<out>/soak_<Task>.csv`` (one row per sample), ``<out>/soak_<Task>.png`` (RSS and fps vs time) and
``<out>/soak_<Task>.json`` (the summary), and prints the summary: RSS at the first sample after warm-up and at the
end, the growth over the second half from a linear fit (MiB and MiB/hour), fps at the start and at the end, and
a verdict, "memory flat" or "memory GROWING" (threshold: the smaller of ``--flat-mib`` and ``--flat-pct`` % of the
warm-up RSS, for the fitted growth over the second half).

The replay buffer is preallocated with ``torch.empty``: its pages become resident only when first written, so RSS
climbs by one row per env and step until each env's ring has been written through once. By default the soak runs the
main job as users run it (``task=Humanoid``, the train config's replay size: 15,000 slots per env, written through
after 15,000 iterations); ``--replay-slots N`` sets ``train.replay_size_per_env=N`` instead (e.g. 5000 for Hopper,
whose own 1,000,000 slots take hours to write through). Warm-up ends at the first sample with iteration >= max(random_steps, learning_starts,
replay_size_per_env + 1, eval_interval, save_interval) + log_interval: ring written through, updates running, the
evaluation env built, one checkpoint written. If the ring was not written through by the end, the summary says how
much of it was never touched.

    python benchmarks/soak.py --minutes 60 [--task Humanoid] [--replay-slots 0] [--num-envs N] [--interval 10]
        [--out benchmarks/results/soak] [-- <extra runner overrides>]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MIB = 2.0 ** 20
EXIT_PREEMPTED = 3  # meow_isaac.runner: SIGTERM -> checkpoint written, exit 3
COLUMNS = ("elapsed_s", "rss_mib", "iteration", "frames", "fps", "cpu_s", "threads", "load1")
BAR = re.compile(r"(\d+)/(\d+) \[")
HEADER = re.compile(r"(\d+) envs, obs (\d+), action (\d+).*?replay ([\d.]+) MiB")

try:
    import psutil
except ImportError:  # not a dependency of the package: fall back to /proc
    psutil = None


# ---------------------------------------------------------------------------------------------------- sampling
def _proc_status(pid: int) -> Dict[str, int]:
    """VmRSS (bytes) and Threads of ``/proc/<pid>/status``; CPU seconds (utime + stime) of ``/proc/<pid>/stat``."""
    out = {"rss": 0, "threads": 0, "cpu_s": 0.0}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _children(pid: int) -> List[int]:
    """Descendant pids via ``/proc/<pid>/task/*/children`` (the /proc fallback of psutil's ``children``)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def measure(pid: int) -> Dict[str, float]:
    """RSS (MiB), CPU seconds and threads of ``pid`` plus its descendants."""
    if psutil is not None:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
        rss = cpu = threads = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss
                    times = proc.cpu_times()
                    cpu += times.user + times.system
                    threads += proc.num_threads()
            except psutil.NoSuchProcess:
                pass
        return {"rss_mib": rss / MIB, "cpu_s": cpu, "threads": threads}
    rss = cpu = threads = 0
    for p in [pid] + _children(pid):
        try:
            status = _proc_status(p)
        except (OSError, IndexError, ValueError):
            continue
        rss, cpu, threads = rss + status["rss"], cpu + status["cpu_s"], threads + status["threads"]
    return {"rss_mib": rss / MIB, "cpu_s": cpu, "threads": threads}


class ConsoleReader(threading.Thread):
    """Reads the runner's merged stdout/stderr: keeps the progress bar's latest iteration and the header line,
    and copies the complete lines (not the bar's ``\\r`` redraws) to ``log_path``."""

    def __init__(self, stream, log_path: Path) -> None:
        super().__init__(daemon=True)
        self.stream, self.log_path = stream, log_path
        self.iteration: Optional[int] = None
        self.first_progress_t: Optional[float] = None
        self.header: Optional[re.Match] = None
        self.lines: List[str] = []

    def run(self) -> None:
        pending = ""
        with open(self.log_path, "w", encoding="utf-8") as log:
            while True:
                chunk = os.read(self.stream.fileno(), 65536)
                if not chunk:
                    break
                pending += chunk.decode("utf-8", errors="replace")
                parts = re.split(r"(\r|\n)", pending)
                pending = parts.pop()  # the unfinished tail
                line = ""
                for part in parts:
                    if part not in ("\r", "\n"):
                        line = part
                        continue
                    for match in BAR.finditer(line):
                        self.iteration = int(match.group(1))
                        if self.first_progress_t is None and self.iteration > 0:
                            self.first_progress_t = time.monotonic()
                    if part == "\n" and line.strip():
                        self.header = self.header or HEADER.search(line)
                        self.lines.append(line)
                        log.write(line + "\n")
                        log.flush()
                    line = ""
            if pending.strip():
                log.write(pending + "\n")


# ---------------------------------------------------------------------------------------------------- analysis
def read_tensorboard(summaries: Path) -> Dict[str, list]:
    """``info/iteration`` and ``performance/total_fps`` events ``(wall_time, step, value)`` of the run, or {}."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return {}
    if not summaries.is_dir():
        return {}
    acc = EventAccumulator(str(summaries), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags().get("scalars", []))
    return {tag: [(e.wall_time, e.step, e.value) for e in acc.Scalars(tag)]
            for tag in ("info/iteration", "info/updates", "performance/total_fps") if tag in tags}


def window_fps(rows: List[dict], t0: float, t1: float) -> float:
    """Frames per second between the samples nearest to ``t0`` (at or after) and ``t1`` (at or before)."""
    inside = [r for r in rows if t0 <= r["elapsed_s"] <= t1]
    if len(inside) < 2 or inside[-1]["elapsed_s"] <= inside[0]["elapsed_s"]:
        return float("nan")
    return (inside[-1]["frames"] - inside[0]["frames"]) / (inside[-1]["elapsed_s"] - inside[0]["elapsed_s"])


def window_frames_per_cpu_s(rows: List[dict], t0: float, t1: float) -> float:
    """Frames per CPU second of the run between the samples in ``[t0, t1]``: throughput with the machine's other
    load taken out (on a shared machine fps falls when the run gets less CPU; frames per CPU second does not)."""
    inside = [r for r in rows if t0 <= r["elapsed_s"] <= t1]
    if len(inside) < 2 or inside[-1]["cpu_s"] <= inside[0]["cpu_s"]:
        return float("nan")
    return (inside[-1]["frames"] - inside[0]["frames"]) / (inside[-1]["cpu_s"] - inside[0]["cpu_s"])


def summarize(rows: List[dict], warm_iteration: int, flat_mib: float, flat_pct: float) -> dict:
    """The numbers of the printed summary (see the module docstring)."""
    trained = [r for r in rows if r["iteration"] > 0] or rows
    warm = next((r for r in rows if r["iteration"] >= warm_iteration), None)
    warm_reached = warm is not None
    warm = warm or trained[0]
    end = rows[-1]
    t_half = max(warm["elapsed_s"], end["elapsed_s"] / 2.0)
    half = [r for r in rows if r["elapsed_s"] >= t_half]
    if len(half) >= 2:
        t = np.array([r["elapsed_s"] for r in half])
        slope, intercept = np.polyfit(t, np.array([r["rss_mib"] for r in half]), 1)
        half_growth = float(slope * (t[-1] - t[0]))
    else:
        slope = intercept = half_growth = float("nan")
    threshold = min(flat_mib, flat_pct / 100.0 * warm["rss_mib"])
    post = end["elapsed_s"] - warm["elapsed_s"]
    span = min(max(60.0, 0.1 * post), max(post / 2.0, 1.0))
    return {
        "warmup_iteration": warm_iteration, "warmup_reached": warm_reached,
        "warmup_elapsed_s": warm["elapsed_s"], "rss_warm_mib": warm["rss_mib"], "rss_end_mib": end["rss_mib"],
        "rss_peak_mib": max(r["rss_mib"] for r in rows), "growth_mib": end["rss_mib"] - warm["rss_mib"],
        "second_half_from_s": t_half, "second_half_samples": len(half), "second_half_growth_mib": half_growth,
        "second_half_mib_per_hour": float(slope * 3600.0), "fit_slope_mib_per_s": float(slope),
        "fit_intercept_mib": float(intercept), "flat_threshold_mib": threshold,
        "verdict": "memory flat" if half_growth < threshold else "memory GROWING",
        "fps_window_s": span, "fps_first": window_fps(rows, warm["elapsed_s"], warm["elapsed_s"] + span),
        "fps_last": window_fps(rows, end["elapsed_s"] - span, end["elapsed_s"]),
        "frames_per_cpu_s_first": window_frames_per_cpu_s(rows, warm["elapsed_s"], warm["elapsed_s"] + span),
        "frames_per_cpu_s_last": window_frames_per_cpu_s(rows, end["elapsed_s"] - span, end["elapsed_s"]),
        "cpu_share": ((end["cpu_s"] - warm["cpu_s"]) / post) if post > 0 else float("nan"),
        "elapsed_s": end["elapsed_s"], "iteration": end["iteration"], "frames": end["frames"],
    }


def plot(rows: List[dict], summary: dict, tb: Dict[str, list], t_launch_wall: float, num_envs: int,
         title: str, path: Path) -> None:
    """Two panels against minutes since launch: RSS (with warm-up mark and the second-half fit) and fps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = np.array([r["elapsed_s"] for r in rows]) / 60.0
    fig, (ax_mem, ax_fps) = plt.subplots(2, 1, figsize=(7.0, 5.2), sharex=True)
    ax_mem.plot(minutes, [r["rss_mib"] for r in rows], "-", lw=1.2, label="RSS (runner process)")
    ax_mem.axvline(summary["warmup_elapsed_s"] / 60.0, color="gray", ls=":", lw=1,
                   label=(f"warm-up done (iteration >= {summary['warmup_iteration']:,})" if summary["warmup_reached"]
                          else "first progress (warm-up not reached)"))
    if summary["second_half_samples"] >= 2:
        t = np.array([summary["second_half_from_s"], rows[-1]["elapsed_s"]])
        ax_mem.plot(t / 60.0, summary["fit_intercept_mib"] + summary["fit_slope_mib_per_s"] * t, "r--", lw=1.2,
                    label=f"fit, 2nd half: {summary['second_half_mib_per_hour']:+.1f} MiB/h")
    ax_mem.set_ylabel("RSS (MiB)")
    ax_mem.set_title(title, fontsize=9)
    ax_mem.grid(True, alpha=0.3)
    ax_mem.legend(fontsize=7, loc="lower right")
    ax_fps.plot(minutes[1:], [r["fps"] for r in rows[1:]], "-", lw=0.8, alpha=0.7,
                label="env steps/s between samples (progress bar)")
    logged = tb.get("info/iteration", [])
    if len(logged) >= 2:
        wall = np.array([e[0] for e in logged])
        frames = np.array([e[2] for e in logged]) * num_envs
        ax_fps.plot((wall[1:] - t_launch_wall) / 60.0, np.diff(frames) / np.maximum(np.diff(wall), 1e-9), "o",
                    ms=3, label="env steps/s between log intervals (TensorBoard)")
    ax_fps.set_xlabel("minutes since launch")
    ax_fps.set_ylabel("env steps / s")
    after = [r["fps"] for r in rows if r["elapsed_s"] > summary["warmup_elapsed_s"]]
    if len(after) >= 4:  # scale to the trained phase; the random-action phase (no updates) is much faster
        top = 1.5 * float(np.percentile(after, 95))
        ax_fps.set_ylim(0, top)
        if max(r["fps"] for r in rows) > top:
            ax_fps.text(0.01, 0.95, "start-up / random-action phase off scale", transform=ax_fps.transAxes,
                        fontsize=7, va="top", color="gray")
    else:
        ax_fps.set_ylim(bottom=0)
    ax_fps.grid(True, alpha=0.3)
    ax_fps.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _train_config(run_dir: Path) -> dict:
    """The resolved config the runner wrote (``runs/<experiment>/config.yaml``), or {} before it exists."""
    try:
        import yaml

        return yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except (OSError, ImportError, ValueError):
        return {}


def warmup_iteration(config: dict) -> int:
    """First iteration past warm-up: ring written through, updates, first evaluation and checkpoint done."""
    train = config.get("train", {})
    marks = [train.get("random_steps", 0), train.get("learning_starts", 0),
             train.get("replay_size_per_env", 0) + 1, train.get("eval_interval", 0), train.get("save_interval", 0)]
    return int(max(marks)) + int(train.get("log_interval", 0))


# ---------------------------------------------------------------------------------------------------- main
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="Arguments after '--' are passed to runner.py as hydra overrides.")
    parser.add_argument("--minutes", type=float, default=60.0, help="training time after the first progress")
    parser.add_argument("--task", default="Humanoid", help="the main job by default")
    parser.add_argument("--num-envs", type=int, default=None, help="num_envs (default: the task's)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--replay-slots", type=int, default=0,
                        help="train.replay_size_per_env (default 0: the train config's own)")
    parser.add_argument("--torch-threads", default="1")
    parser.add_argument("--sim-threads", default="1")
    parser.add_argument("--flat-mib", type=float, default=20.0, help="flat if 2nd-half growth < this ...")
    parser.add_argument("--flat-pct", type=float, default=2.0, help="... and < this %% of the warm-up RSS")
    parser.add_argument("--out", default="benchmarks/results/soak", help="folder for the CSV, PNG and JSON")
    parser.add_argument("--run-root", default=str(REPO),
                        help="working directory of the run (its folder is <run-root>/runs/<experiment>)")
    parser.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for first progress")
    parser.add_argument("--stop-timeout", type=float, default=300.0, help="seconds to wait for exit after SIGTERM")
    parser.add_argument("--strict", action="store_true", help="exit 1 on 'memory GROWING' too")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    experiment = f"soak_{args.task}_{stamp}"
    overrides = [f"task={args.task}", "headless=True", f"experiment={experiment}", "max_iterations=1000000000",
                 f"torch_threads={args.torch_threads}", f"sim_threads={args.sim_threads}", "progress_bar=True"]
    if args.num_envs:
        overrides.append(f"num_envs={args.num_envs}")
    if args.replay_slots:
        overrides.append(f"train.replay_size_per_env={args.replay_slots}")
    overrides += extra
    command = [sys.executable, str(REPO / "runner.py"), *overrides]
    run_root = Path(args.run_root).resolve()
    run_dir = run_root / "runs" / experiment
    run_dir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.minutes:g} min of training, a sample every {args.interval:g} s "
          f"({'psutil' if psutil else '/proc'}); run folder {run_dir}\n  {' '.join(command)}", flush=True)

    env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE=os.environ.get("WANDB_MODE", "offline"))
    t_launch, t_launch_wall = time.monotonic(), time.time()
    proc = subprocess.Popen(command, cwd=run_root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    reader = ConsoleReader(proc.stdout, run_dir / "soak_console.log")
    reader.start()
    rows: List[dict] = []
    num_envs, stopped, failure = args.num_envs or 1, False, None
    try:
        next_t = t_launch
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                failure = f"the run exited with code {proc.returncode} before the soak ended"
                break
            if reader.first_progress_t is None and now - t_launch > args.startup_timeout:
                failure = f"no progress within {args.startup_timeout:g} s of launch"
                break
            if reader.first_progress_t is not None and now - reader.first_progress_t >= args.minutes * 60.0:
                break
            if now >= next_t:
                try:
                    sample = measure(proc.pid)
                except (OSError, ValueError, IndexError) if psutil is None else (OSError, psutil.Error):
                    time.sleep(0.2)  # the process went away between poll() and the read: poll() says so next
                    continue
                if reader.header is not None:
                    num_envs = int(reader.header.group(1))
                iteration = reader.iteration or 0
                row = {"elapsed_s": now - t_launch, "rss_mib": sample["rss_mib"], "iteration": iteration,
                       "frames": iteration * num_envs, "fps": 0.0, "cpu_s": sample["cpu_s"],
                       "threads": sample["threads"], "load1": os.getloadavg()[0]}
                if rows and row["elapsed_s"] > rows[-1]["elapsed_s"]:
                    row["fps"] = (row["frames"] - rows[-1]["frames"]) / (row["elapsed_s"] - rows[-1]["elapsed_s"])
                rows.append(row)
                next_t += args.interval
                while next_t <= now:  # a slow sample on a loaded machine: skip, do not burst
                    next_t += args.interval
            time.sleep(max(0.0, min(0.2, next_t - time.monotonic())))
    except KeyboardInterrupt:
        print("soak: interrupted; stopping the run and writing what was sampled", flush=True)
    finally:
        if proc.poll() is None:
            t_stop = time.monotonic()
            os.kill(proc.pid, signal.SIGTERM)
            stopped = True
            try:
                proc.wait(timeout=args.stop_timeout)
            except subprocess.TimeoutExpired:
                failure = f"the run did not exit within {args.stop_timeout:g} s of SIGTERM: killed"
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            stop_s = time.monotonic() - t_stop
        reader.join(timeout=10)
    if stopped and failure is None and proc.returncode != EXIT_PREEMPTED:
        failure = f"the run exited with code {proc.returncode} after SIGTERM (expected {EXIT_PREEMPTED})"
    if not rows:
        print(f"soak: no samples; {failure or ''}\n" + "\n".join(reader.lines[-20:]), file=sys.stderr)
        return 1

    config = _train_config(run_dir)
    warm_it = warmup_iteration(config)
    summary = summarize(rows, warm_it, args.flat_mib, args.flat_pct)
    tb = read_tensorboard(run_dir / "summaries")
    train = config.get("train", {})
    slots = int(train.get("replay_size_per_env", 0))
    header = reader.header
    row_bytes = 4 * (2 * int(header.group(2)) + int(header.group(3)) + 2) + 1 if header else 0
    untouched = 0.0
    if slots and rows[-1]["iteration"] < slots + 1:  # ring not yet written through: first touch still going on
        untouched = (slots + 1 - rows[-1]["iteration"]) * num_envs * row_bytes / MIB
    summary.update({
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "task": args.task, "num_envs": num_envs,
        "command": " ".join(["python", "benchmarks/soak.py", *sys.argv[1:]]), "runner": " ".join(command[1:]),
        "replay_size_per_env": slots, "replay_mib": float(header.group(4)) if header else None,
        "replay_untouched_mib_at_end": untouched, "exit_code": proc.returncode, "stop_s": stop_s if stopped else None,
        "failure": failure, "samples": len(rows), "machine": f"{os.cpu_count()} CPUs, {os.uname().machine}",
        "mean_load1": float(np.mean([r["load1"] for r in rows])),
        "tb_last_iteration": tb["info/iteration"][-1][2] if tb.get("info/iteration") else None,
        "tb_last_updates": tb["info/updates"][-1][2] if tb.get("info/updates") else None,
        "tb_last_total_fps": tb["performance/total_fps"][-1][2] if tb.get("performance/total_fps") else None,
        "run_dir": str(run_dir),
    })

    stem = f"soak_{args.task}"
    with open(out / f"{stem}.csv", "w", encoding="ascii") as handle:
        handle.write(",".join(COLUMNS) + "\n")
        for r in rows:
            handle.write(f"{r['elapsed_s']:.1f},{r['rss_mib']:.2f},{r['iteration']},{r['frames']},{r['fps']:.1f},"
                         f"{r['cpu_s']:.1f},{r['threads']},{r['load1']:.2f}\n")
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    title = (f"soak {args.task}: {num_envs} env(s), replay {slots:,} slots/env, torch {args.torch_threads} / "
             f"sim {args.sim_threads} threads; {summary['verdict']}")
    plot(rows, summary, tb, t_launch_wall, num_envs, title, out / f"{stem}.png")

    s = summary
    print(f"\nsoak summary: {args.task}, {num_envs} env(s), {s['elapsed_s'] / 60:.1f} min since launch, "
          f"{len(rows)} samples, iteration {s['iteration']:,} ({s['frames']:,} frames), mean load {s['mean_load1']:.2f}")
    print(f"  warm-up: iteration >= {warm_it:,} "
          + (f"at {s['warmup_elapsed_s']:.0f} s" if s["warmup_reached"]
             else "NOT reached (the first sample with progress stands in)"))
    print(f"  RSS warm-up {s['rss_warm_mib']:.1f} MiB, end {s['rss_end_mib']:.1f} MiB, peak {s['rss_peak_mib']:.1f} "
          f"MiB; growth {s['growth_mib']:+.1f} MiB")
    print(f"  second half (from {s['second_half_from_s']:.0f} s, {s['second_half_samples']} samples): linear fit "
          f"{s['second_half_growth_mib']:+.2f} MiB ({s['second_half_mib_per_hour']:+.2f} MiB/hour)")
    print(f"  fps first {s['fps_first']:.1f}, last {s['fps_last']:.1f} (frames/s over {s['fps_window_s']:.0f} s "
          f"windows after warm-up and at the end); ratio last/first {s['fps_last'] / s['fps_first']:.2f}"
          if s["fps_first"] > 0 else f"  fps first {s['fps_first']:.1f}, last {s['fps_last']:.1f}")
    print(f"  frames per CPU second of the run (other load taken out): first {s['frames_per_cpu_s_first']:.1f}, "
          f"last {s['frames_per_cpu_s_last']:.1f}; the run got {s['cpu_share']:.2f} CPUs on average after warm-up")
    if s["tb_last_iteration"] is not None:
        print(f"  TensorBoard: last logged iteration {s['tb_last_iteration']:,.0f}, updates "
              f"{s['tb_last_updates'] or 0:,.0f}, performance/total_fps {s['tb_last_total_fps']:.1f}")
    if untouched > 0:
        print(f"  note: the replay ring was not yet written through ({untouched:.2f} MiB of it never touched): RSS "
              "still includes the replay's first touch; use --replay-slots below the iterations reached")
    print(f"  run exit code {proc.returncode}" + (f" ({stop_s:.1f} s after SIGTERM)" if stopped else "")
          + (f"; {failure}" if failure else ""))
    print(f"  threshold: 2nd-half growth < {s['flat_threshold_mib']:.1f} MiB (min of {args.flat_mib:g} MiB and "
          f"{args.flat_pct:g} % of the warm-up RSS)")
    print(s["verdict"])
    print(f"csv: {out / (stem + '.csv')}\nplot: {out / (stem + '.png')}")
    if failure:
        return 1
    return 1 if args.strict and s["verdict"] != "memory flat" else 0


if __name__ == "__main__":
    sys.exit(main())
