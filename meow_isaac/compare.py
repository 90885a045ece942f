"""Learning curves of several runs (several seeds per method) from their TensorBoard logs.

    python -m meow_isaac.compare runs/hop_meow_seed1 runs/hop_meow_seed2 runs/hop_sac_seed1 runs/hop_sac_seed2 \\
        [--out docs/compare.png] [--label hop_meow=MEow --label hop_sac=SAC] [--group REGEX] [--tag eval/return]

Each argument is a run folder (``runs/<experiment>``, its ``summaries/`` is read) or a folder of event files.
Runs are grouped into *methods* by name: the folder name without a trailing ``_seed<N>`` / ``_<N>`` (hydra
multirun job numbers give ``_<N>`` too), so ``hop_sac_seed1`` and ``hop_sac_seed2`` are the seeds of ``hop_sac``;
``--group REGEX`` instead names the method by the regex's first group (or whole match) in the folder name, e.g.
``--group '(meow|sac)'``. ``--label METHOD=TEXT`` renames a method in the legend and table.

Writes one PNG with two panels, ``--tag`` (default ``eval/return``) against environment frames and against
wall-clock time (event ``wall_time`` minus the run's first event, so a resumed run includes its pause): per method
the mean over seeds (curves interpolated onto a common grid, over the range every seed covers) and a min-max band.
Prints a markdown table (also written next to the PNG, ``.md``): per method the number of seeds, the frames and
wall-clock of the last point (mean over seeds), the final and the best value, each as mean ± std over seeds
(population std; 0 for one seed). For an equal wall-clock comparison, give every run the same time limit
(``timeout 600 python runner.py ...``; README "Comparing with SAC").
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

SEED_SUFFIX = re.compile(r"(_seed[_-]?\d*|_\d+)$")


@dataclass
class Curve:
    """One run's scalar series: ``frames``, ``wall`` (s since the run's first event) and ``values``, each ``(T,)``."""

    name: str
    frames: np.ndarray
    wall: np.ndarray
    values: np.ndarray


def load_curve(path: Path, tag: str = "eval/return") -> Curve:
    """Read ``tag`` from the event files of run folder ``path`` (or of ``path/summaries``).

    Raises:
        ValueError: no event file, or no ``tag`` in it.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = Path(path)
    folder = path / "summaries" if (path / "summaries").is_dir() else path
    if not list(folder.glob("events.out.tfevents.*")):
        raise ValueError(f"{path}: no TensorBoard event file (expected {folder}/events.out.tfevents.*)")
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        raise ValueError(f"{path}: no scalar {tag!r} (has {', '.join(sorted(acc.Tags()['scalars']))})")
    events = acc.Scalars(tag)
    start = acc.FirstEventTimestamp()
    name = path.name if path.name != "summaries" else path.parent.name
    return Curve(name, np.array([e.step for e in events], dtype=np.float64),
                 np.array([e.wall_time - start for e in events]), np.array([e.value for e in events]))


def method_name(run_name: str, pattern: Optional[str] = None) -> str:
    """The method a run belongs to: ``pattern``'s first group / match, else the name without seed suffixes."""
    if pattern:
        match = re.search(pattern, run_name)
        if match:
            return match.group(1) if match.groups() else match.group(0)
        return run_name
    previous = None
    while previous != run_name:
        previous, run_name = run_name, SEED_SUFFIX.sub("", run_name)
    return run_name


def group_curves(curves: Sequence[Curve], pattern: Optional[str] = None) -> Dict[str, List[Curve]]:
    """Methods in order of first appearance -> their runs."""
    groups: Dict[str, List[Curve]] = {}
    for curve in curves:
        groups.setdefault(method_name(curve.name, pattern), []).append(curve)
    return groups


def mean_band(curves: Sequence[Curve], axis: str, points: int = 200) -> Dict[str, np.ndarray]:
    """Mean/min/max over runs of the values interpolated on a common ``axis`` (``frames`` or ``wall``) grid,
    over the range all runs cover; one run: its own points."""
    if len(curves) == 1:
        c = curves[0]
        return {"x": getattr(c, axis), "mean": c.values, "min": c.values, "max": c.values}
    lo = max(float(getattr(c, axis)[0]) for c in curves)
    hi = min(float(getattr(c, axis)[-1]) for c in curves)
    x = np.linspace(lo, hi, points) if hi > lo else np.array([hi])
    ys = np.stack([np.interp(x, getattr(c, axis), c.values) for c in curves])
    return {"x": x, "mean": ys.mean(0), "min": ys.min(0), "max": ys.max(0)}


def _pm(values: Sequence[float]) -> str:
    return f"{np.mean(values):.1f} ± {np.std(values):.1f}"


def summary_table(groups: Dict[str, List[Curve]], labels: Optional[Dict[str, str]] = None,
                  tag: str = "eval/return") -> str:
    """Markdown table per method: seeds, frames and wall-clock of the last point, final and best value
    (mean ± std over seeds)."""
    labels = labels or {}
    rows = [f"| method | seeds | frames | wall-clock (s) | final {tag} | best {tag} |", "|---|---|---|---|---|---|"]
    for method, runs in groups.items():
        rows.append(f"| {labels.get(method, method)} | {len(runs)} | {int(np.mean([c.frames[-1] for c in runs]))} | "
                    f"{np.mean([c.wall[-1] for c in runs]):.0f} | {_pm([c.values[-1] for c in runs])} | "
                    f"{_pm([c.values.max() for c in runs])} |")
    return "\n".join(rows) + "\n"


def plot(groups: Dict[str, List[Curve]], out: Path, labels: Optional[Dict[str, str]] = None,
         tag: str = "eval/return") -> Path:
    """Write the two-panel PNG (``tag`` vs frames, vs wall-clock) to ``out``; returns it.

    Raises:
        ImportError: matplotlib is missing (``pip install 'meow-isaac[test]'`` or ``pip install matplotlib``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("the comparison plot needs matplotlib: pip install matplotlib") from err
    labels = labels or {}
    longest = max(float(c.wall[-1]) for runs in groups.values() for c in runs)
    scale, unit = (60.0, "min") if longest > 600 else (1.0, "s")
    fig = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2)
    for method, runs in groups.items():
        label = f"{labels.get(method, method)} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        for ax, axis, div in ((axes[0], "frames", 1.0), (axes[1], "wall", scale)):
            band = mean_band(runs, axis)
            (line,) = ax.plot(band["x"] / div, band["mean"], label=label, marker="." if len(band["x"]) < 30 else None)
            if len(runs) > 1:
                ax.fill_between(band["x"] / div, band["min"], band["max"], color=line.get_color(), alpha=0.2)
    axes[0].set_xlabel("environment frames")
    axes[1].set_xlabel(f"wall-clock ({unit})")
    for ax in axes:
        ax.set_ylabel(tag)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize="small")
    fig.suptitle(f"{tag}: mean over seeds, band = min-max")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    """Command line (see the module docstring). Exit 0, or 2 with one error line."""
    parser = argparse.ArgumentParser(prog="python -m meow_isaac.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<experiment>)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare.png"), help="PNG path (table: same .md)")
    parser.add_argument("--label", action="append", default=[], metavar="METHOD=TEXT", help="legend/table name")
    parser.add_argument("--group", default=None, metavar="REGEX", help="method = first group of REGEX in the name")
    parser.add_argument("--tag", default="eval/return", help="scalar to compare (default eval/return)")
    args = parser.parse_args(argv)
    try:
        labels = dict(item.split("=", 1) for item in args.label)
    except ValueError:
        print(f"error: --label expects METHOD=TEXT, got {args.label}", file=sys.stderr)
        return 2
    try:
        groups = group_curves([load_curve(run, args.tag) for run in args.runs], args.group)
    except (ValueError, re.error) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = summary_table(groups, labels, args.tag)
    path = plot(groups, args.out, labels, args.tag)
    path.with_suffix(".md").write_text(table)
    print(table + f"\nplot: {path}\ntable: {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
