"""binary_runner: a binary run in a child of the fork server behaves as `python -m` run afresh."""
import os
import signal
import subprocess
import sys

import pytest

import conftest
from musiclm_jax.binary_runner import BinaryRunner

MODES = {"ok": 0, "exit3": 3, "raise": 1, "kill": -signal.SIGKILL}


@pytest.fixture(scope="module")
def runner():
  # One fork server per process (multiprocessing's): JAX alone keeps it quick to start.
  return BinaryRunner(preload=("jax",))


def _fresh_process(mode: str, log_path: str, atexit_path: str) -> int:
  """The reference: the probe in a new interpreter, as the demo used to start its binaries."""
  with open(log_path, "a") as log:
    return subprocess.run([sys.executable, "-m", "forked_probe", mode, atexit_path], stdout=log,
                          stderr=subprocess.STDOUT, check=False,
                          env=dict(os.environ, PYTHONPATH=conftest.TESTS_DIR)).returncode


@pytest.mark.parametrize("mode", MODES)
def test_a_forked_binary_matches_a_fresh_process(runner, tmp_path, mode):
  """Same status, log, atexit handlers and JAX devices (XLA_FLAGS' 8, read in the child)."""
  outcomes = {}
  for how, run in (("forked", lambda *a: runner.run("forked_probe", a[:2], a[2])),
                   ("fresh", lambda *a: _fresh_process(a[0], a[2], a[1]))):
    log_path, atexit_path = tmp_path / f"{how}.log", tmp_path / f"{how}.atexit"
    log_path.write_text("$ the caller's header\n")
    status = run(mode, str(atexit_path), str(log_path))
    # The probe's lines and a traceback's last: its frames (runpy's or multiprocessing's),
    # and the time stamps and thread ids of libtpu's start-up warnings, differ.
    lines = [line for line in log_path.read_text().splitlines()
             if line.startswith(("$ ", "__name__=", "on stderr", "ValueError"))]
    outcomes[how] = (status, lines, atexit_path.read_text() if atexit_path.exists() else None)
  assert outcomes["forked"] == outcomes["fresh"]
  status, lines, atexit_text = outcomes["forked"]
  assert status == MODES[mode] and lines[0] == "$ the caller's header"
  assert "on stderr" in lines
  if mode != "kill":  # SIGKILL loses the buffered stdout and skips atexit, in both
    assert "__name__=__main__ argv[0]=forked_probe.py devices=8 sum=10" in lines
    assert atexit_text == f"{mode}: atexit ran\n"
  if mode == "raise":
    assert lines[-1] == "ValueError: the probe's failure"
