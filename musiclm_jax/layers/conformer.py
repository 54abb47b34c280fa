"""Conformer stack (Gulati et al. 2020) for w2v-BERT, built from the Transformer's pieces.

Each block is macaron-style: x + ½·FFN, x + self-attention, x + convolution
module, x + ½·FFN, then a norm. Pieces shared with the stage Transformers:
RMSNorm, gated-GELU FFN, multi-head attention and the T5 relative position
bias, bidirectional here and computed once per stack. The convolution module
is pointwise GLU -> depthwise conv -> norm -> swish -> pointwise. Inputs are
fixed-length crops or whole padded clips, so there is no padding mask.
"""
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from musiclm_jax.layers import attention
from musiclm_jax.layers import initializers
from musiclm_jax.layers import mlp
from musiclm_jax.layers import normalization
from musiclm_jax.layers import relative_position
from musiclm_jax.layers import transformer


@dataclasses.dataclass(frozen=True)
class ConformerConfig:
  """Sizes of one Conformer stack.

  head_dim: None means d_model // num_heads.
  conv_kernel_size: width of the depthwise convolution, in frames.
  scan_layers, remat_policy: as transformer.TransformerConfig.
  """
  d_model: int = 1024
  num_heads: int = 8
  head_dim: int | None = None
  d_ff: int = 2816
  conv_kernel_size: int = 5
  dropout_rate: float = 0.0
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  scan_layers: bool = False
  remat_policy: str = "none"
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  def __post_init__(self):
    transformer.check_stack_config(self)

  @property
  def kv_dim(self) -> int:
    return self.head_dim or self.d_model // self.num_heads


class ConvModule(nn.Module):
  """x: [batch, length, embed] -> [batch, length, embed]."""
  config: ConformerConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x):
    cfg = self.config
    d = x.shape[-1]
    kernel_in = initializers.fan_in(("embed", "mlp"), in_axis=0, out_axis=1)
    wi_0 = self.param("wi_0", kernel_in, (d, d), cfg.param_dtype)
    wi_1 = self.param("wi_1", kernel_in, (d, d), cfg.param_dtype)
    h = (jnp.einsum("bld,df->blf", x, wi_0.astype(cfg.dtype))
         * nn.sigmoid(jnp.einsum("bld,df->blf", x, wi_1.astype(cfg.dtype))))
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    # Depthwise conv as a sum of shifted copies: a handful of taps, no grouped-conv kernel.
    width = cfg.conv_kernel_size
    depthwise = self.param(
        "depthwise", initializers.fan_in(("conv_width", "mlp"), in_axis=0, out_axis=1),
        (width, d), cfg.param_dtype).astype(cfg.dtype)
    left = (width - 1) // 2
    padded = jnp.pad(h, ((0, 0), (left, width - 1 - left), (0, 0)))
    h = sum(padded[:, k:k + h.shape[1]] * depthwise[k] for k in range(width))
    h = normalization.RMSNorm(dtype=cfg.dtype, param_dtype=cfg.param_dtype, name="norm")(h)
    h = nn.swish(h)
    wo = self.param("wo", initializers.fan_in(("mlp", "embed"), in_axis=0, out_axis=1),
                    (d, d), cfg.param_dtype)
    h = jnp.einsum("blf,fd->bld", h, wo.astype(cfg.dtype))
    return nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))(h, deterministic=self.deterministic)


class ConformerLayer(nn.Module):
  """One block; scan-shaped: (x [batch, length, embed], bias) -> (x, None)."""
  config: ConformerConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x, attention_bias):
    cfg = self.config
    norm = functools.partial(normalization.RMSNorm, dtype=cfg.dtype, param_dtype=cfg.param_dtype)
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    ffn = functools.partial(mlp.GatedMlp, cfg.d_ff, cfg.dropout_rate, dtype=cfg.dtype,
                            param_dtype=cfg.param_dtype)

    h = ffn(name="ffn_in")(norm(name="ffn_in_norm")(x), deterministic=self.deterministic)
    x = x + 0.5 * dropout(h, deterministic=self.deterministic)
    h, _ = attention.SelfAttention(cfg.num_heads, cfg.kv_dim, dtype=cfg.dtype,
                                   param_dtype=cfg.param_dtype, name="attention")(
                                       norm(name="attention_norm")(x), attention_bias)
    x = x + dropout(h, deterministic=self.deterministic)
    x = x + ConvModule(cfg, self.deterministic, name="conv")(norm(name="conv_norm")(x))
    h = ffn(name="ffn_out")(norm(name="ffn_out_norm")(x), deterministic=self.deterministic)
    x = x + 0.5 * dropout(h, deterministic=self.deterministic)
    x = norm(name="final_norm")(x)
    return nn.with_logical_constraint(x, ("batch", "length", "embed")), None


class ConformerStack(nn.Module):
  """`num_layers` blocks sharing one relative position bias: [batch, length, embed] -> same."""
  config: ConformerConfig
  num_layers: int

  @nn.compact
  def __call__(self, x, *, deterministic: bool = True):
    cfg = self.config
    positions = jnp.arange(x.shape[1])
    bias = relative_position.RelativePositionBias(
        cfg.num_heads, cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance,
        bidirectional=True, param_dtype=cfg.param_dtype,
        name="relative_position_bias")(positions, positions)[None]
    layer_cls = ConformerLayer
    if cfg.remat_policy != "none":
      layer_cls = nn.remat(layer_cls, policy=transformer.REMAT_POLICIES[cfg.remat_policy],
                           prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      stack = nn.scan(layer_cls, variable_axes={"params": 0},
                      split_rngs={"params": True, "dropout": True}, in_axes=(nn.broadcast,),
                      length=self.num_layers, metadata_params={nn.PARTITION_NAME: "layers"})
      x, _ = stack(cfg, deterministic, name="layers")(x, bias)
      return x
    for i in range(self.num_layers):
      x, _ = layer_cls(cfg, deterministic, name=f"layers_{i}")(x, bias)
    return x
