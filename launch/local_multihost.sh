#!/usr/bin/env bash
# N processes on this machine (127.0.0.1), each with its own CPU devices, running the
# same binary as one multi-process JAX job: the offline stand-in for a TPU pod or a
# GPU cluster. Every host-level path (per-host input shards, global batches, collective
# checkpoints, preemption agreement) runs as it would on N hosts.
#
#   NUM_PROCESSES=2 launch/local_multihost.sh python -m musiclm_jax.train \
#       --gin_file=experiments/toy_lm.gin --gin.MODEL_DIR=\"/tmp/toy_lm\"
#
# Environment: NUM_PROCESSES (2), DEVICES_PER_PROCESS (1), PORT (coordinator port, 12355),
# LOG_DIR (runs/local_multihost/logs: process_<i>.log each). Ctrl-C or SIGTERM is passed to
# every process (they save a checkpoint and exit 143); if one process fails the others are
# stopped. Exit code: the first failure's, else 0.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

NUM_PROCESSES="${NUM_PROCESSES:-2}"
DEVICES_PER_PROCESS="${DEVICES_PER_PROCESS:-1}"
PORT="${PORT:-12355}"
LOG_DIR="${LOG_DIR:-runs/local_multihost/logs}"
(($#)) || die "no command: launch/local_multihost.sh python -m musiclm_jax.train --gin_file=..."

mkdir -p "$LOG_DIR"
export JAX_PLATFORMS=cpu
# musiclm_jax/simulated_devices.py owns these flags and says why the scheduler one.
XLA_FLAGS="$(PYTHONPATH="$REPO_DIR" python3 -c "from musiclm_jax import simulated_devices as s
print(s.xla_flags($DEVICES_PER_PROCESS))")"
export XLA_FLAGS
# Cross-process collectives on CPU need gloo (the default CPU client has none).
export JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo

pids=()
# shellcheck disable=SC2329  # called by the trap
stop() {
  ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM

for ((i = 0; i < NUM_PROCESSES; i++)); do
  run_bg "$LOG_DIR/process_$i.log" "$@" --coordinator_address="127.0.0.1:$PORT" \
    --num_processes="$NUM_PROCESSES" --process_id="$i"
  [[ -n "$RUN_BG_PID" ]] && pids+=("$RUN_BG_PID")
done
((${#pids[@]})) || exit 0
status=0
wait_all "${pids[@]}" || status=$?
echo "local_multihost: $NUM_PROCESSES processes finished with exit code $status; logs in $LOG_DIR" >&2
exit "$status"
