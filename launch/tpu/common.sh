# shellcheck shell=bash
# TPU settings and gcloud commands shared by launch/tpu_vm.sh and launch/tpu_job.sh (sourced).
#
# Environment:
#   NAME              queued resource id; multislice nodes are NAME-0, NAME-1, ... (required)
#   PROJECT, ZONE     Google Cloud project and zone (required)
#   ACCELERATOR_TYPE  e.g. v5litepod-16, v4-32, v5p-8, v6e-16 (required)
#   NUM_SLICES        slices joined by DCN (multislice) (1)
#   PROVISIONING      spot | reserved | on-demand (spot)
#   RUNTIME_VERSION   TPU VM image (derived from ACCELERATOR_TYPE)
#   NUM_WORKERS       hosts per slice (derived from ACCELERATOR_TYPE)

# shellcheck source=SCRIPTDIR/../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require NAME PROJECT ZONE ACCELERATOR_TYPE
NUM_SLICES="${NUM_SLICES:-1}"
PROVISIONING="${PROVISIONING:-spot}"
# Where the code lives on every worker (the setup and run scripts are relative to it).
REMOTE_DIR="${REMOTE_DIR:-musiclm_jax}"
# Cold starts of large slices can take far longer than JAX's 5 min default to gather.
INIT_TIMEOUT_SECONDS="${INIT_TIMEOUT_SECONDS:-1800}"

case "$PROVISIONING" in
  spot) PROVISIONING_FLAGS=(--spot) ;;
  reserved) PROVISIONING_FLAGS=(--reserved) ;;
  on-demand) PROVISIONING_FLAGS=() ;;
  *) die "PROVISIONING=$PROVISIONING is not one of spot, reserved, on-demand" ;;
esac

# Hosts per slice and VM image, from the accelerator type (chips per host: v4/v5p 4,
# counted in TensorCores, 2 per chip; v5e/v6e slices of more than 8 chips have 4 per host).
generation="${ACCELERATOR_TYPE%%-*}"
size="${ACCELERATOR_TYPE##*-}"
[[ "$size" =~ ^[0-9]+$ ]] || die "ACCELERATOR_TYPE=$ACCELERATOR_TYPE is not <generation>-<size>, e.g. v5litepod-16"
case "$generation" in
  v4) default_runtime=tpu-ubuntu2204-base default_workers=$((size / 8)) ;;
  v5p) default_runtime=v2-alpha-tpuv5 default_workers=$((size / 8)) ;;
  v5litepod) default_runtime=v2-alpha-tpuv5-lite default_workers=$((size > 8 ? size / 4 : 1)) ;;
  v6e) default_runtime=v2-alpha-tpuv6e default_workers=$((size > 8 ? size / 4 : 1)) ;;
  *) die "unknown TPU generation in ACCELERATOR_TYPE=$ACCELERATOR_TYPE: set RUNTIME_VERSION and NUM_WORKERS" ;;
esac
RUNTIME_VERSION="${RUNTIME_VERSION:-$default_runtime}"
NUM_WORKERS="${NUM_WORKERS:-$((default_workers > 0 ? default_workers : 1))}"

LOCATION_FLAGS=(--project="$PROJECT" --zone="$ZONE")

# The TPU VM names of the slices.
NODES=()
# shellcheck disable=SC2153  # NAME comes from the environment (checked by `require`).
if ((NUM_SLICES == 1)); then
  NODES=("$NAME")
  NODE_FLAGS=(--node-id="$NAME")
else
  for ((s = 0; s < NUM_SLICES; s++)); do NODES+=("$NAME-$s"); done
  NODE_FLAGS=(--node-count="$NUM_SLICES" --node-prefix="$NAME")
fi

# create_queued_resource: asks for the slice(s); CREATE_FLAGS (e.g. a startup script)
# go to every node.
CREATE_FLAGS=()
create_queued_resource() {
  run gcloud compute tpus queued-resources create "$NAME" "${LOCATION_FLAGS[@]}" \
    --accelerator-type="$ACCELERATOR_TYPE" --runtime-version="$RUNTIME_VERSION" \
    "${NODE_FLAGS[@]}" "${PROVISIONING_FLAGS[@]}" "${CREATE_FLAGS[@]}"
}

queued_resource_state() {
  run gcloud compute tpus queued-resources describe "$NAME" "${LOCATION_FLAGS[@]}" \
    --format='value(state.state)'
}

# wait_until_active: polls until every node is up; fails on a state that never becomes ACTIVE.
wait_until_active() {
  local state
  while true; do
    state="$(queued_resource_state)"
    [[ "$DRY_RUN" == 1 ]] && { echo "$state"; return 0; }
    case "$state" in
      ACTIVE) return 0 ;;
      FAILED | SUSPENDED) die "queued resource $NAME is $state: see 'gcloud compute tpus queued-resources describe $NAME'" ;;
      *) echo "queued resource $NAME is ${state:-unknown}; waiting" >&2; sleep "${POLL_SECONDS:-30}" ;;
    esac
  done
}

delete_queued_resource() {
  run gcloud compute tpus queued-resources delete "$NAME" "${LOCATION_FLAGS[@]}" --force --quiet
}

# ssh_command NODE WORKER COMMAND: sets SSH_COMMAND to the gcloud line that runs COMMAND
# on one worker (or on --worker=all).
ssh_command() {
  SSH_COMMAND=(gcloud compute tpus tpu-vm ssh "$1" "${LOCATION_FLAGS[@]}" --worker="$2" --command="$3")
}

on_workers() {
  ssh_command "$@"
  run "${SSH_COMMAND[@]}"
}

# The environment multislice JAX needs on every host (MaxText sets the same): slice 0's
# worker 0 coordinates the DCN transfers.
megascale_env() {
  local slice="$1" coordinator="$2"
  ((NUM_SLICES > 1)) || return 0
  printf 'MEGASCALE_COORDINATOR_ADDRESS=%q MEGASCALE_NUM_SLICES=%q MEGASCALE_SLICE_ID=%q MEGASCALE_PORT=8080 ' \
    "$coordinator" "$NUM_SLICES" "$slice"
}

coordinator_ip() {
  if [[ "$DRY_RUN" == 1 ]]; then
    run gcloud compute tpus tpu-vm describe "${NODES[0]}" "${LOCATION_FLAGS[@]}" \
      --format='value(networkEndpoints[0].ipAddress)' >&2
    echo "COORDINATOR_IP"
  else
    gcloud compute tpus tpu-vm describe "${NODES[0]}" "${LOCATION_FLAGS[@]}" \
      --format='value(networkEndpoints[0].ipAddress)'
  fi
}

# delete_on_exit: from here on, leaving the script (Ctrl-C and SIGTERM included) first runs
# `stop_jobs` if the caller defines it, then deletes the queued resource (KEEP=1 keeps it):
# nothing is left billed by accident.
delete_on_exit() {
  trap _teardown EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# shellcheck disable=SC2329  # called by the trap
_teardown() {
  local status=$?
  trap - EXIT INT TERM
  if declare -F stop_jobs >/dev/null; then stop_jobs || true; fi
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "KEEP=1: queued resource $NAME is still running (and billed)" >&2
  else
    delete_queued_resource || echo "error: could not delete $NAME: delete it by hand" >&2
  fi
  exit "$status"
}
