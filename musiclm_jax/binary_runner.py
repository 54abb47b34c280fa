"""Runs binaries (`python -m module args`) in processes that skip their heavy imports.

A binary spends ~4.5 s of a fresh process importing TensorFlow, seqio, JAX and Flax before it
does anything (`python -X importtime -m musiclm_jax.train`), and `make demo` starts 21 of them.
Here each one is a child of a fork server (multiprocessing's "forkserver") that imported those
modules once and started nothing else: no JAX backend and no TF runtime exist there, so a fork
is as safe as at the top of a fresh process, and JAX still reads XLA_FLAGS at its first
computation, in the child. The child is otherwise the binary run as `python -m`: its own
process, `__main__`, argv, exit status and atexit handlers, its output in a log file.
"""
import atexit
import multiprocessing
import os
import runpy
import sys
from typing import Sequence

# Imported once, in the server. None of them starts a thread pool, a backend or a runtime at
# import (only TF's allocator and numpy's BLAS threads exist, and both fork cleanly).
PRELOAD = ("tensorflow", "tensorflow_datasets", "seqio", "jax", "flax.linen", "optax",
           "orbax.checkpoint", "gin", "absl.app")


class BinaryRunner:
  """Starts its fork server in the background at construction, while the caller works on."""

  def __init__(self, preload: Sequence[str] = PRELOAD):
    self._context = multiprocessing.get_context("forkserver")
    self._context.set_forkserver_preload(list(preload))
    # The server inherits os.environ as it is now: set the binaries' environment first.
    multiprocessing.forkserver.ensure_running()

  def run(self, module: str, args: Sequence[str], log_path: str) -> int:
    """Runs `python -m module *args`, appending its stdout and stderr to log_path; returns its
    exit status (negative: the signal that ended it)."""
    process = self._context.Process(target=_run_module, args=(module, list(args), log_path),
                                    name=module)
    process.start()
    process.join()
    return process.exitcode


def _run_module(module: str, args: list[str], log_path: str) -> None:
  """In the child: the log as stdout and stderr, then the module as `python -m` runs it.
  SystemExit's status becomes the process's (multiprocessing's bootstrap)."""
  log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  os.dup2(log, 1)
  os.dup2(log, 2)
  os.close(log)
  sys.argv = [module, *args]  # run_module puts the module's path first, as `python -m` does
  try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
  finally:
    # multiprocessing ends its children with os._exit, which skips them: a binary's pending
    # work (an async checkpoint, buffered logs) finishes as at a normal exit.
    atexit._run_exitfuncs()  # pylint: disable=protected-access
