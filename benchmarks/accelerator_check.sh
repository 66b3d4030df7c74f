#!/usr/bin/env bash
# One check of a GPU or TPU machine: installs the jax wheel for the
# accelerator (the installed jax version), confirms the devices, runs the sharding, train-step
# and streaming tests on it, measures the base and DAC-44k train steps in bfloat16 (step time,
# audio seconds per second, MFU), PyTorch DAC's train step on the same device and batch, and the
# streaming real-time factor; writes accelerator_check.json and accelerator_check.md.
#
#   benchmarks/accelerator_check.sh                  # on the accelerator machine, repo root
#   benchmarks/accelerator_check.sh --out DIR        # default: $OUT, else benchmarks/results/accelerator_check
#   benchmarks/accelerator_check.sh --dry-run        # the same stages on this CPU, tiny sizes, no installs
#   benchmarks/accelerator_check.sh --stages devices,train_base,torch_dac   # a subset (default: all
#                                                    # of devices,tests,train_base,train_dac_44khz,
#                                                    # torch_dac,streaming)
#   benchmarks/accelerator_check.sh --wheels DIR     # a machine without a package index: install
#                                                    # the missing packages from DIR's wheels
#
# jax and torch are installed only where the ones present don't see the accelerator (a machine
# whose image already has CUDA builds of both needs no index at all).
#
# Each stage has a time limit (seconds, from the environment: CHECK_PYTEST_S, CHECK_TRAIN_S,
# CHECK_TORCH_S, CHECK_STREAM_S; CHECK_TRAIN_AUTOTUNE=0 turns XLA's GPU autotuning off for the
# train steps; a dry run, whose time depends on the CPU, has none); a stage
# that fails or runs out of time is recorded in the report and the next one runs. The defaults
# add up to under 14 minutes, most of it the train steps' first compile on an accelerator
# (benchmarks/README.md); `--stages` fits a shorter lease. The stages: accelerator_check.py.
set -euo pipefail

cd "$(dirname "$0")/.."
dry_run=0
wheels=
stages=devices,tests,train_base,train_dac_44khz,torch_dac,streaming
out="${OUT:-benchmarks/results/accelerator_check}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#--out=}" ;;
    --stages) stages="$2"; shift ;;
    --stages=*) stages="${1#--stages=}" ;;
    --wheels) wheels="$2"; shift ;;
    --wheels=*) wheels="${1#--wheels=}" ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "accelerator_check.sh: unknown argument $1 (use --dry-run, --out DIR, --stages LIST, --wheels DIR)" >&2; exit 2 ;;
  esac
  shift
done
for s in ${stages//,/ }; do
  case "$s" in
    devices|tests|train_base|train_dac_44khz|torch_dac|streaming) ;;
    *) echo "accelerator_check.sh: unknown stage $s in --stages (use devices, tests, train_base, train_dac_44khz, torch_dac, streaming)" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
rm -f "$out"/stage_*.json "$out"/pytest.xml
python=${PYTHON:-$(command -v python || command -v python3)}
start=$SECONDS
# The stages import jax_codec from this checkout, installed or not.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n $wheels ]]; then
  site=$(mktemp -d)
  whl=("$wheels"/*.whl)
  echo "== installing ${#whl[@]} wheels from $wheels (no index)"
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "${whl[@]}"
  export PYTHONPATH="$PYTHONPATH:$site"
fi

# ---- the accelerator and its jax wheel
if [[ $dry_run == 1 ]]; then
  platform=cpu
  # The tests' fast-compile option: the tiny steps compile in seconds at -O0.
  export XLA_FLAGS="${XLA_FLAGS:---xla_backend_optimization_level=0}"
  tests=(tests/test_streaming.py::test_latency_from_the_architecture)
  no_limit=1d
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  platform=cuda
  extra="cuda12"
elif [[ -n "${TPU_NAME:-}${TPU_ACCELERATOR_TYPE:-}${TPU_WORKER_ID:-}" ]] || ls /dev/accel* >/dev/null 2>&1 || ls /dev/vfio/[0-9]* >/dev/null 2>&1; then
  platform=tpu
  extra="tpu"
else
  echo "accelerator_check.sh: no GPU (nvidia-smi) or TPU found; run with --dry-run on a CPU" >&2
  exit 2
fi
if [[ $dry_run == 0 ]]; then
  version=$("$python" -c 'import jax; print(jax.__version__)')
  if "$python" -c "import jax, sys; sys.exit(not jax.devices('$platform'))" 2>/dev/null; then
    echo "== jax $version already sees the $platform devices"
  else
    echo "== installing jax[$extra]==$version"
    "$python" -m pip install -q -U "jax[$extra]==$version"
  fi
  if [[ $platform == cuda ]] && ! "$python" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' 2>/dev/null; then
    echo "== installing a CUDA build of torch (for PyTorch DAC's step)"
    "$python" -m pip install -q -U torch descript-audio-codec || echo "torch install failed; its stage will report it" >&2
  fi
  # Tests and stages share one device: allocate as needed rather than 75% up front.
  export XLA_PYTHON_CLIENT_PREALLOCATE=false
  tests=(tests/test_distributed.py tests/test_train_step.py tests/test_streaming.py)
  no_limit=
fi
export JAX_PLATFORMS=$platform
flag=()
[[ $dry_run == 1 ]] && flag=(--dry_run)
want() { [[ ",$stages," == *",$1,"* ]]; }  # want NAME: NAME is in --stages
stage_env=()  # an `env VAR=...` prefix for the next stage
stage() {  # stage SECONDS ARGS...: one accelerator_check.py stage, failures recorded, not fatal
  local limit=${no_limit:-$1}
  shift
  "${stage_env[@]}" timeout "$limit" "$python" benchmarks/accelerator_check.py "$@" --out "$out" "${flag[@]}" \
    || echo "stage $* exited with $? (limit ${limit} s)" >&2
}

if want devices; then
  echo "== devices"
  stage 60 devices
  cat "$out/stage_devices.json" 2>/dev/null || true
fi

if want tests; then
  echo "== tests on $platform: ${tests[*]}"
  # The tests check results, not speed: on a GPU they compile without XLA's autotuning, which
  # would only lengthen their many small compiles.
  test_env=()
  [[ $platform == cuda ]] && test_env=(env "XLA_FLAGS=${XLA_FLAGS:-} --xla_gpu_autotune_level=0")
  "${test_env[@]}" timeout "${no_limit:-${CHECK_PYTEST_S:-120}}" "$python" -m pytest -q -n 0 \
    -m "not slow" -p no:cacheprovider --junitxml="$out/pytest.xml" "${tests[@]}" \
    || echo "tests exited with $?" >&2
fi

# CHECK_TRAIN_AUTOTUNE=0 (GPU): compile the train steps without XLA's autotuning, a lower bound
# on their speed for a lease too short for the autotuned compile.
train_flags="${XLA_FLAGS:-}"
if [[ $platform == cuda && -n ${CHECK_TRAIN_AUTOTUNE:-} ]]; then
  train_flags="$train_flags --xla_gpu_autotune_level=$CHECK_TRAIN_AUTOTUNE"
fi
for case in base dac_44khz; do
  if want "train_$case"; then
    echo "== train step $case (bf16; XLA_FLAGS=$train_flags)"
    stage_env=(env "XLA_FLAGS=$train_flags")
    stage "${CHECK_TRAIN_S:-240}" train --case "$case"
    stage_env=()
  fi
done
if want torch_dac; then
  echo "== PyTorch DAC train step"
  stage "${CHECK_TORCH_S:-60}" torch_dac
fi
if want streaming; then
  echo "== streaming"
  stage "${CHECK_STREAM_S:-90}" streaming
fi

"$python" benchmarks/accelerator_check.py report --out "$out" "${flag[@]}"
echo "== wrote $out/accelerator_check.json and $out/accelerator_check.md in $((SECONDS - start)) s"
