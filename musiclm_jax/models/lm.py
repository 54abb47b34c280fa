"""The stage language models: one conditioned decoder-only LM, configured per stage.

A stage sequence is [conditioning | prefix | target] in one flat vocabulary
(see `musiclm_jax.data.token_layout`):

  semantic stage   MuLan             -> semantic
  coarse stage     MuLan, semantic   -> coarse acoustic (levels 0-3)
  fine stage       coarse            -> fine acoustic (levels 4-11)

Only target tokens carry loss: the model multiplies `decoder_loss_weights` by
"target id is of the stage's target kind", so a data pipeline cannot train on
the prefix by mistake. Conditioning dropout replaces every conditioning token
of an example by NULL_ID with probability `condition_dropout_rate`, which
teaches the unconditional model that classifier-free guidance needs; at
inference, `remove_conditioning` builds the unconditional rows the same way.

Without a stage, `DecoderOnlyLM` is a plain decoder-only LM over any vocab.

Cached decoding (for the sampler):
  cache = model.init_cache(batch_size, max_length)       # empty, index 0
  logits, cache = model.prefill(params, cache, prefix)   # prefix [batch, n]
  logits, cache = model.decode_step(params, cache, tok)  # tok [batch]
Training inputs are SeqIO-shifted (PAD_ID as BOS first), so a prompt is
[PAD_ID, conditioning..., prefix...]: the last prefill logits predict the
first target token. A cache of max_length = len(prompt) + num_targets is
enough. Target number p (0 = the first) must be sampled from the ids in
`stage.layout.level_id_range(stage.target_kind, p)`.

Sampling (`predict_batch`, built on `musiclm_jax.decoding`) does all of this:
it takes the prompt without the PAD_ID and prepends it.
"""
import dataclasses

import jax
import jax.numpy as jnp

from musiclm_jax import decoding
from musiclm_jax.data import token_layout
from musiclm_jax.layers import transformer
from musiclm_jax.models import base


@dataclasses.dataclass(frozen=True)
class StageConfig:
  """Which kinds of a layout condition the stage and which one it predicts.

  Kinds of the layout that are neither conditioning nor target are the prefix
  (no loss, never dropped).
  """
  name: str
  layout: token_layout.TokenLayout
  target_kind: str
  condition_kinds: tuple[str, ...] = ()

  def __post_init__(self):
    for kind in (self.target_kind,) + tuple(self.condition_kinds):
      self.layout.kind(kind)
    if self.target_kind in self.condition_kinds:
      raise ValueError(f"{self.name}: the target kind {self.target_kind!r} cannot also "
                       "be conditioning.")


def semantic_stage(melody: bool = False) -> StageConfig:
  return StageConfig("semantic", token_layout.semantic_layout(melody), "semantic",
                     ("mulan", "melody") if melody else ("mulan",))


def coarse_stage(melody: bool = False) -> StageConfig:
  return StageConfig("coarse", token_layout.coarse_layout(melody), "coarse",
                     ("mulan", "melody") if melody else ("mulan",))


def fine_stage() -> StageConfig:
  return StageConfig("fine", token_layout.fine_layout(), "fine")


class DecoderOnlyLM(base.BaseModel):
  """A decoder-only Transformer LM implementing the trainer's BaseModel.

  Args:
    transformer_config: the network. Its vocab_size may be None when a stage
      is given (the stage layout's vocab is used).
    stage: optional StageConfig; None means an unconditioned LM whose loss is
      weighted by `decoder_loss_weights` only.
    z_loss: coefficient of log(Z)^2 added to the loss (PaLM/T5X; 1e-4 is usual).
    condition_dropout_rate: per-example probability, in training only, of
      replacing the conditioning tokens by NULL_ID.
  """

  def __init__(self, transformer_config: transformer.TransformerConfig,
               stage: StageConfig | None = None, z_loss: float = 0.0,
               condition_dropout_rate: float = 0.0):
    if stage is not None:
      layout_vocab = stage.layout.vocab_size
      if transformer_config.vocab_size not in (None, layout_vocab):
        raise ValueError(f"vocab_size {transformer_config.vocab_size} does not match the "
                         f"{stage.name} stage's layout ({layout_vocab}); leave it None.")
      # The loss and the sampler only read the target kind's logits: computing
      # the others would cost 4x (coarse) to 13x (semantic) in the output layer.
      target_ids = stage.layout.id_range(stage.target_kind)
      if transformer_config.logits_ids not in (None, target_ids):
        raise ValueError(f"logits_ids {transformer_config.logits_ids} is not the {stage.name} "
                         f"stage's target ids {target_ids}; leave it None.")
      transformer_config = dataclasses.replace(transformer_config, vocab_size=layout_vocab,
                                               logits_ids=target_ids)
    elif transformer_config.vocab_size is None:
      raise ValueError("DecoderOnlyLM needs transformer_config.vocab_size or a stage.")
    if condition_dropout_rate and (stage is None or not stage.condition_kinds):
      raise ValueError("condition_dropout_rate needs a stage with condition_kinds.")
    self.config = transformer_config
    self.stage = stage
    self.z_loss = z_loss
    self.condition_dropout_rate = condition_dropout_rate
    self.module = transformer.Decoder(transformer_config)

  @property
  def vocab_size(self) -> int:
    return self.config.vocab_size

  @property
  def logits_offset(self) -> int:
    """The id of logits column 0: a stage's logits cover only its target kind's ids."""
    return self.config.logits_offset

  def init(self, rng, batch_spec):
    tokens = jnp.zeros(batch_spec["decoder_input_tokens"].shape, jnp.int32)
    return self.module.init({"params": rng}, tokens)["params"]

  def apply(self, params, tokens, *, segment_ids=None, rng=None, level_positions=None):
    """Full forward pass: tokens [batch, length] -> float32 logits [batch, length, num_logits].

    Column j is id `logits_offset + j`: all ids for a plain LM, the target
    kind's ids for a stage.

    `rng=None` is deterministic; otherwise it drives dropout. With
    level_positions [batch, levels, m], only level q's codebook at positions
    level_positions[:, q]: [batch, levels, m, codes] (`transformer.Decoder`).
    """
    rngs = None if rng is None else {"dropout": rng}
    return self.module.apply({"params": params}, tokens, segment_ids=segment_ids,
                             deterministic=rng is None, rngs=rngs,
                             level_positions=level_positions)

  def remove_conditioning(self, tokens, drop=None):
    """Replaces conditioning tokens by NULL_ID in the rows where `drop` [batch] is True.

    drop=None drops every row. tokens: [batch, length] -> [batch, length].
    """
    if self.stage is None or not self.stage.condition_kinds:
      return tokens
    is_condition = jnp.zeros(tokens.shape, bool)
    for kind in self.stage.condition_kinds:
      is_condition |= self.stage.layout.contains(kind, tokens)
    if drop is not None:
      is_condition &= drop[:, None]
    return jnp.where(is_condition, token_layout.NULL_ID, tokens)

  def loss_fn(self, params, batch, rng):
    inputs = batch["decoder_input_tokens"]
    targets = batch["decoder_target_tokens"]
    weights = batch["decoder_loss_weights"].astype(jnp.float32)
    if self.stage is not None:
      weights = weights * self.stage.layout.contains(self.stage.target_kind, targets)
    dropout_rng = None
    if rng is not None:
      dropout_rng, condition_rng = jax.random.split(rng)
      if self.condition_dropout_rate:
        drop = jax.random.bernoulli(condition_rng, self.condition_dropout_rate,
                                    (inputs.shape[0],))
        inputs = self.remove_conditioning(inputs, drop)

    segment_ids = batch.get("decoder_segment_ids")
    if self.stage is not None and segment_ids is None:
      positions, targets, weights = self._target_stream(targets, weights)
      logits = self.apply(params, inputs, rng=dropout_rng, level_positions=positions)
    else:
      logits = self.apply(params, inputs, segment_ids=segment_ids, rng=dropout_rng)
      logits, targets = self._target_level_logits(logits, targets)
    log_z = jax.nn.logsumexp(logits, axis=-1)
    target_logits = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    cross_entropy = log_z - target_logits
    z_term = self.z_loss * jnp.square(log_z)
    correct = (jnp.argmax(logits, axis=-1) == targets).astype(jnp.float32)

    num_tokens = jnp.sum(weights)
    def mean(x):
      return jnp.sum(x * weights) / jnp.maximum(num_tokens, 1.0)
    loss = mean(cross_entropy + z_term)
    return loss, {"cross_entropy": mean(cross_entropy), "z_loss": mean(z_term),
                  "accuracy": mean(correct), "num_tokens": num_tokens}

  def _target_stream(self, targets, weights):
    """Where each level's targets are in rows that hold one target stream (no packing).

    The stream is time-major with levels interleaved, so from its first token
    on, level q recurs every num_levels positions. targets [batch, length] ids,
    weights [batch, length] -> (positions [batch, levels, m] int32, codes and
    weights [batch, levels, m]), m = ceil(length / levels). Gathered positions
    past the row or not holding a level-q target get weight 0.
    """
    kind = self.stage.layout.kind(self.stage.target_kind)
    levels, size = kind.num_levels, kind.codebook_size
    batch, length = targets.shape
    start = jnp.argmax(self.stage.layout.contains(kind.name, targets), axis=1)
    first = jnp.take_along_axis(targets, start[:, None], axis=1)[:, 0]
    first_level = jnp.clip((first - self.logits_offset) // size, 0, levels - 1)
    level = jnp.arange(levels)
    m = -(-length // levels)
    positions = (start[:, None, None] + ((level - first_level[:, None]) % levels)[..., None]
                 + levels * jnp.arange(m))
    inside = positions < length
    positions = jnp.minimum(positions, length - 1)
    gather = lambda x: jnp.take_along_axis(x, positions.reshape(batch, -1), axis=1).reshape(
        positions.shape)
    codes = gather(targets) - self.logits_offset - size * level[:, None]
    valid = inside & (codes >= 0) & (codes < size)
    return positions, jnp.clip(codes, 0, size - 1), gather(weights) * valid

  def _target_level_logits(self, logits, targets):
    """For a stage's packed rows, each position's logits over its target level's codebook.

    The sampler draws a level-q token from level q's codes only, so the loss
    normalises over the same codes. logits [batch, length, num_logits],
    targets [batch, length] ids -> (logits [batch, length, codes], codes
    [batch, length]). Positions whose target is not of the target kind get
    an arbitrary level; they carry no loss. A plain LM's come back unchanged.
    """
    if self.stage is None:
      return logits, targets
    kind = self.stage.layout.kind(self.stage.target_kind)
    local = targets - self.logits_offset
    level = jnp.clip(local // kind.codebook_size, 0, kind.num_levels - 1)
    codes = jnp.clip(local - level * kind.codebook_size, 0, kind.codebook_size - 1)
    by_level = logits.reshape(logits.shape[:-1] + (kind.num_levels, kind.codebook_size))
    logits = jnp.take_along_axis(by_level, level[..., None, None], axis=-2)[..., 0, :]
    return logits, codes

  def flops_per_batch(self, batch_spec) -> float:
    """6 * dense params * tokens + attention score/value matmuls, forward + backward.

    The attention term counts the full [length, length] matrices because that
    is what is computed (masking does not skip work).
    """
    batch, length = batch_spec["decoder_input_tokens"].shape
    cfg = self.config
    attention_width = cfg.num_heads * cfg.kv_dim
    per_layer = 4 * cfg.d_model * attention_width + 3 * cfg.d_model * cfg.d_ff
    # A stage computes each position's logits over one level's codebook only.
    logits_width = (cfg.num_logits if self.stage is None else
                    self.stage.layout.kind(self.stage.target_kind).codebook_size)
    dense_params = cfg.num_layers * per_layer + cfg.d_model * logits_width
    tokens = batch * length
    attention_forward = cfg.num_layers * 2 * 2 * batch * length * length * attention_width
    return float(6 * dense_params * tokens + 3 * attention_forward)

  def init_cache(self, batch_size: int, max_length: int):
    """An empty KV cache for `batch_size` rows of up to `max_length` tokens.

    Pytree {'key', 'value': [layers, batch, max_length, heads, kv], 'index': int32 []}.
    Writing past max_length is not checked (dynamic_update_slice clamps).
    """
    tokens = jnp.zeros((batch_size, max_length), jnp.int32)
    shapes = jax.eval_shape(
        lambda: self.module.init(jax.random.PRNGKey(0), tokens, decode=True))["cache"]
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def prefill(self, params, cache, tokens):
    """Appends tokens [batch, n] at the cache index; returns (logits [batch, n, num_logits], cache).

    Usually called once on the prompt with an empty cache, but any n works at
    any index, e.g. to feed a continuation window's prefix.
    """
    logits, variables = self.module.apply(
        {"params": params, "cache": cache}, tokens, decode=True, mutable=["cache"])
    return logits, variables["cache"]

  def decode_step(self, params, cache, token):
    """Appends one token [batch]; returns (logits [batch, num_logits], cache)."""
    logits, cache = self.prefill(params, cache, token[:, None])
    return logits[:, 0], cache

  def predict_batch(self, params, batch, rng, *, num_steps: int, temperature: float = 1.0,
                    top_k: int = 0, top_p: float = 1.0, guidance_scale: float | None = None,
                    cached: bool = True, max_length: int = decoding.DEFAULT_MAX_LENGTH):
    """Samples `num_steps` ids after each prompt; returns [batch, num_steps] int32.

    batch['prompt_tokens'] [batch, n]: for a stage, its conditioning and prefix
    (and any target tokens to continue from) in the stage's layout; the new
    ids are the target stream's next tokens, each of its level. For a plain
    LM, any prefix (n may be 0). See `decoding.generate` for the arguments.
    """
    sampling = decoding.SamplingConfig(temperature, top_k, top_p, guidance_scale)
    return decoding.generate(self, params, batch["prompt_tokens"], rng, num_steps=num_steps,
                             sampling=sampling, cached=cached, max_length=max_length)
