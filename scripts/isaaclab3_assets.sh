#!/usr/bin/env bash
# Write the local Isaac Lab 3 asset tree (ISAACSIM_ASSET_ROOT) from meow-isaac's MJCF models:
#
#   bash scripts/isaaclab3_assets.sh OUT_DIR [PYTHON]
#
# 1. Keeps a Python 3.12 venv with mujoco-usd-converter outside the clone (MEOW_USDCONV_VENV, default
#    ~/.cache/meow-isaac/usdconv): built when absent or when its requirement changed, reused otherwise. It has
#    its own venv because the converter pins mujoco>=3.16,<3.17 and Isaac Lab 3.0 pins mujoco==3.12.
# 2. Runs `python -m meow_isaac.envs.isaaclab_assets OUT_DIR` with PYTHON (argument 2, else $PYTHON, else the
#    Isaac Lab 3 venv's python,
#    MEOW_ISAACLAB3_VENV or ~/.cache/meow-isaac/isaaclab3, else `python`); that Python needs torch (it writes the
#    ANYmal actuator-net stand-in) and should be the one that loads the tree. The USD step runs in the converter
#    venv (see the module docstring of meow_isaac/envs/isaaclab_assets.py).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: bash scripts/isaaclab3_assets.sh OUT_DIR [PYTHON]" >&2
    exit 2
fi
OUT_DIR=$1
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MEOW_USDCONV_VENV:-$HOME/.cache/meow-isaac/usdconv}
REQ="mujoco-usd-converter>=0.8,<0.9"

find_python312() {
    if python3.12 --version >/dev/null 2>&1; then command -v python3.12; return; fi
    if command -v pyenv >/dev/null 2>&1; then
        local p; p=$(pyenv prefix 3.12 2>/dev/null || pyenv prefix 3.12.1 2>/dev/null || true)
        if [[ -n $p && -x $p/bin/python3.12 ]]; then echo "$p/bin/python3.12"; return; fi
    fi
    local g
    for g in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
        if [[ -x $g ]] && "$g" --version >/dev/null 2>&1; then echo "$g"; return; fi
    done
    return 1
}

if [[ ! -x $VENV/bin/python || "$(cat "$VENV/.meow-requirement" 2>/dev/null)" != "$REQ" ]]; then
    PY312=$(find_python312) || { echo "isaaclab3_assets.sh: no python3.12 found (needed for $REQ)" >&2; exit 1; }
    echo "isaaclab3_assets.sh: building the converter venv $VENV with $PY312"
    rm -rf "$VENV"
    "$PY312" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q "$REQ"
    echo "$REQ" > "$VENV/.meow-requirement"
fi

if [[ $# -eq 2 ]]; then
    PY=$2
elif [[ -n ${PYTHON:-} ]]; then
    PY=$PYTHON
else
    IL3=${MEOW_ISAACLAB3_VENV:-$HOME/.cache/meow-isaac/isaaclab3}
    if [[ -x $IL3/bin/python ]]; then PY=$IL3/bin/python; else PY=python; fi
fi
PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m meow_isaac.envs.isaaclab_assets "$OUT_DIR" \
    --converter-python "$VENV/bin/python"
