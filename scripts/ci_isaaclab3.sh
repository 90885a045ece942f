#!/usr/bin/env bash
# CI stage on the REAL Isaac Lab 3.0 (kit-less, Newton MuJoCo-Warp physics, device=cpu); `.ci/run` runs it.
#   scripts/ci_isaaclab3.sh
# 1. A Python 3.12 venv with isaaclab==3.0.0, kept OUTSIDE the clone and reused between runs on this machine:
#    $MEOW_ISAACLAB3_VENV (default ~/.cache/meow-isaac/isaaclab3), built when absent (~8 GB with the CUDA torch
#    Isaac Lab pins). It is never deleted here.
# 2. This clone installed into it, editable and without dependencies (cheap, every run), plus the few core
#    dependencies Isaac Lab does not bring (imageio[ffmpeg], pytest), constrained to the venv's current versions
#    so that no Isaac Lab pin moves (`pip check` must pass).
# 3. The local asset tree: $ISAACSIM_ASSET_ROOT if set (used as it is), else ~/.cache/meow-isaac/assets-ci/<hash of
#    the asset sources>, written when absent by scripts/isaaclab3_assets.sh (its converter venv:
#    ~/.cache/meow-isaac/usdconv).
# 4. pytest -m isaaclab3 on the test files with that marker (tests/test_isaaclab3_real.py,
#    tests/test_isaaclab_assets.py) with that venv's python, 2 workers ($MEOW_CI_WORKERS).
#    Any failure fails CI; no test selected (exit 5) fails too.
# Without a working python3.12 the stage is not run (one line, exit 0).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

find_python312() {
    local candidate
    for candidate in "${MEOW_PYTHON312:-}" python3.12 "$(pyenv prefix 3.12 2>/dev/null)/bin/python3.12" \
                     "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
        [ -n "$candidate" ] || continue
        if "$candidate" -c 'import sys, venv; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

venv="${MEOW_ISAACLAB3_VENV:-$HOME/.cache/meow-isaac/isaaclab3}"
py="$venv/bin/python"
lab_ok() { "$py" -c 'import importlib.metadata as m; assert m.version("isaaclab") == "3.0.0"; import isaaclab_tasks' \
    >/dev/null 2>&1; }

if ! lab_ok; then
    if ! python312="$(find_python312)"; then
        echo "[ci_isaaclab3] no working python3.12: the Isaac Lab 3 stage is not run"
        exit 0
    fi
    echo "[ci_isaaclab3] building $venv (python3.12 -m venv; pip install isaaclab==3.0.0, about 8 GB)"
    mkdir -p "$(dirname "$venv")"
    [ -x "$py" ] || "$python312" -m venv "$venv"
    "$py" -m pip install --upgrade pip
    "$py" -m pip install isaaclab==3.0.0
    lab_ok || { echo "[ci_isaaclab3] isaaclab 3.0.0 does not import in $venv" >&2; exit 1; }
fi
echo "[ci_isaaclab3] venv $venv ready ($(($(date +%s) - start)) s)"

# The project, editable from this clone; its missing core deps without moving any installed package.
"$py" -m pip install -q --no-deps -e .
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
"$py" -m pip freeze --exclude-editable | grep -v -i '^meow-isaac' > "$constraints"
"$py" -m pip install -q -c "$constraints" "imageio[ffmpeg]>=2.30" "pytest>=7" "pytest-xdist>=3"
"$py" -m pip check

# Local assets (no download at run time): a given ISAACSIM_ASSET_ROOT is used as it is; else the CI's own tree.
if [ -n "${ISAACSIM_ASSET_ROOT:-}" ]; then
    assets="$ISAACSIM_ASSET_ROOT"
    [ -d "$assets" ] || { echo "[ci_isaaclab3] ISAACSIM_ASSET_ROOT=$assets is not a folder" >&2; exit 1; }
else
    key="$(cat meow_isaac/envs/isaaclab_assets.py tasks/assets/*.xml scripts/isaaclab3_assets.sh | sha256sum \
           | cut -c1-12)"
    assets="$HOME/.cache/meow-isaac/assets-ci/$key"
    if [ ! -f "$assets/.meow-ci-complete" ]; then
        echo "[ci_isaaclab3] writing the local assets to $assets"
        PYTHON="$py" bash scripts/isaaclab3_assets.sh "$assets"
        touch "$assets/.meow-ci-complete"
    fi
fi
echo "[ci_isaaclab3] assets $assets ($(($(date +%s) - start)) s)"

mapfile -t files < <(grep -l "pytest.mark.isaaclab3" tests/test_*.py)
ISAACSIM_ASSET_ROOT="$assets" PYTHONPATH="$PWD" OMP_NUM_THREADS=1 MPLBACKEND=Agg WANDB_MODE=offline \
    "$py" -m pytest -q -m isaaclab3 -p no:cacheprovider -n "${MEOW_CI_WORKERS:-2}" --dist loadgroup \
    -W ignore::DeprecationWarning -W ignore::FutureWarning --durations=0 "${files[@]}"
echo "[ci_isaaclab3] passed in $(($(date +%s) - start)) s"
