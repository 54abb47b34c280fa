"""Multi-head self-attention with an optional key/value cache.

The attention bias (relative positions + causal/segment mask) is computed once
per stack by the caller and passed in, so a layer only does the matmuls.

Cached decoding: the caller passes `kv_cache=(key, value)`, each
[batch, max_length, heads, kv], and `cache_index`, the absolute position of the
first of the `length` new tokens. The new keys/values are written at
`cache_index`, queries attend over all `max_length` slots, and the bias the
caller supplies masks the slots that are not yet filled. The same code runs a
multi-token prefill and a one-token step.
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from musiclm_jax.layers import initializers

KVCache = tuple[jax.Array, jax.Array]


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

    if kv_cache is not None:
      cached_key, cached_value = kv_cache
      start = (0, cache_index, 0, 0)
      key = jax.lax.dynamic_update_slice(cached_key, key.astype(cached_key.dtype), start)
      value = jax.lax.dynamic_update_slice(cached_value, value.astype(cached_value.dtype),
                                           start)
      kv_cache = (key, value)

    logits = jnp.einsum("bqhk,bshk->bhqs", query, key).astype(jnp.float32)
    weights = jax.nn.softmax(logits + attention_bias, axis=-1).astype(self.dtype)
    out = jnp.einsum("bhqs,bshk->bqhk", weights, value)
    out = nn.with_logical_constraint(out, ("batch", "length", "heads", "kv"))

    kernel_out = self.param(
        "out", initializers.fan_in(("heads", "kv", "embed"), in_axis=(0, 1), out_axis=2),
        (self.num_heads, self.head_dim, d_model), self.param_dtype)
    return jnp.einsum("bqhk,hkd->bqd", out, kernel_out.astype(self.dtype)), kv_cache
