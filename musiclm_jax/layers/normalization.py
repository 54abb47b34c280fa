"""RMSNorm as in T5: scale only, no mean subtraction, no bias."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class RMSNorm(nn.Module):
  """Normalises the last axis by its root mean square, in float32.

  x: [..., embed] -> [..., embed] in `dtype`.
  """
  epsilon: float = 1e-6
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param(
        "scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
        (x.shape[-1],), self.param_dtype)
    x = x.astype(jnp.float32)
    x = x * jnp.reciprocal(jnp.sqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True)
                                    + self.epsilon))
    return x.astype(self.dtype) * scale.astype(self.dtype)
