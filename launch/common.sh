# shellcheck shell=bash
# Shared by every launch script (sourced, not run).
#
# run CMD...      runs CMD, or with DRY_RUN=1 prints it (shell-quoted) instead: every
#                 cloud or scheduler command goes through `run`, so a dry run shows
#                 exactly what would be billed, teardown included.
# run_bg LOG CMD  the same in the background, stdout+stderr to LOG; sets RUN_BG_PID.
# die MSG         one line on stderr, exit 2 (like the binaries' UserError).

# shellcheck disable=SC2034  # REPO_DIR and RUN_BG_PID are read by the scripts that source this.
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN="${DRY_RUN:-0}"

die() {
  echo "error: $*" >&2
  exit 2
}

# quote ARG...: the arguments as one shell line, single-quoting those that need it.
quote() {
  local out="" arg q="'"
  for arg in "$@"; do
    if [[ "$arg" =~ ^[][A-Za-z0-9_./=:@,+%^-]+$ ]]; then
      out+="${out:+ }$arg"
    else
      out+="${out:+ }'${arg//$q/$q\\$q$q}'"
    fi
  done
  printf '%s\n' "$out"
}

run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "+ $(quote "$@")"
  else
    "$@"
  fi
}

# run_exec CMD...: like run, but CMD replaces this shell (signals reach CMD itself).
run_exec() {
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "+ $(quote "$@")"
    exit 0
  fi
  exec "$@"
}

run_bg() {
  local log="$1"
  shift
  if [[ "$DRY_RUN" == 1 ]]; then
    echo "+ $(quote "$@") > $(quote "$log") 2>&1 &"
    RUN_BG_PID=""
  else
    "$@" >"$log" 2>&1 &
    # shellcheck disable=SC2034
    RUN_BG_PID=$!
  fi
}

require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "$name is not set: export $name=... (see launch/README.md)"
  done
}

# wait_all PID...: waits for the processes; when one fails, stops the others (SIGTERM,
# by process id) so a dead worker never leaves the rest blocked in a collective.
# Returns the first non-zero exit code, or 0.
wait_all() {
  local pids=("$@") status=0 code pid
  while ((${#pids[@]})); do
    code=0 pid=""
    wait -n -p pid "${pids[@]}" || code=$?
    # A trapped signal interrupts `wait` without a finished process: wait again.
    [[ -n "$pid" ]] || continue
    local rest=() other
    for other in "${pids[@]}"; do
      [[ "$other" == "$pid" ]] || rest+=("$other")
    done
    pids=("${rest[@]}")
    if ((code != 0 && status == 0)); then
      status=$code
      ((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
    fi
  done
  return "$status"
}
