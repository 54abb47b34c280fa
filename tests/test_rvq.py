"""Residual vector quantization: k-means seeding, EMA, restarts, dropout, straight-through."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax.layers import rvq

RVQ = rvq.ResidualVQ(num_levels=6, codebook_size=16, dim=8, decay=0.9, dead_code_threshold=0.5)
# Jitted once here: eager scans would compile again at every call.
_seed = jax.jit(RVQ.seed)
_update = jax.jit(RVQ.update)
_quantize = jax.jit(RVQ.quantize)
_encode = jax.jit(RVQ.encode, static_argnums=2)
_decode = jax.jit(RVQ.decode, static_argnums=2)


def _vectors(seed=0, shape=(4, 64, 8)):
  return jax.random.normal(jax.random.key(seed), shape)


def _seeded(x):
  return _seed(RVQ.init_state(), x, jax.random.key(1))


@jax.jit
def _errors_by_level(state, x):
  codes = RVQ.encode(state, x)
  return jnp.stack([jnp.mean((RVQ.decode(state, codes, n) - x) ** 2)
                    for n in range(1, RVQ.num_levels + 1)])


def test_reconstruction_error_falls_with_every_level():
  x = _vectors()
  state = _seeded(x)
  assert float(state["initialized"]) == 1.0
  errors = np.asarray(_errors_by_level(state, x)).tolist()
  assert all(b < a for a, b in zip(errors, errors[1:])), errors
  assert errors[-1] < 0.5 * errors[0]


def test_encode_decode_shapes_and_levels():
  x = _vectors()
  state = _seeded(x)
  codes = _encode(state, x)
  assert codes.shape == (4, 64, 6) and codes.dtype == jnp.int32
  assert int(codes.min()) >= 0 and int(codes.max()) < 16
  two = _encode(state, x, 2)
  assert two.shape == (4, 64, 2)
  np.testing.assert_array_equal(two, codes[..., :2])
  np.testing.assert_allclose(_decode(state, codes, 2), _decode(state, two))
  np.testing.assert_allclose(_quantize(state, x).quantized, _decode(state, codes), atol=1e-5)


def test_update_is_a_noop_seed_first_then_ema_moves_codes_to_their_cluster_means():
  x = _vectors()
  updated, _ = _update(RVQ.init_state(), x, None, jax.random.key(2))
  assert float(updated["initialized"]) == 1.0
  assert float(jnp.abs(updated["codebooks"]).sum()) > 0
  instant = rvq.ResidualVQ(1, 16, 8, decay=0.0, epsilon=0.0, dead_code_threshold=0.0)
  state = jax.jit(instant.seed)(instant.init_state(), x, jax.random.key(1))
  codes = jax.jit(instant.encode)(state, x)[..., 0].reshape(-1)
  new_state, _ = jax.jit(instant.update)(state, x, None, jax.random.key(3))
  flat = np.asarray(x).reshape(-1, 8)
  for code in np.unique(codes)[:4]:
    np.testing.assert_allclose(new_state["codebooks"][0, code], flat[codes == code].mean(0), atol=1e-5)


def test_dead_codes_are_restarted_from_the_batch_residuals():
  x = _vectors()
  state = _seeded(x)
  state["codebooks"] = state["codebooks"].at[0, :4].set(1e3)  # never the nearest
  state["cluster_size"] = state["cluster_size"].at[0, :4].set(0.0)
  assert int(RVQ.dead_codes(state)[0]) >= 4
  new_state, stats = _update(state, x, None, jax.random.key(4))
  assert int(stats["restarted_codes"]) >= 4
  restarted = np.asarray(new_state["codebooks"][0, :4])
  flat = np.asarray(x).reshape(-1, 8)  # level 0's residual is x itself
  for vector in restarted:
    assert np.min(np.abs(flat - vector).max(-1)) < 1e-6
  assert np.all(np.asarray(new_state["cluster_size"][0, :4]) >= RVQ.dead_code_threshold)


def test_quantizer_dropout_varies_the_level_count_per_example():
  mask = RVQ.level_mask(256, jax.random.key(0), dropout_fraction=1.0)
  counts = np.asarray(mask.sum(-1))
  assert set(counts) == set(range(1, RVQ.num_levels + 1))
  np.testing.assert_array_equal(mask, np.arange(6)[None, :] < counts[:, None])  # a prefix
  half = np.asarray(RVQ.level_mask(256, jax.random.key(0), dropout_fraction=0.5).sum(-1))
  assert 0.3 < np.mean(half == RVQ.num_levels) < 0.8
  assert np.all(np.asarray(RVQ.level_mask(8, None).sum(-1)) == RVQ.num_levels)

  x = _vectors(shape=(8, 16, 8))
  state = _seeded(x)
  mask = RVQ.level_mask(8, jax.random.key(5))
  out = _quantize(state, x, mask)
  masked_codes = np.where(np.asarray(mask)[:, None, :], np.asarray(out.codes), -1)
  for i, n in enumerate(np.asarray(mask.sum(-1))):
    expected = np.asarray(state["codebooks"])[np.arange(n)[None, :], masked_codes[i, :, :n]].sum(1)
    np.testing.assert_allclose(out.quantized[i], expected, atol=1e-5)
  assert float(out.metrics["active_levels"]) == pytest.approx(float(mask.sum(-1).mean()))


def test_gradients_pass_straight_through_and_commitment_pulls_x_to_its_codes():
  state = _seeded(_vectors())
  x = _vectors(seed=7, shape=(2, 8, 8))
  grad = jax.jit(jax.grad(lambda v: jnp.sum(RVQ.quantize(state, v).quantized * 3.0)))(x)
  np.testing.assert_allclose(grad, 3.0 * jnp.ones_like(x))
  out = _quantize(state, x)
  expected = jnp.mean((x - _decode(state, out.codes)) ** 2)
  np.testing.assert_allclose(out.commitment_loss, expected, rtol=1e-5)
  commitment_grad = jax.jit(jax.grad(lambda v: RVQ.quantize(state, v).commitment_loss))(x)
  assert float(jnp.abs(commitment_grad).sum()) > 0
  state_grad = jax.jit(jax.grad(lambda s: RVQ.quantize(s, x).quantized.sum()))(state)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(state_grad))


def test_codebook_metrics_measure_usage_and_perplexity():
  codes = jnp.asarray([[[0], [1], [2], [3]]])
  metrics = rvq.codebook_metrics(codes, jnp.ones((1, 1), bool), codebook_size=8)
  assert float(metrics["codebook_perplexity"]) == pytest.approx(4.0)
  assert float(metrics["codebook_usage"]) == pytest.approx(0.5)


def test_bits_per_frame():
  assert rvq.ResidualVQ(12, 1024, 128).bits_per_frame() == 120
  assert rvq.ResidualVQ(24, 512, 192).bits_per_frame(4) == 36
