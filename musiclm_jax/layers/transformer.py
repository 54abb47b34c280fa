"""Decoder-only Transformer (T5.1.1 style) with a scannable, rematerialisable stack.

Pre-norm blocks (RMSNorm), gated-GELU feed-forward, T5 relative position bias
with ONE bias table per stack (as T5 does), computed once per forward pass and
shared by all layers together with the causal/segment mask.

Cached decoding (`decode=True`) keeps a 'cache' collection in the Decoder:
  key, value  [layers, batch * heads, kv, max_length] and [layers, batch *
              heads, max_length, kv] (compute dtype; `attention.cache_shapes`)
              for a scanned stack; an unrolled one has key_<i>, value_<i>
              per layer, without the layers axis
  index       int32 scalar: how many positions are filled
  with `frame_clocks` also key_times int32 [batch, max_length] (each slot's
  frame time) and frame_counts int32 [batch, clocks] (tokens of each kind so far)
Create it by initialising with tokens of shape [batch, max_length] and
`decode=True` (see `musiclm_jax.models.lm.DecoderOnlyLM.init_cache`), then call
with `decode=True` and `mutable=['cache']` on any number of new tokens: they
are written at `index` and `index` advances by their count. One scalar index
means every row of the batch is at the same position.
"""
import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from musiclm_jax.layers import attention
from musiclm_jax.layers import initializers
from musiclm_jax.layers import mlp
from musiclm_jax.layers import normalization
from musiclm_jax.layers import relative_position

# Added to masked attention logits; finite so a fully masked row stays finite.
_MASKED = -1e9

REMAT_POLICIES = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "minimal": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots_with_no_batch_dims": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "dots": jax.checkpoint_policies.dots_saveable,
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters of a decoder-only Transformer.

  vocab_size: None means "take it from the stage's token layout" (see lm.py).
  logits_ids: (low, high): logits only for ids [low, high), e.g. a stage's
    target kind, which is all its loss and its sampler ever read; None: the
    whole vocabulary. Input embeddings always cover the whole vocabulary.
  head_dim: None means d_model // num_heads.
  frame_clocks: None: the relative position bias measures index offsets (T5,
    AudioLM). Else one (first id, end id, levels, ticks per frame) per token
    kind (`relative_position.frame_times`): it measures frame-time offsets,
    both ways (a token may attend to an earlier-placed token of a later frame),
    per row, so the bias is [batch, heads, q, k], the size of one layer's
    attention logits. One sequence per row (no packing).
  remat_policy: one of REMAT_POLICIES: 'none' stores all activations, 'full'
    recomputes each layer in the backward pass, 'minimal' (alias
    'dots_with_no_batch_dims') keeps only weight matmul outputs.
  dtype: compute dtype (e.g. 'bfloat16'); param_dtype: storage dtype.
  """
  vocab_size: int | None = None
  logits_ids: tuple[int, int] | None = None
  d_model: int = 512
  num_layers: int = 6
  num_heads: int = 8
  head_dim: int | None = None
  d_ff: int = 2048
  dropout_rate: float = 0.0
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  frame_clocks: tuple[tuple[int, int, int, int], ...] | None = None
  tie_embeddings: bool = False
  scan_layers: bool = True
  remat_policy: str = "none"
  dtype: Any = "float32"
  param_dtype: Any = "float32"

  def __post_init__(self):
    check_stack_config(self)
    if self.logits_ids is not None:
      low, high = self.logits_ids
      if not 0 <= low < high or (self.vocab_size is not None and high > self.vocab_size):
        raise ValueError(f"logits_ids {self.logits_ids} is not a range of ids in "
                         f"[0, {self.vocab_size}).")

  @property
  def logits_offset(self) -> int:
    """The id of logits column 0."""
    return 0 if self.logits_ids is None else self.logits_ids[0]

  @property
  def num_logits(self) -> int:
    if self.logits_ids is None:
      return self.vocab_size
    return self.logits_ids[1] - self.logits_ids[0]

  @property
  def kv_dim(self) -> int:
    return self.head_dim or self.d_model // self.num_heads


def check_stack_config(config) -> None:
  """What every attention stack config (this one, conformer's) must satisfy."""
  if config.remat_policy not in REMAT_POLICIES:
    raise ValueError(f"remat_policy must be one of {sorted(REMAT_POLICIES)}, "
                     f"got {config.remat_policy!r}.")
  if config.head_dim is None and config.d_model % config.num_heads:
    raise ValueError(f"d_model {config.d_model} is not divisible by num_heads "
                     f"{config.num_heads}; set head_dim explicitly.")


class DecoderLayer(nn.Module):
  """One pre-norm block: x + Attn(Norm(x)), then x + Mlp(Norm(x)).

  x: [batch, length, embed] -> (x, kv_cache); the signature is scan-shaped
  (carry, per-layer inputs) -> (carry, per-layer outputs).
  """
  config: TransformerConfig
  deterministic: bool

  @nn.compact
  def __call__(self, x, attention_bias, kv_cache, cache_index):
    cfg = self.config
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    norm = functools.partial(normalization.RMSNorm, dtype=cfg.dtype,
                             param_dtype=cfg.param_dtype)

    h = norm(name="pre_attention_norm")(x)
    h, kv_cache = attention.SelfAttention(
        cfg.num_heads, cfg.kv_dim, dtype=cfg.dtype, param_dtype=cfg.param_dtype,
        name="attention")(h, attention_bias, kv_cache, cache_index)
    x = x + dropout(h, deterministic=self.deterministic)

    h = norm(name="pre_mlp_norm")(x)
    h = mlp.GatedMlp(cfg.d_ff, cfg.dropout_rate, dtype=cfg.dtype,
                     param_dtype=cfg.param_dtype, name="mlp")(
                         h, deterministic=self.deterministic)
    x = x + dropout(h, deterministic=self.deterministic)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    return x, kv_cache


def _attention_bias(rel_bias, query_positions, key_positions, segment_ids):
  """Relative bias [(batch,) heads, q, k] + causal (+ segment) mask.

  Returns float32 [batch or 1, heads, q, k].
  """
  allowed = key_positions[None, :] <= query_positions[:, None]
  bias = rel_bias + jnp.where(allowed, 0.0, _MASKED)
  if bias.ndim == 3:
    bias = bias[None]
  if segment_ids is not None:
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    bias = bias + jnp.where(same, 0.0, _MASKED)[:, None]
  return bias


class Decoder(nn.Module):
  """Token ids [batch, length] -> float32 logits [batch, length, num_logits].

  Logits column j is id `config.logits_offset + j`.
  """
  config: TransformerConfig

  @nn.compact
  def __call__(self, tokens, *, segment_ids=None, deterministic: bool = True,
               decode: bool = False, return_hidden: bool = False):
    """segment_ids: optional [batch, length] for packed sequences (training only).

    return_hidden: instead of the logits, return (hidden [batch, length, embed],
    kernel [embed, num_logits]), both in the compute dtype, whose product is
    the logits: a caller that needs only some positions' or columns' logits
    projects just those.
    """
    cfg = self.config
    if cfg.vocab_size is None:
      raise ValueError("TransformerConfig.vocab_size is None; set it or build the "
                       "model through DecoderOnlyLM with a stage.")
    batch, length = tokens.shape
    embedding = self.param(
        "token_embedding",
        nn.with_logical_partitioning(nn.initializers.normal(1.0), ("vocab", "embed")),
        (cfg.vocab_size, cfg.d_model), cfg.param_dtype)
    x = jnp.take(embedding, tokens, axis=0).astype(cfg.dtype)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    dropout = nn.Dropout(cfg.dropout_rate, broadcast_dims=(-2,))
    x = dropout(x, deterministic=deterministic)

    kv_cache = cache_index = None
    query_positions = jnp.arange(length)
    key_positions = query_positions
    if decode:
      if segment_ids is not None:
        raise ValueError("segment_ids (packing) is for training; decode one sequence "
                         "per batch row instead.")
      cache_vars = self._cache_variables(batch, length)
      index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
      cache_index = index.value
      kv_cache = jax.tree.map(lambda v: v.value, cache_vars)
      query_positions = cache_index + query_positions
      # The cache's own size (from init_cache), not this call's token count: the first
      # leaf is a key cache, whose last axis is its slots (`attention.cache_shapes`).
      key_positions = jnp.arange(jax.tree.leaves(kv_cache)[0].shape[-1])

    bias_queries, bias_keys = query_positions, key_positions
    if cfg.frame_clocks:
      if segment_ids is not None:
        raise ValueError("frame_clocks count frames from the start of each row: "
                         "train without packing.")
      counts = None
      if decode:
        key_times = self.variable("cache", "key_times", jnp.zeros, (batch, length), jnp.int32)
        frame_counts = self.variable("cache", "frame_counts", jnp.zeros,
                                     (batch, len(cfg.frame_clocks)), jnp.int32)
        counts = frame_counts.value
      bias_queries, counts = relative_position.frame_times(tokens, cfg.frame_clocks, counts)
      bias_keys = bias_queries
      if decode:
        bias_keys = jax.lax.dynamic_update_slice(key_times.value, bias_queries, (0, cache_index))
    rel_bias = relative_position.RelativePositionBias(
        cfg.num_heads, cfg.relative_attention_num_buckets,
        cfg.relative_attention_max_distance, bidirectional=bool(cfg.frame_clocks),
        param_dtype=cfg.param_dtype,
        name="relative_position_bias")(bias_queries, bias_keys)
    bias = _attention_bias(rel_bias, query_positions, key_positions, segment_ids)

    x, kv_cache = self._layers(deterministic)(x, bias, kv_cache, cache_index)

    if decode:
      jax.tree.map(lambda var, value: setattr(var, "value", value), cache_vars, kv_cache,
                   is_leaf=lambda x: isinstance(x, nn.Variable))
      index.value = cache_index + length
      if cfg.frame_clocks:
        key_times.value, frame_counts.value = bias_keys, counts

    x = normalization.RMSNorm(dtype=cfg.dtype, param_dtype=cfg.param_dtype,
                              name="final_norm")(x)
    x = dropout(x, deterministic=deterministic)
    if cfg.tie_embeddings:
      table = embedding[cfg.logits_offset:cfg.logits_offset + cfg.num_logits]
      # T5 1.0 rescales tied logits so they do not grow with d_model.
      kernel = table.T / jnp.sqrt(cfg.d_model).astype(table.dtype)
    else:
      kernel = self.param("logits_kernel",
                          initializers.fan_in(("embed", "vocab"), in_axis=0, out_axis=1),
                          (cfg.d_model, cfg.num_logits), cfg.param_dtype)
    kernel = kernel.astype(cfg.dtype)
    if return_hidden:
      return x, kernel
    logits = jnp.einsum("ble,ev->blv", x, kernel)
    logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab"))
    return logits.astype(jnp.float32)

  def _cache_variables(self, batch: int, max_length: int):
    """The 'cache' collection's key/value variables (`attention.cache_shapes`).

    Stacked over a leading layers axis for a scanned stack; one (key, value)
    pair per layer for an unrolled one, so that a decode step updates each
    layer's cache in place instead of re-stacking them all (a copy of the
    whole cache per token).
    """
    cfg = self.config
    key_shape, value_shape = attention.cache_shapes(batch, cfg.num_heads, max_length, cfg.kv_dim)
    if cfg.scan_layers:
      return (self.variable("cache", "key", jnp.zeros, (cfg.num_layers, *key_shape), cfg.dtype),
              self.variable("cache", "value", jnp.zeros, (cfg.num_layers, *value_shape),
                            cfg.dtype))
    return [(self.variable("cache", f"key_{i}", jnp.zeros, key_shape, cfg.dtype),
             self.variable("cache", f"value_{i}", jnp.zeros, value_shape, cfg.dtype))
            for i in range(cfg.num_layers)]

  def _layers(self, deterministic: bool):
    """The layer stack as one callable (x, bias, kv_cache, cache_index) -> (x, kv_cache)."""
    cfg = self.config
    layer_cls = DecoderLayer
    if cfg.remat_policy != "none":
      layer_cls = nn.remat(layer_cls, policy=REMAT_POLICIES[cfg.remat_policy],
                           prevent_cse=not cfg.scan_layers)
    if cfg.scan_layers:
      stack = nn.scan(
          layer_cls,
          variable_axes={"params": 0},
          split_rngs={"params": True, "dropout": True},
          in_axes=(nn.broadcast, 0, nn.broadcast),
          length=cfg.num_layers,
          metadata_params={nn.PARTITION_NAME: "layers"})
      return stack(cfg, deterministic, name="layers")

    layers = [layer_cls(cfg, deterministic, name=f"layers_{i}")
              for i in range(cfg.num_layers)]

    def unrolled(x, bias, kv_cache, cache_index):
      """kv_cache: None, or a list of per-layer (key, value)."""
      new_caches = []
      for i, layer in enumerate(layers):
        x, layer_cache = layer(x, bias, None if kv_cache is None else kv_cache[i], cache_index)
        new_caches.append(layer_cache)
      return x, None if kv_cache is None else new_caches

    return unrolled
