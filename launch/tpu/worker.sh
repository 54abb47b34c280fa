#!/usr/bin/env bash
# Runs on every TPU VM worker, from the unpacked code folder (launch/tpu_vm.sh and the
# production startup script call it over ssh):
#   bash launch/tpu/worker.sh setup        idempotent: venv, `pip install -e .[tpu]`, stale lock
#   bash launch/tpu/worker.sh run CMD...   CMD in the venv, its pid in /tmp/musiclm_job.pid
#   bash launch/tpu/worker.sh stop         SIGTERM to that pid (the job saves and exits 143)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

PID_FILE=/tmp/musiclm_job.pid
VENV=.venv

case "${1:-}" in
  setup)
    # A job killed without cleanup leaves libtpu's lock behind, and the next one then
    # fails with "TPU in use"; remove it only when no process holds the TPU.
    if [[ -e /tmp/libtpu_lockfile ]] && ! sudo lsof -w /dev/accel* /dev/vfio/* >/dev/null 2>&1; then
      sudo rm -f /tmp/libtpu_lockfile
    fi
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    # Reinstall only when the dependencies changed: a rerun of setup is seconds.
    stamp="$VENV/.installed-$(sha256sum setup.py | cut -c1-16)"
    if [[ ! -e "$stamp" ]]; then
      "$VENV/bin/pip" install -q --upgrade pip
      "$VENV/bin/pip" install -q -e '.[tpu]'
      touch "$stamp"
    fi
    ;;
  run)
    shift
    (($#)) || { echo "error: worker.sh run needs a command" >&2; exit 2; }
    # shellcheck source=/dev/null
    source "$VENV/bin/activate"
    echo $$ >"$PID_FILE"
    exec "$@"
    ;;
  stop)
    if [[ -s "$PID_FILE" ]]; then
      kill -TERM "$(cat "$PID_FILE")" 2>/dev/null || true
    fi
    ;;
  *)
    echo "error: worker.sh takes setup, run CMD... or stop" >&2
    exit 2
    ;;
esac
