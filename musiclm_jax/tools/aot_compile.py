r"""Compiles a trained component's train step ahead of time and prints its per-device memory.

  python -m musiclm_jax.tools.aot_compile --component=semantic --scale=paper
  python -m musiclm_jax.tools.aot_compile --component=semantic --scale=paper --topology=v5e:4x4
  python -m musiclm_jax.tools.aot_compile --component=coarse --scale=paper --topology=v4:2x2x4 --find_max_batch
  python -m musiclm_jax.tools.aot_compile --component=soundstream --scale=paper --topology=v5p:2x2x1

Components: the three stages (gin/models/<stage>.gin + gin/scales/<scale>.gin, rows of
the stage's training crop), and SoundStream (its GAN step, discriminators included),
w2v-BERT and MuLan (gin/models/<c>.gin + gin/scales/<c>_<scale>.gin, rows of audio).
Lowers `Trainer.lower_train_step()` on abstract shapes (nothing is allocated) and
compiles it for a (devices / model_parallel, model_parallel) mesh; prints one JSON
line with the per-device sizes XLA reports (`compiled.memory_analysis()`).

Without --topology the devices are simulated CPU devices: proof that a config
partitions, with sizes that match an accelerator's only approximately. With
--topology (needs libtpu: `pip install -e '.[tpu]'`; no TPU attached) they are the
chips of that TPU topology (`--num_slices` for multislice) and XLA's TPU compiler
does the work: the sizes are the chip's, and a program that does not fit its HBM
is refused, reported as one line naming the chip, its HBM and the bytes needed.
When the compiler refuses, the JSON line is {"refused": the error, "needed_bytes": per
chip} and the error follows on stderr (exit 2).
--find_max_batch asks the compiler for the largest batch per data-parallel replica
that fits (accepted without recompute, per-chip total within HBM: `max_batch.search`),
each next try aimed by the bytes of the last ones (about 4 compiles), each compile in
a process of its own: a compiled program's host memory outlives it in the process
that compiled it (a SoundStream row grew one process from 3 to 27 GB).
Every component's rows on three topologies: tools/memory_table.py.
"""
import sys

_NUM_DEVICES = 8


if __name__ == "__main__":
  from musiclm_jax.tools import compile_backend  # pylint: disable=g-import-not-at-top
  # Read from argv: both are fixed before jax initialises.
  compile_backend.set_up(
      next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--num_devices=")), _NUM_DEVICES),
      tpu_topology=any(a.startswith("--topology=") for a in sys.argv))

import json
import re
import time
from typing import Any, Callable, Mapping, Sequence

from absl import flags
from absl import logging
import gin
import jax

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import metrics
from musiclm_jax import musiclm_spec
from musiclm_jax import optimizers
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import tasks
from musiclm_jax.errors import UserError
from musiclm_jax.models import mulan
from musiclm_jax.models import soundstream
from musiclm_jax.tools import max_batch
from musiclm_jax.tools import tpu_chips

# Audio crops of the codec and w2v-BERT: neither paper gives one for music, so these are the
# table's assumption (SoundStream's GAN trains on short crops, w2v-BERT on utterance-long
# ones). MuLan's rows are one window of its config; a stage's its training crop (musiclm_spec).
AUDIO_CROP_SECONDS = {"soundstream": 1.0, "w2v_bert": 10.0}
COMPONENTS = (*musiclm_spec.STAGES, "soundstream", "w2v_bert", "mulan")
# Components that train with their own optimizer (the others take --optimizer).
_OWN_OPTIMIZERS = {"soundstream": soundstream.gan_optimizer, "mulan": mulan.contrastive_optimizer}

_COMPONENT = flags.DEFINE_enum("component", "semantic", list(COMPONENTS), "What to compile.")
_SCALE = flags.DEFINE_string("scale", "paper", "gin/scales/<scale>.gin (<component>_<scale>.gin "
                             "for soundstream, w2v_bert, mulan)")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Global batch size.")
_LENGTH = flags.DEFINE_integer("length", None, "Tokens per row of a stage, audio samples per row "
                               "of the others (default: the training crop).")
_MODEL_PARALLEL = flags.DEFINE_integer("model_parallel", 2, "Size of the model mesh axis.")
flags.DEFINE_integer("num_devices", _NUM_DEVICES, "Simulated devices (read before jax starts).")
_TOPOLOGY = flags.DEFINE_string("topology", None, "Compile for this TPU topology instead, e.g. "
                                "v5e:4x4 (v5e-16), v4:2x2x4 (v4-32), v5p:2x2x1 (v5p-8), v6e:4x4.")
_NUM_SLICES = flags.DEFINE_integer("num_slices", 1, "Slices of --topology joined by DCN (multislice).")
_FIND_MAX_BATCH = flags.DEFINE_bool("find_max_batch", False, "With --topology: report the largest "
                                    "batch per data-parallel replica that fits (bisection).")
_MFU = flags.DEFINE_float("mfu", 0.4, "Model FLOPs utilisation the expected step time assumes.")
_OPTIMIZER = flags.DEFINE_string("optimizer", "adamw", "adamw | adafactor | sgd (SoundStream and "
                                 "MuLan have their own)")
_BINDINGS = flags.DEFINE_multi_string("binding", [], "Extra gin bindings, e.g. "
                                      "\"transformer.TransformerConfig.remat_policy = 'full'\"")


class DoesNotFitError(UserError):
  """The TPU compiler refused the program: it needs more HBM than the chip has."""

  def __init__(self, message: str, needed_bytes: float | None = None):
    super().__init__(message)
    self.needed_bytes = needed_bytes  # per chip, as the compiler reported it (None if it did not)


def tpu_devices(topology: str, num_slices: int = 1) -> Sequence[Any]:
  """The devices of a TPU topology such as 'v5e:4x4', without any TPU attached (needs libtpu)."""
  megacore = tpu_chips.generation(topology) in tpu_chips.MEGACORE_GENERATIONS
  kwargs = {"chip_config_name": "megacore"} if megacore else {}
  if num_slices > 1:
    kwargs["num_slices"] = num_slices
  try:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    return topologies.get_topology_desc(platform="tpu", topology_name=topology, **kwargs).devices
  except Exception as e:  # jax raises RuntimeError, ValueError or its own error types here.
    raise UserError(f"cannot make TPU topology {topology}: {str(e).splitlines()[0]} "
                    f"(is libtpu installed? pip install -e '.[tpu]')") from None


def build_component(component: str, scale: str, bindings=()):
  """The `%MODEL` of a component at a scale (see the module docstring for the gin files)."""
  if component not in COMPONENTS:
    raise UserError(f"unknown component {component!r}: use one of {', '.join(COMPONENTS)}")
  scale_file = scale if component in musiclm_spec.STAGES else f"{component}_{scale}"
  try:
    return gin_models.build_model([f"models/{component}.gin", f"scales/{scale_file}.gin"], bindings)
  finally:
    gin.clear_config()


def batch_spec(component: str, model, batch_size: int,
               length: int | None = None) -> dict[str, jax.ShapeDtypeStruct]:
  """One training batch's shapes: [batch, tokens] for a stage, [batch, samples] audio otherwise.

  `length` (default: the training crop) is tokens per row of a stage, samples of the others.
  """
  def rows(dtype, width):
    return jax.ShapeDtypeStruct((batch_size, width), dtype)

  if component in musiclm_spec.STAGES:
    length = length or tasks.feature_lengths(component)["targets"]
    return {"decoder_input_tokens": rows("int32", length),
            "decoder_target_tokens": rows("int32", length),
            "decoder_loss_weights": rows("float32", length)}
  if component == "mulan":
    text = model.config.max_text_length
    return {"audio": rows("float32", length or model.config.window_samples),
            "text_ids": rows("int32", text), "text_mask": rows("int32", text)}
  return {"audio": rows("float32", length or round(AUDIO_CROP_SECONDS[component]
                                                   * musiclm_spec.SAMPLE_RATE_HZ))}


def compile_train_step(component: str, scale: str, batch_size: int, length: int | None = None,
                       model_parallel: int = 2, optimizer: str = "adamw",
                       bindings=(), devices: Sequence[Any] | None = None, mfu: float = 0.4) -> dict:
  """Lowers and compiles one train step on `devices` (default: jax.devices()); returns the report.

  The report's expected step time is the FLOPs per step over the devices' published
  peak at `mfu` (absent for devices without a published peak): the model's analytic
  count where it has one (the stages), else the compiler's (`flops_source` says which).

  Raises:
    DoesNotFitError: the TPU compiler refused the program for lack of HBM.
  """
  model = build_component(component, scale, bindings)
  spec = batch_spec(component, model, batch_size, length)
  length = next(iter(spec.values())).shape[1]
  make_optimizer = _OWN_OPTIMIZERS.get(component)
  tx = (make_optimizer(learning_rate=1e-4) if make_optimizer
        else optimizers.make_optimizer(optimizer, learning_rate=1e-4))
  partitioner = partitioning.Partitioner(model_parallel=model_parallel, devices=devices)
  trainer = trainer_lib.Trainer(model, partitioner, tx, spec)
  chip = partitioner.mesh.devices.flat[0].device_kind
  start = time.perf_counter()
  lowered = trainer.lower_train_step()
  lower_seconds = time.perf_counter() - start
  try:
    compiled = lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    shortfall, needed_bytes = _hbm_shortfall(str(e))
    raise DoesNotFitError(f"{component} ({scale}) with batch {batch_size} x {length} does not fit "
                          f"a {chip} chip: {shortfall}; lower --batch_size or raise "
                          f"--model_parallel", needed_bytes) from None
  compile_seconds = time.perf_counter() - start - lower_seconds
  memory = compiled.memory_analysis()
  params = sum(x.size for x in jax.tree.leaves(trainer.abstract_state.params))
  sizes = {name: getattr(memory, f"{name}_size_in_bytes")
           for name in ("argument", "output", "temp", "generated_code", "alias", "host_temp")}
  sizes["peak"] = memory.peak_memory_in_bytes
  # Donated state shares its buffers with the output (alias): count it once.
  sizes["total"] = (sizes["argument"] + sizes["output"] - sizes["alias"] + sizes["temp"]
                    + sizes["generated_code"])
  devices = list(partitioner.mesh.devices.flat)
  # XLA counts one device's share of the partitioned program.
  compiled_flops = _compiled_flops(compiled) * len(devices)
  flops, flops_source = trainer.flops_per_step, "analytic"
  if not flops:
    flops, flops_source = compiled_flops, "compiler"
  report = {"benchmark": "aot_compile", "component": component, "scale": scale,
            "batch_size": batch_size, "batch_per_replica": batch_size // partitioner.data_parallel,
            "length": length, "params": params, "devices": partitioner.mesh.size, "chip": chip,
            "mesh": dict(partitioner.mesh.shape),
            "optimizer": make_optimizer.__name__ if make_optimizer else optimizer,
            "per_device_bytes": sizes,
            "per_device_gib": {k: round(v / 2**30, 3) for k, v in sizes.items()},
            "lower_seconds": round(lower_seconds, 1), "compile_seconds": round(compile_seconds, 1),
            "flops_per_step": flops, "flops_source": flops_source, "compiled_flops": compiled_flops}
  # Simulated CPU devices have no peak worth dividing by.
  peak = metrics.peak_flops(devices) if devices[0].platform != "cpu" else 0.0
  if peak and flops:
    report.update(mfu=mfu, expected_step_seconds=metrics.expected_step_seconds(flops, peak, mfu))
  return report


def _compiled_flops(compiled) -> float:
  """FLOPs XLA's cost analysis gives the compiled program (0 when it gives none)."""
  cost = compiled.cost_analysis()
  # Older jax returns one dict per program, newer a dict.
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", 0.0))


def _hbm_shortfall(message: str) -> tuple[str, float | None]:
  """('it needs X of its Y HBM', X in bytes) from the TPU compiler's out-of-memory message."""
  # XLA writes binary sizes as 15.75G (GiB), 512.00M (MiB), ...
  size = r"([\d.]+)([KMGT])"
  used = re.search(rf"Used {size} of {size} hbm", message)
  if used is None:
    used = re.search(rf"required for [^(]*\({size}\) exceeds available HBM \({size}\)", message)
  if used is None:
    return next(l.strip() for l in message.splitlines() if l.strip()), None
  need, need_unit, have, have_unit = used.groups()
  needed_bytes = float(need) * 2**(10 * "KMGT".index(need_unit) + 10)
  return f"it needs {need} {need_unit}iB of its {have} {have_unit}iB HBM", needed_bytes


def find_max_batch(component: str, scale: str, topology: str, model_parallel: int = 2,
                   num_slices: int = 1, first: int = 1, slope_bytes: float | None = None,
                   flops_per_row: float | None = None,
                   done: Mapping[int, max_batch.Outcome] | None = None,
                   on_try: Callable[[int, max_batch.Outcome], None] | None = None,
                   length: int | None = None, optimizer: str = "adamw", bindings=(),
                   mfu: float = 0.4) -> dict:
  """The report of the largest batch (a multiple of the data-parallel replicas) that fits.

  `max_batch.search` over this component's train step on a TPU topology (what fits,
  the aim of each try, `done` and `on_try` to resume an interrupted search): about
  4 compiles, 2-3 when `first` and `slope_bytes` come from earlier searches, each in
  a child process (`max_batch.compile_in_child`). The report's `tries` lists every batch's
  verdict and bytes.
  """
  # Counted, not made: the compiles run in children, and making libtpu's devices here only to
  # count them started libtpu in this process too, for the hours a search can take.
  replicas = tpu_chips.num_chips(topology, num_slices) // model_parallel

  def compile_batch(per_replica: int) -> max_batch.Outcome:
    return max_batch.compile_in_child(component, scale, per_replica * replicas, topology,
                                      num_slices, model_parallel, length, optimizer, bindings, mfu)

  best, reports, tries = max_batch.search(compile_batch, tpu_chips.hbm_gib(topology) * 2**30,
                                          first, slope_bytes, flops_per_row, done, on_try)
  if not best:
    raise DoesNotFitError(f"{component} ({scale}) does not fit even 1 row per replica on "
                          f"a {tpu_chips.generation(topology)} chip: raise --model_parallel")
  return dict(reports[best], max_batch_per_replica=best, tries=tries)


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  topology = _TOPOLOGY.value
  kwargs = dict(optimizer=_OPTIMIZER.value, bindings=_BINDINGS.value, mfu=_MFU.value)
  if _FIND_MAX_BATCH.value:
    if topology is None:
      raise UserError("--find_max_batch needs --topology: only the TPU compiler refuses what does not fit")
    report = find_max_batch(_COMPONENT.value, _SCALE.value, topology, _MODEL_PARALLEL.value,
                            _NUM_SLICES.value, length=_LENGTH.value, **kwargs)
  else:
    devices = tpu_devices(topology, _NUM_SLICES.value) if topology else None
    try:
      report = compile_train_step(_COMPONENT.value, _SCALE.value, _BATCH.value, _LENGTH.value,
                                  _MODEL_PARALLEL.value, devices=devices, **kwargs)
    except DoesNotFitError as e:
      # For max_batch.compile_in_child: the refusal and its bytes, then the error.
      print(json.dumps({"refused": str(e), "needed_bytes": e.needed_bytes}), flush=True)
      raise
  if topology:
    report.update(topology=topology, num_slices=_NUM_SLICES.value,
                  hbm_gib=tpu_chips.hbm_gib(topology))
  print(json.dumps(report))


if __name__ == "__main__":
  gin_utils.run(main, usage="use --component, --scale, --batch_size and the other flags of --help")
