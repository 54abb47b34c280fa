"""Multi-head self-attention with an optional key/value cache.

The attention bias (relative positions + causal/segment mask) is computed once
per stack by the caller and passed in, so a layer only does the matmuls.

Cached decoding: the caller passes `kv_cache=(key, value)` (shapes from
`cache_shapes`) and `cache_index`, the absolute position of the first of the
`length` new tokens. The new keys/values are written at `cache_index`, queries
attend over all `max_length` slots, and the bias the caller supplies masks the
slots that are not yet filled. The same code runs a multi-token prefill and a
one-token step.

The cache is stored in the shapes the attention matmuls read, batch and heads
merged ([batch * heads, kv, max_length] keys, [batch * heads, max_length, kv]
values), so a decode step writes its token in place and reads the cache as it
is. Stored [batch, max_length, heads, kv], XLA:CPU copied every layer's whole
cache on every decoded token (a transpose, or a second in-place update feeding
the matmul's reshape): at the small scale and 763 slots, a third of a token's
time.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from musiclm_jax.layers import initializers

KVCache = tuple[jax.Array, jax.Array]


def cache_shapes(batch: int, num_heads: int, max_length: int, head_dim: int):
  """(key, value) shapes of one layer's cache: [batch * heads, kv, max_length], [batch * heads,
  max_length, kv]."""
  return (batch * num_heads, head_dim, max_length), (batch * num_heads, max_length, head_dim)


def _batched_matmul(a, b):
  """[n, i, j] x [n, j, k] -> [n, i, k]."""
  return jax.lax.dot_general(a, b, (((2,), (1,)), ((0,), (0,))))


def _merge_heads(y, order):
  """[batch, length, heads, kv], transposed by `order` (batch, heads first) -> [batch * heads,
  ...]."""
  y = y.transpose(order)
  return y.reshape(-1, *y.shape[2:])


class SelfAttention(nn.Module):
  """x: [batch, length, embed] -> ([batch, length, embed], updated kv_cache or None)."""
  num_heads: int
  head_dim: int
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, attention_bias, kv_cache: KVCache | None = None,
               cache_index=None):
    """attention_bias: float32 [batch or 1, heads, length, key_length].

    key_length is `length` without a cache and `max_length` with one.
    """
    d_model = x.shape[-1]
    shape_in = (d_model, self.num_heads, self.head_dim)
    init_in = initializers.fan_in(("embed", "heads", "kv"), in_axis=0, out_axis=(1, 2))

    def project(name):
      kernel = self.param(name, init_in, shape_in, self.param_dtype)
      y = jnp.einsum("bld,dhk->blhk", x, kernel.astype(self.dtype))
      return nn.with_logical_constraint(y, ("batch", "length", "heads", "kv"))

    # Scaling queries here rather than logits touches length*heads*kv numbers
    # instead of length*length*heads.
    query = project("query") * jnp.asarray(self.head_dim ** -0.5, self.dtype)
    key = project("key")
    value = project("value")

    if kv_cache is None:
      logits = jnp.einsum("bqhk,bshk->bhqs", query, key).astype(jnp.float32)
      weights = jax.nn.softmax(logits + attention_bias, axis=-1).astype(self.dtype)
      out = jnp.einsum("bhqs,bshk->bqhk", weights, value)
    else:
      # The same attention on the cache's [batch * heads, ...] layout.
      batch, length = x.shape[:2]
      cached_key, cached_value = kv_cache
      key = jax.lax.dynamic_update_slice(
          cached_key, _merge_heads(key, (0, 2, 3, 1)).astype(cached_key.dtype),
          (0, 0, cache_index))
      value = jax.lax.dynamic_update_slice(
          cached_value, _merge_heads(value, (0, 2, 1, 3)).astype(cached_value.dtype),
          (0, cache_index, 0))
      kv_cache = (key, value)
      logits = _batched_matmul(_merge_heads(query, (0, 2, 1, 3)), key).astype(jnp.float32)
      logits = logits.reshape(batch, self.num_heads, length, -1)
      weights = jax.nn.softmax(logits + attention_bias, axis=-1).astype(self.dtype)
      out = _batched_matmul(weights.reshape(batch * self.num_heads, length, -1), value)
      out = out.reshape(batch, self.num_heads, length, self.head_dim).transpose(0, 2, 1, 3)
    out = nn.with_logical_constraint(out, ("batch", "length", "heads", "kv"))

    kernel_out = self.param(
        "out", initializers.fan_in(("heads", "kv", "embed"), in_axis=(0, 1), out_axis=2),
        (self.num_heads, self.head_dim, d_model), self.param_dtype)
    return jnp.einsum("bqhk,hkd->bqd", out, kernel_out.astype(self.dtype)), kv_cache
