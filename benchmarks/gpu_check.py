"""The Python half of ``benchmarks/gpu_check.sh`` (issue 20): install, machine info, report.

Subcommands (each called by the shell script; stdlib only at import, torch and matplotlib imported where needed):

* ``install --wheels DIR --site DIR --work DIR``: which of the modules the check needs are missing; the warp-lang
  wheel reassembled from its parts (``DIR/warp*/warp.part-*``, checked against ``DIR/base/warp.sha256``); the
  wheels of ``DIR/base`` (and warp's) installed with ``pip install --no-index --no-deps --target SITE``; the
  imports checked again with ``SITE`` first on the path. Writes ``WORK/install.json``.
* ``info --work DIR --mode gpu|cpu``: Python, torch, CUDA, the GPU (``torch.cuda.get_device_name``,
  ``nvidia-smi``), and whether the mjwarp stages can run (``warp`` and ``mujoco_warp`` import, ``sim=mjwarp``
  is in ``meow_isaac.config.SIMS``, ``bench_env.py`` has ``--backends``). Writes ``WORK/info.json``.
* ``report --work DIR --out DIR``: ``OUT/gpu_check.json`` (every stage: status, seconds, its figures),
  ``OUT/gpu_check.log`` (every stage's log), the PNGs, and a one-screen summary on stdout.

The files that come back from the device machine are at most 8 (``/work/.library/device/README.md``), so
everything lands in one JSON, one log and at most 5 PNGs.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
# module -> wheel name of what the check imports beyond the device image (KINDS.md lists what the image holds)
NEEDED = {"hydra": "hydra-core", "omegaconf": "omegaconf", "antlr4": "antlr4-python3-runtime", "mujoco": "mujoco",
          "gymnasium": "gymnasium"}
NEEDED_MJWARP = {"warp": "warp-lang", "mujoco_warp": "mujoco-warp"}
TARGET_UPDATE_RATIO = 5.0        # compiled update / reference formulation, batch 256 (issue 20)
TARGET_TRANSITIONS = 1_000_000   # transitions/s ingested at 4096 envs, one update per vectorised step
STAGE_LOG_TAIL = 200_000         # characters of each stage's log kept in gpu_check.log


def _missing(modules: Dict[str, str], env: Optional[Dict[str, str]] = None, find_only: bool = False) -> List[str]:
    """The modules of ``modules`` that do not import in a fresh interpreter with ``env`` (``find_only``: that are not
    found, without importing them: ``mujoco_warp`` takes 10 s to import on a loaded 2-core CPU)."""
    probe = "importlib.util.find_spec(m) or bad.append(m)" if find_only else "importlib.import_module(m)"
    code = ("import importlib, importlib.util, sys\nbad = []\nfor m in sys.argv[1:]:\n    try:\n        " + probe +
            "\n    except Exception as e:\n        bad.append(m)\nprint(' '.join(sorted(set(bad))))")
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, env=env,
                         timeout=120)
    return out.stdout.split()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_warp(wheels: Path, dest: Path) -> Dict[str, Any]:
    """Concatenate ``wheels/warp*/warp.part-*`` (sorted by part name) into ``dest/<wheel name>`` and check it
    against ``wheels/base/warp.sha256`` (``<sha256>  <wheel file name>``). Returns ``{"ok", "wheel", "why"}``."""
    sums = wheels / "base" / "warp.sha256"
    if not sums.is_file():
        return {"ok": False, "wheel": None, "why": f"no {sums} (benchmarks/gpu_wheels.sh was run without warp)"}
    want, name = sums.read_text().split()[:2]
    parts = sorted(glob.glob(str(wheels / "warp*" / "warp.part-*")), key=lambda p: Path(p).name)
    expected = int(sums.read_text().split()[2]) if len(sums.read_text().split()) > 2 else None
    if not parts:
        return {"ok": False, "wheel": None, "why": "no warp.part-* here (the calls that carry them did not reach "
                                                   "this machine)"}
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / name
    with open(wheel, "wb") as out:
        for part in parts:
            with open(part, "rb") as handle:
                shutil.copyfileobj(handle, out, 1 << 22)
    found = [Path(p).name for p in parts]
    if _sha256(wheel) != want:
        wheel.unlink()
        return {"ok": False, "wheel": None, "why": f"warp parts {found} (of {expected or '?'}) do not add up to "
                                                   f"{name} (sha256 differs): a part is missing or stale"}
    return {"ok": True, "wheel": str(wheel), "why": f"reassembled from {found}"}


def cmd_install(args: argparse.Namespace) -> int:
    work, wheels, site = Path(args.work), Path(args.wheels), Path(args.site)
    needed = dict(NEEDED, **NEEDED_MJWARP)
    before = _missing(needed, find_only=args.find_only)
    result: Dict[str, Any] = {"missing_before": before, "wheels_dir": str(wheels), "installed": [], "site": None}
    base = sorted(glob.glob(str(wheels / "base" / "*.whl")))
    warp = assemble_warp(wheels, work / "warp_wheel") if "warp" in before else {"ok": False, "wheel": None,
                                                                                 "why": "warp imports already"}
    result["warp"] = warp
    todo = base + ([warp["wheel"]] if warp["ok"] else [])
    if not before:
        print("install: every module the check needs imports already; nothing installed")
    elif not todo:
        print(f"install: missing {before} and no wheels in {wheels}/base (run benchmarks/gpu_wheels.sh here and "
              "carry benchmarks/wheels/base)")
    else:
        shutil.rmtree(site, ignore_errors=True)
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--disable-pip-version-check", "--target", str(site), *todo]
        print("install:", " ".join(Path(c).name if c.endswith(".whl") else c for c in cmd), flush=True)
        proc = subprocess.run(cmd, text=True, capture_output=True, timeout=600)
        sys.stdout.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        if proc.returncode != 0:
            result["error"] = f"pip exited {proc.returncode}"
        else:
            result["installed"], result["site"] = [Path(w).name for w in todo], str(site)
    env = dict(os.environ)
    if result["site"]:
        env["PYTHONPATH"] = os.pathsep.join([result["site"], env.get("PYTHONPATH", "")])
    result["missing_after"] = _missing(needed, env, find_only=args.find_only)
    print(f"install: missing before {before or 'nothing'}; after {result['missing_after'] or 'nothing'}; warp: "
          f"{warp['why']}")
    (work / "install.json").write_text(json.dumps(result, indent=2))
    core_missing = [m for m in result["missing_after"] if m in NEEDED]
    return 1 if core_missing or result.get("error") else 0


def _run(cmd: List[str], timeout: float = 30) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    info: Dict[str, Any] = {"mode": args.mode, "python": sys.version.split()[0], "executable": sys.executable,
                            "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
                            "cuda_available": torch.cuda.is_available(), "cpus": os.cpu_count(),
                            "mujoco_gl": os.environ.get("MUJOCO_GL"),
                            "machine": platform.machine(), "git": _run(["git", "-C", str(REPO), "rev-parse",
                                                                        "--short", "HEAD"]),
                            "git_dirty": bool(_run(["git", "-C", str(REPO), "status", "--porcelain",
                                                    "--untracked-files=no"]))}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["gpu_capability"] = f"{props.major}.{props.minor}"
        info["gpu_multiprocessors"] = props.multi_processor_count
    info["nvidia_smi"] = _run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                               "--format=csv,noheader"]) or None
    reasons = []
    versions = {}
    for module, dist in NEEDED_MJWARP.items():
        if args.mode == "cpu":  # not used in --cpu (the mujoco backend stands in): found, not imported
            if importlib.util.find_spec(module) is None:
                reasons.append(f"{module} is not installed")
            else:
                versions[module] = importlib.metadata.version(dist)
            continue
        try:
            versions[module] = getattr(importlib.import_module(module), "__version__", "?")
        except Exception as err:  # noqa: BLE001 - any import failure means the stage cannot run
            reasons.append(f"import {module} failed ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
    try:
        from meow_isaac.config import SIMS

        if "mjwarp" not in SIMS:
            reasons.append(f"the runner has no sim=mjwarp (meow_isaac.config.SIMS = {', '.join(SIMS)})")
    except Exception as err:  # noqa: BLE001
        reasons.append(f"meow_isaac.config does not import ({type(err).__name__}: {err})")
    info["bench_env_backends"] = '"--backends"' in (REPO / "benchmarks" / "bench_env.py").read_text()
    if not info["bench_env_backends"]:
        reasons.append("benchmarks/bench_env.py has no --backends option (the mjwarp backend is not merged)")
    info["mjwarp"] = {"available": not reasons, "versions": versions, "why_not": "; ".join(reasons) or None}
    (Path(args.work) / "info.json").write_text(json.dumps(info, indent=2))
    print(f"info: {info.get('gpu', 'no GPU')}; python {info['python']}, torch {info['torch']} (CUDA "
          f"{info['cuda_runtime']}); mjwarp stages: {'yes' if not reasons else 'no: ' + '; '.join(reasons)}")
    if not reasons:
        (Path(args.work) / "mjwarp_ok").write_text("1")
    return 0


# ---------------------------------------------------------------------------------------------------- report
def _load(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stages(work: Path) -> List[Dict[str, Any]]:
    rows = []
    path = work / "stages.tsv"
    for line in path.read_text().splitlines() if path.is_file() else []:
        name, status, rc, seconds, box, note = (line.split("\t") + [""] * 6)[:6]
        rows.append({"name": name, "status": status, "rc": int(rc), "seconds": float(seconds), "limit_s": int(box),
                     "note": note})
    return rows


def _pytest(work: Path) -> Optional[Dict[str, Any]]:
    import xml.etree.ElementTree as ET

    path = work / "pytest.xml"
    if not path.is_file():
        return None
    tests, counts = [], {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "failed" if tag == "failure" else tag
                message = (node.get("message") or node.text or "").strip().splitlines()
                message = message[0][:300] if message else ""
                break
        counts[outcome] += 1
        tests.append({"test": f"{case.get('classname', '')}::{case.get('name')}", "outcome": outcome,
                      "seconds": round(float(case.get("time") or 0), 2), "message": message})
    return {"counts": counts, "tests": tests}


def _update(work: Path) -> List[Dict[str, Any]]:
    rows = []
    for path in sorted(work.glob("update_*.json")):
        data = _load(path) or {}
        for row in data.get("results", []):
            rows.append(dict(row, run=path.stem, device_name=data.get("meta", {}).get("device_name")))
    return rows


def _train(work: Path) -> Optional[Dict[str, Any]]:
    """Eval returns over time from the training run's TensorBoard events (``WORK/train/runs/*/summaries``)."""
    folders = sorted(glob.glob(str(work / "train" / "runs" / "*" / "summaries")))
    start = _load(work / "train_start.json") or {}
    if not folders:
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(folders[-1], size_guidance={"scalars": 0})
    acc.Reload()
    t0 = float(start.get("time", 0.0))
    tags = acc.Tags().get("scalars", [])
    series = {}
    for tag in ("eval/return", "episode/return", "performance/total_fps", "performance/update_per_s"):
        if tag in tags:
            series[tag] = [{"seconds": round(e.wall_time - t0, 1) if t0 else None, "frames": e.step,
                            "value": e.value} for e in acc.Scalars(tag)]
    evals = series.get("eval/return", [])
    out = {"command": start.get("command"), "run_dir": str(Path(folders[-1]).parent), "series": series,
           "evaluations": len(evals)}
    if evals:
        out.update(first_eval=evals[0], last_eval=evals[-1], best_eval=max(evals, key=lambda e: e["value"]))
    if series.get("performance/total_fps"):
        out["last_total_fps"] = series["performance/total_fps"][-1]["value"]
    log = work / "train.log"
    done = re.search(r"done: iteration (\d+), frames (\d+), updates (\d+)", log.read_text(errors="replace")) \
        if log.is_file() else None
    if done:
        out.update(iterations=int(done.group(1)), frames=int(done.group(2)), updates=int(done.group(3)))
    return out


def _plot_train(train: Dict[str, Any], path: Path, title: str) -> bool:
    evals = train["series"].get("eval/return", [])
    episodes = train["series"].get("episode/return", [])
    if not evals and not episodes:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    if episodes:
        ax.plot([e["seconds"] for e in episodes], [e["value"] for e in episodes], ".", alpha=0.35,
                label="training episodes (mean per log interval)")
    if evals:
        ax.plot([e["seconds"] for e in evals], [e["value"] for e in evals], "o-", label="evaluation (deterministic)")
    ax.set_xlabel("seconds since the runner started (start-up and compiling included)")
    ax.set_ylabel("return")
    ax.set_title("\n".join(textwrap.wrap(title, 95)[:3]), fontsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _fmt(value: Optional[float], digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def cmd_report(args: argparse.Namespace) -> int:
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info, install = _load(work / "info.json") or {}, _load(work / "install.json")
    stages = _stages(work)
    report: Dict[str, Any] = {"mode": args.mode, "started": args.started, "budget_s": args.budget,
                              "total_s": round(time.time() - args.started, 1), "machine": info,
                              "install": install, "stages": stages, "pytest_cuda": _pytest(work),
                              "update": _update(work), "pipeline": _load(work / "pipeline" / "bench_pipeline.json"),
                              "env": {p.stem: _load(p) for p in sorted(work.glob("env_*.json"))}, "train": None,
                              "files": []}
    train = _train(work)
    if train is not None:
        report["train"] = train
        if _plot_train(train, out / "train_returns.png", f"training run: {train.get('command') or ''}"):
            report["files"].append("train_returns.png")
    for src, name in [(work / "pipeline" / "bench_pipeline.png", "bench_pipeline.png")] + \
            [(p, p.name) for p in sorted(work.glob("env_*.png"))]:
        if src.is_file():
            shutil.copy(src, out / name)
            report["files"].append(name)
    with open(out / "gpu_check.log", "w") as log:
        for stage in stages:
            path = work / f"{stage['name']}.log"
            text = path.read_text(errors="replace") if path.is_file() else ""
            log.write(f"===== {stage['name']}: {stage['status']} (rc {stage['rc']}, {stage['seconds']:.0f} s of "
                      f"{stage['limit_s']} s) {stage['note']}\n")
            log.write(text[-STAGE_LOG_TAIL:] + "\n")
    report["files"] = ["gpu_check.json", "gpu_check.log"] + report["files"]
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))
    print_summary(report, work)
    return 0


def print_summary(report: Dict[str, Any], work: Path) -> None:
    info = report["machine"]
    lines = ["", "=" * 100,
             f"gpu_check --{report['mode']}: {info.get('gpu') or 'no GPU'} | "
             f"{info.get('nvidia_smi') or 'nvidia-smi: -'}",
             f"python {info.get('python')} torch {info.get('torch')} CUDA {info.get('cuda_runtime')} | git "
             f"{info.get('git')}{' (dirty)' if info.get('git_dirty') else ''} | {report['total_s']:.0f} s of the "
             f"{report['budget_s']} s budget"]
    lines.append("stages: " + "  ".join(f"{s['name']} {s['status']} {s['seconds']:.0f}s" for s in report["stages"]))
    for s in report["stages"]:
        if s["status"] != "ok" and not s["note"].startswith(("mjwarp unavailable", "--cpu:")):
            log = work / f"{s['name']}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-2:] if log.is_file() else []
            lines.append(f"  {s['name']}: {s['status']} {s['note']} " + " | ".join(t[:140] for t in tail))
    mj = info.get("mjwarp") or {}
    state = "run" if mj.get("available") else "skipped: " + str(mj.get("why_not"))
    if report["mode"] == "cpu":
        state = f"--cpu: the mujoco backend stood in for mjwarp (on a GPU: {state})"
    lines.append(f"mjwarp stages: {state}"
                 + (f" (warp wheel: {report['install']['warp']['why']})" if report.get("install") else ""))
    pt = report.get("pytest_cuda")
    if pt:
        c = pt["counts"]
        lines.append(f"pytest -m cuda: {c['passed']} passed, {c['failed']} failed, {c['error']} errors, "
                     f"{c['skipped']} skipped")
        for t in pt["tests"]:
            if t["outcome"] in ("failed", "error"):
                lines.append(f"  FAILED {t['test'].split('.')[-1]}: {t['message'][:150]}")
    if report["update"]:
        lines.append("update (ms/update; ratio = reference / variant, same run):")
        for r in report["update"]:
            cells = [f"{k[:-3]} {r[k]:.3f} ({r[k[:-3] + '_ratio']:.1f}x)" for k in r
                     if k.endswith("_ms") and k != "reference_ms"]
            lines.append(f"  {r['size']:8s} B={r['batch']:<6d} reference {r['reference_ms']:.3f} | "
                         + " | ".join(cells))
        at256 = [r.get("compiled_ratio") for r in report["update"] if r["batch"] == 256 and "compiled_ratio" in r]
        if at256:
            verdict = "met" if min(at256) >= TARGET_UPDATE_RATIO else "NOT met"
            lines.append(f"  target compiled >= {TARGET_UPDATE_RATIO:g}x reference at batch 256: {verdict} "
                         f"({', '.join(f'{x:.2f}x' for x in at256)})")
    pipe = report.get("pipeline")
    if pipe:
        rows = pipe.get("rows", [])
        lines.append(f"pipeline (synthetic env, batch {pipe.get('batch')}, {pipe.get('utd')} update/step, compile "
                     f"{pipe.get('compile')}): " + "  ".join(f"{r['num_envs']}: {r['transitions_per_s']:,.0f} tr/s "
                                                           f"{r['updates_per_s']:,.0f} upd/s" for r in rows))
        at4096 = [r["transitions_per_s"] for r in rows if r["num_envs"] == 4096]
        if at4096:
            lines.append(f"  target >= {TARGET_TRANSITIONS:,} transitions/s at 4096 envs: "
                         f"{'met' if at4096[0] >= TARGET_TRANSITIONS else 'NOT met'} ({at4096[0]:,.0f})")
        prof = pipe.get("profile")
        if prof:
            dev = "n/a" if prof.get("device_ms") is None else f"{prof['device_ms']:.3f} ms"
            tops = ", ".join(f"{r['op']} {r['ms']:.3f}" for r in prof.get("top_host", [])[:4])
            lines.append(f"  profile at {prof['num_envs']} envs: per iteration wall {prof['wall_ms']:.3f} ms, host in "
                         f"torch ops {prof['host_op_ms']:.3f} ms, device busy {dev}; top host ops (ms): {tops}")
    for name, data in (report.get("env") or {}).items():
        # bench_env.py writes {"meta", "results"} (embedded backend alone) or a list of rows (--backends)
        rows = data if isinstance(data, list) else (data or {}).get("results") or (data or {}).get("rows") or []
        cells = []
        for r in rows if all(isinstance(r, dict) for r in rows) else []:
            rates = {k: v for k, v in r.items() if k.endswith(("_sps", "steps_per_s")) and isinstance(v, (int, float))}
            cells.append(f"{r.get('task')}/{r.get('backend', 'mujoco')}/{r.get('num_envs')}: "
                         + ",".join(f"{k.replace('_sps', '').replace('steps_per_s', 'steps/s')} {v:,.0f}"
                                    for k, v in rates.items()))
        lines.append(f"{name} (steps/s): " + ("; ".join(cells) if cells else "no results"))
    train = report.get("train")
    if train:
        ev = train.get("evaluations", 0)
        text = (f"first {train['first_eval']['value']:.1f} at {train['first_eval']['seconds']} s, last "
                f"{train['last_eval']['value']:.1f} at {train['last_eval']['seconds']} s, best "
                f"{train['best_eval']['value']:.1f}") if ev else "no evaluation logged"
        lines.append(f"train: {ev} evaluations: {text}; total fps {_fmt(train.get('last_total_fps'), 0)}; "
                     f"{train.get('iterations', '-')} iterations, {train.get('frames', '-')} frames, "
                     f"{train.get('updates', '-')} updates")
    lines.append(f"files: {', '.join(report['files'])}")
    lines.append("=" * 100)
    print("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("install")
    p.add_argument("--wheels", required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--find-only", action="store_true", help="check that modules are found, without importing them")
    p = sub.add_parser("info")
    p.add_argument("--work", required=True)
    p.add_argument("--mode", choices=("gpu", "cpu"), required=True)
    p = sub.add_parser("report")
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", choices=("gpu", "cpu"), required=True)
    p.add_argument("--started", type=float, required=True)
    p.add_argument("--budget", type=int, required=True)
    args = parser.parse_args()
    return {"install": cmd_install, "info": cmd_info, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
