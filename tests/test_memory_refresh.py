"""memory_rows.with_analytic_flops: a stored row's step time from a new analytic count, no compile."""
from musiclm_jax import metrics
from musiclm_jax.tools import memory_rows


def test_with_analytic_flops_rederives_step_time():
  row = {"component": "w2v_bert", "chip": "TPU v4", "devices": 16, "mfu": 0.4,
         "flops_per_step": 2.39e13, "flops_source": "compiler", "expected_step_seconds": 0.0136,
         "compiled_flops": 2.39e13}
  new = memory_rows.with_analytic_flops(row, 2.357e14)
  peak = metrics.published_peak_flops("TPU v4") * 16
  assert new["flops_source"] == "analytic" and new["flops_per_step"] == 2.357e14
  assert abs(new["expected_step_seconds"] - 2.357e14 / (0.4 * peak)) < 1e-3 * new["expected_step_seconds"]
  assert new["compiled_flops"] == row["compiled_flops"] and row["flops_source"] == "compiler"
