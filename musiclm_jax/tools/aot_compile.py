r"""Compiles a stage's train step ahead of time and prints its per-device memory.

  python -m musiclm_jax.tools.aot_compile --stage=semantic --scale=paper
  python -m musiclm_jax.tools.aot_compile --stage=semantic --scale=paper --topology=v5e:4x4
  python -m musiclm_jax.tools.aot_compile --stage=coarse --scale=paper --topology=v4:2x2x4 --find_max_batch

Lowers `Trainer.lower_train_step()` on abstract shapes (nothing is allocated) and
compiles it for a (devices / model_parallel, model_parallel) mesh; prints one JSON
line with the per-device sizes XLA reports (`compiled.memory_analysis()`).

Without --topology the devices are simulated CPU devices: proof that a config
partitions, with sizes that match an accelerator's only approximately. With
--topology (needs libtpu: `pip install -e '.[tpu]'`; no TPU attached) they are the
chips of that TPU topology (`--num_slices` for multislice) and XLA's TPU compiler
does the work: the sizes are the chip's, and a program that does not fit its HBM
is refused, reported as one line naming the chip, its HBM and the bytes needed.
--find_max_batch asks the compiler for the largest batch per data-parallel replica
that fits, by bisection.
"""
import os
import sys

_NUM_DEVICES = 8


def _set_up_backend(argv) -> None:
  # Both must be fixed before jax initialises, so they are read from argv here.
  count = next((a.split("=", 1)[1] for a in argv if a.startswith("--num_devices=")), _NUM_DEVICES)
  flag = f"--xla_force_host_platform_device_count={count}"
  flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  os.environ["XLA_FLAGS"] = " ".join(flags + [flag])
  os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  if any(a.startswith("--topology=") for a in argv):
    # Compile only: no metadata server to ask, and no TPU whose lock other processes could hold.
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


if __name__ == "__main__":
  _set_up_backend(sys.argv)

import json
import re
import time
from typing import Any, Sequence

from absl import flags
import gin
import jax

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import metrics
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.errors import UserError
from musiclm_jax.tools import bisect_limit

# Tokens per row of each stage's training crop (paper): 12 MuLan tokens, then
#   semantic 30 s of 25 Hz semantic tokens;
#   coarse   10 s of semantic (250) + 10 s of 50 Hz x 4 coarse tokens (2000);
#   fine     3 s of coarse (150 x 4) + 3 s of fine (150 x 8).
STAGE_LENGTHS = {"semantic": 12 + 750, "coarse": 12 + 250 + 2000, "fine": 600 + 1200}

# HBM per chip as the TPU compiler counts it (programs beyond it are refused).
TPU_HBM_GIB = {"v4": 30.75, "v5e": 15.75, "v5p": 95.74, "v6e": 31.25}
# Generations whose chips pair two TensorCores into one device.
_MEGACORE = ("v4", "v5p")

_STAGE = flags.DEFINE_enum("stage", "semantic", list(STAGE_LENGTHS), "gin/models/<stage>.gin")
_SCALE = flags.DEFINE_string("scale", "paper", "gin/scales/<scale>.gin")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Global batch size.")
_LENGTH = flags.DEFINE_integer("length", None, "Tokens per row (default: the stage's crop).")
_MODEL_PARALLEL = flags.DEFINE_integer("model_parallel", 2, "Size of the model mesh axis.")
flags.DEFINE_integer("num_devices", _NUM_DEVICES, "Simulated devices (read before jax starts).")
_TOPOLOGY = flags.DEFINE_string("topology", None, "Compile for this TPU topology instead, e.g. "
                                "v5e:4x4 (v5e-16), v4:2x2x4 (v4-32), v5p:2x2x1 (v5p-8), v6e:4x4.")
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "Slices of --topology joined by DCN (multislice).")
_FIND_MAX_BATCH = flags.DEFINE_bool("find_max_batch", False, "With --topology: report the largest "
                                    "batch per data-parallel replica that fits (bisection).")
_MFU = flags.DEFINE_float("mfu", 0.4, "Model FLOPs utilisation the expected step time assumes.")
_OPTIMIZER = flags.DEFINE_string("optimizer", "adamw", "adamw | adafactor | sgd")
_BINDINGS = flags.DEFINE_multi_string("binding", [], "Extra gin bindings, e.g. "
                                      "\"transformer.TransformerConfig.remat_policy = 'full'\"")


class DoesNotFitError(UserError):
  """The TPU compiler refused the program: it needs more HBM than the chip has."""


def tpu_devices(topology: str, num_slices: int = 1) -> Sequence[Any]:
  """The devices of a TPU topology such as 'v5e:4x4', without any TPU attached (needs libtpu)."""
  generation = topology.split(":")[0]
  if generation not in TPU_HBM_GIB:
    raise UserError(f"unknown TPU generation in --topology={topology}: use one of "
                    f"{', '.join(TPU_HBM_GIB)}, e.g. v5e:4x4")
  kwargs = {"chip_config_name": "megacore"} if generation in _MEGACORE else {}
  if num_slices > 1:
    kwargs["num_slices"] = num_slices
  try:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    return topologies.get_topology_desc(platform="tpu", topology_name=topology, **kwargs).devices
  except Exception as e:  # jax raises RuntimeError, ValueError or its own error types here.
    raise UserError(f"cannot make TPU topology {topology}: {str(e).splitlines()[0]} "
                    f"(is libtpu installed? pip install -e '.[tpu]')") from None


def compile_train_step(stage: str, scale: str, batch_size: int, length: int | None = None,
                       model_parallel: int = 2, optimizer: str = "adamw",
                       bindings=(), devices: Sequence[Any] | None = None, mfu: float = 0.4) -> dict:
  """Lowers and compiles one train step on `devices` (default: jax.devices()); returns the report.

  The report's expected step time is the model's analytic FLOPs per step over the
  devices' published peak at `mfu` (absent for devices without a published peak).

  Raises:
    DoesNotFitError: the TPU compiler refused the program for lack of HBM.
  """
  model = gin_models.build_model([f"models/{stage}.gin", f"scales/{scale}.gin"], bindings)
  gin.clear_config()
  length = length or STAGE_LENGTHS[stage]
  spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((batch_size, length), "int32"),
          "decoder_target_tokens": jax.ShapeDtypeStruct((batch_size, length), "int32"),
          "decoder_loss_weights": jax.ShapeDtypeStruct((batch_size, length), "float32")}
  partitioner = partitioning.Partitioner(model_parallel=model_parallel, devices=devices)
  trainer = trainer_lib.Trainer(model, partitioner,
                                optimizers.make_optimizer(optimizer, learning_rate=1e-4), spec)
  chip = partitioner.mesh.devices.flat[0].device_kind
  start = time.perf_counter()
  lowered = trainer.lower_train_step()
  lower_seconds = time.perf_counter() - start
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    raise DoesNotFitError(f"{stage} ({scale}) with batch {batch_size} x {length} tokens does not fit "
                          f"a {chip} chip: {_hbm_shortfall(str(e))}; lower --batch_size or raise "
                          f"--model_parallel") from None
  compile_seconds = time.perf_counter() - start - lower_seconds
  memory = compiled.memory_analysis()
  params = sum(x.size for x in jax.tree.leaves(trainer.abstract_state.params))
  sizes = {name: getattr(memory, f"{name}_size_in_bytes")
           for name in ("argument", "output", "temp", "generated_code", "alias")}
  # Donated state shares its buffers with the output (alias): count it once.
  sizes["total"] = (sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
                    + sizes["generated_code"])
  report = {"benchmark": "aot_compile", "stage": stage, "scale": scale, "batch_size": batch_size,
            "batch_per_replica": batch_size // partitioner.data_parallel,
            "length": length, "params": params, "devices": partitioner.mesh.size, "chip": chip,
            "mesh": dict(partitioner.mesh.shape), "optimizer": optimizer,
            "per_device_bytes": sizes,
            "per_device_gib": {k: round(v / 2**30, 3) for k, v in sizes.items()},
            "lower_seconds": round(lower_seconds, 1), "compile_seconds": round(compile_seconds, 1),
            "flops_per_step": trainer.flops_per_step}
  devices = list(partitioner.mesh.devices.flat)
  # Simulated CPU devices have no peak worth dividing by.
  peak = metrics.peak_flops(devices) if devices[0].platform != "cpu" else 0.0
  if peak and trainer.flops_per_step:
    seconds = trainer.flops_per_step / (mfu * peak)
    report.update(mfu=mfu, expected_step_seconds=float(f"{seconds:.3g}"))
  return report


def _hbm_shortfall(message: str) -> str:
  """'needs X of its Y HBM' from the TPU compiler's out-of-memory message."""
  # XLA writes binary sizes as 15.75G (GiB), 512.00M (MiB), ...
  size = r"([\d.]+)([KMGT])"
  used = re.search(rf"Used {size} of {size} hbm", message)
  if used is None:
    used = re.search(rf"required for [^(]*\({size}\) exceeds available HBM \({size}\)", message)
  if used is None:
    return next(l.strip() for l in message.splitlines() if l.strip())
  need, need_unit, have, have_unit = used.groups()
  return f"it needs {need} {need_unit}iB of its {have} {have_unit}iB HBM"


def find_max_batch(stage: str, scale: str, devices: Sequence[Any], model_parallel: int = 2,
                   **kwargs) -> dict:
  """The report of the largest batch (a multiple of the data-parallel replicas) that fits."""
  replicas = len(devices) // model_parallel
  reports = {}

  def fits(per_replica: int) -> bool:
    try:
      reports[per_replica] = compile_train_step(stage, scale, per_replica * replicas,
                                                model_parallel=model_parallel, devices=devices, **kwargs)
      return True
    except DoesNotFitError:
      return False

  best = bisect_limit.largest_fitting(fits)
  if not best:
    raise DoesNotFitError(f"{stage} ({scale}) does not fit even 1 row per replica on "
                          f"{devices[0].device_kind}: raise --model_parallel")
  return dict(reports[best], max_batch_per_replica=best)


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  devices = tpu_devices(_TOPOLOGY.value, _NUM_SLICES.value) if _TOPOLOGY.value else None
  kwargs = dict(optimizer=_OPTIMIZER.value, bindings=_BINDINGS.value, mfu=_MFU.value)
  if _FIND_MAX_BATCH.value:
    if devices is None:
      raise UserError("--find_max_batch needs --topology: only the TPU compiler refuses what does not fit")
    report = find_max_batch(_STAGE.value, _SCALE.value, devices, _MODEL_PARALLEL.value,
                            length=_LENGTH.value, **kwargs)
  else:
    report = compile_train_step(_STAGE.value, _SCALE.value, _BATCH.value, _LENGTH.value,
                                _MODEL_PARALLEL.value, devices=devices, **kwargs)
  if _TOPOLOGY.value:
    report.update(topology=_TOPOLOGY.value, num_slices=_NUM_SLICES.value,
                  hbm_gib=TPU_HBM_GIB[_TOPOLOGY.value.split(":")[0]])
  print(json.dumps(report))


if __name__ == "__main__":
  gin_utils.run(main, usage="use --stage, --scale, --batch_size and the other flags of --help")
