"""Is generated music closer to its own prompt than to another's? Permutation-test p-values.

  p = permutation_p_value(true_scores, shuffled_scores, paired=True)
  tests = true_vs_shuffled({"MCC": true_mcc, ...}, {"MCC": shuffled_mcc, ...}, paired=True)

Per-clip adherence scores (genre correct, tag F1, MuLan cosine, tempo or key
correct) of music scored against its own prompt and against a shuffled prompt.
The null hypothesis is that the prompt makes no difference; the statistic is
the mean of the true-prompt scores minus the mean of the shuffled ones, and the
test is one-sided (true prompts score higher). Paired when both are the same
clips (each clip's two scores swap under the null), two-sample when the
shuffled-prompt music was generated separately (the pooled scores are
relabelled). Exact over every relabelling when there are at most
`MAX_EXACT_RELABELLINGS`, else `RESAMPLES` random ones; the p-value counts the
observed labelling, so it is never 0.
"""
import itertools
import math

import numpy as np

from musiclm_jax.errors import UserError

RESAMPLES = 9999
MAX_EXACT_RELABELLINGS = 2 ** 14


def _paired_null(differences: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
  """Mean difference under each sign flip (all of them when few), and whether that is exact."""
  n = len(differences)
  if 2 ** n <= MAX_EXACT_RELABELLINGS:
    signs = 1.0 - 2.0 * np.asarray(list(itertools.product((0, 1), repeat=n)), np.float64)
    return signs @ differences / n, True
  signs = rng.choice((-1.0, 1.0), size=(RESAMPLES, n))
  return signs @ differences / n, False


def _two_sample_null(pooled: np.ndarray, n_true: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, bool]:
  """Difference of group means under each relabelling of the pooled scores, and whether exact."""
  n = len(pooled)
  if math.comb(n, n_true) <= MAX_EXACT_RELABELLINGS:
    statistics = []
    for chosen in itertools.combinations(range(n), n_true):
      mask = np.zeros(n, bool)
      mask[list(chosen)] = True
      statistics.append(pooled[mask].mean() - pooled[~mask].mean())
    return np.asarray(statistics), True
  statistics = []
  for _ in range(RESAMPLES):
    order = rng.permutation(n)
    statistics.append(pooled[order[:n_true]].mean() - pooled[order[n_true:]].mean())
  return np.asarray(statistics), False


def permutation_p_value(true_scores, shuffled_scores, paired: bool, seed: int = 0) -> float:
  """One-sided p-value of mean(true) - mean(shuffled) > 0 (true_scores [n], shuffled_scores [n or m])."""
  true_scores = np.asarray(true_scores, np.float64)
  shuffled_scores = np.asarray(shuffled_scores, np.float64)
  if paired and true_scores.shape != shuffled_scores.shape:
    raise UserError(f"a paired test needs one shuffled score per clip, got {true_scores.shape} "
                    f"and {shuffled_scores.shape}")
  if not len(true_scores) or not len(shuffled_scores):
    raise UserError("a permutation test needs scores in both groups: pair some clips with captions")
  observed = true_scores.mean() - shuffled_scores.mean()
  rng = np.random.default_rng(seed)
  if paired:
    null, exact = _paired_null(true_scores - shuffled_scores, rng)
  else:
    null, exact = _two_sample_null(np.concatenate([true_scores, shuffled_scores]),
                                   len(true_scores), rng)
  # A tolerance so that relabellings equal to the observed one in exact arithmetic count.
  at_least = np.sum(null >= observed - 1e-12 * max(1.0, abs(observed)))
  return float(at_least / len(null)) if exact else float((at_least + 1) / (len(null) + 1))


def true_vs_shuffled(true_scores: dict[str, np.ndarray], shuffled_scores: dict[str, np.ndarray],
                     paired: bool, seed: int = 0) -> dict[str, dict]:
  """{metric: {"p_value", "test", "clips"}} of every metric scored in both, in true_scores' order.

  Scores are per clip ([clips], NaN where a clip has none, e.g. its prompt is no reference
  caption). Paired: both are the same clips, and only clips with a score in both count; a
  metric with no clip left in either group is left out.
  """
  result = {}
  for metric, true in true_scores.items():
    if metric not in shuffled_scores:
      continue
    shuffled = shuffled_scores[metric]
    if paired:
      both = ~np.isnan(true) & ~np.isnan(shuffled)
      true, shuffled = true[both], shuffled[both]
    else:
      true, shuffled = true[~np.isnan(true)], shuffled[~np.isnan(shuffled)]
    if len(true) and len(shuffled):
      result[metric] = {"p_value": permutation_p_value(true, shuffled, paired, seed),
                        "test": "paired" if paired else "two-sample",
                        "clips": [int(len(true)), int(len(shuffled))]}
  return result
