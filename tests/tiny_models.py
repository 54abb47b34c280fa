"""Small models that exercise the trainer without depending on the stage LM."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from musiclm_jax.models.base import BaseModel


class _ContextMLP(nn.Module):
  """Embeds each token plus the one before it, then an MLP to the next-token logits."""
  vocab_size: int
  embed_dim: int = 32
  mlp_dim: int = 64
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, tokens, deterministic=True):
    init = nn.initializers.normal(0.02)
    table = self.param("embedding", nn.with_logical_partitioning(init, ("vocab", "embed")),
                       (self.vocab_size, self.embed_dim))
    x = table[tokens] + jnp.roll(table[tokens], 1, axis=1)
    x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
    h = nn.Dense(self.mlp_dim, kernel_init=nn.with_logical_partitioning(init, ("embed", "mlp")))(x)
    h = nn.Dropout(self.dropout_rate)(nn.gelu(h), deterministic=deterministic)
    h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
    return nn.Dense(self.vocab_size, kernel_init=nn.with_logical_partitioning(init, ("mlp", "vocab")))(h)


class ContextMLPModel(BaseModel):
  """A next-token model over a context of two tokens; enough to test training."""

  def __init__(self, vocab_size: int = 128, embed_dim: int = 32, mlp_dim: int = 64,
               dropout_rate: float = 0.1):
    self.module = _ContextMLP(vocab_size, embed_dim, mlp_dim, dropout_rate)

  def init(self, rng, batch_spec):
    tokens = jnp.zeros(batch_spec["decoder_input_tokens"].shape, jnp.int32)
    return self.module.init(rng, tokens)["params"]

  def logits(self, params, tokens):
    return self.module.apply({"params": params}, tokens)

  def loss_fn(self, params, batch, rng):
    logits = self.module.apply({"params": params}, batch["decoder_input_tokens"],
                               deterministic=rng is None, rngs={"dropout": rng} if rng is not None else {})
    weights = batch["decoder_loss_weights"]
    xent = optax.softmax_cross_entropy_with_integer_labels(logits, batch["decoder_target_tokens"])
    num_tokens = weights.sum()
    loss = (xent * weights).sum() / num_tokens
    accuracy = ((logits.argmax(-1) == batch["decoder_target_tokens"]) * weights).sum() / num_tokens
    return loss, {"accuracy": accuracy, "num_tokens": num_tokens}

  def flops_per_batch(self, batch_spec):
    b, l = batch_spec["decoder_input_tokens"].shape
    m = self.module
    return 6.0 * b * l * (m.embed_dim * m.mlp_dim + m.mlp_dim * m.vocab_size)


class SignSGDModel(ContextMLPModel):
  """Same network, its own update (sign of the gradient): exercises BaseModel.train_step."""

  def train_step(self, state, batch, rng):
    (loss, metrics), grads = jax.value_and_grad(self.loss_fn, has_aux=True)(state.params, batch, rng)
    params = jax.tree.map(lambda p, g: p - 1e-3 * jnp.sign(g), state.params, grads)
    return state.replace(step=state.step + 1, params=params), dict(metrics, loss=loss)
