#!/usr/bin/env bash
# The one install script for CPU machines: .ci/run, docker/Dockerfile.cpu, docker/meow-isaac.def and the README.
#   scripts/install_cpu.sh [EXTRAS]     EXTRAS: comma-separated setup.py extras (default test,wandb,export; '' = none)
#                                       beside the `mujoco` extra (the embedded backend), which is always installed
# Environment: PYTHON (default python), TORCH_INDEX_URL (optional: where to get torch, e.g. the PyTorch CPU wheel
# index https://download.pytorch.org/whl/cpu, which keeps the ~GBs of CUDA wheels out of CPU images).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1-test,wandb,export}"
python="${PYTHON:-python}"
torch_index=()
if [ -n "${TORCH_INDEX_URL:-}" ]; then torch_index=(--index-url "$TORCH_INDEX_URL"); fi
"$python" -m pip install "${torch_index[@]}" torch==2.13.0
extras="mujoco${extras:+,$extras}"
"$python" -m pip install -e ".[$extras]"
