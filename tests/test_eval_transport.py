"""Sinkhorn OT between token histograms against an exact linear-programming solution."""
import numpy as np
import pytest
from scipy import optimize

from musiclm_jax.errors import UserError
from musiclm_jax.eval import transport
from musiclm_jax.layers import kmeans


def _exact_transport_cost(a, b, cost):
  """min <P, C> over P >= 0 with row sums a and column sums b, by linear programming."""
  a, b = a / a.sum(), b / b.sum()
  n, m = cost.shape
  rows = np.kron(np.eye(n), np.ones((1, m)))  # sum_j P[i, j] = a[i]
  columns = np.kron(np.ones((1, n)), np.eye(m))  # sum_i P[i, j] = b[j]
  result = optimize.linprog(cost.reshape(-1), A_eq=np.vstack([rows, columns]),
                            b_eq=np.concatenate([a, b]), bounds=(0, None), method="highs")
  assert result.success
  return result.fun


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sinkhorn_matches_exact_optimal_transport(seed):
  rng = np.random.default_rng(seed)
  centroids = rng.normal(size=(7, 3))
  cost = kmeans.centroid_distances(centroids)
  a, b = rng.integers(0, 5, size=7).astype(float), rng.integers(0, 5, size=7).astype(float)
  a[0] = b[1] = 3  # both non-empty
  exact = _exact_transport_cost(a, b, cost)
  assert transport.sinkhorn_cost(a, b, cost) == pytest.approx(exact, rel=1e-2, abs=1e-3 * cost.max())


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_token_transport_matches_linear_programming(seed):
  rng = np.random.default_rng(seed)
  cost = kmeans.centroid_distances(rng.normal(size=(6, 3)))
  tokens_a, tokens_b = rng.integers(0, 6, size=9), rng.integers(0, 6, size=9)
  histogram = lambda tokens: np.bincount(tokens, minlength=6).astype(float)
  assert transport.optimal_transport_cost(tokens_a, tokens_b, cost) == pytest.approx(
      _exact_transport_cost(histogram(tokens_a), histogram(tokens_b), cost), rel=1e-9, abs=1e-12)
  with pytest.raises(UserError, match="one length"):
    transport.optimal_transport_cost(tokens_a, tokens_b[:4], cost)


def test_equal_histograms_cost_nothing():
  rng = np.random.default_rng(0)
  ground_cost = kmeans.centroid_distances(rng.normal(size=(32, 4)))
  tokens = rng.integers(0, 32, size=125)
  assert transport.token_transport_cost(tokens, tokens, ground_cost) < 1e-3 * np.mean(ground_cost)
  # Order does not matter to a histogram.
  assert transport.token_transport_cost(tokens, rng.permutation(tokens), ground_cost) < (
      1e-3 * np.mean(ground_cost))


def test_moving_one_code_to_a_neighbour_costs_its_share_times_the_distance():
  centroids = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 5.0]])
  tokens_a = np.array([0, 0, 2, 3, 2, 3, 2, 3])
  tokens_b = np.where(tokens_a == 0, 1, tokens_a)  # 2 of 8 tokens move 0.1
  cost = transport.token_transport_cost(tokens_a, tokens_b, kmeans.centroid_distances(centroids))
  assert cost == pytest.approx(2 / 8 * 0.1, rel=2e-2)


def test_out_of_vocabulary_tokens_are_a_one_line_error():
  with pytest.raises(UserError, match="centroids that made these tokens"):
    transport.token_histogram(np.array([0, 9]), vocab_size=4)
