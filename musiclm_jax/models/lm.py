"""The stage language models: one conditioned decoder-only LM, configured per stage.

A stage sequence is [conditioning | prefix | target] in one flat vocabulary
(see `musiclm_jax.data.token_layout`); MusicLM's three stages are defined in
`musiclm_jax.musiclm_spec`. The stage LM owns everything a stage means to a
model:

- its output head: logits only for the target kind's ids (`logits_offset`),
  and in training only each position's target level (`_level_logits`);
- its loss: only target tokens carry loss (`decoder_loss_weights` times
  "target id is of the stage's target kind"), so a data pipeline cannot train
  on the prefix by mistake;
- its unconditional rows: conditioning dropout replaces every conditioning
  token of an example by NULL_ID with probability `condition_dropout_rate`,
  which teaches the unconditional model that classifier-free guidance needs;
  a stage conditioned on [M | melody] also drops its melody codes alone with
  probability `melody_dropout_rate`, so it generates from text alone too;
  at inference, `remove_conditioning` builds the unconditional rows the same
  way and `predict_batch` mixes the two rows' logits;
- its per-position constraints: target number p (0 = the first) may only be
  an id of level p % num_levels (`allowed_ids`).

Without a stage, `DecoderOnlyLM` is a plain decoder-only LM over any vocab.

Cached decoding:
  cache = model.init_cache(batch_size, max_length)       # empty, index 0
  logits, cache = model.prefill(params, cache, prefix)   # prefix [batch, n]
  logits, cache = model.decode_step(params, cache, tok)  # tok [batch]
Training inputs are SeqIO-shifted (PAD_ID as BOS first), so a prompt is
[PAD_ID, conditioning..., prefix...]: the last prefill logits predict the
first target token. A cache of max_length = len(prompt) + num_targets is
enough.

Sampling: `predict_batch` does all of this (it takes the prompt without the
PAD_ID and prepends it) and hands the model's functions to a `decode_fn`
that knows no stage (`musiclm_jax.decoding.temperature_sample`).
"""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.layers import transformer
from musiclm_jax.models import base

# BOS + prompt + new tokens; the KV cache is [layers, batch, length, heads, kv], and
# longer music is made in windows that reuse the last part as prefix (cascade).
DEFAULT_MAX_LENGTH = 4096


def guide(logits, guidance_scale):
  """Classifier-free guidance: logits [2 batch, ...] of the conditional rows, then the same rows
  with NULL conditioning -> uncond + scale * (cond - uncond) [batch, ...]."""
  cond, uncond = jnp.split(logits, 2)
  return uncond + guidance_scale * (cond - uncond)


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
    melody_dropout_rate: per-example probability, in training only, of
      replacing the melody tokens alone by NULL_ID (independent of the above).
    frame_positions: the relative position bias measures frame-time offsets
      on the stage's clock (`StageConfig.frame_ticks`), not index offsets, so
      a target token finds the prefix frames of its own time (beyond the
      paper; AudioLM's index offsets saturate at 128 tokens, closer than any
      acoustic stage's prefix frame is to its target).
  """

  def __init__(self, transformer_config: transformer.TransformerConfig,
               stage: token_layout.StageConfig | None = None, z_loss: float = 0.0,
               condition_dropout_rate: float = 0.0, melody_dropout_rate: float = 0.0,
               frame_positions: bool = False):
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
      transformer_config = dataclasses.replace(
          transformer_config, vocab_size=layout_vocab, logits_ids=target_ids,
          frame_clocks=stage.frame_clocks() if frame_positions else None)
    elif transformer_config.vocab_size is None:
      raise ValueError("DecoderOnlyLM needs transformer_config.vocab_size or a stage.")
    elif frame_positions:
      raise ValueError("frame_positions needs a stage (its kinds' frame clocks).")
    if condition_dropout_rate and (stage is None or not stage.condition_kinds):
      raise ValueError("condition_dropout_rate needs a stage with condition_kinds.")
    if melody_dropout_rate and (stage is None or stage.melody_kind is None):
      raise ValueError("melody_dropout_rate needs a stage conditioned on a melody kind.")
    self.config = transformer_config
    self.stage = stage
    self.z_loss = z_loss
    self.condition_dropout_rate = condition_dropout_rate
    self.melody_dropout_rate = melody_dropout_rate
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
    level_positions[:, q]: [batch, levels, m, codes] (`_level_logits`).
    """
    rngs = None if rng is None else {"dropout": rng}
    outputs = self.module.apply({"params": params}, tokens, segment_ids=segment_ids,
                                deterministic=rng is None, rngs=rngs,
                                return_hidden=level_positions is not None)
    return outputs if level_positions is None else self._level_logits(*outputs, level_positions)

  def _level_logits(self, hidden, kernel, level_positions):
    """Logits of level q's codebook at positions level_positions[:, q] only.

    hidden [batch, length, embed] and kernel [embed, num_logits] from the
    decoder; level_positions int32 [batch, levels, m] -> float32 [batch,
    levels, m, codes] (codes = num_logits / levels, level q's columns
    [q * codes, (q + 1) * codes)). A multi-level stage's loss needs no more,
    and it costs `levels` times less than every column everywhere.
    """
    batch, levels, m = level_positions.shape
    num_logits = kernel.shape[-1]
    if num_logits % levels:
      raise ValueError(f"{num_logits} logits do not split into {levels} levels.")
    x = jnp.take_along_axis(hidden, level_positions.reshape(batch, levels * m, 1), axis=1)
    x = x.reshape(batch, levels, m, hidden.shape[-1])
    kernel = kernel.reshape(kernel.shape[0], levels, num_logits // levels)
    logits = jnp.einsum("bqme,eqv->bqmv", x, kernel)
    logits = nn.with_logical_constraint(logits, ("batch", None, "length", "vocab"))
    return logits.astype(jnp.float32)

  def remove_conditioning(self, tokens, drop=None, kinds=None):
    """Replaces conditioning tokens by NULL_ID in the rows where `drop` [batch] is True.

    drop=None drops every row; kinds=None every conditioning kind.
    tokens: [batch, length] -> [batch, length].
    """
    if self.stage is None or not self.stage.condition_kinds:
      return tokens
    is_condition = jnp.zeros(tokens.shape, bool)
    for kind in self.stage.condition_kinds if kinds is None else kinds:
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
      if self.melody_dropout_rate:
        # fold_in, not a 3-way split: runs without melody keep their random streams.
        drop = jax.random.bernoulli(jax.random.fold_in(condition_rng, 1),
                                    self.melody_dropout_rate, (inputs.shape[0],))
        inputs = self.remove_conditioning(inputs, drop, kinds=(self.stage.melody_kind,))

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

    Pytree {'index': int32 []} plus, for a scanned stack, 'key' [layers,
    batch * heads, kv, max_length] and 'value' [layers, batch * heads,
    max_length, kv]; for an unrolled one, 'key_<i>' and 'value_<i>' per layer
    without the layers axis (`layers.attention.cache_shapes`).
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

  def allowed_ids(self, positions):
    """(first_id, static width): new token `positions` may be ids [first_id, first_id + width).

    first_id has the shape of `positions`. A stage's target number p is of
    level p % num_levels, so it may only be one of that level's codes; a plain
    LM's token may be any of its logits' ids.
    """
    if self.stage is None:
      return jnp.full_like(positions, self.logits_offset), self.config.num_logits
    low, _ = self.stage.layout.level_id_range(self.stage.target_kind, positions)
    return low, self.stage.layout.kind(self.stage.target_kind).codebook_size

  def check_prompt(self, prompt: np.ndarray) -> None:
    """UserError unless `prompt` is [batch, n] ids the model reads (a stage: its kinds or NULL)."""
    if prompt.ndim != 2:
      raise UserError(f"prompt must be [batch, length] token ids, got shape {prompt.shape}")
    if self.stage is None:
      bad = (prompt < 0) | (prompt >= self.vocab_size)
      expected = f"ids in [0, {self.vocab_size})"
    else:
      layout = self.stage.layout
      bad = prompt != token_layout.NULL_ID
      for kind in layout.kinds:
        bad &= ~layout.contains(kind.name, prompt)
      expected = f"{', '.join(layout.offsets)} ids of the {self.stage.name} layout or NULL_ID"
    if bad.any():
      where = tuple(int(i) for i in np.argwhere(bad)[0])
      raise UserError(f"prompt id {prompt[where]} at {where} is not one of the {expected}")

  def predict_batch(self, params, batch, rng, *, decode_fn, num_steps: int,
                    guidance_scale=None, cached: bool = True,
                    max_length: int = DEFAULT_MAX_LENGTH, cache_length: int | None = None,
                    num_codes: int | None = None, prompt_length=None, steps=None,
                    **decode_kwargs):
    """Samples `num_steps` ids after each prompt; returns [batch, num_steps] int32.

    batch['prompt_tokens'] [batch, n] int32, no BOS: for a stage, its
    conditioning and prefix (and any target tokens to continue from) in the
    stage's layout; the new ids are the target stream's next tokens, each of
    its level. For a plain LM, any prefix (n may be 0).

    One program for windows of any shape: with `prompt_length` and `steps` (int32 [], may be
    traced) only the first prompt_length columns of the prompt are read (the rest is padding,
    PAD_ID) and only the first `steps` ids are sampled (the columns after them are 0). Then
    `cache_length` is required and bounds prompt_length + steps; n + 1 must fit in it.

    Args:
      decode_fn: the sampler, called as decode_fn(first_logits, state,
        tokens_to_logits, rng, num_steps=, constrain=, **decode_kwargs)
        (`musiclm_jax.decoding.temperature_sample`).
      guidance_scale: classifier-free guidance: each prompt also runs with
        its conditioning replaced by NULL_ID, and the logits sampled are
        uncond + scale * (cond - uncond). None: off. May be traced.
      cached: prefill a KV cache (default); False recomputes the full
        forward pass over a fixed [batch, 1 + n + num_steps] buffer at every
        token (the reference: causal attention makes the unfilled tail
        irrelevant, so both give the same tokens).
      max_length: the most tokens (BOS + prompt + new) allowed; more is a UserError.
      cache_length: KV cache slots, default exactly what is needed (without
        the cache, the recomputed buffer is one longer). A fixed value times a
        token as it would run inside a longer generation.
      num_codes: a stage samples only the first `num_codes` codes of each
        level (None: the layout's codebook_size): the tokenizer whose codes
        they become may have smaller books than the layout reserves, and a
        code it lacks would decode to garbage.
      decode_kwargs: the sampler's knobs (temperature, top_k, top_p); may be traced.
    """
    prompt = batch["prompt_tokens"]
    padded = prompt_length is not None or steps is not None
    if padded and (prompt_length is None or steps is None or cache_length is None):
      raise UserError("a padded prompt needs prompt_length, steps and cache_length: pass all "
                      "three or none")
    if not isinstance(prompt, jax.core.Tracer) and not isinstance(prompt_length, jax.core.Tracer):
      self.check_prompt(np.asarray(prompt)[:, :prompt_length])
    prompt = jnp.asarray(prompt, jnp.int32)
    if num_steps < 1:
      raise UserError(f"num_steps must be >= 1, got {num_steps}")
    # The last sampled token is never fed back: the cache holds BOS + prompt + steps - 1.
    if padded:
      needed_cache = 1 + prompt.shape[1]  # the prefill writes BOS and the whole padded prompt
      if not any(isinstance(v, jax.core.Tracer) for v in (prompt_length, steps)):
        if not (0 <= prompt_length <= prompt.shape[1] and 1 <= steps <= num_steps):
          raise UserError(f"prompt_length {prompt_length} must be in [0, {prompt.shape[1]}] and "
                          f"steps {steps} in [1, {num_steps}]")
        needed_cache = max(needed_cache, int(prompt_length) + int(steps))
    else:
      needed_cache = prompt.shape[1] + num_steps
      cache_length = needed_cache if cache_length is None else cache_length
    if 1 + needed_cache > max_length:
      raise UserError(f"BOS + prompt ({prompt.shape[1]}) + new tokens ({num_steps}) = "
                      f"{1 + needed_cache} exceeds max_length {max_length}: sample fewer tokens "
                      "or raise max_length")
    if cache_length < needed_cache:
      raise UserError(f"cache_length {cache_length} is too short for {needed_cache} tokens")
    if num_codes is not None and (self.stage is None or not 1 <= num_codes <= self.stage.layout.kind(
        self.stage.target_kind).codebook_size):
      raise UserError(f"num_codes {num_codes} needs a stage model and must be in [1, its "
                      "codebook size]: use the tokenizer's codebook size or None")
    if guidance_scale is not None and (self.stage is None or not self.stage.condition_kinds):
      raise UserError("guidance_scale needs a stage model with conditioning (semantic or coarse); "
                      "unset it for this model")
    if padded:
      decode_kwargs.update(steps=steps)
    return self._predict(params, prompt, rng, guidance_scale, decode_kwargs, prompt_length,
                         decode_fn=decode_fn, num_steps=num_steps, cached=cached,
                         cache_length=cache_length, num_codes=num_codes)

  @functools.partial(jax.jit, static_argnames=("self", "decode_fn", "num_steps", "cached",
                                               "cache_length", "num_codes"))
  def _predict(self, params, prompt, rng, guidance_scale, decode_kwargs, prompt_length, *,
               decode_fn, num_steps, cached, cache_length, num_codes):
    """`predict_batch` after its checks: the model's functions for `decode_fn`."""
    batch = prompt.shape[0]
    guided = guidance_scale is not None
    rows = jnp.concatenate([jnp.full((batch, 1), token_layout.PAD_ID, jnp.int32), prompt], axis=1)
    # Tokens of `rows` that are BOS and prompt; with padding, those after them are PAD_ID, which
    # is of no kind: it moves no frame clock and is no target, and causal attention keeps every
    # read position from them until the decode loop has written over them.
    length = rows.shape[1] if prompt_length is None else 1 + prompt_length
    if guided:
      rows = jnp.concatenate([rows, self.remove_conditioning(rows)])

    def mix(logits):
      return guide(logits, guidance_scale) if guided else logits

    def feed(token):
      return jnp.concatenate([token, token]) if guided else token

    if cached:
      cache = self.init_cache(rows.shape[0], cache_length)
      logits, state = self.prefill(params, cache, rows)
      first_logits = mix(jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False))
      state = {**state, "index": jnp.asarray(length, jnp.int32)}  # decoding writes over the padding

      def tokens_to_logits(token, cache):
        logits, cache = self.decode_step(params, cache, feed(token))
        return mix(logits), cache
    else:
      buffer = jnp.pad(rows, ((0, 0), (0, cache_length + 1 - rows.shape[1])))
      first_logits = mix(jax.lax.dynamic_index_in_dim(self.apply(params, buffer), length - 1,
                                                      axis=1, keepdims=False))
      state = (buffer, jnp.asarray(length, jnp.int32))

      def tokens_to_logits(token, state):
        buffer, position = state
        buffer = jax.lax.dynamic_update_slice_in_dim(buffer, feed(token)[:, None], position, axis=1)
        return mix(self.apply(params, buffer)[:, position]), (buffer, position + 1)

    first_position = self.target_tokens_in(prompt)

    def constrain(logits, step):
      return self.allowed_logits(logits, first_position + step, num_codes)

    return decode_fn(first_logits, state, tokens_to_logits, rng, num_steps=num_steps,
                     constrain=constrain, **decode_kwargs)

  def allowed_logits(self, logits, positions, num_codes=None):
    """The columns of `logits` new tokens number `positions` may take, and the first one's id.

    logits [..., num_logits], positions [...] int32 (a stage's target number p is of level
    p % num_levels: `allowed_ids`); num_codes: only each level's first num_codes codes (None:
    all). Returns (logits [..., width], first_id [...]): column c is id first_id + c.
    """
    first_id, width = self.allowed_ids(positions)
    width = min(width, num_codes or width)
    if width < logits.shape[-1]:
      columns = (first_id - self.logits_offset)[..., None] + jnp.arange(width)
      logits = jnp.take_along_axis(logits, columns, axis=-1)
    return logits, first_id

  def target_tokens_in(self, prompt):
    """[batch] count of the stage's target-kind ids already in the prompt (0 for a plain LM)."""
    if self.stage is None:
      return jnp.zeros(prompt.shape[:1], jnp.int32)
    return jnp.sum(self.stage.layout.contains(self.stage.target_kind, prompt), axis=1,
                   dtype=jnp.int32)
