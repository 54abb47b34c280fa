"""Residual vector quantization (SoundStream), shared by the codec, MuLan and melody.

Pure functions over a state dict, so any model can keep the codebooks wherever
its optimizer leaves them alone (SoundStream keeps them in params under a
top-level key that `optax.set_to_zero` owns, and updates them in its own
`train_step`). The state is not trained by gradients:

  codebooks     [levels, codes, dim]  the code vectors
  cluster_size  [levels, codes]       EMA of how many vectors each code takes
  embed_sum     [levels, codes, dim]  EMA of the sum of those vectors
  initialized   []                    1.0 once k-means has seeded the codebooks

Typical use:
  rvq = ResidualVQ(num_levels=12, codebook_size=1024, dim=128)
  state = rvq.init_state()
  out = rvq.quantize(state, x, level_mask)        # in the loss: straight-through
  state, stats = rvq.update(state, x, level_mask, rng)  # after the step: k-means, EMA, restarts
  codes = rvq.encode(state, x)                    # [batch, time, levels]
  x_hat = rvq.decode(state, codes, num_levels=4)
"""
import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from musiclm_jax.layers import kmeans as kmeans_lib

State = dict[str, jax.Array]


class Quantized(NamedTuple):
  """What `ResidualVQ.quantize` returns.

  quantized: [batch, time, dim], straight-through: its gradient flows to x.
  codes: [batch, time, levels] int32 (codes of masked-out levels are still computed).
  commitment_loss: scalar, mean |x - sg(quantized)|^2.
  metrics: per-batch codebook statistics (see `codebook_metrics`).
  """
  quantized: jax.Array
  codes: jax.Array
  commitment_loss: jax.Array
  metrics: dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class ResidualVQ:
  """A stack of `num_levels` codebooks, each quantizing the previous residual.

  Attributes:
    num_levels: codebooks in the stack (Q).
    codebook_size: codes per codebook (K).
    dim: vector size.
    decay: EMA decay of cluster sizes and sums.
    epsilon: Laplace smoothing of cluster sizes.
    dead_code_threshold: a code whose EMA cluster size falls below this is
      replaced by a residual drawn from the current batch.
    kmeans_iterations: Lloyd iterations when seeding from the first batch.
  """
  num_levels: int
  codebook_size: int
  dim: int
  decay: float = 0.99
  epsilon: float = 1e-5
  dead_code_threshold: float = 1.0
  kmeans_iterations: int = 10

  def bits_per_frame(self, num_levels: int | None = None) -> float:
    return (num_levels or self.num_levels) * math.log2(self.codebook_size)

  def init_state(self) -> State:
    q, k, d = self.num_levels, self.codebook_size, self.dim
    return {"codebooks": jnp.zeros((q, k, d), jnp.float32),
            "cluster_size": jnp.zeros((q, k), jnp.float32),
            "embed_sum": jnp.zeros((q, k, d), jnp.float32),
            "initialized": jnp.zeros((), jnp.float32)}

  def level_mask(self, batch_size: int, rng: jax.Array | None,
                 dropout_fraction: float = 1.0) -> jax.Array:
    """[batch, levels] bool: which levels each example uses.

    With an rng, a `dropout_fraction` of the examples use a number of levels
    drawn uniformly from 1..Q (quantizer dropout, for bitrate scalability);
    the others, and all of them without an rng, use every level.
    """
    levels = jnp.arange(self.num_levels)
    if rng is None or dropout_fraction == 0.0:
      return jnp.ones((batch_size, self.num_levels), bool)
    count_rng, apply_rng = jax.random.split(rng)
    counts = jax.random.randint(count_rng, (batch_size,), 1, self.num_levels + 1)
    dropped = jax.random.bernoulli(apply_rng, dropout_fraction, (batch_size,))
    counts = jnp.where(dropped, counts, self.num_levels)
    return levels[None, :] < counts[:, None]

  def quantize(self, state: State, x: jax.Array,
               level_mask: jax.Array | None = None) -> Quantized:
    """x: [batch, time, dim]; level_mask: [batch, levels] bool (default all)."""
    if level_mask is None:
      level_mask = jnp.ones((x.shape[0], self.num_levels), bool)
    x = x.astype(jnp.float32)
    codebooks = jax.lax.stop_gradient(state["codebooks"])
    mask = level_mask.T[:, :, None, None].astype(jnp.float32)  # [levels, batch, 1, 1]

    def level(residual, inputs):
      codebook, active = inputs
      codes = kmeans_lib.nearest(residual, codebook)
      chosen = codebook[codes] * active
      return residual - chosen, (codes, chosen)

    _, (codes, chosen) = jax.lax.scan(level, jax.lax.stop_gradient(x), (codebooks, mask))
    quantized = jnp.sum(chosen, axis=0)
    # Commitment pulls x toward the sum of its codes, and the straight-through
    # estimator hands the decoder's gradient to x unchanged.
    commitment = jnp.mean(jnp.square(x - jax.lax.stop_gradient(quantized)))
    codes = jnp.moveaxis(codes, 0, -1)
    metrics = codebook_metrics(codes, level_mask, self.codebook_size)
    return Quantized(x + jax.lax.stop_gradient(quantized - x), codes, commitment, metrics)

  def encode(self, state: State, x: jax.Array, num_levels: int | None = None) -> jax.Array:
    """x: [batch, time, dim] -> codes [batch, time, num_levels] int32."""
    n = num_levels or self.num_levels
    mask = jnp.arange(self.num_levels)[None, :] < n
    codes = self.quantize(state, x, jnp.broadcast_to(mask, (x.shape[0], self.num_levels))).codes
    return codes[..., :n]

  def decode(self, state: State, codes: jax.Array, num_levels: int | None = None) -> jax.Array:
    """codes: [batch, time, levels'] -> [batch, time, dim], summing the first `num_levels`."""
    n = min(num_levels or codes.shape[-1], codes.shape[-1])
    if n > self.num_levels:
      raise ValueError(f"codes have {n} levels but the quantizer has {self.num_levels}")
    vectors = jax.vmap(lambda book, c: book[c], in_axes=(0, -1))(state["codebooks"][:n], codes[..., :n])
    return jnp.sum(vectors, axis=0)

  def update(self, state: State, x: jax.Array, level_mask: jax.Array | None,
             rng: jax.Array) -> tuple[State, dict[str, jax.Array]]:
    """The non-gradient step: seed by k-means once, then EMA and dead-code restarts.

    x: [batch, time, dim], the encoder output the loss just quantized (any
    gradient is cut); level_mask: [batch, levels], the same mask, so that
    levels an example skipped do not move their codebooks.
    Returns (new state, {'restarted_codes': codes restarted, summed over levels}).
    """
    x = jax.lax.stop_gradient(x.astype(jnp.float32))
    if level_mask is None:
      level_mask = jnp.ones((x.shape[0], self.num_levels), bool)
    init_rng, update_rng = jax.random.split(rng)
    state = jax.lax.cond(state["initialized"] > 0, lambda s: s,
                         lambda s: self.seed(s, x, init_rng), state)
    return self._ema_update(state, x, level_mask, update_rng)

  def seed(self, state: State, x: jax.Array, rng: jax.Array) -> State:
    """Codebooks from k-means on x [batch, time, dim], level by level on the residuals."""
    del state
    vectors = x.reshape(-1, self.dim)

    def level(residual, level_rng):
      codebook, counts = kmeans_lib.kmeans(residual, self.codebook_size, self.kmeans_iterations, level_rng)
      codes = kmeans_lib.nearest(residual, codebook)
      return residual - codebook[codes], (codebook, counts)

    rngs = jax.random.split(rng, self.num_levels)
    _, (codebooks, counts) = jax.lax.scan(level, vectors, rngs)
    return {"codebooks": codebooks, "cluster_size": counts,
            "embed_sum": codebooks * counts[..., None],
            "initialized": jnp.ones((), jnp.float32)}

  def _ema_update(self, state: State, x: jax.Array, level_mask: jax.Array,
                  rng: jax.Array) -> tuple[State, dict[str, jax.Array]]:
    vectors = x.reshape(-1, self.dim)
    frames = x.shape[1]
    weights = jnp.repeat(level_mask.astype(jnp.float32), frames, axis=0).T  # [levels, vectors]
    rngs = jax.random.split(rng, self.num_levels)

    def level(residual, inputs):
      codebook, cluster_size, embed_sum, weight, level_rng = inputs
      codes = kmeans_lib.nearest(residual, codebook)
      onehot = jax.nn.one_hot(codes, self.codebook_size, dtype=jnp.float32) * weight[:, None]
      cluster_size = self.decay * cluster_size + (1 - self.decay) * onehot.sum(0)
      embed_sum = self.decay * embed_sum + (1 - self.decay) * (onehot.T @ residual)
      total = cluster_size.sum()
      smoothed = (cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
      new_codebook = embed_sum / smoothed[:, None]
      # Restart codes that stopped being chosen at residuals of this batch, with
      # their EMA reset so that the next update does not drag them back.
      dead = cluster_size < self.dead_code_threshold
      # Draw from the vectors this level quantized (all of them if none did).
      draw = jnp.where(weight.sum() > 0, weight, 1.0)
      picks = jax.random.choice(level_rng, residual.shape[0], (self.codebook_size,),
                                p=draw / draw.sum())
      replacement = residual[picks]
      new_codebook = jnp.where(dead[:, None], replacement, new_codebook)
      cluster_size = jnp.where(dead, self.dead_code_threshold, cluster_size)
      embed_sum = jnp.where(dead[:, None], replacement * self.dead_code_threshold, embed_sum)
      # Residuals for the next level use the codebook the loss used, as quantize does.
      next_residual = residual - codebook[codes] * weight[:, None]
      return next_residual, (new_codebook, cluster_size, embed_sum, dead.sum())

    _, (codebooks, cluster_size, embed_sum, restarted) = jax.lax.scan(
        level, vectors, (state["codebooks"], state["cluster_size"], state["embed_sum"], weights, rngs))
    new_state = {"codebooks": codebooks, "cluster_size": cluster_size, "embed_sum": embed_sum,
                 "initialized": state["initialized"]}
    return new_state, {"restarted_codes": restarted.sum()}

  def dead_codes(self, state: State) -> jax.Array:
    """[levels] int32: codes whose EMA cluster size is below the restart threshold."""
    return jnp.sum(state["cluster_size"] < self.dead_code_threshold, axis=-1)


def codebook_metrics(codes: jax.Array, level_mask: jax.Array,
                     codebook_size: int) -> dict[str, jax.Array]:
  """Batch statistics of codes [batch, time, levels] over active levels.

  codebook_perplexity: exp(entropy) of code use, averaged over levels (K at best);
  codebook_usage: fraction of the K codes used in the batch, averaged over levels;
  active_levels: mean number of levels per example (quantizer dropout lowers it).
  """
  weight = jnp.broadcast_to(level_mask[:, None, :], codes.shape).astype(jnp.float32)
  onehot = jax.nn.one_hot(codes, codebook_size, dtype=jnp.float32) * weight[..., None]
  counts = onehot.sum((0, 1))  # [levels, codes]
  probs = counts / jnp.maximum(counts.sum(-1, keepdims=True), 1.0)
  entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.where(probs > 0, probs, 1.0)), 0.0), -1)
  return {"codebook_perplexity": jnp.mean(jnp.exp(entropy)),
          "codebook_usage": jnp.mean(jnp.mean(counts > 0, axis=-1)),
          "active_levels": jnp.mean(jnp.sum(level_mask, axis=-1).astype(jnp.float32))}

