r"""Does a sharded step deadlock on simulated CPU devices? With and without the scheduler flag.

  .venv/bin/python benchmarks/cpu_collective_deadlock.py
  .venv/bin/python benchmarks/cpu_collective_deadlock.py --stage=fine --repeats=1000

For each XLA:CPU scheduler (the default concurrency-optimized one, and the one
`simulated_devices.xla_flags` selects), a child process on 8 simulated devices
(mesh data 4 x model 2, as tests/test_stage_training.py) repeats: init the tiny
stage LM, run 3 train steps, read the loss. A deadlocked collective aborts the
child after --stuck_seconds. Prints one JSON line per scheduler: repeats done,
whether it hung, seconds. Re-run it after a jax upgrade to see whether the flag
is still needed. Not timed: nothing here is a speed figure.
"""
import json
import os
import subprocess
import sys
import time

from absl import app
from absl import flags

_STAGE = flags.DEFINE_enum("stage", "coarse", ["semantic", "coarse", "fine"],
                           "Stage LM to train (coarse and fine steps have collective-permutes).")
_REPEATS = flags.DEFINE_integer("repeats", 400, "Init + 3 steps, this many times per scheduler.")
_STUCK_SECONDS = flags.DEFINE_integer("stuck_seconds", 30,
                                      "XLA aborts a collective that waits this long.")
_CHILD = flags.DEFINE_bool("child", False, "Internal: run the loop in this process.")

_DEVICES = 8


def _loop(stage_name: str, repeats: int) -> None:
  """Prints each finished repeat's index; the parent counts them."""
  import jax  # pylint: disable=g-import-not-at-top  (after the parent set XLA_FLAGS)
  import optax  # pylint: disable=g-import-not-at-top
  from musiclm_jax import musiclm_spec, partitioning, trainer  # pylint: disable=g-import-not-at-top
  from musiclm_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from musiclm_jax.data.synthetic import stage_tasks  # pylint: disable=g-import-not-at-top
  from musiclm_jax.layers import transformer  # pylint: disable=g-import-not-at-top
  from musiclm_jax.models import lm  # pylint: disable=g-import-not-at-top

  config = pipeline.DatasetConfig(
      stage_tasks.task_name(stage_name), {"targets": stage_tasks.sequence_length(stage_name)},
      split="train", batch_size=8, module=stage_tasks.__name__)
  batches = pipeline.get_batches(config)
  batches = [next(batches) for _ in range(3)]
  model = lm.DecoderOnlyLM(transformer.TransformerConfig(d_model=128, num_layers=2, num_heads=4,
                                                         d_ff=512),
                           musiclm_spec.STAGE_CONFIGS[stage_name])
  mesh = partitioning.Partitioner(model_parallel=2)
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batches[0].items()}
  steps = trainer.Trainer(model, mesh, optax.adamw(3e-3), spec)
  for i in range(repeats):
    state = steps.init_state()
    for batch in batches:
      state, metrics = steps.train_step(state, mesh.make_global_batch(batch))
      float(metrics["loss"])
    print(i, flush=True)


def _run_child(xla_flags: str) -> dict:
  env = dict(os.environ, XLA_FLAGS=f"{xla_flags} --xla_cpu_collective_call_terminate_timeout_seconds="
             f"{_STUCK_SECONDS.value} --xla_cpu_collective_call_warn_stuck_timeout_seconds=10",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  start = time.time()
  proc = subprocess.run([sys.executable, __file__, "--child", f"--stage={_STAGE.value}",
                         f"--repeats={_REPEATS.value}"], env=env, capture_output=True, text=True,
                        check=False)
  done = sum(line.strip().isdigit() for line in proc.stdout.splitlines())
  hung = "may be stuck" in proc.stderr  # XLA's warning before it aborts a stuck collective
  if proc.returncode and not hung:
    raise RuntimeError(f"the child failed without a stuck collective:\n{proc.stderr[-3000:]}")
  return {"xla_flags": xla_flags, "stage": _STAGE.value, "repeats_done": done,
          "repeats_asked": _REPEATS.value, "hung": hung, "seconds": round(time.time() - start, 1),
          "load_average_1min": round(os.getloadavg()[0], 2)}


def main(argv):
  del argv
  if _CHILD.value:
    _loop(_STAGE.value, _REPEATS.value)
    return
  from musiclm_jax import simulated_devices  # pylint: disable=g-import-not-at-top
  default = f"--xla_force_host_platform_device_count={_DEVICES}"
  for xla_flags in (default, simulated_devices.xla_flags(_DEVICES)):
    print(json.dumps(_run_child(xla_flags)), flush=True)


if __name__ == "__main__":
  app.run(main)
