"""binary_runner: a binary run in a child of the fork server behaves as `python -m` run afresh."""
import os
import signal
import subprocess
import sys

import pytest

import conftest
from musiclm_jax.binary_runner import BinaryRunner

MODES = {"ok": 0, "exit3": 3, "raise": 1, "kill": -signal.SIGKILL}


def _fresh_process(mode: str, atexit_path: str, log_path: str) -> int:
  """The reference: the probe in a new interpreter, as the demo used to start its binaries."""
  with open(log_path, "a") as log:
    return subprocess.run([sys.executable, "-m", "forked_probe", mode, atexit_path], stdout=log,
                          stderr=subprocess.STDOUT, check=False,
                          env=conftest.binary_env()).returncode


@pytest.mark.parametrize("mode", MODES)
def test_a_forked_binary_matches_a_fresh_process(tmp_path, mode):
  """Same status, log, atexit handlers, command to start it again, and JAX devices: binary_env's
  one, where the server started with this process's 8 (XLA_FLAGS), so JAX starts in the child."""
  runner = BinaryRunner()
  forked = lambda mode, atexit_path, log_path: runner.run(
      "forked_probe", [mode, atexit_path], log_path, environ=conftest.binary_env())
  outcomes = {}
  for how, run in (("forked", forked), ("fresh", _fresh_process)):
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
    assert (f"__name__=__main__ argv[0]=forked_probe.py devices=1 sum=10 "
            f"restarts_as=-m forked_probe {mode}") in lines
    assert atexit_text == f"{mode}: atexit ran\n"
  if mode == "raise":
    assert lines[-1] == "ValueError: the probe's failure"


def test_a_binary_past_its_timeout_is_killed_and_raises_as_subprocess_run_does(tmp_path):
  pid_path = tmp_path / "pid"
  with pytest.raises(subprocess.TimeoutExpired):
    BinaryRunner().run("forked_probe", ["hang", str(pid_path)], str(tmp_path / "log"),
                       environ=conftest.binary_env(), timeout_seconds=5)
  with pytest.raises(ProcessLookupError):
    os.kill(int(pid_path.read_text()), 0)
