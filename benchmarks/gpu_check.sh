#!/usr/bin/env bash
# One prepared GPU check (issue 20): installs what the GPU machine lacks, then runs, each stage under its own
# `timeout` inside one overall budget, so that one failing stage cannot eat the GPU time:
#   install         the carried wheels (benchmarks/wheels, made here by benchmarks/gpu_wheels.sh), pip --target
#   info            GPU model (torch.cuda.get_device_name, nvidia-smi), versions, whether the mjwarp stages can run
#   pytest          pytest -m cuda (tests/test_cuda.py and any other test marked cuda)
#   update_256      benchmarks/bench_update.py --device cuda, batch 256: eager, compiled_nograph, compiled (CUDA
#                   graphs), eager_bf16, compiled_bf16 against the reference formulation, same run
#   update_large    the same at batch 4096 and 16384
#   pipeline        benchmarks/bench_pipeline.py --device cuda, 1 ... 16384 synthetic envs, with its plot, and a
#                   profile of 30 iterations at the largest size (host vs device ms per iteration, top ops)
#   env_mjwarp      (warp present) benchmarks/bench_env.py --backends mjwarp, Ant and Humanoid, 1024 ... 16384 worlds
#   train           (warp present) runner.py task=Humanoid sim=mjwarp num_envs=4096 for --train-seconds (180),
#                   eval returns over time read from its TensorBoard events
#   env_mujoco      (warp present, time left) the same bench_env sizes on the embedded CPU backend, for comparison
# and writes gpu_check.json, gpu_check.log and the PNGs into --out (default $OUT when set), then prints a
# one-screen summary (benchmarks/gpu_check.py report).
#
# --cpu: the same stages at tiny sizes on the CPU (a dry run of the script; the cuda tests run on the CPU with
# MEOW_CUDA_TESTS_ON_CPU=1, compiled variants are left out, the mjwarp stages use the embedded mujoco backend).
#
# Usage: bash benchmarks/gpu_check.sh [--cpu] [--out DIR] [--budget SECONDS] [--train-seconds S]
#                                     [--stages a,b,...] [--wheels DIR] [--keep-work]
# --budget: seconds for everything (default 470 on the GPU, 300 with --cpu); each stage's limit is cut to what is
# left, and while the training run is still to come its time is held back from the stages before it.
# Environment: PYTHON (default python3, else python).
set -uo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2

MODE=gpu OUT_DIR="${OUT:-}" BUDGET="" TRAIN_SECONDS="" STAGES="" WHEELS="$REPO/benchmarks/wheels" KEEP_WORK=0
while (($#)); do
    case "$1" in
        --cpu) MODE=cpu ;;
        --out) OUT_DIR="$2"; shift ;;
        --budget) BUDGET="$2"; shift ;;
        --train-seconds) TRAIN_SECONDS="$2"; shift ;;
        --stages) STAGES="$2"; shift ;;
        --wheels) WHEELS="$2"; shift ;;
        --keep-work) KEEP_WORK=1 ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1'; accepted: --cpu, --out DIR, --budget SECONDS," \
                "--train-seconds S, --stages a,b,..., --wheels DIR, --keep-work" >&2; exit 2 ;;
    esac
    shift
done
for value in ${BUDGET:+"$BUDGET"} ${TRAIN_SECONDS:+"$TRAIN_SECONDS"}; do
    [[ "$value" =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: '$value' is not a whole number of seconds" >&2; exit 2; }
done
ALL_STAGES="install info pytest update_256 update_large pipeline env_mjwarp train env_mujoco"
for s in ${STAGES//,/ }; do
    [[ " $ALL_STAGES " == *" $s "* ]] || { echo "gpu_check.sh: --stages: unknown '$s'; accepted: $ALL_STAGES" >&2; exit 2; }
done
# install and info always run: later stages need their results
wanted() { [[ -z "$STAGES" || "$1" == install || "$1" == info || ",$STAGES," == *",$1,"* ]]; }

if [[ "$MODE" == gpu ]]; then BUDGET=${BUDGET:-470} TRAIN_SECONDS=${TRAIN_SECONDS:-180}
else BUDGET=${BUDGET:-300} TRAIN_SECONDS=${TRAIN_SECONDS:-45}; fi
OUT_DIR=${OUT_DIR:-$REPO/benchmarks/results/gpu_check}
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
rm -f "$OUT_DIR"/gpu_check.json "$OUT_DIR"/gpu_check.log "$OUT_DIR"/bench_pipeline.png "$OUT_DIR"/train_returns.png \
    "$OUT_DIR"/env_*.png  # this script's own files from an earlier run
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
SITE="$WORK/site"
if [[ -n "${PYTHON:-}" ]]; then PY="$PYTHON"
elif command -v python3 >/dev/null 2>&1 && python3 -c "import torch" >/dev/null 2>&1; then PY=python3
else PY=python; fi
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg WANDB_MODE=offline
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
# egl where libEGL loads, else osmesa, else disable (meow_isaac.default_mujoco_gl): with MUJOCO_GL=egl and no
# libEGL (the GPU image of 2026-12-04) `import mujoco` itself fails, and with it every mjwarp stage
if [[ -z "${MUJOCO_GL:-}" ]]; then
    MUJOCO_GL="$("$PY" -c 'import meow_isaac, os; print(os.environ["MUJOCO_GL"])' 2>/dev/null || echo disable)"
fi
export MUJOCO_GL
START=$(date +%s)
DEADLINE=$((START + BUDGET))
RESERVE=8   # seconds kept for the report
HOLD=0      # seconds held back for the training run while it is still to come
: >"$WORK/stages.tsv"

record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$WORK/stages.tsv"; }

# stage NAME LIMIT_S CMD...: CMD under `timeout` (at most what the budget has left), its output in WORK/NAME.log.
# OK_RC (default "0") lists the exit codes that count as ok.
stage() {
    local name=$1 limit=$2; shift 2
    local left=$((DEADLINE - $(date +%s) - RESERVE - HOLD))
    if ((left < 10)); then
        record "$name" skipped 0 0 0 "no time left in the ${BUDGET} s budget$( ((HOLD)) && echo " (${HOLD} s held for train)")"
        echo "[gpu_check] $name: skipped (no time left in the ${BUDGET} s budget)"
        return 1
    fi
    ((limit > left)) && limit=$left
    echo "[gpu_check] $name: started (limit ${limit} s, $((DEADLINE - $(date +%s))) s of the budget left)"
    local t0 t1 rc status
    t0=$(date +%s.%N)
    timeout ${TIMEOUT_OPTS:--k 10} "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    if [[ " ${OK_RC:-0} " == *" $rc "* ]]; then status=ok
    elif ((rc == 124 || rc == 137)); then status=timeout
    else status=failed; fi
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')
    record "$name" "$status" "$rc" "$secs" "$limit" "$([[ $status == ok ]] && echo "${NOTE:-}")"
    echo "[gpu_check] $name: $status (rc $rc, ${secs} s)"
    [[ $status == ok ]]
}
skip() { record "$1" skipped 0 0 0 "$2"; echo "[gpu_check] $1: skipped ($2)"; }

echo "[gpu_check] mode $MODE, budget ${BUDGET} s, python $(command -v "$PY"), work $WORK, out $OUT_DIR"

# ---- install, info
FIND_ONLY=()
[[ "$MODE" == cpu ]] && FIND_ONLY=(--find-only)
stage install 120 "$PY" benchmarks/gpu_check.py install --wheels "$WHEELS" --site "$SITE" --work "$WORK" "${FIND_ONLY[@]}"
[[ -d "$SITE" ]] && export PYTHONPATH="$SITE:$PYTHONPATH"
stage info 60 "$PY" benchmarks/gpu_check.py info --work "$WORK" --mode "$MODE"
MJWARP=0
[[ -f "$WORK/mjwarp_ok" ]] && MJWARP=1

if [[ "$MODE" == gpu ]]; then
    DEVICE=cuda
    if ((MJWARP)); then  # leaner benchmark sizes, so that the 3-minute training run fits the budget
        U256=(--sizes Humanoid --batch 256 --iters 200 --variants eager,compiled_nograph,compiled,eager_bf16,compiled_bf16)
        ULARGE=(--sizes Humanoid --batch 4096,16384 --iters 100 --variants eager,compiled,compiled_bf16)
        PIPE=(--envs 1,256,4096,16384 --seconds 2 --profile 30)
        LIMITS=(100 80 70 90)   # pytest, update_256, update_large, pipeline
    else
        U256=(--sizes Hopper,Humanoid --batch 256 --iters 200 --variants eager,compiled_nograph,compiled,eager_bf16,compiled_bf16)
        ULARGE=(--sizes Humanoid --batch 4096,16384 --iters 100 --variants eager,compiled,eager_bf16,compiled_bf16)
        PIPE=(--envs 1,16,256,1024,4096,16384 --seconds 3 --profile 30)
        LIMITS=(120 130 110 120)
    fi
    ENV_ARGS=(--tasks Ant,Humanoid --envs 1024,4096,16384 --device cuda)
    TRAIN_ARGS=(task=Humanoid sim=mjwarp device=cuda num_envs=4096 headless=True train.eval_interval=1000)
    PYTEST_ARGS=(-n 3)
    "$PY" -c "import xdist" >/dev/null 2>&1 || PYTEST_ARGS=()
else
    DEVICE=cpu
    export MEOW_CUDA_TESTS_ON_CPU=1
    U256=(--sizes Hopper --batch 32 --iters 10 --variants eager,eager_bf16)
    ULARGE=(--sizes Hopper --batch 64 --iters 10 --variants eager)
    PIPE=(--envs 1,8 --batch 32 --seconds 0.3 --threads 1 --compile False --profile 3)
    LIMITS=(120 60 60 60)
    ENV_ARGS=(--tasks Ant --envs 2 --threads 1 --seconds 0.05 --rounds 1)
    TRAIN_ARGS=(task=Humanoid sim=mujoco device=cpu num_envs=2 headless=True torch_threads=1 sim_threads=1
                max_iterations=150 train.compile=False train.batch_size=64 train.random_steps=20
                train.learning_starts=20 train.eval_interval=50 train.eval_envs=1 train.log_interval=25
                train.save_interval=1000000)
    PYTEST_ARGS=()
fi

# the training run's time is held back from the stages before it (it runs after the benchmarks)
if wanted train && { [[ "$MODE" == cpu ]] || ((MJWARP)); }; then HOLD=$((TRAIN_SECONDS + 15)); fi

# ---- pytest -m cuda
if wanted pytest; then
    mapfile -t CUDA_FILES < <(grep -lE "pytest\.mark\.cuda|mark\.cuda\b" tests/test_*.py)
    stage pytest "${LIMITS[0]}" "$PY" -m pytest -m cuda -q -rfEs -p no:cacheprovider "${PYTEST_ARGS[@]}" \
        --junitxml="$WORK/pytest.xml" "${CUDA_FILES[@]}"
fi

# ---- the update against the reference formulation
wanted update_256 && stage update_256 "${LIMITS[1]}" "$PY" benchmarks/bench_update.py --device "$DEVICE" "${U256[@]}" \
    --json "$WORK/update_256.json"
wanted update_large && stage update_large "${LIMITS[2]}" "$PY" benchmarks/bench_update.py --device "$DEVICE" \
    "${ULARGE[@]}" --json "$WORK/update_large.json"

# ---- the whole trainer loop on the synthetic device env
wanted pipeline && stage pipeline "${LIMITS[3]}" "$PY" benchmarks/bench_pipeline.py --device "$DEVICE" "${PIPE[@]}" \
    --out "$WORK/pipeline"

# ---- GPU physics (mjwarp); in --cpu mode the same stages on the embedded mujoco backend
env_bench() {  # env_bench STAGE BACKEND LIMIT
    local args=("${ENV_ARGS[@]}" --json "$WORK/$1.json")
    if "$PY" benchmarks/bench_env.py --help 2>/dev/null | grep -q -- "--backends"; then
        args+=(--backends "$2" --plot "$WORK/$1.png")
        [[ "$MODE" == cpu ]] && args+=(--device cpu)
    fi
    stage "$1" "$3" "$PY" benchmarks/bench_env.py "${args[@]}"
}
train_run() {
    HOLD=0
    local seconds=$TRAIN_SECONDS left=$((DEADLINE - $(date +%s) - RESERVE - 15))  # 15: the KILL grace
    ((seconds > left)) && seconds=$left
    if ((seconds < 20)); then skip train "no time left in the ${BUDGET} s budget"; return; fi
    mkdir -p "$WORK/train"
    local cmd=("$PY" "$REPO/runner.py" "${TRAIN_ARGS[@]}" experiment=gpu_check progress_bar=False)
    printf '{"time": %s, "seconds": %s, "command": "%s"}\n' "$(date +%s.%N)" "$seconds" \
        "runner.py ${TRAIN_ARGS[*]}" >"$WORK/train_start.json"
    # SIGTERM at the time limit: the runner checkpoints and exits 3 (preempted), which is the planned end here
    # (and KILL 15 s later if it has not ended by then)
    (cd "$WORK/train" && OK_RC="0 3" TIMEOUT_OPTS="--preserve-status -s TERM -k 15" \
        NOTE="ended by max_iterations (exit 0) or by SIGTERM after ${seconds} s (exit 3 = checkpointed and stopped)" \
        stage train "$seconds" "${cmd[@]}")
}
if [[ "$MODE" == cpu ]]; then
    wanted env_mjwarp && env_bench env_mjwarp mujoco 60  # the embedded backend stands in for mjwarp on the CPU
    wanted train && train_run
    wanted env_mujoco && skip env_mujoco "--cpu: env_mjwarp already ran the mujoco backend"
elif ((MJWARP)); then
    wanted env_mjwarp && env_bench env_mjwarp mjwarp 60
    wanted train && train_run
    wanted env_mujoco && env_bench env_mujoco mujoco 60
else
    WHY=$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['mjwarp']['why_not'])" "$WORK/info.json" \
          2>/dev/null || echo "the info stage failed")
    for s in env_mjwarp train env_mujoco; do wanted $s && skip $s "mjwarp unavailable: $WHY"; done
fi

# ---- JSON, PNGs, log, summary
"$PY" benchmarks/gpu_check.py report --work "$WORK" --out "$OUT_DIR" --mode "$MODE" --started "$START" \
    --budget "$BUDGET"
rc=$?
FAILED=$(awk -F'\t' '$2 == "failed" || $2 == "timeout" {printf "%s ", $1}' "$WORK/stages.tsv")
if ((KEEP_WORK)); then KEPT="; work folder $WORK"; else rm -rf "$WORK"; KEPT=""; fi
echo "[gpu_check] done in $(($(date +%s) - START)) s${KEPT}${FAILED:+; not ok: $FAILED}"
((rc == 0)) && [[ -z "$FAILED" ]]
