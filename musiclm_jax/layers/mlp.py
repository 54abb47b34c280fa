"""Gated-GELU feed-forward block (T5.1.1)."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from musiclm_jax.layers import initializers


class GatedMlp(nn.Module):
  """gelu(x W_0) * (x W_1) then W_o: three [embed, mlp]-sized matrices.

  x: [batch, length, embed] -> [batch, length, embed].
  """
  d_ff: int
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    d_model = x.shape[-1]
    kernel_in = initializers.fan_in(("embed", "mlp"), in_axis=0, out_axis=1)
    wi_0 = self.param("wi_0", kernel_in, (d_model, self.d_ff), self.param_dtype)
    wi_1 = self.param("wi_1", kernel_in, (d_model, self.d_ff), self.param_dtype)
    wo = self.param("wo", initializers.fan_in(("mlp", "embed"), in_axis=0, out_axis=1),
                    (self.d_ff, d_model), self.param_dtype)
    gate = jnp.einsum("bld,df->blf", x, wi_0.astype(self.dtype))
    linear = jnp.einsum("bld,df->blf", x, wi_1.astype(self.dtype))
    h = nn.gelu(gate, approximate=True) * linear
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    h = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
    return jnp.einsum("blf,fd->bld", h, wo.astype(self.dtype))
