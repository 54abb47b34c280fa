"""Learning-rate schedules: warm-up reaches the peak, cosine reaches its end at the last step."""
import math

import numpy as np
import pytest

from musiclm_jax import optimizers


def _cosine_reference(step, peak, warmup, total, end_fraction):
  """Closed form: linear warm-up, then half a cosine from peak to end over steps warmup..total-1."""
  if step < warmup:
    return peak * step / warmup
  progress = (step - warmup) / (total - 1 - warmup)
  return peak * (end_fraction + (1 - end_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def test_cosine_peaks_at_warmup_end_and_reaches_its_end_value_at_the_last_step():
  peak, warmup, total, end_fraction = 2e-3, 10, 50, 0.1
  schedule = optimizers.learning_rate_schedule(total, peak_value=peak, warmup_steps=warmup,
                                               end_fraction=end_fraction)
  assert float(schedule(warmup)) == pytest.approx(peak, rel=1e-6)
  assert float(schedule(total - 1)) == pytest.approx(end_fraction * peak, rel=1e-5)
  np.testing.assert_allclose(
      [float(schedule(s)) for s in range(total)],
      [_cosine_reference(s, peak, warmup, total, end_fraction) for s in range(total)], rtol=1e-5)


def test_rsqrt_and_constant_hold_the_peak_at_warmup_end():
  for decay in ("rsqrt", "constant"):
    schedule = optimizers.learning_rate_schedule(100, peak_value=1e-3, warmup_steps=10, decay=decay)
    assert float(schedule(10)) == pytest.approx(1e-3, rel=1e-6)


def test_unknown_decay_is_a_user_error():
  with pytest.raises(optimizers.UserError, match="unknown learning-rate decay 'linear'"):
    optimizers.learning_rate_schedule(100, decay="linear")
