r"""Training throughput of a stage Transformer: tokens/s, step time, MFU.

  .venv/bin/python benchmarks/train_throughput.py --scale=small
  .venv/bin/python benchmarks/train_throughput.py --scale=tiny --batch_size=16 --length=128

Builds the stage from gin (models/<stage>.gin + scales/<scale>.gin), trains it
through `trainer.Trainer` on random tokens for --steps timed steps after
--warmup_steps, and prints one JSON line. MFU is the model's analytic FLOPs
(`flops_per_batch`) per second over the peak `metrics.peak_flops()`
reports (on CPU: a float32 matmul measured once and cached, which the trainer
logs against); `mfu_vs_peak_this_run` is over the same matmul measured in this
run, after the steps, which is what to compare with another run's figures.
"""
import json
import time

from absl import flags
import jax
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import metrics
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib

_SCALE = flags.DEFINE_string("scale", "small", "gin/scales/<scale>.gin")
_STAGE = flags.DEFINE_string("stage", "semantic", "gin/models/<stage>.gin")
_BATCH = flags.DEFINE_integer("batch_size", 4, "Global batch size.")
_LENGTH = flags.DEFINE_integer("length", 762, "Tokens per row (semantic: 12 MuLan + 750).")
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps.")
_WARMUP = flags.DEFINE_integer("warmup_steps", 2, "Untimed steps (compilation).")
_OPTIMIZER = flags.DEFINE_string("optimizer", "adamw", "adamw | adafactor | sgd")
_BINDINGS = flags.DEFINE_multi_string("binding", [], "Extra gin bindings, e.g. "
                                      "\"transformer.TransformerConfig.remat_policy = 'full'\"")


def main(argv):
  del argv
  model = gin_models.build_model([f"models/{_STAGE.value}.gin", f"scales/{_SCALE.value}.gin"],
                                 _BINDINGS.value)
  rng = np.random.default_rng(0)
  shape = (_BATCH.value, _LENGTH.value)
  tokens = rng.integers(2, model.vocab_size, shape).astype(np.int32)
  batch = {"decoder_input_tokens": tokens, "decoder_target_tokens": np.roll(tokens, -1, axis=1),
           "decoder_loss_weights": np.ones(shape, np.float32)}
  spec = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  partitioner = partitioning.Partitioner()
  trainer = trainer_lib.Trainer(model, partitioner,
                                optimizers.make_optimizer(_OPTIMIZER.value, learning_rate=1e-4), spec)
  state = trainer.init_state()
  global_batch = partitioner.make_global_batch(batch)
  for _ in range(_WARMUP.value):
    state, _ = trainer.train_step(state, global_batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(_STEPS.value):
    state, _ = trainer.train_step(state, global_batch)
  jax.block_until_ready(state)
  step_seconds = (time.perf_counter() - start) / _STEPS.value
  peak = metrics.peak_flops(partitioner.mesh.devices.flat)
  rates = metrics.throughput(step_seconds, float(np.prod(shape)), trainer.flops_per_step, peak)
  peak_this_run = metrics.measure_matmul_peak_flops()
  rates["mfu_vs_peak_this_run"] = metrics.throughput(
      step_seconds, float(np.prod(shape)), trainer.flops_per_step, peak_this_run)["mfu"]
  params = sum(x.size for x in jax.tree.leaves(state.params))
  print(json.dumps({"benchmark": "train_throughput", "stage": _STAGE.value, "scale": _SCALE.value,
                    "batch_size": _BATCH.value, "length": _LENGTH.value, "params": params,
                    "devices": jax.device_count(), "peak_gflops": peak / 1e9,
                    "peak_gflops_this_run": peak_this_run / 1e9,
                    "flops_per_step": trainer.flops_per_step, **rates}))


if __name__ == "__main__":
  # gin_utils.run also sets the binaries' XLA:CPU flags before JAX starts.
  gin_utils.run(main, usage="configure with --scale, --stage, --batch_size, --length, --steps, "
                           "--binding")
