"""KLD between label distributions: zero on identical rows, a hand-computed case, asymmetry."""
import math

import numpy as np
import pytest

from musiclm_jax.errors import UserError
from musiclm_jax.eval import kld


def test_identical_label_distributions_give_zero():
  probabilities = np.random.default_rng(0).uniform(size=(5, 50))
  np.testing.assert_allclose(kld.kl_divergence(probabilities, probabilities), 0.0, atol=1e-12)
  # Tag probabilities need not sum to one; only their shape as a distribution counts.
  assert kld.mean_kl_divergence(probabilities, 0.5 * probabilities) == pytest.approx(0.0, abs=1e-6)


def test_hand_computed_divergence():
  # p = (1/2, 1/2), q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3). Epsilon moves it by ~1e-6.
  expected = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
  got = kld.kl_divergence(np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]]))
  assert got[0] == pytest.approx(expected, abs=1e-5)


def test_divergence_is_asymmetric_and_averaged_over_pairs():
  p, q = np.array([[0.9, 0.1, 0.0]]), np.array([[0.3, 0.3, 0.4]])
  forward, backward = kld.kl_divergence(p, q)[0], kld.kl_divergence(q, p)[0]
  # The reference lacks label 3 entirely: only the backward direction pays ln(0.4 / EPSILON).
  assert backward > 5 * forward
  assert forward == pytest.approx(0.9 * math.log(3) + 0.1 * math.log(1 / 3), abs=1e-4)
  assert kld.mean_kl_divergence(np.concatenate([p, q]), np.concatenate([q, p])) == pytest.approx(
      (forward + backward) / 2)


def test_mismatched_or_invalid_inputs_are_one_line_errors():
  with pytest.raises(UserError, match="do not pair up"):
    kld.kl_divergence(np.ones((3, 50)), np.ones((4, 50)))
  with pytest.raises(UserError, match="not logits"):
    kld.kl_divergence(np.full((1, 2), -1.0), np.ones((1, 2)))
