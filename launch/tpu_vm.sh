#!/usr/bin/env bash
# One command from nothing to a trained run on a TPU slice (or several: multislice), and
# back to nothing: create the queued resource, wait until ACTIVE, copy this checkout to
# every worker, set them up, run one binary on all of them (one log per worker), and
# delete the resource on exit, whatever the exit (a trap: Ctrl-C leaves no billed VM).
#
#   NAME=musiclm-v5e PROJECT=my-project ZONE=us-west4-a ACCELERATOR_TYPE=v5litepod-16 \
#     launch/tpu_vm.sh musiclm-train --gin_file=experiments/semantic_stage.gin \
#       --gin_file=scales/paper.gin --gin.MODEL_DIR=\"gs://my-bucket/semantic\" \
#       --gin.TOKEN_CACHE_DIR=\"/gcs/my-bucket/tokens\"
#
# Environment: see launch/tpu/common.sh; also KEEP=1 (do not delete the resource at the
# end: iterate on a live slice, then delete it yourself), LOG_DIR (runs/launch/NAME).
# DRY_RUN=1 prints every gcloud command instead of running it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu/common.sh"

(($#)) || die "no command: launch/tpu_vm.sh musiclm-train --gin_file=... --gin.MODEL_DIR=..."
cd "$REPO_DIR"
LOG_DIR="${LOG_DIR:-runs/launch/$NAME}"
mkdir -p "$LOG_DIR"

job_pids=()
# shellcheck disable=SC2329  # called by delete_on_exit's trap
stop_jobs() {
  ((${#job_pids[@]} == 0)) || kill -TERM "${job_pids[@]}" 2>/dev/null
}
delete_on_exit

create_queued_resource
wait_until_active

# The working tree as it is (uncommitted edits included), without venvs, runs or git.
code="$LOG_DIR/code.tgz"
run tar czf "$code" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude=__pycache__ .
for node in "${NODES[@]}"; do
  run gcloud compute tpus tpu-vm scp "$code" "$node:code.tgz" "${LOCATION_FLAGS[@]}" --worker=all
  on_workers "$node" all "mkdir -p $REMOTE_DIR && tar xzf code.tgz -C $REMOTE_DIR && bash $REMOTE_DIR/launch/tpu/worker.sh setup"
done

coordinator="$( ((NUM_SLICES > 1)) && coordinator_ip || true)"
binary_args=("$@" --auto_distributed --initialization_timeout_seconds="$INIT_TIMEOUT_SECONDS")
for ((s = 0; s < ${#NODES[@]}; s++)); do
  node="${NODES[$s]}"
  for ((w = 0; w < NUM_WORKERS; w++)); do
    ssh_command "$node" "$w" \
      "$(megascale_env "$s" "$coordinator")bash $REMOTE_DIR/launch/tpu/worker.sh run $(quote "${binary_args[@]}")"
    run_bg "$LOG_DIR/$node-worker$w.log" "${SSH_COMMAND[@]}"
    [[ -n "$RUN_BG_PID" ]] && job_pids+=("$RUN_BG_PID")
  done
done
echo "logs: $LOG_DIR/<node>-worker<i>.log" >&2

status=0
((${#job_pids[@]} == 0)) || wait_all "${job_pids[@]}" || status=$?
job_pids=()
if ((status != 0)); then
  echo "a worker failed (exit $status): stopping the others; see $LOG_DIR" >&2
  for node in "${NODES[@]}"; do
    on_workers "$node" all "bash $REMOTE_DIR/launch/tpu/worker.sh stop" || true
  done
fi
exit "$status"
