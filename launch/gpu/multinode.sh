#!/usr/bin/env bash
# Multi-node GPU training without a scheduler: run this on every node, each with its
# NODE_RANK; one process per node drives all of that node's GPUs.
#
#   NNODES=2 NODE_RANK=0 COORDINATOR=10.0.0.2:12355 launch/gpu/multinode.sh \
#     musiclm-train --gin_file=experiments/semantic_stage.gin --gin.MODEL_DIR=\"/shared/runs/semantic\"
#
# COORDINATOR is host:port of node 0, reachable from every node. SIGTERM (e.g. from a
# spot VM's preemption notice) makes the trainer save on every node and exit 143; run the
# same command again to resume. The command is a binary of the venv (musiclm-train) or
# `python -m musiclm_jax.train`. Environment: INIT_TIMEOUT_SECONDS (600),
# DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

require NNODES NODE_RANK COORDINATOR
(($#)) || die "no command: launch/gpu/multinode.sh musiclm-train --gin_file=..."
if ! [[ "$NODE_RANK" =~ ^[0-9]+$ ]] || ((NODE_RANK >= NNODES)); then
  die "NODE_RANK=$NODE_RANK is not in 0..$((NNODES - 1))"
fi

# exec: SIGTERM reaches the trainer itself.
run_exec "$@" --coordinator_address="$COORDINATOR" --num_processes="$NNODES" \
  --process_id="$NODE_RANK" --initialization_timeout_seconds="${INIT_TIMEOUT_SECONDS:-600}"
