"""Wall-clock to a fixed evaluation return: our MEow update against the reference formulation, same run otherwise.

Two *variants* of one training run, built by the runner itself (``meow_isaac.runner.run`` on a config composed
from ``cfg/`` with hydra's compose API, as ``python runner.py task=<Task> seed=<seed> torch_threads=1
sim_threads=1 device=cpu sim=mujoco`` builds it): same config, seed, env, hyperparameters and trainer loop.

* *ours*: ``MEowAgent.update`` (``meow_isaac/agents/meow.py``).
* *reference*: the agent's policy and target flows replaced by ``to_reference(...)`` copies and its update by
  ``ReferenceUpdate`` (``benchmarks/bench_update.py``: the authors' training step on the same network; its
  module constants ``LR``, ``GRAD_NORM``, ``GAMMA`` are set from the train config). Acting and evaluation go
  through ``MEowAgent.act`` on the swapped policy (the flow's generation direction, which does not touch the shift
  heads), so the reference nets act as ours do.

Only the trainer class differs from a normal run (``run(cfg, trainer_cls=...)``): every ``--eval-interval``
vectorised steps it runs the trainer's deterministic evaluation (``Trainer.evaluate_and_save_best``; checkpoints
are not written) and records the training wall-clock and process CPU seconds, both *excluding* the evaluations
(and the eval env's construction), the frames, the updates and the return. A variant is *done* at its first
evaluation with return >= ``--threshold``, or at the first evaluation after ``--max-minutes`` of training.

The two variants run concurrently, one process each (1 torch thread, 1 physics thread), so that the load of
other jobs on the machine hits both alike. A variant that is done keeps training (its figures are frozen) until
the other is done too, so the other never gets the machine to itself; then the parent stops it (when a variant
misses the threshold, the other trains on to the budget as well, for the frames-at-the-budget figure).

Run: ``python benchmarks/bench_train.py [--task Hopper] [--threshold 300] [--max-minutes 20] [--seed 1]
[--eval-interval 1000] [--json out.json] [--png out.png] [--override train.batch_size=512 ...]``
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
VARIANTS = ("ours", "reference")
MARK = "@@bench_train "  # prefix of the workers' machine-readable lines on stdout


# ---------------------------------------------------------------------------------------------- worker side
def use_reference_update(agent: Any, tcfg: Any) -> None:
    """Swap ``agent``'s policy/target for ``to_reference`` copies and its update for ``ReferenceUpdate``."""
    import bench_update
    from bench_update import ReferenceUpdate, to_reference

    bench_update.LR, bench_update.GRAD_NORM, bench_update.GAMMA = tcfg.learning_rate, tcfg.grad_norm, tcfg.gamma
    ref = ReferenceUpdate(to_reference(agent.policy), to_reference(agent.target), agent.alpha, agent.tau)
    agent.policy, agent.target = ref.policy, ref.target  # act()/evaluate use agent.policy.sample

    def update(batch: Any) -> Dict[str, Any]:
        batch = batch._replace(obs=agent.normalizer(batch.obs), next_obs=agent.normalizer(batch.next_obs))
        return {"losses/loss": ref.update(batch)}

    agent.update = update


def timed_trainer_class(variant: str, threshold: float, budget_s: float, keep_load: bool,
                        emit: Callable[[Dict[str, Any]], None]) -> type:
    """A :class:`~meow_isaac.trainer.Trainer` subclass that times training without evaluations, emits one record
    per evaluation, and stops at the threshold / the budget (or, with ``keep_load``, at the budget only)."""
    import dataclasses

    from meow_isaac.trainer import Trainer

    class TimedTrainer(Trainer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if variant == "reference":
                use_reference_update(self.agent, self.cfg)
            self.done = False
            self._t0 = self._c0 = 0.0
            self._eval_s = self._eval_cpu_s = 0.0
            self._first_update: Optional[List[float]] = None  # training (wall, cpu) s at the first update
            inner = self.agent.update

            def update(batch: Any) -> Any:  # stamps the start of the learning phase, then the variant's update
                if self._first_update is None:
                    self._first_update = list(self._elapsed())
                return inner(batch)

            self.agent.update = update
            cfg = dataclasses.asdict(self.cfg)
            cfg.pop("name", None)
            emit({"event": "start", "variant": variant, "num_envs": self.env.num_envs, "train_cfg": cfg,
                  "torch_threads": _torch_threads()})

        def _elapsed(self) -> tuple:
            """Training seconds (wall, process CPU) since ``train()`` started, evaluations excluded."""
            return (time.perf_counter() - self._t0 - self._eval_s, time.process_time() - self._c0 - self._eval_cpu_s)

        def train(self) -> Dict[str, float]:
            self._t0, self._c0 = time.perf_counter(), time.process_time()
            return super().train()

        def evaluate_and_save_best(self) -> float:
            train_s, train_cpu_s = self._elapsed()
            t, c = time.perf_counter(), time.process_time()
            mean = super().evaluate_and_save_best()
            self._eval_s += time.perf_counter() - t
            self._eval_cpu_s += time.process_time() - c
            first = self._first_update
            record = {"event": "eval", "variant": variant, "iteration": self.iteration, "frames": self.frames,
                      "updates": self.updates, "train_s": train_s, "train_cpu_s": train_cpu_s,
                      "eval_s": self._eval_s, "return": mean, "after_done": self.done,
                      "learn_start_s": first[0] if first else None, "learn_start_cpu_s": first[1] if first else None}
            emit(record)
            if not self.done and (mean >= threshold or train_s >= budget_s):
                self.done = True
                emit(dict(record, event="done", reached=mean >= threshold))
            if self.done and (not keep_load or train_s >= budget_s):
                self.stop_requested = True  # leaves the loop without the final evaluation
            return mean

        def save(self, path: Path) -> Path:  # no checkpoints in the benchmark
            return path

    return TimedTrainer


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def worker(args: argparse.Namespace) -> None:
    """One variant in this process (its cwd is a scratch folder: the run folder goes there)."""
    from hydra import compose, initialize_config_dir

    from meow_isaac.runner import config_dir, run

    def emit(record: Dict[str, Any]) -> None:
        print(MARK + json.dumps(record), flush=True)

    overrides = [f"task={args.task}", f"seed={args.seed}", "torch_threads=1", "sim_threads=1", "device=cpu",
                 "sim=mujoco", "headless=True", "progress_bar=False", f"experiment=bench_train_{args.worker}",
                 f"train.eval_interval={args.eval_interval}"] + list(args.override)
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    trainer_cls = timed_trainer_class(args.worker, args.threshold, args.max_minutes * 60.0, args.keep_load, emit)
    result = run(cfg, trainer_cls=trainer_cls)
    emit({"event": "exit", "variant": args.worker, "iteration": result.get("iteration"),
          "frames": result.get("frames"), "updates": result.get("updates")})


# ---------------------------------------------------------------------------------------------- summary
def summarize(variant: str, evals: List[Dict[str, Any]], done: Optional[Dict[str, Any]],
              budget_s: float) -> Dict[str, Any]:
    """Figures of one variant from its evaluation records (in order) and its 'done' record."""
    final = done or (evals[-1] if evals else {})
    reached = bool(done and done.get("reached"))
    train_s, updates = final.get("train_s"), final.get("updates", 0)
    start = final.get("learn_start_s")
    ups = updates / (train_s - start) if updates and start is not None and train_s > start else None
    start_cpu, cpu_s = final.get("learn_start_cpu_s"), final.get("train_cpu_s")
    ups_cpu = updates / (cpu_s - start_cpu) if updates and start_cpu is not None and cpu_s > start_cpu else None
    return {"variant": variant, "reached": reached,
            "seconds_to_threshold": train_s if reached else None,
            "cpu_seconds_to_threshold": cpu_s if reached else None,
            "frames_to_threshold": final.get("frames") if reached else None,
            "updates_per_s": ups, "updates_per_cpu_s": ups_cpu,
            "final_return": final.get("return"), "final_train_s": train_s, "final_frames": final.get("frames"),
            "final_updates": updates, "frames_at_budget": frames_at(evals, budget_s),
            "evaluations": sum(not e.get("after_done") for e in evals),
            "eval_seconds": final.get("eval_s")}


def frames_at(evals: List[Dict[str, Any]], seconds: float) -> Optional[float]:
    """Frames at ``seconds`` of training, interpolated linearly between the evaluations around it (None if the
    records do not reach that far)."""
    points = [(e["train_s"], e["frames"]) for e in evals]
    for (s0, f0), (s1, f1) in zip(points, points[1:]):
        if s0 <= seconds <= s1:
            return f0 + (f1 - f0) * (seconds - s0) / (s1 - s0) if s1 > s0 else float(f1)
    return None


def comparison_lines(rows: Dict[str, Dict[str, Any]], threshold: float, budget_s: float) -> List[str]:
    """The ratio line(s): reference/ours time-to-threshold when both reached it, else the budget figures."""
    ours, ref = rows["ours"], rows["reference"]
    lines = []
    if ours["reached"] and ref["reached"]:
        lines.append(f"ratio reference/ours of wall-clock seconds to return >= {threshold:g}: "
                     f"{ref['seconds_to_threshold'] / ours['seconds_to_threshold']:.2f} "
                     f"(CPU seconds: {ref['cpu_seconds_to_threshold'] / ours['cpu_seconds_to_threshold']:.2f}; "
                     f"frames: {ref['frames_to_threshold'] / ours['frames_to_threshold']:.2f})")
        lines.append(updates_ratio_line(ours, ref))
        return lines
    for row in (ours, ref):
        if not row["reached"]:
            lines.append(f"{row['variant']} did not reach return {threshold:g} within {budget_s / 60:g} min of "
                         f"training (last evaluation {row['final_return']:.1f} at {row['final_train_s']:.0f} s, "
                         f"{row['final_frames']} frames): no time-to-threshold ratio")
    if ours["reached"] and not ref["reached"]:
        lines.append(f"lower bound: ratio reference/ours of seconds to threshold >= "
                     f"{ref['final_train_s'] / ours['seconds_to_threshold']:.2f}")
    lines.append(updates_ratio_line(ours, ref))
    if ours["frames_at_budget"] and ref["frames_at_budget"]:
        lines.append(f"ratio ours/reference of frames at the {budget_s / 60:g} min budget: "
                     f"{ours['frames_at_budget'] / ref['frames_at_budget']:.2f}")
    else:
        lines.append("frames at the budget: not available for both variants (a variant stopped before it)")
    return lines


def updates_ratio_line(ours: Dict[str, Any], ref: Dict[str, Any]) -> str:
    """Ratio ours/reference of the learning-phase updates per wall-clock second and per CPU second."""
    def ratio(key: str) -> str:
        return f"{ours[key] / ref[key]:.2f}" if ours[key] and ref[key] else "n/a"

    return (f"ratio ours/reference of updates/s (learning phase): {ratio('updates_per_s')} "
            f"(per CPU second: {ratio('updates_per_cpu_s')})")


def table_lines(rows: Dict[str, Dict[str, Any]]) -> List[str]:
    def num(value: Optional[float], fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = ["| variant | reached | seconds to threshold | CPU s to threshold | frames to threshold | updates/s "
             "| updates/CPU s | final return | evaluations |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows.values():
        lines.append(f"| {r['variant']} | {'yes' if r['reached'] else 'no'} | {num(r['seconds_to_threshold'], '.1f')} "
                     f"| {num(r['cpu_seconds_to_threshold'], '.1f')} | {num(r['frames_to_threshold'], 'd')} "
                     f"| {num(r['updates_per_s'], '.1f')} | {num(r['updates_per_cpu_s'], '.1f')} "
                     f"| {num(r['final_return'], '.1f')} | {r['evaluations']} |")
    return lines


def write_png(path: Path, evals: Dict[str, List[Dict[str, Any]]], threshold: float, title: str) -> None:
    """Evaluation return against training wall-clock (evaluations excluded), both variants."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for (variant, records), color in zip(evals.items(), ("tab:blue", "tab:orange")):
        before = [r for r in records if not r["after_done"]]
        after = [r for r in records if r["after_done"]]
        ax.plot([r["train_s"] for r in before], [r["return"] for r in before], "o-", ms=3, color=color,
                label=variant)
        if after:  # kept training as load for the other variant
            joined = before[-1:] + after
            ax.plot([r["train_s"] for r in joined], [r["return"] for r in joined], ":", color=color, alpha=0.5)
    ax.axhline(threshold, color="gray", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("training wall-clock [s] (evaluations excluded)")
    ax.set_ylabel("deterministic evaluation return")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


# ---------------------------------------------------------------------------------------------- parent side
SOURCES = ("meow_isaac/agents/meow.py", "meow_isaac/agents/base.py", "meow_isaac/flows.py", "meow_isaac/trainer.py",
           "meow_isaac/replay.py", "meow_isaac/runner.py", "benchmarks/bench_update.py", "benchmarks/bench_train.py")


def source_digests() -> Dict[str, str]:
    """Short sha256 of the files that decide what is timed, and the git revision (``-dirty`` if edited)."""
    import hashlib

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    rev = git("rev-parse", "HEAD") or "unknown"
    out = {"git_revision": rev + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")}
    for rel in SOURCES:
        path = REPO / rel
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"
    return out


def _reader(variant: str, stream: Any, out: "queue.Queue") -> None:
    for line in stream:
        out.put((variant, line.rstrip("\n")))
    out.put((variant, None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="Hopper", help="task name (cfg/task/<task>.yaml; default Hopper)")
    parser.add_argument("--threshold", type=float, default=300.0, help="evaluation return to reach (default 300)")
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="training budget per variant in minutes, evaluations excluded (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of both variants (default 1)")
    parser.add_argument("--eval-interval", type=int, default=1000,
                        help="vectorised steps between evaluations (default 1000)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="extra hydra override for both variants (repeatable), e.g. train.batch_size=512")
    parser.add_argument("--json", default=str(RESULTS / "bench_train.json"), help="results JSON ('' = none)")
    parser.add_argument("--png", default=str(RESULTS / "bench_train.png"), help="return vs time PNG ('' = none)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the workers' own output")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--keep-load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    budget_s = args.max_minutes * 60.0
    sources = source_digests()  # the working tree may change while the run goes: what the workers imported
    command = "python benchmarks/bench_train.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    started = datetime.datetime.now()
    print(f"{command}\n{started:%Y-%m-%d %H:%M}: {args.task}, threshold {args.threshold:g}, budget "
          f"{args.max_minutes:g} min per variant, seed {args.seed}, eval every {args.eval_interval} vectorised "
          f"steps; variants {', '.join(VARIANTS)} run concurrently (1 torch thread, 1 physics thread each); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    worker_args = [f"--task={args.task}", f"--threshold={args.threshold!r}", f"--max-minutes={args.max_minutes!r}",
                   f"--seed={args.seed}", f"--eval-interval={args.eval_interval}", "--keep-load"]
    worker_args += [f"--override={item}" for item in args.override]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled")
    lines: "queue.Queue" = queue.Queue()
    records: Dict[str, List[Dict[str, Any]]] = {v: [] for v in VARIANTS}
    done: Dict[str, Optional[Dict[str, Any]]] = {v: None for v in VARIANTS}
    starts: Dict[str, Dict[str, Any]] = {}
    tails: Dict[str, List[str]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as scratch:
        procs = {}
        for variant in VARIANTS:
            procs[variant] = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--worker", variant] + worker_args,
                cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            threading.Thread(target=_reader, args=(variant, procs[variant].stdout, lines), daemon=True).start()
        open_streams, stopped = set(VARIANTS), False
        while open_streams:
            variant, line = lines.get()
            if line is None:
                open_streams.discard(variant)
                continue
            if not line.startswith(MARK):
                tails[variant] = (tails[variant] + [line])[-30:]
                if not args.quiet:
                    print(f"[{variant}] {line}", flush=True)
                continue
            record = json.loads(line[len(MARK):])
            if record["event"] == "start":
                starts[variant] = record
            elif record["event"] == "eval":
                records[variant].append(record)
            elif record["event"] == "done":
                done[variant] = record
                print(f"[{variant}] done: {'reached' if record['reached'] else 'budget spent, not reached'} "
                      f"(return {record['return']:.1f} at {record['train_s']:.0f} s training, "
                      f"{record['frames']} frames)", flush=True)
            if not stopped and all(d and d["reached"] for d in done.values()):
                stopped = True
                for proc in procs.values():  # the one still training only served as load for the other:
                    if proc.poll() is None:  # its figures are all here already
                        proc.kill()
            # (a variant that missed the threshold ran to the budget: the other one trains on to the budget too,
            # then stops by itself, so that both have their frames at the budget)
        codes = {v: p.wait() for v, p in procs.items()}
    for variant in VARIANTS:
        if done[variant] is None:
            print(f"error: the {variant} worker exited (code {codes[variant]}) before it was done; its last "
                  "output:\n" + "\n".join(tails[variant]), file=sys.stderr)
            sys.exit(1)
    cfgs = {v: starts[v]["train_cfg"] for v in VARIANTS}
    if cfgs["ours"] != cfgs["reference"]:
        print(f"error: the variants ran with different train configs: {cfgs}", file=sys.stderr)
        sys.exit(1)

    rows = {v: summarize(v, records[v], done[v], budget_s) for v in VARIANTS}
    finished = datetime.datetime.now()
    print(f"\n{args.task}, threshold {args.threshold:g}, seed {args.seed}; seconds = training wall-clock, "
          f"evaluations excluded; updates/s over the learning phase (each update with its env step); "
          f"{(finished - started).total_seconds() / 60:.1f} min in all; load average {os.getloadavg()[0]:.2f}")
    out = table_lines(rows) + [""] + comparison_lines(rows, args.threshold, budget_s)
    print("\n".join(out), flush=True)

    result = {"meta": {"command": command, "date": started.isoformat(timespec="seconds"),
                       "wall_minutes": (finished - started).total_seconds() / 60, "task": args.task,
                       "threshold": args.threshold, "max_minutes": args.max_minutes, "seed": args.seed,
                       "eval_interval": args.eval_interval, "overrides": args.override,
                       "num_envs": starts["ours"]["num_envs"], "train_cfg": cfgs["ours"],
                       "torch_threads": starts["ours"]["torch_threads"], "sim_threads": 1,
                       "mode": "concurrent processes; a done variant keeps training until both are done",
                       "times": "training wall-clock and process CPU seconds, evaluations excluded",
                       "python": platform.python_version(), "cpus": os.cpu_count(), "sources": sources,
                       "loadavg_end": os.getloadavg()},
              "summary": rows, "comparison": comparison_lines(rows, args.threshold, budget_s),
              "evaluations": records}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    if args.png:
        write_png(Path(args.png), records, args.threshold,
                  f"{args.task} seed {args.seed}: MEow ours vs reference formulation ({started:%Y-%m-%d})")
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
