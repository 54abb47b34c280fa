"""The largest batch per replica the TPU compiler fits, searched with resumable tries.

  best, reports, tries = search(compile_batch, capacity_bytes, done=done, on_try=save)

`compile_batch(per_replica)` compiles one batch and returns its outcome, a JSON-able
dict: {"report": aot_compile's report} when the compiler accepts it, {"refused":
message, "needed_bytes": per-chip bytes or None} when it refuses it for lack of HBM.
A memory-table row takes 2-6 compiles, and SoundStream's at paper scale take 40-80
minutes each on a 2-core host: more than a session has for a whole row. So each
outcome goes to `on_try` as it finishes and is replayed from `done` on the next run;
the search is deterministic given the outcomes (and its aim), so it asks again for
the batches it asked for, in the same order, and an interrupted row resumes where it
stopped. `compile_in_child` is aot_compile's `compile_batch`: each compile in a process of
its own.
A library module without flags, so that tests import it.
"""
import json
import subprocess
import sys
from typing import Callable, Mapping

from absl import logging

from musiclm_jax.errors import UserError
from musiclm_jax.tools import bisect_limit

# More FLOPs per row than reference_flops_per_row by this much: the compiler recomputes
# (rematerializes) to fit, so the batch does not fit as configured.
RECOMPUTE_TOLERANCE = 0.01

Outcome = dict


def search(compile_batch: Callable[[int], Outcome], capacity_bytes: float, first: int = 1,
           slope_bytes: float | None = None, flops_per_row: float | None = None,
           done: Mapping[int, Outcome] | None = None,
           on_try: Callable[[int, Outcome], None] | None = None) -> tuple[int, dict, list]:
  """(largest batch per replica that fits or 0, {batch: report}, [each try's verdict]).

  A batch fits when the TPU compiler accepts it without recomputing (its FLOPs per
  row stay within `RECOMPUTE_TOLERANCE` of `flops_per_row`, default the least of the
  batches compiled so far: pass an earlier search's when `first` is large) and its per-chip
  total is within `capacity_bytes`: the compiler alone accepts programs whose summed
  `memory_analysis` bytes exceed HBM (its temp buffer is an upper bound of the live
  peak; README, memory table). The bytes steer the search
  (`bisect_limit.largest_fitting_linear`, starting at `first`, its second try aimed by
  `slope_bytes` per row when given). `done`: outcomes of batches compiled before,
  used instead of compiling them again; `on_try(batch, outcome)` gets every new one.
  """
  done = dict(done or {})
  reports, tries = {}, []

  def measure(per_replica: int) -> tuple[bool, float | None]:
    outcome = done.get(per_replica)
    if outcome is None:
      outcome = compile_batch(per_replica)
      if on_try:
        on_try(per_replica, outcome)
    else:
      logging.info("batch %d per replica: compiled before", per_replica)
    if "refused" in outcome:
      logging.info("batch %d per replica is refused: %s", per_replica, outcome["refused"])
      needed = outcome.get("needed_bytes")
      tries.append({"batch_per_replica": per_replica, "verdict": "refused",
                    "needed_gib": needed and round(needed / 2**30, 3)})
      return False, needed
    report = reports[per_replica] = outcome["report"]
    reference = flops_per_row or reference_flops_per_row(reports)
    verdict = accepted_verdict(report, per_replica, reference, capacity_bytes)
    logging.info("batch %d per replica: %s %s", per_replica, verdict, json.dumps(report))
    tries.append({"batch_per_replica": per_replica, "verdict": verdict,
                  "total_gib": report["per_device_gib"]["total"],
                  "compiled_flops_per_row": report["compiled_flops"] / per_replica,
                  "compile_seconds": report["compile_seconds"]})
    # A recomputing program's bytes are off the line the others lie on.
    total = None if verdict == "recomputes" else report["per_device_bytes"]["total"]
    return verdict == "fits", total

  best = bisect_limit.largest_fitting_linear(measure, capacity_bytes, first=first,
                                             slope=slope_bytes)
  return best, reports, tries


def accepted_verdict(report: dict, per_replica: int, flops_per_row: float,
                     capacity_bytes: float) -> str:
  """'recomputes', 'over HBM' or 'fits': what a batch the compiler accepted (its aot_compile
  report) means, against the FLOPs per row of a program that does not recompute."""
  if report["compiled_flops"] / per_replica > (1 + RECOMPUTE_TOLERANCE) * flops_per_row:
    return "recomputes"
  return "over HBM" if report["per_device_bytes"]["total"] > capacity_bytes else "fits"


def reference_flops_per_row(reports: Mapping[int, dict]) -> float:
  """The least compiled FLOPs per row among {batch per replica: report} (the batches
  compiled so far): what a batch that does not recompute costs. A row's share of fixed work
  (the optimizer's update) shrinks as the batch grows, so the least is about the largest batch
  that does not recompute (SoundStream on v4: 3.006 TFLOP a row at 1, 2.851 at 63, 2.913 at
  95 by recomputing); the smallest batch's would let a recompute of a few % pass."""
  return min(report["compiled_flops"] / batch for batch, report in reports.items())


def compile_in_child(component: str, scale: str, batch_size: int, topology: str,
                     num_slices: int = 1, model_parallel: int = 2, length: int | None = None,
                     optimizer: str = "adamw", bindings=(), mfu: float = 0.4) -> Outcome:
  """One compile for a TPU topology by tools/aot_compile.py in a child process: {"report":
  ...} or {"refused": ..., "needed_bytes": ...}. The child's host memory goes when it exits.

  Raises:
    UserError: the child failed otherwise, e.g. killed for lack of host memory.
  """
  args = [f"--component={component}", f"--scale={scale}", f"--batch_size={batch_size}",
          f"--topology={topology}", f"--num_slices={num_slices}",
          f"--model_parallel={model_parallel}", f"--optimizer={optimizer}", f"--mfu={mfu}",
          *([f"--length={length}"] if length else []), *(f"--binding={b}" for b in bindings)]
  child = subprocess.run([sys.executable, "-m", "musiclm_jax.tools.aot_compile", *args],
                         stdout=subprocess.PIPE, text=True, check=False)
  # The last JSON line: a line some library prints to stdout is not the outcome.
  lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
  outcome = json.loads(lines[-1]) if child.returncode in (0, 2) and lines else {}
  if child.returncode == 0:
    return {"report": outcome}
  if "refused" in outcome:
    return outcome
  # A negative code is the signal that stopped it: -9 is what the kernel's OOM killer sends.
  raise UserError(f"compiling {component} with batch {batch_size} for {topology} failed in its "
                  f"child process (exit {child.returncode}; -9 is often the host out of memory: "
                  f"add swap); its stderr is above, and finished compiles are kept")
