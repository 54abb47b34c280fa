#!/usr/bin/env bash
# A production training job on a TPU slice that survives preemption: the slice's VMs run
# a startup script (rendered from launch/tpu/startup.sh.template) that installs the code
# and trains, resuming from the latest checkpoint in the run's MODEL_DIR; this supervisor
# recreates the queued resource whenever it is preempted, until the job writes JOB_URI/DONE.
# The resource is deleted on exit (a trap), also on Ctrl-C.
#
#   NAME=semantic-v4 PROJECT=my-project ZONE=us-central2-b ACCELERATOR_TYPE=v4-32 \
#   JOB_URI=gs://my-bucket/jobs/semantic \
#     launch/tpu_job.sh musiclm-train --gin_file=experiments/semantic_stage.gin \
#       --gin_file=scales/paper.gin --gin.MODEL_DIR=\"gs://my-bucket/semantic\"
#
# Environment: launch/tpu/common.sh's, plus JOB_URI (gs://, required: the code goes to
# JOB_URI/code.tgz, worker logs to JOB_URI/logs/, and the DONE marker), POLL_SECONDS (60).
# DRY_RUN=1 prints each gcloud command and goes round the supervisor loop once.
set -euo pipefail
# shellcheck source=SCRIPTDIR/tpu/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu/common.sh"

require JOB_URI
(($#)) || die "no command: launch/tpu_job.sh musiclm-train --gin_file=..."
((NUM_SLICES == 1)) || die "tpu_job.sh runs one slice (NUM_SLICES=$NUM_SLICES): use launch/tpu_vm.sh for multislice"
cd "$REPO_DIR"
LOG_DIR="${LOG_DIR:-runs/launch/$NAME}"
mkdir -p "$LOG_DIR"
CODE_URI="$JOB_URI/code.tgz"
LOG_URI="$JOB_URI/logs"

# render KEY=VALUE...: the template with each @KEY@ replaced by the quoted VALUE.
render() {
  local text pair
  text="$(<launch/tpu/startup.sh.template)"
  for pair in "$@"; do
    text="${text//@${pair%%=*}@/${pair#*=}}"
  done
  printf '%s\n' "$text"
}

command=("$@" --auto_distributed --initialization_timeout_seconds="$INIT_TIMEOUT_SECONDS")
startup="$LOG_DIR/startup.sh"
render "CODE_URI=$(quote "$CODE_URI")" "JOB_URI=$(quote "$JOB_URI")" \
  "LOG_URI=$(quote "$LOG_URI")" "COMMAND=$(quote "${command[@]}")" >"$startup"
CREATE_FLAGS=(--metadata-from-file=startup-script="$startup")

run tar czf "$LOG_DIR/code.tgz" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude=__pycache__ .
run gcloud storage cp "$LOG_DIR/code.tgz" "$CODE_URI"

delete_on_exit

create_queued_resource
while true; do
  if [[ "$DRY_RUN" == 1 ]]; then
    run gcloud storage ls "$JOB_URI/DONE"
  elif gcloud storage ls "$JOB_URI/DONE" >/dev/null 2>&1; then
    echo "$NAME: job done; logs in $LOG_URI" >&2
    exit 0
  fi
  state="$(queued_resource_state)"
  [[ "$DRY_RUN" == 1 ]] && { echo "$state"; state=SUSPENDED; }
  case "$state" in
    SUSPENDED | FAILED)
      echo "$NAME is $state (preempted): recreating it; training resumes from its last checkpoint" >&2
      delete_queued_resource
      create_queued_resource
      ;;
  esac
  [[ "$DRY_RUN" == 1 ]] && exit 0
  sleep "${POLL_SECONDS:-60}"
done
