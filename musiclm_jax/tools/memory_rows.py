"""The memory table's rows (memory_table.py's .jsonl records): aiming a row's first compile,
the file of its tries (to resume a row), and the markdown.

A library module without flags, so that tests import it (memory_table and
aot_compile define command-line flags).
"""
import json
import os

import numpy as np

from musiclm_jax import metrics
from musiclm_jax import musiclm_spec
from musiclm_jax.tools import max_batch
from musiclm_jax.tools import tpu_chips


def aim(rows: list[dict], component: str, hbm_gib: float) -> tuple[int, float] | None:
  """(first batch per chip to try, GiB per row): where the least-squares line through the
  component's measured batches (rows on any topology) meets `hbm_gib`, and its slope; a
  chip holds about the same per-chip program at the same batch per chip. All of them, not
  the largest two: SoundStream's bytes dip near the top (16.61 GiB at 12, 16.45 at 13 on
  v5e), and a line through those two falls. None without two batches or a rising line."""
  points = {t["batch_per_replica"]: t["total_gib"] for r in rows if r["component"] == component
            for t in r.get("tries", ()) if t["verdict"] in ("fits", "over HBM")}
  if len(points) < 2:
    return None
  slope, intercept = np.polyfit(list(points), list(points.values()), 1)
  if slope <= 0:
    return None
  return max(int((hbm_gib - intercept) / slope), 1), float(slope)


def row_key(record: dict) -> tuple:
  """(topology, component, scale, model_parallel): what a row or a try is of, in the rows'
  .jsonl and the tries' alike."""
  return record["topology"], record["component"], record["scale"], record["model_parallel"]


def read_tries(path: str) -> dict[tuple, dict[int, dict]]:
  """{row key: {batch per replica: `max_batch` outcome}} of a tries .jsonl ({} if absent).

  Row keys as `row_key` gives them."""
  tries = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in filter(str.strip, f):
        t = json.loads(line)
        tries.setdefault(row_key(t), {})[t["batch_per_replica"]] = t["outcome"]
  return tries


def append_try(path: str, key: tuple, batch_per_replica: int, outcome: dict) -> None:
  """Adds one compiled batch's outcome to the tries .jsonl, as soon as it is known."""
  topology, component, scale, model_parallel = key
  with open(path, "a") as f:
    f.write(json.dumps({"topology": topology, "component": component, "scale": scale,
                        "model_parallel": model_parallel, "batch_per_replica": batch_per_replica,
                        "outcome": outcome}) + "\n")


def least_flops_per_row(rows: list[dict], component: str, topology: str) -> float | None:
  """The compiler's FLOPs per row in the component's rows without recompute on `topology`'s
  chip (None if none). Only the same chip: another chip's compiler counts the same step
  differently (the v4 compiler counted more per row at batch 1 than v5e's at 61, so a v5e
  reference made every v4 batch look recomputed)."""
  chip = tpu_chips.generation(topology)
  return min((t["compiled_flops_per_row"] for r in rows
              if r["component"] == component and tpu_chips.generation(r["topology"]) == chip
              for t in r.get("tries", ()) if t["verdict"] in ("fits", "over HBM")), default=None)


def with_analytic_flops(row: dict, flops_per_step: float) -> dict:
  """The row with an analytic FLOPs per step (e.g. a model's new `flops_per_batch` of the
  row's batch) and the expected step time it gives at the row's MFU on its chips; no compile."""
  peak = metrics.published_peak_flops(row["chip"]) * row["devices"]
  return dict(row, flops_per_step=flops_per_step, flops_source="analytic",
              expected_step_seconds=metrics.expected_step_seconds(flops_per_step, peak, row["mfu"]))


def markdown(rows: list[dict], expected: list[tuple], tries: dict[tuple, dict[int, dict]]) -> str:
  """The table, one line per row (sizes in GiB per chip at the largest batch that fits),
  then the rows of `expected` (row keys: topology, component, scale, model_parallel) not
  measured yet, each with its compiles so far from `tries` (read_tries): a row can take
  more than a session here."""
  lines = ["| component | topology (HBM per chip) | params | row | max batch per chip (global) "
           "| per chip: argument / temp / total (peak) GiB | compile | step at MFU | batches tried |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
  for r in rows:
    where = f"{tpu_chips.TOPOLOGY_NAMES.get(r['topology'], r['topology'])} ({r['hbm_gib']} GiB)"
    if "does_not_fit" in r:
      lines.append(f"| {r['component']} | {where} | | | does not fit: {r['does_not_fit']} | | | | |")
      continue
    gib = r["per_device_gib"]
    unit = "tokens" if r["component"] in musiclm_spec.STAGES else "samples"
    step = (f"{r['expected_step_seconds']} s at {r['mfu']:.0%} ({r['flops_per_step'] / 1e12:.4g} "
            f"TFLOP, {r['flops_source']})" if "expected_step_seconds" in r else "")
    lines.append(
        f"| {r['component']} | {where} | {r['params'] / 1e6:.1f}M | {r['length']} {unit} "
        f"| {r['max_batch_per_replica']} ({r['batch_size']}) "
        f"| {gib['argument']:.2f} / {gib['temp']:.2f} / {gib['total']:.2f} ({gib['peak']:.2f}) "
        f"| {r['compile_seconds']:.0f} s (load {r.get('load_average', '?')}) | {step} "
        f"| {_verdicts(r['tries'])} |")
  measured = {row_key(r) for r in rows}
  missing = [f"{key[1]} on {tpu_chips.TOPOLOGY_NAMES.get(key[0], key[0])}"
             + _so_far(tries.get(key, {}), rows, key) for key in expected if key not in measured]
  if missing:
    lines.append(f"\nNot measured yet: {', '.join(missing)}.")
  return "\n".join(lines) + "\n"


def _verdicts(tries: list[dict]) -> str:
  """'10 fits 15.20, 12 recomputes 9.00, 13 refused': a search's verdicts in the order tried."""
  return ", ".join(f"{t['batch_per_replica']} {t['verdict']}"
                   + (f" {t['total_gib']:.2f}" if "total_gib" in t else "") for t in tries)


def _so_far(outcomes: dict[int, dict], rows: list[dict], key: tuple) -> str:
  """' (so far, batch per chip: 1 fits 1.95, 40 refused)' for an unfinished row's compiles
  ('' if none), in batch order, each judged as its search judged it (max_batch.search, in
  the order compiled): a batch the compiler accepted by recomputing does not fit."""
  if not outcomes:
    return ""
  topology, component = key[:2]
  earlier = least_flops_per_row(rows, component, topology)
  capacity_bytes = tpu_chips.hbm_gib(topology) * 2**30
  reports, tries = {}, []
  for batch, outcome in outcomes.items():  # in the order compiled (read_tries keeps the file's)
    if "refused" in outcome:
      tries.append({"batch_per_replica": batch, "verdict": "refused"})
      continue
    report = reports[batch] = outcome["report"]
    reference = earlier or max_batch.reference_flops_per_row(reports)
    tries.append({"batch_per_replica": batch, "total_gib": report["per_device_gib"]["total"],
                  "verdict": max_batch.accepted_verdict(report, batch, reference, capacity_bytes)})
  tries.sort(key=lambda t: t["batch_per_replica"])
  return f" (so far, batch per chip: {_verdicts(tries)})"
