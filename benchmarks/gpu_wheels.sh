#!/usr/bin/env bash
# Gather, here (where PyPI is reachable), the wheels that the GPU machine lacks, for benchmarks/gpu_check.sh there.
# The GPU machine (Python 3.12, torch 2.11 / CUDA 13, no network; /work/.library/device/KINDS.md lists its packages)
# lacks hydra-core, omegaconf, antlr4-python3-runtime, mujoco, gymnasium, warp-lang and mujoco-warp; the rest of what
# these need (numpy, pyyaml, packaging, cloudpickle, typing-extensions, absl-py, etils, fsspec, zipp) is there.
#
# Writes, all ignored by git (benchmarks/wheels/ in .gitignore):
#   benchmarks/wheels/base/     every wheel but warp-lang (cp312 manylinux / pure Python; antlr4-python3-runtime,
#                               an sdist only on PyPI, built into a wheel here) + SHA256SUMS + warp.sha256
#   benchmarks/wheels/warp1/ .. warpN/   warp-lang's wheel (~142 MiB) split into parts of --part-mib MiB, since one
#                               run-tool call carries at most 64 MiB with the working tree
# and prints the run-tool calls (carry lists) that bring them to the GPU machine: one call per warp part while the
# machine stays warm (30 s after each call), the last one with base/ and the check itself.
#
# Usage: bash benchmarks/gpu_wheels.sh [--no-warp] [--part-mib 57] [--check]
#   --no-warp   only base/ (the GPU physics stages are then skipped, and say so)
#   --check     also check that the set is complete: every Requires-Dist of every wheel (markers evaluated for
#               CPython 3.12 on x86-64 Linux) is a wheel here or a package of the GPU machine's image
# Environment: PYTHON (default python3): a Python with pip that reaches PyPI; the downloads are for 3.12 whatever
# its version. Downloads are cached in ~/.cache/meow-isaac/gpu-wheels.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PY="${PYTHON:-python3}"
WARP=1 PART_MIB=57 CHECK=0
while (($#)); do
    case "$1" in
        --no-warp) WARP=0 ;;
        --part-mib) PART_MIB="$2"; shift ;;
        --check) CHECK=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "gpu_wheels.sh: unknown argument '$1'; accepted: --no-warp, --part-mib N, --check" >&2; exit 2 ;;
    esac
    shift
done
[[ "$PART_MIB" =~ ^[0-9]+$ ]] && ((PART_MIB >= 8 && PART_MIB <= 60)) || {
    echo "gpu_wheels.sh: --part-mib $PART_MIB: accepted: a whole number from 8 to 60" >&2; exit 2; }

# Pinned: the versions this project is tested with on the CPU machine (python -m pip list there).
BASE_PINS=(hydra-core==1.3.8 omegaconf==2.3.1 mujoco==4.0.1 mujoco-core==4.0.1 mujoco-studio==4.0.1
           mujoco-studio-wasm==4.0.1 websockets==17.4 glfw==2.11.0 pyopengl==3.1.10 gymnasium==1.4.0
           farama-notifications==0.0.6 mujoco-warp==4.0.0)
SDIST_PINS=(antlr4-python3-runtime==4.9.3)   # no wheel on PyPI: built here (pure Python)
WARP_PIN=warp-lang==1.19.0
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done
CACHE="${HOME}/.cache/meow-isaac/gpu-wheels"
DEST="$REPO/benchmarks/wheels"
mkdir -p "$CACHE/base" "$CACHE/warp" "$CACHE/build"

download() {  # download DIR PIN...
    local dir=$1; shift
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --abi cp312 --abi abi3 --abi none "${PLATFORMS[@]}" --platform any -d "$dir" "$@"
}
echo "[gpu_wheels] downloading ${BASE_PINS[*]}"
download "$CACHE/base" "${BASE_PINS[@]}"
for pin in "${SDIST_PINS[@]}"; do
    name=${pin%%==*}
    if ! ls "$CACHE/build/${name//-/_}-${pin##*==}-"*.whl >/dev/null 2>&1; then
        echo "[gpu_wheels] building $pin (sdist only on PyPI)"
        "$PY" -m pip wheel -q --disable-pip-version-check --no-deps --no-binary "$name" -w "$CACHE/build" "$pin"
    fi
done
rm -rf "$DEST"
mkdir -p "$DEST/base"
for pin in "${BASE_PINS[@]}" "${SDIST_PINS[@]}"; do  # exactly one wheel per pin (two versions would stop pip)
    name=${pin%%==*} version=${pin##*==}
    mapfile -t found < <(ls "$CACHE/base/"*.whl "$CACHE/build/"*.whl 2>/dev/null |
                         grep -iE "/${name//-/[-_]}-${version//./\\.}-" || true)
    ((${#found[@]} == 1)) || { echo "gpu_wheels.sh: $pin: expected one wheel, found ${#found[@]}: ${found[*]:-none}" >&2; exit 1; }
    tag=$(basename "${found[0]}")
    [[ "$tag" == *-none-any.whl || "$tag" == *cp312* || "$tag" == *py3-none-manylinux* || "$tag" == *py2.py3-none-manylinux* ]] || {
        echo "gpu_wheels.sh: $tag does not run on CPython 3.12 x86-64 Linux" >&2; exit 1; }
    cp "${found[0]}" "$DEST/base/"
done

if ((WARP)); then
    echo "[gpu_wheels] downloading $WARP_PIN (~149 MB)"
    download "$CACHE/warp" "$WARP_PIN"
    wheel=$(ls "$CACHE/warp/warp_lang-${WARP_PIN##*==}-"*.whl | head -1)
    parts_dir="$CACHE/warp/parts"
    rm -rf "$parts_dir" && mkdir -p "$parts_dir"
    split -b "${PART_MIB}M" -a 2 "$wheel" "$parts_dir/warp.part-"
    n=0
    for part in "$parts_dir"/warp.part-*; do
        n=$((n + 1))
        mkdir -p "$DEST/warp$n"
        mv "$part" "$DEST/warp$n/"
    done
    printf '%s  %s  %s\n' "$(sha256sum "$wheel" | cut -d' ' -f1)" "$(basename "$wheel")" "$n" >"$DEST/base/warp.sha256"
fi
(cd "$DEST/base" && sha256sum ./*.whl >SHA256SUMS)

# ---- sizes, and the run-tool calls that carry them (each call: working tree + carried paths <= 64 MiB)
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null |
             awk '{s += $1} END {print s + 0}')
[[ -d shared ]] && tree_bytes=$((tree_bytes + $(du -sb shared | cut -f1)))
base_bytes=$(du -sb "$DEST/base" | cut -f1)
echo "[gpu_wheels] wheels in $DEST:"
(cd "$DEST" && find . -type f -printf '%s %p\n' | sort -k2 | awk '{printf "  %8.1f MiB  %s\n", $1 / 1048576, $2}')
echo "[gpu_wheels] working tree that travels with every call: $(mib "$tree_bytes") MiB"
calls=()
over=0
parts=()
((WARP)) && mapfile -t parts < <(cd "$REPO" && ls -d benchmarks/wheels/warp* | sort -V)
for ((i = 0; i + 1 < ${#parts[@]}; i++)); do
    bytes=$((tree_bytes + $(du -sb "${parts[$i]}" | cut -f1)))
    calls+=("carry [\"${parts[$i]}\"]  ($(mib "$bytes") MiB)  command: ls -l ${parts[$i]}")
    ((bytes > 64 * 1048576)) && over=1
done
last=(benchmarks/wheels/base)
((${#parts[@]})) && last+=("${parts[-1]}")
bytes=$tree_bytes
for p in "${last[@]}"; do bytes=$((bytes + $(du -sb "$p" | cut -f1))); done
((bytes > 64 * 1048576)) && over=1
carry=$(printf '"%s", ' "${last[@]}")
calls+=("carry [${carry%, }]  ($(mib "$bytes") MiB)  command: bash benchmarks/gpu_check.sh  (timeout_s 540)")
echo "[gpu_wheels] run-tool calls, in this order, each right after the previous one returns:"
for i in "${!calls[@]}"; do echo "  $((i + 1)). ${calls[$i]}"; done
if ((over)); then
    echo "gpu_wheels.sh: a call above carries more than 64 MiB: lower --part-mib or shrink the working tree" >&2
    exit 1
fi

if ((CHECK)); then
    echo "[gpu_wheels] checking that every requirement is a wheel here or a package of the GPU machine's image"
    "$PY" benchmarks/gpu_wheels_check.py "$DEST"
fi
