"""T5 relative position bias: bucketed key-query offsets, one learned scalar per head.

Positions are absolute indices into the sequence, so the same module serves a
full forward pass (queries 0..L-1) and cached decoding (queries at the cache
index), which is what keeps the two bit-compatible.
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


class RelativePositionBias(nn.Module):
  """The additive attention bias of one Transformer stack (shared by its layers).

  Returns float32 [heads, queries, keys] for query positions [queries] and key
  positions [keys].
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
        key_positions[None, :] - query_positions[:, None],
        bidirectional=self.bidirectional, num_buckets=self.num_buckets,
        max_distance=self.max_distance)
    bias = jnp.take(table.astype(jnp.float32), buckets, axis=0)  # [q, k, heads]
    return jnp.transpose(bias, (2, 0, 1))
