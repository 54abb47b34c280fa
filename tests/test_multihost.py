"""Two processes × four CPU devices train like one process on the same global batches;
a SIGTERM that reaches one process first stops both at the same saved step."""
import functools
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings

import gin
import jax
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import metrics as metrics_lib
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import pipeline
from conftest import REPO_DIR, TESTS_DIR, binary_env
from test_trainer import TRAIN
from tiny_models import ContextMLPModel


TEST_GIN = os.path.join(TESTS_DIR, "gin", "context_mlp.gin")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def multiprocess_env() -> dict[str, str]:
  """One CPU device per process, collectives across processes through gloo.

  PYTHONFAULTHANDLER: a hung worker prints every thread's stack on SIGABRT
  (see `finish`), so a hang in CI says where it hung.
  """
  return binary_env(JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
                    PYTHONFAULTHANDLER="1")


class WorkersHung(AssertionError):
  """Workers still running at `finish`'s deadline; the message holds their stacks."""


def finish(workers: list[subprocess.Popen], timeout_seconds: float) -> list[str]:
  """Each worker's stderr once all have exited; fails with every stack if they hang.

  A worker still running at the deadline gets SIGABRT (its fault handler then
  prints the stack of each thread) and the test fails with the stderr tails
  of all workers, not just the first one waited on.
  """
  deadline = time.monotonic() + timeout_seconds
  errors, hung = [], False
  for w in workers:
    try:
      errors.append(w.communicate(timeout=max(deadline - time.monotonic(), 1.0))[1])
    except subprocess.TimeoutExpired:
      hung = True
      w.send_signal(signal.SIGABRT)
      errors.append(w.communicate(timeout=60)[1])
  if hung:
    raise WorkersHung("workers hung:\n" + "\n".join(
        f"--- worker {i} ---\n{_python_stacks(e)[-12000:]}" for i, e in enumerate(errors)))
  return errors


def _python_stacks(stderr: str, frames_per_thread: int = 6) -> str:
  """A hung worker's stderr, short enough for a CI log: the log lines before
  the fault-handler dump, then each thread's innermost frames (the C++ frames
  and the module list that follow the dump had pushed the stacks out)."""
  lines = stderr.splitlines()
  dump = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")),
              len(lines))
  kept = [line for line in lines[max(dump - 8, 0):dump] if not line.lstrip().startswith("@ 0x")]
  frames = frames_per_thread
  for line in lines[dump:]:
    if "(most recent call first)" in line:
      kept.append(line)
      frames = 0
    elif line.lstrip().startswith("File ") and frames < frames_per_thread:
      kept.append(line)
      frames += 1
  return "\n".join(kept)


@functools.cache
def one_process_losses(bindings: tuple[str, ...], num_shards: int, steps: int | None = None
                       ) -> tuple[float, ...]:
  """TEST_GIN's run in this process, on the global batches of `num_shards` hosts.

  Host i's rows come i-th in each global batch, as `make_global_batch` lays them out.
  """
  gin.clear_config()
  try:
    gin_utils.parse_gin([TEST_GIN], bindings)
    model = gin_models.parsed_model()
    with gin.config_scope("train"):
      data = gin.get_configurable(pipeline.DatasetConfig)()
    schedule = gin.get_configurable(optimizers.learning_rate_schedule)()
    tx = gin.get_configurable(optimizers.make_optimizer)(learning_rate=schedule)
    steps = steps or gin.query_parameter("%TRAIN_STEPS")
  finally:
    gin.clear_config()
  shards = [data.get_batches(i, num_shards) for i in range(num_shards)]
  partitioner = partitioning.Partitioner(num_devices=num_shards)
  trainer, state, losses = None, None, []
  for _ in range(steps):
    parts = [next(s) for s in shards]
    batch = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if trainer is None:
      spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
      trainer = trainer_lib.Trainer(model, partitioner, tx, spec)
      state = trainer.init_state()
    state, m = trainer.train_step(state, partitioner.make_global_batch(batch))
    losses.append(float(m["loss"]))
  return tuple(losses)


def test_two_hosts_read_their_shards_and_match_one_host(tmp_path):
  port = free_port()
  env = binary_env(PYTHONFAULTHANDLER="1")  # the worker picks its own device count
  workers = [subprocess.Popen([sys.executable, os.path.join(TESTS_DIR, "multihost_worker.py"),
                               str(i), "2", str(port), str(tmp_path)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
  for w, err in zip(workers, finish(workers, 300)):
    assert w.returncode == 0, err[-3000:]
  multi = [r["train/loss"] for r in metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")]

  # One process, the same global batches: host 0's rows then host 1's rows.
  shards = [pipeline.get_batches(TRAIN, i, 2) for i in range(2)]
  partitioner = partitioning.Partitioner(model_parallel=2)
  first = [next(s) for s in shards]
  batches = [{k: np.concatenate([b[k] for b in first]) for k in first[0]}]
  for _ in range(3):
    parts = [next(s) for s in shards]
    batches.append({k: np.concatenate([b[k] for b in parts]) for k in parts[0]})
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  trainer = trainer_lib.Trainer(ContextMLPModel(dropout_rate=0.0), partitioner,
                                optimizers.make_optimizer(learning_rate=3e-3), spec)
  state = trainer.init_state()
  single = []
  for batch in batches:
    state, m = trainer.train_step(state, partitioner.make_global_batch(batch))
    single.append(float(m["loss"]))
  assert len(multi) == 4
  np.testing.assert_allclose(multi, single, rtol=2e-5)
  assert sorted(os.listdir(tmp_path / "checkpoints"))[-1] == "4"


# Long enough never to finish: the run ends by SIGTERM; checkpoints only on preemption.
_PREEMPT_BINDINGS = ("TRAIN_STEPS = 100000", "WARMUP_STEPS = 1", "LEARNING_RATE = 0.01",
                     "trainer.train.checkpoint_period = 100000")


def _start_two_processes(model_dir, *extra):
  port = free_port()
  return [subprocess.Popen(
      [sys.executable, "-m", "musiclm_jax.train", f"--gin_file={TEST_GIN}", f"--gin.MODEL_DIR='{model_dir}'",
       *(f"--gin_bindings={b}" for b in _PREEMPT_BINDINGS), *extra,
       f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
      env=multiprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in range(2)]


def _losses_by_step(model_dir) -> dict[int, float]:
  return {r["step"]: r["train/loss"] for r in metrics_lib.read_jsonl(model_dir / "metrics.jsonl")}


def test_sigterm_on_one_host_first_stops_both_at_the_same_step_and_resume_matches(tmp_path):
  workers = _start_two_processes(tmp_path)
  try:
    deadline = time.monotonic() + 300
    while len(_losses_by_step(tmp_path) if (tmp_path / "metrics.jsonl").exists() else {}) < 3:
      assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
          [w.communicate()[1][-2000:] for w in workers if w.poll() is not None]
      time.sleep(0.2)
    # The signal reaches process 1 first, process 0 a second later (if still running).
    workers[1].send_signal(signal.SIGTERM)
    time.sleep(1.0)
    if workers[0].poll() is None:
      workers[0].send_signal(signal.SIGTERM)
    # Hosts that stop at different steps hang in the next collective: a timeout here.
    outputs = finish(workers, 180)
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
  assert [w.returncode for w in workers] == [143, 143], [o[-2000:] for o in outputs]
  saved = {int(re.search(r"SIGTERM: saved step (\d+)", o).group(1)) for o in outputs}
  assert len(saved) == 1, saved
  step = saved.pop()
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [step]

  # The resumed pair hung in 2 of 3 CI runs (never here, in 8 runs at load 3-6.5),
  # cause unknown: it gets a second try, and the first one's stacks are printed
  # as a warning so that a CI log says where it hung. Two hangs fail the test.
  for attempt in range(2):
    resumed = _start_two_processes(tmp_path, f"--gin.trainer.train.stop_at_step={step + 2}",
                                   "--initialization_timeout_seconds=120")
    try:
      errors = finish(resumed, 300)
      break
    except WorkersHung as e:
      if attempt:
        raise
      warnings.warn(f"the resumed two-process run hung; trying again. {e}")
    finally:
      for w in resumed:
        if w.poll() is None:
          w.kill()
  assert [w.returncode for w in resumed] == [0, 0], [e[-3000:] for e in errors]
  losses = _losses_by_step(tmp_path)
  assert sorted(losses) == list(range(1, step + 3))
  reference = one_process_losses(_PREEMPT_BINDINGS, 2, step + 2)
  np.testing.assert_allclose([losses[s] for s in sorted(losses)], reference, rtol=1e-4)
