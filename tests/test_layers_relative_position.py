"""T5 relative position buckets against a scalar reference of T5's definition."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax.layers import relative_position


def t5_bucket(relative_position, bidirectional, num_buckets=32, max_distance=128):
  """T5: exact buckets for small offsets, log-spaced up to max_distance, then clipped."""
  n = -relative_position
  bucket = 0
  if bidirectional:
    num_buckets //= 2
    if n < 0:
      bucket += num_buckets
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return bucket + n
  log_bucket = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact)
                               * (num_buckets - max_exact))
  return bucket + min(log_bucket, num_buckets - 1)


# Avoid offsets whose log lands exactly on a bucket edge, where float32 and
# float64 may round differently (e.g. 64 = 8 * 16**(6/8) for bidirectional).
OFFSETS = [0, 1, 3, 7, 8, 9, 15, 16, 17, 20, 33, 50, 100, 127, 129, 500, 10_000]


@pytest.mark.parametrize("bidirectional", [False, True])
def test_buckets_match_t5_reference(bidirectional):
  relative = np.array([sign * o for o in OFFSETS for sign in (1, -1)])
  got = relative_position.relative_position_bucket(jnp.asarray(relative),
                                                   bidirectional=bidirectional)
  expected = [t5_bucket(int(r), bidirectional) for r in relative]
  np.testing.assert_array_equal(np.asarray(got), expected)


def test_known_causal_buckets():
  # key - query: 0 and the future share bucket 0; the past is exact below 16.
  relative = jnp.array([5, 0, -1, -15, -16, -20, -1000])
  got = relative_position.relative_position_bucket(relative, bidirectional=False)
  np.testing.assert_array_equal(np.asarray(got), [0, 0, 1, 15, 16, 17, 31])


def test_bias_depends_only_on_offset():
  module = relative_position.RelativePositionBias(num_heads=2)
  positions = jnp.arange(40)
  params = module.init(jax.random.PRNGKey(0), positions, positions)
  full = module.apply(params, positions, positions)
  assert full.shape == (2, 40, 40)
  # Queries at absolute positions 30..31 (as in cached decoding) see the same
  # bias as rows 30..31 of the full matrix.
  rows = module.apply(params, jnp.arange(30, 32), positions)
  np.testing.assert_array_equal(rows, full[:, 30:32])


def _frame_reference(kinds):
  """Frame times of BOS + streams laid out one after another, from their shapes alone.

  kinds: (first id, frames, levels, ticks) per stream -> (ids [n], times [n]); stream k's
  frame f level q has id first + q (its kind's range is [first, first + levels)).
  """
  ids, times = [0], [0]
  for first, frames, levels, ticks in kinds:
    for f in range(frames):
      ids += [first + q for q in range(levels)]
      times += [f * ticks] * levels
  return np.array(ids), np.array(times)


def test_frame_times_match_each_streams_own_frame_count_and_resume_from_counts():
  # A coarse-stage-like row: 1 global token (no time), 3 frames at 2 ticks, 6 frames of 4 levels.
  kinds = [(10, 1, 1, 0), (20, 3, 1, 2), (30, 6, 4, 1)]
  ids, expected = _frame_reference(kinds)
  clocks = tuple((first, first + levels, levels, ticks) for first, _, levels, ticks in kinds)
  tokens = jnp.asarray(np.stack([ids, ids]))
  times, counts = relative_position.frame_times(tokens, clocks)
  np.testing.assert_array_equal(times, np.stack([expected, expected]))
  np.testing.assert_array_equal(counts, [[1, 3, 24]] * 2)
  # Fed in two pieces (a cache's prefill, then decoding), the times are the same.
  head, head_counts = relative_position.frame_times(tokens[:, :9], clocks)
  tail, _ = relative_position.frame_times(tokens[:, 9:], clocks, head_counts)
  np.testing.assert_array_equal(np.concatenate([head, tail], axis=1), times)


def test_batched_positions_give_each_rows_own_bias():
  module = relative_position.RelativePositionBias(num_heads=3, bidirectional=True)
  rows = jnp.asarray([[0, 0, 1, 1, 2], [0, 5, 10, 40, 200]])
  params = module.init(jax.random.PRNGKey(0), rows[0], rows[0])
  batched = module.apply(params, rows, rows)
  assert batched.shape == (2, 3, 5, 5)
  for row, positions in enumerate(rows):
    np.testing.assert_array_equal(batched[row], module.apply(params, positions, positions))
