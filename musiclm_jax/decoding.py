"""Temperature sampling from any autoregressive model, given as functions (T5X's decoding).

  tokens = temperature_sample(first_logits, state, tokens_to_logits, rng, num_steps=750,
                              temperature=1.0, top_k=250, constrain=constrain)

The model is what the caller's functions make of it: `first_logits` [batch, n]
predict the first new token (the caller prefilled its prompt), and
`tokens_to_logits(token [batch], state) -> (logits [batch, n], state)` feeds
one sampled token and gives the next logits (state: a KV cache, or a buffer
that is recomputed in full; the caller decides). `constrain(logits, step)`
optionally restricts new token number `step` to the ids the model allows
there: it returns (logits [batch, m], first_id [batch]), column j standing for
id first_id + j. Without it, column j is id j. One `lax.fori_loop` runs the loop:
a single compiled program, no per-token Python dispatch.

Knobs (temperature, top_k, top_p) may be traced values, so one compiled
sampler serves every setting; top_k == 0 and top_p == 1.0 left as Python
numbers skip the sort that filtering needs (`SamplingConfig.predict_kwargs`).

Randomness: row b of step p draws from fold_in(fold_in(rng, b), p), so the
same seed gives the same tokens, and a row gets the same tokens whatever else
is in its batch.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
  """How each token is drawn from its logits.

  temperature: 0 is greedy (argmax); otherwise logits are divided by it.
  top_k: keep the k most likely ids (0: all).
  top_p: keep the smallest set of most likely ids whose probability reaches
    top_p (1.0: all). Applied after temperature and top-k.
  guidance_scale: classifier-free guidance scale; None turns it off. The
    model mixes its conditional and unconditional logits (a stage with
    conditioning is needed to turn it on); the sampler only sees the result.
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

  def predict_kwargs(self) -> dict:
    """The knobs as `DecoderOnlyLM.predict_batch` takes them: arrays, traced under jit.

    guidance_scale (None when off) goes to the model; the others to
    `temperature_sample`. A filter that is off is left out, so its Python
    default stays and no sort is compiled for it.
    """
    kwargs = {"guidance_scale": None if self.guidance_scale is None
              else np.float32(self.guidance_scale), "temperature": np.float32(self.temperature)}
    if self.top_k > 0 or self.top_p < 1:
      kwargs.update(top_k=np.int32(self.top_k), top_p=np.float32(self.top_p))
    return kwargs


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


def temperature_sample(first_logits, state, tokens_to_logits, rng, *, num_steps: int,
                       steps=None, temperature=1.0, top_k=0, top_p=1.0, constrain=None):
  """Samples `num_steps` new ids per row; returns [batch, num_steps] int32.

  Args:
    first_logits: [batch, n] float32 logits of the first new token.
    state: whatever `tokens_to_logits` carries (a pytree).
    tokens_to_logits: (token [batch] int32, state) -> (logits [batch, n], state).
    rng: one PRNG key.
    num_steps: the result's width (static).
    steps: int32 [] in [1, num_steps], may be traced: sample only this many ids (columns from
      `steps` on are 0), so one compiled sampler serves every count up to num_steps. None:
      num_steps.
    temperature, top_k, top_p: as in `SamplingConfig`; may be traced.
    constrain: optional (logits [batch, n], step int32 []) -> (logits
      [batch, m], first_id [batch]): the ids new token `step` may take.
  """
  row_keys = jax.vmap(lambda b: jax.random.fold_in(rng, b))(jnp.arange(first_logits.shape[0]))

  def sample(logits, step):
    first_id = 0
    if constrain is not None:
      logits, first_id = constrain(logits, step)
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(row_keys, step)
    return first_id + sample_logits(keys, logits, temperature, top_k, top_p)

  def step_fn(step, carry):
    state, previous, tokens = carry
    logits, state = tokens_to_logits(previous, state)
    token = sample(logits, step)
    return state, token, tokens.at[:, step].set(token)

  first = sample(first_logits, 0)
  tokens = jnp.zeros((first.shape[0], num_steps), jnp.int32).at[:, 0].set(first)
  # A static count runs as a scan, a traced one as a while loop (lax.fori_loop's choice).
  _, _, tokens = jax.lax.fori_loop(1, num_steps if steps is None else steps, step_fn,
                                   (state, first, tokens))
  return tokens
