r"""The README's memory table: every trained component at a scale, compiled for real TPU topologies.

  python -m musiclm_jax.tools.memory_table --out=docs/memory_table.md

For each component × topology (`aot_compile.COMPONENTS`) the TPU compiler (libtpu,
no TPU attached) finds the largest per-replica batch that fits
(`max_batch.search`: accepted without recompute, per-chip total within
HBM); the row gives per-chip argument / temp / total memory at that batch, the
compile time, and the step time its FLOPs take at --mfu of the chips' published
peak. A row's first try is aimed from the bytes of the component's rows on other
topologies (or --first_batch), so most rows take 2 compiles. aot_compile's --scale,
--mfu and --model_parallel apply (the model axis defaults to 1 here). Each row is
appended to OUT's .jsonl as it finishes and rows already there are not redone, so
an interrupted run resumes (and runs over other rows may share the file); each
compile's outcome goes to OUT's .tries.jsonl as it finishes, so a row interrupted
between compiles resumes at its next compile (SoundStream's take 40-80 minutes each
here). The markdown, made from the whole .jsonl, names the rows still missing.
"""
import os

if __name__ == "__main__":
  from musiclm_jax.tools import compile_backend  # pylint: disable=g-import-not-at-top
  compile_backend.set_up(1, tpu_topology=True)

import json

from absl import flags

from musiclm_jax import gin_utils
from musiclm_jax.tools import aot_compile
from musiclm_jax.tools import memory_rows
from musiclm_jax.tools import tpu_chips

# The chips MusicLM users rent: v5e-16, v4-32 (megacore), v5p-8 (megacore).
DEFAULT_TOPOLOGIES = ("v5e:4x4", "v4:2x2x4", "v5p:2x2x1")

_OUT = flags.DEFINE_string("out", "docs/memory_table.md", "Markdown table; rows go to its .jsonl.")
_TOPOLOGIES = flags.DEFINE_list("topologies", list(DEFAULT_TOPOLOGIES), "TPU topologies, in order.")
_COMPONENTS = flags.DEFINE_list("components", list(aot_compile.COMPONENTS), "Components, in order.")
_RENDER_ONLY = flags.DEFINE_bool("render_only", False, "Only remake the markdown from the .jsonl "
                                  "(e.g. while another run measures).")
_REFRESH = flags.DEFINE_bool("refresh_step_times", False, "Re-derive the analytic FLOPs and step "
                             "times of the stored rows of --components (shapes only, no compile), "
                             "then render.")
_FIRST_BATCH = flags.DEFINE_integer("first_batch", 1, "First batch per chip to try for a component "
                                    "no row has measured yet (the others' are aimed).")
# aot_compile's --scale (paper), --mfu (0.4) and --model_parallel apply; the table's model
# axis is 1 unless asked: every chip a data-parallel replica, the batch per chip its rows.
flags.FLAGS.set_default("model_parallel", 1)


def measure_row(key: tuple, mfu: float, tries_path: str, first: int = 1,
                slope_bytes: float | None = None, flops_per_row: float | None = None) -> dict:
  """One row: find_max_batch's report, or what did not fit (a batch of 1 per replica).

  key: the row's `memory_rows.row_key`. tries_path: a tries .jsonl (memory_rows.read_tries):
  this row's compiles found there are not redone, and each new one is added to it."""
  topology, component, scale, model_parallel = key
  row = {"topology": topology, "component": component, "scale": scale,
         "hbm_gib": tpu_chips.hbm_gib(topology), "model_parallel": model_parallel}
  try:
    row.update(aot_compile.find_max_batch(
        component, scale, topology, model_parallel, first=first, slope_bytes=slope_bytes,
        flops_per_row=flops_per_row, mfu=mfu, done=memory_rows.read_tries(tries_path).get(key),
        on_try=lambda batch, outcome: memory_rows.append_try(tries_path, key, batch, outcome)))
  except aot_compile.DoesNotFitError as e:
    row["does_not_fit"] = str(e)
  # Compile times depend on what else the machine runs.
  row["load_average"] = round(os.getloadavg()[0], 1)
  return row


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  records = os.path.splitext(_OUT.value)[0] + ".jsonl"
  tries_path = os.path.splitext(_OUT.value)[0] + ".tries.jsonl"
  scale, model_parallel = flags.FLAGS.scale, flags.FLAGS.model_parallel
  # Component by component: a component's first row aims the others' first tries.
  expected = [(t, c, scale, model_parallel) for c in _COMPONENTS.value for t in _TOPOLOGIES.value]
  if _REFRESH.value:
    _refresh_step_times(records, set(_COMPONENTS.value))
  for key in ([] if _RENDER_ONLY.value or _REFRESH.value else expected):
    rows = _read_rows(records)
    if key in rows:
      continue
    topology, component = key[:2]
    hbm_gib = tpu_chips.hbm_gib(topology)
    measured = list(rows.values())
    first, slope_gib = memory_rows.aim(measured, component, hbm_gib) or (_FIRST_BATCH.value, None)
    row = measure_row(key, flags.FLAGS.mfu, tries_path, first, slope_gib and slope_gib * 2**30,
                      memory_rows.least_flops_per_row(measured, component, topology))
    with open(records, "a") as f:
      f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
  # The whole file: other runs may have added rows meanwhile.
  with open(_OUT.value, "w") as f:
    f.write(memory_rows.markdown(list(_read_rows(records).values()), expected,
                                 memory_rows.read_tries(tries_path)))


def _refresh_step_times(records: str, components: set[str]) -> None:
  """Rewrites the .jsonl with the analytic step time of every measured row of `components`
  whose model has an analytic count (rows of others, and unmeasured ones, are kept as they are)."""
  rows = _read_rows(records)
  for key, row in rows.items():
    if row["component"] in components and "expected_step_seconds" in row:
      model = aot_compile.build_component(row["component"], row["scale"])
      flops = model.flops_per_batch(
          aot_compile.batch_spec(row["component"], model, row["batch_size"], row["length"]))
      if flops:
        rows[key] = memory_rows.with_analytic_flops(row, flops)
  with open(records, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows.values())


def _read_rows(records: str) -> dict[tuple, dict]:
  """The rows of a .jsonl by (topology, component, scale, model_parallel); the last one wins."""
  if not os.path.exists(records):
    return {}
  with open(records) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {memory_rows.row_key(r): r for r in rows}


if __name__ == "__main__":
  gin_utils.run(main, usage="use --out, --topologies, --components and aot_compile's --scale")
