"""The AOT compile tool lowers and compiles a sharded train step on simulated CPU devices and,
with libtpu, for real TPU topologies, where the compiler refuses what does not fit."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_DIR, TESTS_DIR


def test_tiny_semantic_step_compiles_on_a_simulated_mesh_and_reports_memory():
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_DIR]),
             XLA_FLAGS="--xla_force_host_platform_device_count=2")  # the tool must override it
  result = subprocess.run(
      [sys.executable, "-m", "musiclm_jax.tools.aot_compile", "--component=semantic", "--scale=tiny",
       "--batch_size=8", "--length=64", "--model_parallel=2"],
      capture_output=True, text=True, env=env, timeout=300, cwd=TESTS_DIR)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["devices"] == 8 and report["mesh"] == {"data": 4, "model": 2}
  assert (report["batch_size"], report["length"]) == (8, 64)
  sizes = report["per_device_bytes"]
  # Params + two Adam moments in float32, vocab/mlp/heads split in two, plus the batch.
  state_bytes = 3 * 4 * report["params"]
  assert state_bytes / 2 <= sizes["argument"] <= state_bytes
  assert sizes["output"] >= sizes["argument"] * 0.9 and sizes["temp"] > 0


def test_largest_fitting_finds_the_boundary_in_few_compiles():
  # Not aot_compile itself: importing a binary defines its flags, which clash with other
  # binaries' (e.g. param_count's --stage) imported by tests on the same worker.
  from musiclm_jax.tools import bisect_limit  # pylint: disable=g-import-not-at-top
  for limit_fits in (0, 1, 2, 37, 64, 1000):
    asked = []
    fits = lambda n, m=limit_fits: asked.append(n) or n <= m
    assert bisect_limit.largest_fitting(fits, limit=4096) == limit_fits
    assert len(asked) <= 2 * max(limit_fits, 1).bit_length() + 1
  assert bisect_limit.largest_fitting(lambda n: True, limit=100) == 100


def test_largest_fitting_linear_agrees_with_bisection_in_fewer_tries():
  from musiclm_jax.tools import bisect_limit  # pylint: disable=g-import-not-at-top
  capacity = 100.0
  # Fixed bytes + bytes per row, with a little curvature as XLA's temp buffers have.
  for fixed, per_row, unknown_when_refused in [(5, 1, False), (5, 0.3, True), (50, 7, False),
                                               (100.5, 1, False), (3, 2.5, True), (2, 0.1, False)]:
    cost = lambda n, f=fixed, p=per_row: f + p * n * (1 + 0.01 * n ** 0.5)
    asked = []

    def measure(n, cost=cost, unknown=unknown_when_refused):
      asked.append(n)
      fits = cost(n) <= capacity
      return fits, None if (unknown and not fits) else cost(n)

    expected = bisect_limit.largest_fitting(lambda n, cost=cost: cost(n) <= capacity)
    assert bisect_limit.largest_fitting_linear(measure, capacity) == expected
    bisect_tries = 2 * max(expected, 1).bit_length() + 1
    assert len(asked) <= (bisect_tries if unknown_when_refused else min(6, bisect_tries)), asked
  # The compiler accepts a little beyond the summed bytes: no crawl of +1 per try.
  asked = []
  measure = lambda n: asked.append(n) or (n <= 40, 50.0 + 5.0 * n)
  assert bisect_limit.largest_fitting_linear(measure, 100.0) == 40 and len(asked) <= 12, asked


def test_an_aimed_first_try_takes_two_compiles_and_a_wrong_aim_still_finds_the_boundary():
  from musiclm_jax.tools import bisect_limit  # pylint: disable=g-import-not-at-top
  # Semantic stage on a v5e-16 (README): GiB per chip at 1, 2, 8, 10 rows per chip, near-linear.
  cost = lambda n: 7.15 + 0.85 * n - 0.004 * n * n
  for first, slope, expected_tries in [(10, 0.66, 2), (11, 0.66, 2), (3, 0.66, 4), (16, 0.66, 4),
                                       (3, None, 6), (40, None, 6)]:
    asked = []
    measure = lambda n, asked=asked: asked.append(n) or (cost(n) <= 15.75, cost(n))
    assert bisect_limit.largest_fitting_linear(measure, 15.75, first=first, slope=slope) == 10, asked
    assert asked[0] == first and len(asked) <= expected_tries, asked


def _compile_for_topology(*args):
  pytest.importorskip("libtpu", reason="needs libtpu: pip install -e '.[tpu]'")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([TESTS_DIR, REPO_DIR]))
  return subprocess.run(
      [sys.executable, "-m", "musiclm_jax.tools.aot_compile", "--component=semantic", "--scale=tiny",
       "--model_parallel=2", *args], capture_output=True, text=True, env=env, timeout=600, cwd=TESTS_DIR)


@pytest.mark.parametrize("topology, num_slices, chip, devices", [
    ("v5e:2x2", 1, "TPU v5 lite", 4),
    ("v4:2x2x1", 1, "TPU v4", 4),  # megacore: one device per chip
    ("v5e:2x2", 2, "TPU v5 lite", 8),  # multislice: data crosses slices, model stays inside
])
def test_tiny_semantic_step_compiles_for_a_real_tpu_topology(topology, num_slices, chip, devices):
  from musiclm_jax.tools import tpu_chips  # pylint: disable=g-import-not-at-top
  result = _compile_for_topology(f"--topology={topology}", f"--num_slices={num_slices}",
                                 f"--batch_size={devices}", "--length=64")
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert (report["chip"], report["devices"]) == (chip, devices)
  assert tpu_chips.num_chips(topology, num_slices) == devices  # what find_max_batch counts
  assert report["mesh"] == {"data": devices // 2, "model": 2}
  sizes = report["per_device_bytes"]
  state_bytes = 3 * 4 * report["params"]
  assert state_bytes / 2 <= sizes["argument"] <= state_bytes
  assert sizes["total"] < report["hbm_gib"] * 2**30 and report["compile_seconds"] > 0
  assert report["expected_step_seconds"] > 0 and report["mfu"] == 0.4


def test_a_config_that_does_not_fit_the_chip_is_a_one_line_error():
  result = _compile_for_topology("--topology=v5e:2x2", "--batch_size=1024", "--length=4096")
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [l for l in result.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, result.stderr[-3000:]
  assert "TPU v5 lite" in errors[0] and "of its 15.75 GiB HBM" in errors[0], errors[0]
  needed = re.search(r"needs (\d+\.\d+) GiB", errors[0])
  assert needed, errors[0]
  # stdout's JSON line carries the same refusal, its bytes for a search to aim with.
  refusal = json.loads(result.stdout.strip().splitlines()[-1])
  assert refusal["refused"] == errors[0].removeprefix("error: ")
  assert refusal["needed_bytes"] / 2**30 == pytest.approx(float(needed.group(1)), abs=0.01)


def test_a_compile_in_a_child_process_returns_its_report_and_a_failed_child_is_one_line():
  pytest.importorskip("libtpu", reason="needs libtpu: pip install -e '.[tpu]'")
  # max_batch, not aot_compile: this process may have imported another tool's --scale flag.
  from musiclm_jax.tools import max_batch  # pylint: disable=g-import-not-at-top
  outcome = max_batch.compile_in_child("semantic", "tiny", 4, "v5e:2x2", length=64)
  report = outcome["report"]
  assert (report["chip"], report["batch_size"], report["length"]) == ("TPU v5 lite", 4, 64)
  assert 0 < report["per_device_bytes"]["total"] < report["hbm_gib"] * 2**30
  with pytest.raises(max_batch.UserError, match=r"failed in its child process \(exit 2;"):
    max_batch.compile_in_child("semantic", "tiny", 4, "v5e:2x2", bindings=["no_such.thing = 1"])


def _row(component, topology, tries, **extra):
  return {"component": component, "topology": topology, "tries": tries, **extra}


def test_a_row_is_aimed_from_the_components_bytes_on_another_chip():
  from musiclm_jax.tools import memory_rows  # pylint: disable=g-import-not-at-top
  # The semantic stage's v5e-16 row (README): the line through its two tries, met at v4's HBM.
  v5e = _row("semantic", "v5e:4x4", [
      {"batch_per_replica": 10, "verdict": "fits", "total_gib": 15.20, "compiled_flops_per_row": 2.0},
      {"batch_per_replica": 11, "verdict": "over HBM", "total_gib": 15.86,
       "compiled_flops_per_row": 1.9},
      {"batch_per_replica": 12, "verdict": "recomputes", "total_gib": 9.0,
       "compiled_flops_per_row": 2.5}])
  slope = 15.86 - 15.20
  first, slope_gib = memory_rows.aim([v5e], "semantic", 30.75)
  assert first == int(10 + (30.75 - 15.20) / slope) == 33 and slope_gib == pytest.approx(slope)
  assert memory_rows.aim([v5e], "coarse", 30.75) is None
  # SoundStream's v5e-16 tries (docs/memory_table.tries.jsonl): the bytes dip at the top, and
  # the line through all of them still rises (numpy: 1.13 GiB per row, 2.85 at none).
  tries = {1: 3.66, 2: 5.86, 6: 9.31, 8: 10.19, 10: 15.38, 11: 16.53, 12: 16.61, 13: 16.45}
  codec = _row("soundstream", "v5e:4x4", [
      {"batch_per_replica": n, "verdict": "fits" if gib < 15.75 else "over HBM", "total_gib": gib}
      for n, gib in tries.items()])
  first, slope_gib = memory_rows.aim([codec], "soundstream", 30.75)
  assert (first, round(slope_gib, 2)) == (24, 1.13)
  assert memory_rows.least_flops_per_row([v5e], "semantic", "v5e:4x4") == 1.9
  assert memory_rows.least_flops_per_row([v5e], "semantic", "v5e:2x2") == 1.9  # same chip


def test_the_recompute_reference_comes_from_the_same_chip_only():
  from musiclm_jax.tools import memory_rows  # pylint: disable=g-import-not-at-top
  # MuLan's rows as measured: v4's compiler counts more FLOPs per row at batch 1 than
  # v5e's at 61; a v5e reference would call every v4 batch a recompute.
  v5e = _row("mulan", "v5e:4x4", [
      {"batch_per_replica": 61, "verdict": "fits", "total_gib": 15.68, "compiled_flops_per_row": 1.0}])
  v4 = _row("mulan", "v4:2x2x4", [
      {"batch_per_replica": 1, "verdict": "fits", "total_gib": 2.0, "compiled_flops_per_row": 1.3}])
  assert memory_rows.least_flops_per_row([v5e], "mulan", "v4:2x2x4") is None
  assert memory_rows.least_flops_per_row([v5e, v4], "mulan", "v4:2x2x4") == 1.3
  assert memory_rows.least_flops_per_row([v5e, v4], "mulan", "v5e:4x4") == 1.0


def test_the_table_names_every_try_and_the_rows_not_measured():
  from musiclm_jax.tools import memory_rows  # pylint: disable=g-import-not-at-top
  row = _row("semantic", "v5e:4x4", [
      {"batch_per_replica": 10, "verdict": "fits", "total_gib": 15.2},
      {"batch_per_replica": 11, "verdict": "refused", "needed_gib": 16.1}],
      hbm_gib=15.75, params=417.5e6, length=762, max_batch_per_replica=10, batch_size=160,
      per_device_gib={"argument": 4.67, "temp": 10.49, "total": 15.2, "peak": 12.59},
      compile_seconds=327.4, scale="paper", model_parallel=1,
      load_average=15.3, expected_step_seconds=0.256, mfu=0.4, flops_per_step=3.227e14,
      flops_source="analytic")

  def accepted(batch, flops_per_row, total_gib):
    return {"report": {"compiled_flops": batch * flops_per_row, "per_device_gib": {"total": total_gib},
                       "per_device_bytes": {"total": total_gib * 2**30}}}

  # A row still being searched shows its compiles so far in batch order, each judged as its
  # search judged it: against the least FLOPs per row compiled until then (no v4 row gives
  # one) and v4's 30.75 GiB. Batch 1 costs more a row (its share of the optimizer) and fits;
  # 30 costs 2% more than 40 and recomputes; 50 is over HBM.
  tries = {("v4:2x2x4", "semantic", "paper", 1): {
      1: accepted(1, 105.0, 1.951), 40: accepted(40, 100.0, 20.0), 24: {"refused": "does not fit"},
      30: accepted(30, 102.0, 18.0), 50: accepted(50, 100.0, 31.0)}}
  expected = [(t, c, "paper", 1) for c, t in [("semantic", "v5e:4x4"), ("semantic", "v4:2x2x4"),
                                              ("mulan", "v5p:2x2x1")]]
  table = memory_rows.markdown([row], expected, tries)
  assert ("| semantic | v5e-16 (15.75 GiB) | 417.5M | 762 tokens | 10 (160) | 4.67 / 10.49 / 15.20 (12.59) "
          "| 327 s (load 15.3) | 0.256 s at 40% (322.7 TFLOP, analytic) | 10 fits 15.20, 11 refused |"
          ) in table
  assert table.endswith("Not measured yet: semantic on v4-32 (so far, batch per chip: 1 fits 1.95, "
                        "24 refused, 30 recomputes 18.00, 40 fits 20.00, 50 over HBM 31.00), mulan on v5p-8.\n")


def test_a_topology_names_its_chip_and_an_unknown_one_is_a_one_line_error():
  from musiclm_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from musiclm_jax.tools import tpu_chips  # pylint: disable=g-import-not-at-top
  assert tpu_chips.generation("v4:2x2x4") == "v4" and tpu_chips.hbm_gib("v5e:4x4") == 15.75
  assert tpu_chips.num_chips("v4:2x2x4") == 16 and tpu_chips.num_chips("v5p:2x2x1", 2) == 8
  with pytest.raises(UserError, match="cannot read the chip grid of topology v5e:4by4"):
    tpu_chips.num_chips("v5e:4by4")
  with pytest.raises(UserError, match="unknown TPU generation in topology v9:2x2") as error:
    tpu_chips.hbm_gib("v9:2x2")
  assert "\n" not in str(error.value)


def _fake_compile(capacity: float, calls: list):
  """A compiler of a component whose bytes per chip are 3 + 2 * batch, refusing programs
  over 1.1 * capacity and recomputing (more FLOPs per row) from 9 rows up."""
  def compile_batch(n):
    calls.append(n)
    total = 3.0 + 2.0 * n
    if total > 1.1 * capacity:
      return {"refused": f"needs {total}", "needed_bytes": total}
    return {"report": {"compiled_flops": 5.0 * n * (1.5 if n >= 9 else 1.0),
                       "per_device_bytes": {"total": total},
                       "per_device_gib": {"total": total / 2**30}, "compile_seconds": 60.0}}
  return compile_batch


@pytest.mark.parametrize("capacity, expected", [(16.0, 6), (30.0, 8), (2.0, 0)])
def test_an_interrupted_search_resumes_at_its_next_compile(capacity, expected):
  from musiclm_jax.tools import max_batch  # pylint: disable=g-import-not-at-top
  calls, outcomes = [], {}
  best, reports, tries = max_batch.search(_fake_compile(capacity, calls), capacity,
                                          on_try=outcomes.__setitem__)
  assert best == expected and list(outcomes) == calls and set(reports) <= set(calls)
  # 30: 9 and up recompute, so 8 is the largest that fits though 13 would by its bytes.
  assert {t["verdict"] for t in tries} >= ({"refused"} if capacity == 2.0 else {"fits"})
  for stopped_after in range(len(calls) + 1):
    resumed_calls = []
    done = {n: outcomes[n] for n in calls[:stopped_after]}
    resumed = max_batch.search(_fake_compile(capacity, resumed_calls), capacity, done=done,
                               on_try=lambda n, o: None)
    assert resumed_calls == calls[stopped_after:]
    assert resumed == (best, reports, tries)


def test_tries_are_read_back_by_row_and_batch(tmp_path):
  from musiclm_jax.tools import memory_rows  # pylint: disable=g-import-not-at-top
  path = str(tmp_path / "table.tries.jsonl")
  assert memory_rows.read_tries(path) == {}
  row = ("v5e:4x4", "soundstream", "paper", 1)
  memory_rows.append_try(path, row, 1, {"report": {"compiled_flops": 2.0}})
  memory_rows.append_try(path, ("v4:2x2x4", "soundstream", "paper", 1), 1, {"refused": "x"})
  memory_rows.append_try(path, row, 4, {"refused": "too big", "needed_bytes": 9.0})
  assert memory_rows.read_tries(path) == {
      row: {1: {"report": {"compiled_flops": 2.0}}, 4: {"refused": "too big", "needed_bytes": 9.0}},
      ("v4:2x2x4", "soundstream", "paper", 1): {1: {"refused": "x"}}}
