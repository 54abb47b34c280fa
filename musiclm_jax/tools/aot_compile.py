r"""Compiles a stage's train step ahead of time on simulated devices; prints its memory.

  python -m musiclm_jax.tools.aot_compile --stage=semantic --scale=paper

Lowers `Trainer.lower_train_step()` on abstract shapes (nothing is allocated),
compiles it for a (devices / model_parallel, model_parallel) mesh of simulated
CPU devices and prints one JSON line with the per-device sizes XLA reports
(`compiled.memory_analysis()`). This proves a config fits and partitions
before anyone rents the accelerators; CPU buffer sizes match an accelerator's
only approximately (different fusion and layouts).
"""
import os
import sys

_NUM_DEVICES = 8


def _simulate_devices(argv) -> None:
  # The device count must be fixed before jax initialises, so it is read from argv here.
  count = next((a.split("=", 1)[1] for a in argv if a.startswith("--num_devices=")), _NUM_DEVICES)
  flag = f"--xla_force_host_platform_device_count={count}"
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  os.environ["XLA_FLAGS"] = " ".join(flags + [flag])
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")


if __name__ == "__main__":
  _simulate_devices(sys.argv)

import json
import time

from absl import app
from absl import flags
import gin
import jax

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib

# Tokens per row of each stage's training crop (paper): 12 MuLan tokens, then
#   semantic 30 s of 25 Hz semantic tokens;
#   coarse   10 s of semantic (250) + 10 s of 50 Hz x 4 coarse tokens (2000);
#   fine     3 s of coarse (150 x 4) + 3 s of fine (150 x 8).
STAGE_LENGTHS = {"semantic": 12 + 750, "coarse": 12 + 250 + 2000, "fine": 600 + 1200}

_STAGE = flags.DEFINE_enum("stage", "semantic", list(STAGE_LENGTHS), "gin/models/<stage>.gin")
_SCALE = flags.DEFINE_string("scale", "paper", "gin/scales/<scale>.gin")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Global batch size.")
_LENGTH = flags.DEFINE_integer("length", None, "Tokens per row (default: the stage's crop).")
_MODEL_PARALLEL = flags.DEFINE_integer("model_parallel", 2, "Size of the model mesh axis.")
flags.DEFINE_integer("num_devices", _NUM_DEVICES, "Simulated devices (read before jax starts).")
_OPTIMIZER = flags.DEFINE_string("optimizer", "adamw", "adamw | adafactor | sgd")
_BINDINGS = flags.DEFINE_multi_string("binding", [], "Extra gin bindings, e.g. "
                                      "\"transformer.TransformerConfig.remat_policy = 'full'\"")


def compile_train_step(stage: str, scale: str, batch_size: int, length: int | None = None,
                       model_parallel: int = 2, optimizer: str = "adamw",
                       bindings=()) -> dict:
  """Lowers and compiles one train step; returns the memory report as a dict."""
  model = gin_models.build_model([f"models/{stage}.gin", f"scales/{scale}.gin"], bindings)
  gin.clear_config()
  length = length or STAGE_LENGTHS[stage]
  spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((batch_size, length), "int32"),
          "decoder_target_tokens": jax.ShapeDtypeStruct((batch_size, length), "int32"),
          "decoder_loss_weights": jax.ShapeDtypeStruct((batch_size, length), "float32")}
  partitioner = partitioning.Partitioner(model_parallel=model_parallel)
  trainer = trainer_lib.Trainer(model, partitioner,
                                optimizers.make_optimizer(optimizer, learning_rate=1e-4), spec)
  start = time.perf_counter()
  lowered = trainer.lower_train_step()
  lower_seconds = time.perf_counter() - start
  compiled = lowered.compile()
  compile_seconds = time.perf_counter() - start - lower_seconds
  memory = compiled.memory_analysis()
  params = sum(x.size for x in jax.tree.leaves(trainer.abstract_state.params))
  sizes = {name: getattr(memory, f"{name}_size_in_bytes")
           for name in ("argument", "output", "temp", "generated_code", "alias")}
  return {"benchmark": "aot_compile", "stage": stage, "scale": scale, "batch_size": batch_size,
          "length": length, "params": params, "devices": jax.device_count(),
          "mesh": dict(partitioner.mesh.shape), "optimizer": optimizer,
          "per_device_bytes": sizes,
          "per_device_gib": {k: round(v / 2**30, 3) for k, v in sizes.items()},
          "lower_seconds": round(lower_seconds, 1), "compile_seconds": round(compile_seconds, 1)}


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  print(json.dumps(compile_train_step(_STAGE.value, _SCALE.value, _BATCH.value, _LENGTH.value,
                                      _MODEL_PARALLEL.value, _OPTIMIZER.value, _BINDINGS.value)))


if __name__ == "__main__":
  gin_utils.run(main, usage="use --stage, --scale, --batch_size and the other flags of --help")
