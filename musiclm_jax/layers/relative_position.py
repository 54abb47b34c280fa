"""T5 relative position bias: bucketed key-query offsets, one learned scalar per head.

Positions are absolute indices into the sequence, so the same module serves a
full forward pass (queries 0..L-1) and cached decoding (queries at the cache
index), which is what keeps the two bit-compatible. They may instead be each
token's frame time (`frame_times`), per row: in a stage sequence such as the
fine stage's [Ac | Af], the coarse tokens of frame t sit 4 T + 4 t positions
before the fine tokens of frame t, always past T5's 128-position horizon, so
index offsets cannot tell a fine token which coarse frame is its own; frame
times can (offset 0).
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def relative_position_bucket(relative_position, *, bidirectional: bool,
                             num_buckets: int = 32, max_distance: int = 128):
  """Maps `key_position - query_position` to a bucket id in [0, num_buckets).

  As in T5: half of the buckets (per direction) are exact small offsets, the
  rest grow logarithmically up to `max_distance`; larger offsets share the
  last bucket. With `bidirectional=False` every future offset maps to bucket 0
  (causal attention masks those anyway).

  relative_position: int array, any shape -> int32 array of the same shape.
  """
  n = -relative_position
  bucket = jnp.zeros_like(n, dtype=jnp.int32)
  if bidirectional:
    num_buckets //= 2
    bucket += (n < 0).astype(jnp.int32) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  log_ratio = (jnp.log(n.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
               / np.log(max_distance / max_exact))
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(jnp.int32)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(is_small, n, large)


def frame_times(tokens, clocks, counts=None):
  """Each token's frame time, in ticks of a clock the token kinds share.

  tokens: int [batch, length] ids. clocks: one (first id, end id, levels,
  ticks per frame) per token kind: ids in [first, end) are a stream of
  `levels` tokens per frame, time-major, and frame f of it is at time f *
  ticks. Ids of no kind (BOS, NULL, PAD) are at time 0. counts: int32
  [batch, len(clocks)] tokens of each kind before `tokens` (a cache's), None
  for none. Returns (times int32 [batch, length], counts after `tokens`).
  """
  counts = jnp.zeros((tokens.shape[0], len(clocks)), jnp.int32) if counts is None else counts
  times = jnp.zeros(tokens.shape, jnp.int32)
  after = []
  for i, (first, end, levels, ticks) in enumerate(clocks):
    is_kind = (tokens >= first) & (tokens < end)
    index = counts[:, i:i + 1] + jnp.cumsum(is_kind, axis=1, dtype=jnp.int32) - 1
    times = jnp.where(is_kind, index // levels * ticks, times)
    after.append(index[:, -1] + 1)
  return times, jnp.stack(after, axis=1)


class RelativePositionBias(nn.Module):
  """The additive attention bias of one Transformer stack (shared by its layers).

  Returns float32 [..., heads, queries, keys] for query positions [..., queries]
  and key positions [..., keys] (leading axes: e.g. per-row frame times).
  """
  num_heads: int
  num_buckets: int = 32
  max_distance: int = 128
  bidirectional: bool = False
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, query_positions, key_positions):
    table = self.param(
        "rel_embedding",
        nn.with_logical_partitioning(
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
            ("relpos_buckets", "heads")),
        (self.num_buckets, self.num_heads), self.param_dtype)
    buckets = relative_position_bucket(
        key_positions[..., None, :] - query_positions[..., :, None],
        bidirectional=self.bidirectional, num_buckets=self.num_buckets,
        max_distance=self.max_distance)
    bias = jnp.take(table.astype(jnp.float32), buckets, axis=0)  # [..., q, k, heads]
    return jnp.moveaxis(bias, -1, -3)
