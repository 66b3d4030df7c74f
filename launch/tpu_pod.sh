#!/usr/bin/env bash
# Train jax_codec on a Cloud TPU VM slice: create (or reuse) the slice, install this checkout on
# every worker, run the training command on all workers at once, stream the logs.
#
#   launch/tpu_pod.sh --project=my-proj --zone=us-west4-a --accelerator=v5litepod-64 \
#       --name=codec-v5e64 --workdir=gs://my-bucket/runs/v5e64 --config=configs/tpu_v5e.py:v5e64
#
# Every worker runs the same `python -m jax_codec.train`; on a TPU VM slice the processes find
# each other by themselves (jax.distributed, GCE metadata). Checkpoints go to --workdir (gs://,
# seen by all workers); TensorBoard logs stay on worker 0 (see launch/README.md).
#
# Flags (--flag=value or --flag value):
#   --project, --zone        GCP project and zone (default: gcloud's configured ones)
#   --accelerator            TPU type, e.g. v5litepod-8, v5litepod-64 (required)
#   --name                   TPU VM name (required); reused if it exists
#   --workdir                run directory, gs://BUCKET/PATH (required)
#   --config                 config spec, e.g. configs/tpu_v5e.py:v5e8 (required)
#   --version                TPU VM runtime (default: v2-alpha-tpuv5-lite, the v5e one)
#   --spot                   create a Spot slice (cheaper, preemptible; training resumes)
#   --preflight              only compile and print the memory/FLOPs estimate on the slice
#   --detach                 start training in the background (nohup) and follow worker 0's log
#   --delete                 delete the slice and exit
#   --dry_run                print every gcloud command instead of running it
# Anything after `--` is passed to `python -m jax_codec.train` (e.g. -- --config.train.num_steps=1000).
set -euo pipefail

PROJECT=""
ZONE=""
ACCELERATOR=""
NAME=""
WORKDIR=""
CONFIG=""
VERSION="v2-alpha-tpuv5-lite"
SPOT=0
PREFLIGHT=0
DETACH=0
DELETE=0
DRY_RUN=0
EXTRA=()
REMOTE_DIR="jax_codec"  # on each worker, under the login user's home

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit "${1:-0}"
}

die() {
  echo "error: $*" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  arg="$1"
  shift
  case "$arg" in
    --) EXTRA=("$@"); break ;;
    -h | --help) usage 0 ;;
    --spot) SPOT=1; continue ;;
    --preflight) PREFLIGHT=1; continue ;;
    --detach) DETACH=1; continue ;;
    --delete) DELETE=1; continue ;;
    --dry_run | --dry-run) DRY_RUN=1; continue ;;
    --*=*) key="${arg%%=*}"; value="${arg#*=}" ;;
    --*)
      [[ $# -gt 0 ]] || die "$arg needs a value"
      key="$arg"; value="$1"; shift ;;
    *) die "unexpected argument: $arg (see --help)" ;;
  esac
  case "$key" in
    --project) PROJECT="$value" ;;
    --zone) ZONE="$value" ;;
    --accelerator | --accelerator_type | --accelerator-type) ACCELERATOR="$value" ;;
    --name) NAME="$value" ;;
    --workdir) WORKDIR="$value" ;;
    --config) CONFIG="$value" ;;
    --version) VERSION="$value" ;;
    *) die "unknown flag: $key (see --help)" ;;
  esac
done

[[ -n "$NAME" ]] || die "--name is required"
if [[ "$DELETE" == 0 ]]; then
  [[ -n "$ACCELERATOR" ]] || die "--accelerator is required, e.g. v5litepod-8"
  [[ -n "$CONFIG" ]] || die "--config is required, e.g. configs/tpu_v5e.py:v5e8"
  if [[ "$PREFLIGHT" == 0 ]]; then
    [[ "$WORKDIR" == gs://* ]] || die "--workdir must be a gs:// path that every worker can reach"
  fi
fi

GCLOUD_FLAGS=()
[[ -n "$ZONE" ]] && GCLOUD_FLAGS+=("--zone=$ZONE")
[[ -n "$PROJECT" ]] && GCLOUD_FLAGS+=("--project=$PROJECT")

# Runs a command, or prints it (shell-quoted, one line) with --dry_run.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

tpu() {
  run gcloud compute tpus tpu-vm "$@" "${GCLOUD_FLAGS[@]}"
}

if [[ "$DELETE" == 1 ]]; then
  tpu delete "$NAME" --quiet
  exit 0
fi

# 1. Create the slice unless it exists (a dry run cannot ask, so it shows the create).
if [[ "$DRY_RUN" == 0 ]] &&
  gcloud compute tpus tpu-vm describe "$NAME" "${GCLOUD_FLAGS[@]}" --format='value(state)' >/dev/null 2>&1; then
  echo "reusing TPU VM $NAME"
else
  create=(create "$NAME" "--accelerator-type=$ACCELERATOR" "--version=$VERSION")
  [[ "$SPOT" == 1 ]] && create+=(--spot)
  tpu "${create[@]}"
fi

# 2. Install this checkout on every worker: copy the sources, pip install with TPU JAX.
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ARCHIVE="${TMPDIR:-/tmp}/jax_codec_src.tar.gz"
run tar -czf "$ARCHIVE" -C "$REPO" --exclude=.git --exclude=.venv --exclude=runs \
  --exclude='*.egg-info' --exclude=__pycache__ .
tpu scp "$ARCHIVE" "$NAME:jax_codec_src.tar.gz" --worker=all
INSTALL="set -e; mkdir -p $REMOTE_DIR && tar -xzf jax_codec_src.tar.gz -C $REMOTE_DIR"
INSTALL+=" && cd $REMOTE_DIR && python3 -m pip install -q -U pip"
INSTALL+=" && python3 -m pip install -q -e . 'jax[tpu]' gcsfs"
tpu ssh "$NAME" --worker=all "--command=$INSTALL"

# 3. Train on all workers at once (same command everywhere), streaming their output.
TRAIN=(python3 -m jax_codec.train "--config=$CONFIG")
if [[ "$PREFLIGHT" == 1 ]]; then
  TRAIN+=(--preflight)
else
  TRAIN+=("--workdir=$WORKDIR")
fi
TRAIN+=("${EXTRA[@]}")
TRAIN_LINE="$(printf ' %q' "${TRAIN[@]}")"
if [[ "$DETACH" == 1 && "$PREFLIGHT" == 0 ]]; then
  tpu ssh "$NAME" --worker=all \
    "--command=cd $REMOTE_DIR && nohup$TRAIN_LINE > train.log 2>&1 < /dev/null &"
  # Follow worker 0 (the progress bar); Ctrl-C stops following, not training.
  tpu ssh "$NAME" --worker=0 "--command=tail -n +1 -F $REMOTE_DIR/train.log"
else
  tpu ssh "$NAME" --worker=all "--command=cd $REMOTE_DIR &&$TRAIN_LINE"
fi
