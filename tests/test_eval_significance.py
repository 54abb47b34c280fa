"""Permutation-test p-values against scipy.stats.permutation_test, exact and sampled."""
import numpy as np
import pytest
from scipy import stats

from musiclm_jax.errors import UserError
from musiclm_jax.eval import significance


def _difference_of_means(x, y, axis=-1):
  return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _scipy_p(x, y, paired):
  return stats.permutation_test((x, y), _difference_of_means, vectorized=True, alternative="greater",
                                permutation_type="samples" if paired else "independent",
                                n_resamples=50_000, random_state=0).pvalue


@pytest.mark.parametrize("paired", [True, False])
def test_exact_p_values_equal_scipys(paired):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 2, size=10).astype(float)  # 0/1 scores: ties, as "genre correct"
  y = rng.integers(0, 2, size=10 if paired else 6).astype(float) * 0.5
  assert significance.permutation_p_value(x, y, paired) == pytest.approx(_scipy_p(x, y, paired),
                                                                          rel=1e-9)


@pytest.mark.parametrize("paired", [True, False])
def test_sampled_p_values_are_near_scipys(paired):
  rng = np.random.default_rng(1)
  x = rng.normal(0.3, 1.0, size=40)
  y = rng.normal(0.0, 1.0, size=40)
  assert significance.permutation_p_value(x, y, paired) == pytest.approx(_scipy_p(x, y, paired),
                                                                          abs=0.015)


def test_clear_effects_are_significant_and_none_is_not():
  rng = np.random.default_rng(2)
  x = rng.normal(size=30)
  assert significance.permutation_p_value(x + 2.0, x, paired=True) < 1e-3
  assert significance.permutation_p_value(x, x + 2.0, paired=True) > 0.99
  assert significance.permutation_p_value(x, x, paired=True) == 1.0  # every flip ties


def test_mismatched_or_empty_scores_are_one_line_errors():
  with pytest.raises(UserError, match="one shuffled score per clip"):
    significance.permutation_p_value([1.0, 0.0], [1.0], paired=True)
  with pytest.raises(UserError, match="both groups"):
    significance.permutation_p_value([], [1.0], paired=False)


def test_true_vs_shuffled_drops_unscored_clips_and_unshared_metrics():
  nan = np.nan
  true = {"MCC": np.array([0.9, 0.8, nan, 0.7]), "key_accuracy": np.array([1.0, 1.0, 0.0, nan]),
          "tempo_accuracy": np.array([1.0, 0.0, 1.0, 1.0])}
  shuffled = {"key_accuracy": np.array([0.0, nan, 0.0, 1.0]), "MCC": np.array([0.1, 0.2, 0.3, nan])}
  paired = significance.true_vs_shuffled(true, shuffled, paired=True)
  # Only metrics scored in both, in the true scores' order; paired: clips scored in both.
  assert list(paired) == ["MCC", "key_accuracy"]
  assert paired["MCC"] == {"p_value": significance.permutation_p_value([0.9, 0.8], [0.1, 0.2], True),
                           "test": "paired", "clips": [2, 2]}
  assert paired["key_accuracy"]["clips"] == [2, 2]
  # Two samples: each group keeps its own scored clips.
  separate = significance.true_vs_shuffled(true, shuffled, paired=False)
  assert separate["MCC"] == {"p_value": significance.permutation_p_value([0.9, 0.8, 0.7],
                                                                         [0.1, 0.2, 0.3], False),
                             "test": "two-sample", "clips": [3, 3]}
  assert separate["key_accuracy"]["clips"] == [3, 3]
  # A metric with no clip scored in both is left out, not an error.
  assert significance.true_vs_shuffled({"MCC": np.array([nan, 1.0])}, {"MCC": np.array([1.0, nan])},
                                       paired=True) == {}
