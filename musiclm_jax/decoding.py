"""Sampling from a DecoderOnlyLM: prefill, then one compiled loop over new tokens.

  tokens = generate(model, params, prompt, rng, num_steps=750,
                    sampling=SamplingConfig(temperature=1.0, top_k=250))

`prompt` [batch, n] holds the conditioning and prefix ids as they appear in
training data (without SeqIO's BOS, which `generate` prepends: the model was
trained on [PAD_ID, conditioning..., prefix..., target...]). The result is
[batch, num_steps] new ids.

Cached decoding (the default) prefills the prompt into a KV cache, samples the
first token from the last prefill logits, then runs `lax.scan` over the
remaining tokens with one `decode_step` each: a single compiled program, no
per-token Python dispatch. `cached=False` is the reference: the same loop and
the same sampling function, but each step recomputes the full forward pass over
a fixed [batch, 1 + n + num_steps] buffer (causal attention makes the unfilled
tail irrelevant). The two give the same tokens for the same seed.

Per-stage constraints: new token number p of a stage's target stream (p counts
the target-kind tokens already in the prompt) may only be an id of level
p % num_levels, so its logits are cut to that level's codebook before
sampling. A plain LM samples from its whole vocabulary.

Classifier-free guidance doubles the rows: each prompt also runs with its
conditioning replaced by NULL_ID (`model.remove_conditioning`), and the logits
that are sampled are uncond + scale * (cond - uncond); both rows are fed the
sampled token.

Randomness: row b of step p draws from fold_in(fold_in(rng, b), p), so the
same seed gives the same tokens, and a row gets the same tokens whatever else
is in its batch.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError

# Prompt + new tokens; the KV cache is [layers, batch, length, heads, kv], and
# longer music is made in windows that reuse the last part as prefix (cascade).
DEFAULT_MAX_LENGTH = 4096


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How each token is drawn from its logits.

  temperature: 0 is greedy (argmax); otherwise logits are divided by it.
  top_k: keep the k most likely ids (0: all).
  top_p: keep the smallest set of most likely ids whose probability reaches
    top_p (1.0: all). Applied after temperature and top-k.
  guidance_scale: classifier-free guidance scale; None turns it off (a
    stage with conditioning is needed to turn it on).
  """
  temperature: float = 1.0
  top_k: int = 0
  top_p: float = 1.0
  guidance_scale: float | None = None

  def __post_init__(self):
    if self.temperature < 0:
      raise UserError(f"temperature must be >= 0, got {self.temperature}")
    if self.top_k < 0 or int(self.top_k) != self.top_k:
      raise UserError(f"top_k must be a whole number >= 0 (0 turns it off), got {self.top_k}")
    if not 0 < self.top_p <= 1:
      raise UserError(f"top_p must be in (0, 1] (1 turns it off), got {self.top_p}")


def sample_logits(rng, logits, temperature, top_k=0, top_p=1.0):
  """Draws one id per row: logits [batch, n] float32 -> ids [batch] in [0, n).

  rng: [batch] keys, one per row. temperature, top_k and top_p may be traced
  scalars, so one compiled sampler serves every setting; top_k == 0 and
  top_p >= 1 given as Python numbers skip the sort that filtering needs.
  """
  scaled = logits / jnp.maximum(temperature, 1e-6)
  if not (isinstance(top_k, int) and top_k == 0 and isinstance(top_p, (int, float))
          and top_p >= 1):
    descending = -jnp.sort(-scaled, axis=-1)
    n = logits.shape[-1]
    num_top_k = jnp.where((top_k > 0) & (top_k < n), top_k, n)
    probs = jax.nn.softmax(jnp.where(jnp.arange(n) < num_top_k, descending, -jnp.inf), axis=-1)
    # Keep an id if the ids more likely than it hold less than top_p: the first always stays.
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    num_kept = jnp.minimum(jnp.sum(mass_before < top_p, axis=-1, keepdims=True), num_top_k)
    threshold = jnp.take_along_axis(descending, num_kept - 1, axis=-1)
    scaled = jnp.where(scaled < threshold, -jnp.inf, scaled)
  sampled = jax.vmap(jax.random.categorical)(rng, scaled)
  return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


def generate(model, params, prompt, rng, *, num_steps: int,
             sampling: SamplingConfig = SamplingConfig(), cached: bool = True,
             max_length: int = DEFAULT_MAX_LENGTH, cache_length: int | None = None):
  """Samples `num_steps` new ids after each row of `prompt`.

  Args:
    model: a `musiclm_jax.models.lm.DecoderOnlyLM`.
    prompt: [batch, n] int32 conditioning + prefix ids (n may be 0), no BOS.
    rng: one PRNG key.
    max_length: the most tokens (BOS + prompt + new) allowed; more is a UserError.
    cache_length: KV cache slots, default exactly what is needed (without
      the cache, the recomputed buffer is one longer). A fixed value times a
      token as it would run inside a longer generation.

  Returns:
    [batch, num_steps] int32 sampled ids.
  """
  if not isinstance(prompt, jax.core.Tracer):
    check_prompt(model, np.asarray(prompt))
  prompt = jnp.asarray(prompt, jnp.int32)
  if num_steps < 1:
    raise UserError(f"num_steps must be >= 1, got {num_steps}")
  total = 1 + prompt.shape[1] + num_steps
  if total > max_length:
    raise UserError(f"BOS + prompt ({prompt.shape[1]}) + new tokens ({num_steps}) = {total} "
                    f"exceeds max_length {max_length}: sample fewer tokens or raise max_length")
  needed_cache = total - 1  # the last sampled token is never fed back
  cache_length = needed_cache if cache_length is None else cache_length
  if cache_length < needed_cache:
    raise UserError(f"cache_length {cache_length} is too short for {needed_cache} tokens")
  guided = sampling.guidance_scale is not None
  if guided and (model.stage is None or not model.stage.condition_kinds):
    raise UserError("guidance_scale needs a stage model with conditioning (semantic or coarse); "
                    "unset it for this model")
  return _generate(model, params, prompt, rng, jnp.float32(sampling.temperature),
                   jnp.int32(sampling.top_k), jnp.float32(sampling.top_p),
                   jnp.float32(sampling.guidance_scale if guided else 1.0), num_steps=num_steps,
                   filtered=sampling.top_k > 0 or sampling.top_p < 1, guided=guided,
                   cached=cached, cache_length=cache_length)


@functools.partial(jax.jit, static_argnames=("model", "num_steps", "filtered", "guided", "cached",
                                             "cache_length"))
def _generate(model, params, prompt, rng, temperature, top_k, top_p, guidance_scale, *, num_steps,
              filtered, guided, cached, cache_length):
  batch = prompt.shape[0]
  if not filtered:
    top_k, top_p = 0, 1.0  # Python numbers: sample_logits skips the sort.
  bos = jnp.full((batch, 1), token_layout.PAD_ID, jnp.int32)
  rows = jnp.concatenate([bos, prompt], axis=1)
  if guided:
    rows = jnp.concatenate([rows, model.remove_conditioning(rows)])
  row_keys = jax.vmap(lambda b: jax.random.fold_in(rng, b))(jnp.arange(batch))
  first_position = _target_tokens_in(model, prompt)

  def sample(logits, step):
    """logits [rows, num_logits] of new token `step` -> ids [batch]."""
    if guided:
      cond, uncond = logits[:batch], logits[batch:]
      logits = uncond + guidance_scale * (cond - uncond)
    low, width = _allowed_ids(model, first_position + step)
    if width < logits.shape[-1]:
      columns = low - model.logits_offset
      logits = jnp.take_along_axis(logits, columns[:, None] + jnp.arange(width), axis=-1)
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys, step)
    return low + sample_logits(keys, logits, temperature, top_k, top_p)

  def feed(token):
    return jnp.concatenate([token, token]) if guided else token

  if cached:
    cache = model.init_cache(rows.shape[0], cache_length)
    logits, cache = model.prefill(params, cache, rows)
    first = sample(logits[:, -1], 0)

    def step_fn(carry, step):
      cache, previous = carry
      logits, cache = model.decode_step(params, cache, feed(previous))
      token = sample(logits, step)
      return (cache, token), token

    _, rest = jax.lax.scan(step_fn, (cache, first), jnp.arange(1, num_steps))
  else:
    prompt_length = rows.shape[1]
    buffer = jnp.pad(rows, ((0, 0), (0, cache_length + 1 - prompt_length)))
    first = sample(model.apply(params, buffer)[:, prompt_length - 1], 0)

    def step_fn(carry, step):
      buffer, previous = carry
      buffer = jax.lax.dynamic_update_slice_in_dim(
          buffer, feed(previous)[:, None], prompt_length + step - 1, axis=1)
      token = sample(model.apply(params, buffer)[:, prompt_length + step - 1], step)
      return (buffer, token), token

    _, rest = jax.lax.scan(step_fn, (buffer, first), jnp.arange(1, num_steps))
  return jnp.concatenate([first[:, None], rest.T], axis=1)


def check_prompt(model, prompt: np.ndarray) -> None:
  """UserError unless `prompt` is [batch, n] ids the model can read (a stage: its kinds or NULL)."""
  if prompt.ndim != 2:
    raise UserError(f"prompt must be [batch, length] token ids, got shape {prompt.shape}")
  if model.stage is None:
    bad = (prompt < 0) | (prompt >= model.vocab_size)
    expected = f"ids in [0, {model.vocab_size})"
  else:
    layout = model.stage.layout
    bad = prompt != token_layout.NULL_ID
    for kind in layout.kinds:
      bad &= ~layout.contains(kind.name, prompt)
    expected = f"{', '.join(layout.offsets)} ids of the {model.stage.name} layout or NULL_ID"
  if bad.any():
    where = tuple(int(i) for i in np.argwhere(bad)[0])
    raise UserError(f"prompt id {prompt[where]} at {where} is not one of the {expected}")


def _target_tokens_in(model, prompt):
  """[batch] count of the stage's target-kind ids already in the prompt (0 for a plain LM)."""
  if model.stage is None:
    return jnp.zeros(prompt.shape[:1], jnp.int32)
  return jnp.sum(model.stage.layout.contains(model.stage.target_kind, prompt), axis=1,
                 dtype=jnp.int32)


def _allowed_ids(model, positions):
  """(low [batch], static width): target number `positions` may be ids [low, low + width)."""
  if model.stage is None:
    return jnp.zeros_like(positions), model.vocab_size
  stage = model.stage
  low, _ = stage.layout.level_id_range(stage.target_kind, positions)
  return low, stage.layout.kind(stage.target_kind).codebook_size
