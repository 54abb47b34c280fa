"""Decoder stack: causality, packing mask, scan/remat equivalence, axes, dtypes."""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax.layers import transformer
from numpy_params import draw_params

CONFIG = transformer.TransformerConfig(vocab_size=64, d_model=32, num_layers=2, num_heads=4,
                                       d_ff=64)
LENGTH = 24


def _tokens(seed=1, batch=2):
  return jax.random.randint(jax.random.PRNGKey(seed), (batch, LENGTH), 3, 64)


def _init(config, tokens):
  """Boxed numpy-drawn params of the right shapes (see numpy_params)."""
  shapes = jax.eval_shape(transformer.Decoder(config).init, jax.random.PRNGKey(0), tokens)
  return draw_params(shapes["params"], keep_boxes=True)


def _forward(config):
  """Jitted (params, tokens, segment_ids=None) -> logits; eager flax is slow on CPU."""
  return jax.jit(lambda p, t, s=None: transformer.Decoder(config).apply(
      {"params": p}, t, segment_ids=s))


@pytest.mark.parametrize("scan_layers", [True, False])
def test_future_tokens_do_not_change_earlier_logits(scan_layers):
  config = dataclasses.replace(CONFIG, scan_layers=scan_layers)
  forward = _forward(config)
  tokens = _tokens()
  params = _init(config, tokens)
  changed = tokens.at[:, 10].set((tokens[:, 10] + 1) % 64)
  before = forward(params, tokens)
  after = forward(params, changed)
  np.testing.assert_array_equal(before[:, :10], after[:, :10])
  assert np.abs(before[:, 10:] - after[:, 10:]).min(axis=-1).max() > 0


def test_segments_do_not_attend_to_each_other():
  forward = _forward(CONFIG)
  tokens = _tokens()
  params = _init(CONFIG, tokens)
  segment_ids = jnp.where(jnp.arange(LENGTH) < 9, 1, 2)[None].repeat(2, 0)
  changed = tokens.at[:, 3].set((tokens[:, 3] + 1) % 64)
  before = forward(params, tokens, segment_ids)
  after = forward(params, changed, segment_ids)
  np.testing.assert_array_equal(before[:, 9:], after[:, 9:])
  # Relative positions need no reset: the second segment alone gives the same logits.
  alone = forward(params, tokens[:, 9:])
  np.testing.assert_allclose(before[:, 9:], alone, atol=1e-5)


def test_scan_and_unrolled_layers_compute_the_same_function():
  tokens = _tokens()
  scanned = nn.unbox(_init(CONFIG, tokens))
  unrolled = {k: v for k, v in scanned.items() if k != "layers"}
  for i in range(CONFIG.num_layers):
    unrolled[f"layers_{i}"] = jax.tree.map(lambda x, i=i: x[i], scanned["layers"])
  unrolled_config = dataclasses.replace(CONFIG, scan_layers=False)
  a = _forward(CONFIG)(scanned, tokens)
  b = _forward(unrolled_config)(unrolled, tokens)
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_remat_keeps_loss_and_gradients():
  tokens = _tokens()
  params = _init(CONFIG, tokens)

  def loss_and_grad(config):
    def loss(p):
      logits = transformer.Decoder(config).apply({"params": p}, tokens)
      return jnp.mean(jax.nn.log_softmax(logits)[..., 5])
    return jax.jit(jax.value_and_grad(loss))(params)

  reference = loss_and_grad(CONFIG)
  for policy in ("full", "minimal"):
    rematted = loss_and_grad(dataclasses.replace(CONFIG, remat_policy=policy))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 reference, rematted)


def test_unknown_remat_policy_is_a_clear_error():
  with pytest.raises(ValueError, match="remat_policy must be one of"):
    transformer.TransformerConfig(remat_policy="some")


@pytest.mark.parametrize("scan_layers", [True, False])
def test_every_param_has_logical_axes(scan_layers):
  config = dataclasses.replace(CONFIG, scan_layers=scan_layers)
  params = jax.eval_shape(lambda: _init(config, _tokens()))
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  assert leaves and all(isinstance(x, nn.LogicallyPartitioned) for x in leaves)
  for leaf in leaves:
    assert len(leaf.names) == leaf.value.ndim
  specs = nn.get_partition_spec(params)
  if scan_layers:
    assert specs["layers"]["attention"]["query"] == jax.sharding.PartitionSpec(
        "layers", "embed", "heads", "kv")
    assert specs["layers"]["mlp"]["wo"] == jax.sharding.PartitionSpec("layers", "mlp", "embed")
  assert specs["token_embedding"] == jax.sharding.PartitionSpec("vocab", "embed")
  rules = (("batch", "data"), ("mlp", "model"), ("heads", "model"), ("vocab", "model"))
  assert nn.logical_to_mesh_axes(("relpos_buckets", "heads"), rules) == \
      jax.sharding.PartitionSpec(None, "model")


def test_bfloat16_compute_keeps_float32_params():
  tokens = _tokens()
  config = dataclasses.replace(CONFIG, dtype="bfloat16")
  params = _init(config, tokens)
  assert {x.dtype for x in jax.tree.leaves(nn.unbox(params))} == {jnp.dtype("float32")}
  low = _forward(config)(params, tokens)
  high = _forward(CONFIG)(params, tokens)
  assert low.dtype == jnp.float32
  error = np.abs(low - high).mean()
  assert 0 < error < 0.05 * np.abs(high).mean()


def test_tied_embeddings_reuse_the_input_table_for_logits():
  config = dataclasses.replace(CONFIG, tie_embeddings=True)
  tokens = _tokens()
  params = _init(config, tokens)
  assert "logits_kernel" not in params
  logits = _forward(config)(params, tokens)
  assert logits.shape == (2, LENGTH, CONFIG.vocab_size)
  # Scaling the table scales the logits through the output projection too.
  doubled = dict(params, token_embedding=params["token_embedding"].replace_boxed(
      2 * params["token_embedding"].value))
  assert not np.allclose(_forward(config)(doubled, tokens), logits)
