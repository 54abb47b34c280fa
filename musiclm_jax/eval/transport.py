"""Optimal transport between token histograms (Sinkhorn), for approximate-match memorization.

  ground_cost = kmeans.centroid_distances(centroids)             # centroids [vocab, dim]
  cost = token_transport_cost(tokens_a, tokens_b, ground_cost)   # tokens [time]

The paper (section 5) counts a generated continuation as an approximate match
of the training continuation when the optimal-transport cost between their
semantic-token histograms is small, with the distance between the tokens'
k-means centroids as the ground cost: two continuations that use neighbouring
codes in other proportions are close even when no token agrees.

`sinkhorn_cost` solves the entropy-regularised problem in the log domain (the
kernel exp(-C / epsilon) underflows for small epsilon) and anneals epsilon
from the largest cost down, so small regularisation still converges quickly.
Bins with no mass carry no transport and are dropped first: a 5 s
continuation has at most a few hundred distinct tokens whatever the vocabulary.

`optimal_transport_cost` solves the same problem exactly for two equally long
token sequences (the memorization study's case): with equal counts an optimal
plan moves whole tokens (Birkhoff), so it is the cheapest one-to-one
assignment of tokens, a millisecond's work where Sinkhorn at a regularisation
small enough to be close needs seconds per pair.
"""
import numpy as np
from scipy import optimize
from scipy import special

from musiclm_jax.errors import UserError

# Sinkhorn updates at each epsilon above the target one: enough to warm-start the next.
WARM_START_ITERATIONS = 100


def token_histogram(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
  """tokens [time] of ids in [0, vocab_size) -> counts [vocab_size]."""
  return np.bincount(_checked_ids(tokens, vocab_size), minlength=vocab_size).astype(np.float64)


def _checked_ids(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
  """tokens flattened to [time]; a one-line error for ids outside [0, vocab_size)."""
  tokens = np.asarray(tokens).reshape(-1)
  if tokens.size and (tokens.min() < 0 or tokens.max() >= vocab_size):
    raise UserError(f"token ids span [{tokens.min()}, {tokens.max()}] but the k-means vocabulary "
                    f"has {vocab_size} centroids: use the centroids that made these tokens")
  return tokens


def sinkhorn_cost(histogram_a: np.ndarray, histogram_b: np.ndarray, cost: np.ndarray,
                  relative_epsilon: float = 1e-3, tolerance: float = 1e-6,
                  max_iterations: int = 5000) -> float:
  """Transport cost <P, C> of the entropic optimal plan P between two histograms.

  Args:
    histogram_a: [n] non-negative masses (counts or probabilities); normalised to sum to 1.
    histogram_b: [m] likewise.
    cost: [n, m] ground cost between bin i of a and bin j of b.
    relative_epsilon: the entropic regularisation as a fraction of the largest
      cost between the occupied bins. The cost exceeds the exact optimum by at
      most about epsilon * log(n m); 1e-3 keeps that well below one ground step.
    tolerance: stop when the plan's row sums are this close (L1) to histogram_a
      (its column sums equal histogram_b exactly after each update).
    max_iterations: Sinkhorn updates at the final epsilon.

  Returns:
    The cost in the ground cost's units: 0 for equal histograms (up to the
    regularisation), the exact earth mover's distance as epsilon -> 0.
  """
  a, b = np.asarray(histogram_a, np.float64), np.asarray(histogram_b, np.float64)
  cost = np.asarray(cost, np.float64)
  if cost.shape != (a.size, b.size):
    raise UserError(f"a ground cost of shape {cost.shape} does not match histograms of "
                    f"{a.size} and {b.size} bins")
  if a.sum() <= 0 or b.sum() <= 0 or np.any(a < 0) or np.any(b < 0):
    raise UserError("optimal transport needs two non-empty histograms with non-negative counts")
  rows, columns = np.flatnonzero(a), np.flatnonzero(b)
  a, b, cost = a[rows] / a.sum(), b[columns] / b.sum(), cost[np.ix_(rows, columns)]
  log_a, log_b = np.log(a), np.log(b)
  largest = float(cost.max())
  if largest == 0.0:
    return 0.0
  f, g = np.zeros(a.size), np.zeros(b.size)
  # Annealing: each stage starts from the last one's potentials at ten times the
  # epsilon; only the last stage needs to converge, the others just warm-start it.
  epsilons = largest * np.geomspace(1.0, relative_epsilon,
                                    max(1, int(np.ceil(-np.log10(relative_epsilon))) + 1))
  for stage, epsilon in enumerate(epsilons):
    last = stage == len(epsilons) - 1
    for _ in range(max_iterations if last else WARM_START_ITERATIONS):
      f = epsilon * (log_a - special.logsumexp((g[None, :] - cost) / epsilon, axis=1))
      g = epsilon * (log_b - special.logsumexp((f[:, None] - cost) / epsilon, axis=0))
      log_plan = (f[:, None] + g[None, :] - cost) / epsilon
      if np.sum(np.abs(np.exp(special.logsumexp(log_plan, axis=1)) - a)) < tolerance:
        break
  return float(np.sum(np.exp(log_plan) * cost))


def token_transport_cost(tokens_a: np.ndarray, tokens_b: np.ndarray, ground_cost: np.ndarray,
                         relative_epsilon: float = 1e-3) -> float:
  """Sinkhorn cost between the histograms of two token sequences [time].

  ground_cost: [vocab, vocab], e.g. `kmeans.centroid_distances(centroids)`, computed
  once for all the pairs of a study.
  """
  vocab_size = np.asarray(ground_cost).shape[0]
  return sinkhorn_cost(token_histogram(tokens_a, vocab_size), token_histogram(tokens_b, vocab_size),
                       ground_cost, relative_epsilon=relative_epsilon)


def optimal_transport_cost(tokens_a: np.ndarray, tokens_b: np.ndarray,
                           ground_cost: np.ndarray) -> float:
  """Exact transport cost between the histograms of two token sequences [time] of one length.

  ground_cost: [vocab, vocab]. Equals `token_transport_cost` as its epsilon -> 0.
  """
  vocab_size = np.asarray(ground_cost).shape[0]
  tokens_a, tokens_b = _checked_ids(tokens_a, vocab_size), _checked_ids(tokens_b, vocab_size)
  if len(tokens_a) != len(tokens_b) or not len(tokens_a):
    raise UserError(f"exact token transport needs two non-empty sequences of one length, got "
                    f"{len(tokens_a)} and {len(tokens_b)} tokens: use token_transport_cost")
  pair_cost = np.asarray(ground_cost, np.float64)[np.ix_(tokens_a, tokens_b)]
  rows, columns = optimize.linear_sum_assignment(pair_cost)
  return float(pair_cost[rows, columns].mean())
