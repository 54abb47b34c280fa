r"""The README's memory table: every trained component at a scale, compiled for real TPU topologies.

  python -m musiclm_jax.tools.memory_table --out=docs/memory_table.md

For each topology × component (`aot_compile.COMPONENTS`) the TPU compiler (libtpu,
no TPU attached) finds the largest per-replica batch that fits
(`aot_compile.find_max_batch`, about 4 compiles of minutes each); the row gives
per-chip argument / temp / total memory at that batch, the compile time, and the
step time its FLOPs take at --mfu of the chips' published peak. aot_compile's
--scale, --mfu and --model_parallel apply (the model axis defaults to 1 here). Each row is
appended to OUT's .jsonl as it finishes and rows already there are not redone, so
an interrupted run resumes (and runs over other rows may share the file); the
markdown is made from the whole .jsonl at the end.
"""
import os

if __name__ == "__main__":
  from musiclm_jax.tools import compile_backend  # pylint: disable=g-import-not-at-top
  compile_backend.set_up(1, tpu_topology=True)

import json

from absl import flags

from musiclm_jax import gin_utils
from musiclm_jax.tools import aot_compile

# The chips MusicLM users rent: v5e-16, v4-32 (megacore), v5p-8 (megacore).
DEFAULT_TOPOLOGIES = ("v5e:4x4", "v4:2x2x4", "v5p:2x2x1")

_OUT = flags.DEFINE_string("out", "docs/memory_table.md", "Markdown table; rows go to its .jsonl.")
_TOPOLOGIES = flags.DEFINE_list("topologies", list(DEFAULT_TOPOLOGIES), "TPU topologies, in order.")
_COMPONENTS = flags.DEFINE_list("components", list(aot_compile.COMPONENTS), "Components, in order.")
# aot_compile's --scale (paper), --mfu (0.4) and --model_parallel apply; the table's model
# axis is 1 unless asked: every chip a data-parallel replica, the batch per chip its rows.
flags.FLAGS.set_default("model_parallel", 1)


def measure_row(topology: str, component: str, scale: str, model_parallel: int, mfu: float) -> dict:
  """One row: find_max_batch's report, or what did not fit (a batch of 1 per replica)."""
  devices = aot_compile.tpu_devices(topology)
  hbm_gib = aot_compile.TPU_HBM_GIB[topology.split(":")[0]]
  row = {"topology": topology, "component": component, "scale": scale, "hbm_gib": hbm_gib,
         "model_parallel": model_parallel}
  try:
    row.update(aot_compile.find_max_batch(component, scale, devices, hbm_gib, model_parallel,
                                          mfu=mfu))
  except aot_compile.DoesNotFitError as e:
    row["does_not_fit"] = str(e)
  return row


def markdown(rows: list[dict]) -> str:
  """The table, one line per row; sizes in GiB per chip at the largest batch that fits."""
  lines = ["| component | topology (HBM per chip) | params | row | max batch per chip (global) "
           "| per chip: argument / temp / total GiB | compile | step at MFU |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    where = f"{_TOPOLOGY_NAMES.get(r['topology'], r['topology'])} ({r['hbm_gib']} GiB)"
    if "does_not_fit" in r:
      lines.append(f"| {r['component']} | {where} | | | does not fit: {r['does_not_fit']} | | | |")
      continue
    gib = r["per_device_gib"]
    unit = "tokens" if r["component"] in aot_compile.musiclm_spec.STAGES else "samples"
    step = (f"{r['expected_step_seconds']} s at {r['mfu']:.0%} ({r['flops_per_step'] / 1e12:.3g} "
            f"TFLOP, {r['flops_source']})" if "expected_step_seconds" in r else "")
    lines.append(
        f"| {r['component']} | {where} | {r['params'] / 1e6:.1f}M | {r['length']} {unit} "
        f"| {r['max_batch_per_replica']} ({r['batch_size']}) "
        f"| {gib['argument']:.2f} / {gib['temp']:.2f} / {gib['total']:.2f} "
        f"| {r['compile_seconds']:.0f} s | {step} |")
  return "\n".join(lines) + "\n"


_TOPOLOGY_NAMES = {"v5e:4x4": "v5e-16", "v4:2x2x4": "v4-32", "v5p:2x2x1": "v5p-8"}


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  records = os.path.splitext(_OUT.value)[0] + ".jsonl"
  done = set(_read_rows(records))
  for topology in _TOPOLOGIES.value:
    for component in _COMPONENTS.value:
      key = (topology, component, flags.FLAGS.scale, flags.FLAGS.model_parallel)
      if key in done:
        continue
      row = measure_row(*key, mfu=flags.FLAGS.mfu)
      with open(records, "a") as f:
        f.write(json.dumps(row) + "\n")
      print(json.dumps(row), flush=True)
  # The whole file: other runs may have added rows meanwhile.
  with open(_OUT.value, "w") as f:
    f.write(markdown(list(_read_rows(records).values())))


def _read_rows(records: str) -> dict[tuple, dict]:
  """The rows of a .jsonl by (topology, component, scale, model_parallel); the last one wins."""
  if not os.path.exists(records):
    return {}
  with open(records) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return {(r["topology"], r["component"], r["scale"], r["model_parallel"]): r for r in rows}


if __name__ == "__main__":
  gin_utils.run(main, usage="use --out, --topologies, --components and aot_compile's --scale")
