"""A stand-in binary for tests/test_binary_runner.py: `python -m forked_probe MODE ATEXIT_PATH`.

Reports how it was started and whether JAX computes, then ends as MODE says: "ok", "exit3"
(sys.exit(3)), "raise" (an uncaught exception), "kill" (SIGKILL, before stdout is flushed) or
"hang" (its pid to ATEXIT_PATH, then sleeps).
"""
import atexit
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp


def main():
  mode, atexit_path = sys.argv[1:]
  if mode == "hang":
    with open(atexit_path, "w") as f:
      f.write(str(os.getpid()))
    time.sleep(600)
  atexit.register(lambda: open(atexit_path, "a").write(f"{mode}: atexit ran\n"))
  print(f"__name__={__name__} argv[0]={os.path.relpath(sys.argv[0], os.path.dirname(__file__))} "
        f"devices={jax.device_count()} sum={int(jnp.arange(5).sum())} "
        f"restarts_as={' '.join(sys.orig_argv[1:4])}")
  print("on stderr", file=sys.stderr)
  if mode == "exit3":
    sys.exit(3)
  if mode == "raise":
    raise ValueError("the probe's failure")
  if mode == "kill":
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
  main()
