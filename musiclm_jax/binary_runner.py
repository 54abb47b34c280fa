"""Runs binaries (`python -m module args`) in processes that skip their heavy imports.

A binary spends ~4.5 s of a fresh process importing TensorFlow, seqio, JAX and Flax before it
does anything (`python -X importtime -c "import musiclm_jax.train"`), and `make demo` starts 21 of them.
Here each one is a child of a fork server (multiprocessing's "forkserver") that imported those
modules once and started nothing else: no JAX backend and no TF runtime exist there, so a fork
is as safe as at the top of a fresh process, and JAX still reads XLA_FLAGS at its first
computation, in the child. The child is otherwise the binary run as `python -m`: its own
process, `__main__`, argv, exit status and atexit handlers, its output in a log file.
"""
import atexit
import multiprocessing
from multiprocessing import forkserver
import os
import runpy
import subprocess
import sys
from typing import Mapping, Sequence

# Imported once, in the server. None of them starts a backend, a runtime or a thread pool at
# import: the threads there after them are numpy's BLAS one and two of TF's (its jemalloc
# background thread and one more).
# (The quick demo's outputs were byte-identical, forked or started afresh.)
PRELOAD = ("tensorflow", "tensorflow_datasets", "seqio", "jax", "flax.linen", "optax",
           "orbax.checkpoint", "gin", "absl.app")


class BinaryRunner:
  """Starts the fork server in the background at construction, while the caller works on.

  A process has one fork server (multiprocessing's), which every runner in it shares. It
  inherits os.environ as it is at the first runner's construction.
  """

  def __init__(self):
    self._context = multiprocessing.get_context("forkserver")
    self._context.set_forkserver_preload(list(PRELOAD))
    forkserver.ensure_running()

  def run(self, module: str, args: Sequence[str], log_path: str, *, stderr_path: str | None = None,
          cwd: str | None = None, environ: Mapping[str, str] | None = None,
          timeout_seconds: float | None = None) -> int:
    """Runs `python -m module *args`; returns its exit status (negative: the signal that ended
    it).

    log_path: its stdout is appended there, and its stderr too unless stderr_path is given.
    cwd, environ: its working folder and environment (default: the server's). JAX reads
      XLA_FLAGS in the child; what the preloaded modules read at import (JAX_* settings) is
      the server's, so pass an environment that differs from it in nothing else.
    timeout_seconds: then it is killed and subprocess.TimeoutExpired raised, as
      subprocess.run does.
    """
    process = self._context.Process(
        target=_run_module, name=module,
        args=(module, list(args), log_path, stderr_path or log_path, cwd,
              None if environ is None else dict(environ)))
    process.start()
    process.join(timeout_seconds)
    if process.exitcode is None:
      process.kill()
      process.join()
      raise subprocess.TimeoutExpired([module, *args], timeout_seconds)
    return process.exitcode


def _run_module(module: str, args: list[str], stdout_path: str, stderr_path: str,
                cwd: str | None, environ: dict[str, str] | None) -> None:
  """In the child: stdout and stderr to their files, then the module as `python -m` runs it.
  SystemExit's status becomes the process's (multiprocessing's bootstrap)."""
  for fd, path in ((1, stdout_path), (2, stderr_path)):
    file = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(file, fd)
    os.close(file)
  if cwd is not None:
    os.chdir(cwd)
  if environ is not None:
    os.environ.clear()
    os.environ.update(environ)
  sys.argv = [module, *args]  # run_module puts the module's path first, as `python -m` does
  # The command that starts it afresh, not the server's: a binary that starts itself again
  # (`xla_flags.reexec_with_malloc_tunable`) becomes `python -m module args`.
  sys.orig_argv = [sys.executable, "-m", module, *args]
  try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
  finally:
    # multiprocessing ends its children with os._exit, which skips them: a binary's pending
    # work (an async checkpoint, buffered logs) finishes as at a normal exit.
    atexit._run_exitfuncs()  # pylint: disable=protected-access
