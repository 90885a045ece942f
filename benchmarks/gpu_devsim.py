"""A stand-in for the GPU machine's Python, here, to dry-run ``gpu_check.sh``'s install path without a GPU.

The GPU machine runs CPython 3.12 with torch 2.11 (CUDA 13) and the packages that
``benchmarks/gpu_wheels_check.py``'s :data:`IMAGE` lists, and nothing else. The Isaac Lab 3 venv that CI builds
(``~/.cache/meow-isaac/isaaclab3``, ``scripts/ci_isaaclab3.sh``) is CPython 3.12 with torch 2.11.0+cu130 too, but holds
much more (hydra, mujoco 3, warp 1.17, ...). This script makes a fresh 3.12 venv whose ``.pth`` file adds a folder of
symbolic links to only those of the Isaac Lab venv's distributions that the GPU image also has (read only: the Isaac
Lab venv is not changed), so that ``import hydra`` or ``import mujoco`` fails there until the carried wheels are
installed, as on the GPU machine. Then::

    PYTHON=/tmp/meow-devsim/venv/bin/python bash benchmarks/gpu_check.sh --cpu --out /tmp/gpucheck_devsim

runs the install stage for real (reassembling warp-lang from its parts) and every stage on that interpreter.

Run: ``python benchmarks/gpu_devsim.py [--source ~/.cache/meow-isaac/isaaclab3] [--dest /tmp/meow-devsim]``;
prints the interpreter's path. Needs a CPython 3.12 (``--python``; default: found as COMMON.md says).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_wheels_check import IMAGE  # noqa: E402

from packaging.utils import canonicalize_name  # noqa: E402

SKIP = {"pip", "setuptools", "wheel"}  # the new venv has its own


def find_python312() -> str:
    for candidate in ["python3.12"] + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))):
        try:
            out = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.startswith("Python 3.12"):
            return candidate
    raise SystemExit("no CPython 3.12 found (tried python3.12 and ~/.pyenv/versions/3.12*/bin/python3.12): pass "
                     "--python")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=os.path.expanduser("~/.cache/meow-isaac/isaaclab3"))
    parser.add_argument("--dest", default="/tmp/meow-devsim")
    parser.add_argument("--python", default=None, help="a CPython 3.12 (default: found)")
    args = parser.parse_args()
    source, dest = Path(args.source), Path(args.dest)
    sites = glob.glob(str(source / "lib" / "python3.12" / "site-packages"))
    if not sites:
        raise SystemExit(f"--source {source}: no lib/python3.12/site-packages (is the Isaac Lab 3 venv built?)")
    site = Path(sites[0])
    shutil.rmtree(dest, ignore_errors=True)
    view = dest / "image"
    view.mkdir(parents=True)
    linked, left_out = [], []
    for info in sorted(site.glob("*.dist-info")):
        meta = (info / "METADATA").read_text(errors="replace") if (info / "METADATA").is_file() else ""
        name = next((line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Name:")), "")
        key = canonicalize_name(name) if name else ""
        if not key or key in SKIP or key not in IMAGE:
            left_out.append(name or info.name)
            continue
        tops = {info.name}
        record = info / "RECORD"
        for line in record.read_text(errors="replace").splitlines() if record.is_file() else []:
            path = line.split(",", 1)[0]
            if path and not path.startswith(".."):
                tops.add(path.split("/", 1)[0])
        for top in tops:
            target, link = site / top, view / top
            if target.exists() and not link.exists():
                link.symlink_to(target)
        linked.append(name)
    python = args.python or find_python312()
    subprocess.run([python, "-m", "venv", str(dest / "venv")], check=True)
    venv_site = glob.glob(str(dest / "venv" / "lib" / "python3.12" / "site-packages"))[0]
    Path(venv_site, "meow_devsim_image.pth").write_text(str(view) + "\n")
    interpreter = dest / "venv" / "bin" / "python"
    check = subprocess.run([str(interpreter), "-c", "import torch, numpy, yaml; print(torch.__version__)"],
                           capture_output=True, text=True)
    print(f"linked {len(linked)} distributions of the GPU image from {site}; left out {len(left_out)} "
          f"(not in the image), e.g. {', '.join(sorted(left_out, key=str.lower)[:12])}")
    if check.returncode != 0:
        raise SystemExit(f"the stand-in does not import torch: {check.stderr[-500:]}")
    print(f"torch {check.stdout.strip()}; interpreter: {interpreter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
