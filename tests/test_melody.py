"""Melody embedder: semi-hard triplet loss vs numpy, global negatives on 8 devices, training."""
import itertools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import optax
import pytest

import numpy_params
from musiclm_jax import partitioning
from musiclm_jax.errors import UserError
from musiclm_jax.models import melody

# 0.4 s windows every 0.3 s of 16-band log-mels; 2 blocks of 2 heads over 16 dims.
TOY = melody.MelodyConfig(window_seconds=0.4, window_hop_seconds=0.3, n_fft=256,
                          stft_window_samples=240, stft_hop_samples=240, n_mels=16, patch_frames=2,
                          d_model=16, num_layers=2, num_heads=2, head_dim=None, d_ff=32,
                          embedding_dim=8)


def reference_semi_hard_loss(anchors, positives, margin):
  """FaceNet's rule written pair by pair, straight from the definition."""
  clips = np.concatenate([anchors, positives]).astype(np.float64)
  n = len(anchors)
  labels = list(range(n)) * 2
  terms = []
  for a in range(2 * n):
    p = (a + n) % (2 * n)
    d_p = np.sum((clips[a] - clips[p]) ** 2)
    d_n = [np.sum((clips[a] - clips[k]) ** 2) for k in range(2 * n) if labels[k] != labels[a]]
    semi_hard = [d for d in d_n if d_p < d < d_p + margin]
    if semi_hard:
      terms.append(d_p - min(semi_hard) + margin)
    else:
      terms.append(np.mean([max(d_p - d + margin, 0.0) for d in d_n]))
  return np.mean(terms)


def _unit(*vectors):
  v = np.array(vectors, np.float32)
  return v / np.linalg.norm(v, axis=-1, keepdims=True)


def test_semi_hard_loss_equals_the_pair_by_pair_reference_on_a_hand_made_batch():
  # Two melodies on a circle: each positive 20 degrees from its anchor, the other
  # melody's clips 30-40 degrees away, so semi-hard negatives exist for some pairs.
  angle = np.deg2rad([0.0, 35.0])
  partner = angle + np.deg2rad([20.0, -20.0])
  anchors = _unit(*[(np.cos(t), np.sin(t)) for t in angle])
  positives = _unit(*[(np.cos(t), np.sin(t)) for t in partner])
  margin = 0.3
  loss, metrics = melody.semi_hard_triplet_loss(jnp.asarray(anchors), jnp.asarray(positives),
                                                margin)
  expected = reference_semi_hard_loss(anchors, positives, margin)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert 0.0 < float(metrics["semi_hard_fraction"]) < 1.0  # both branches were taken


def test_without_semi_hard_negatives_the_loss_is_batch_all():
  # Melodies 0 and 1: anchor = positive, every negative 2 away (easy, beyond the
  # margin). Melody 2: positive opposite its anchor (4 away), every negative 2
  # away (hard). No pair has a semi-hard negative, so each term is batch-all:
  # 0 for the four clips of melodies 0 and 1, max(4 - 2 + 0.2, 0) = 2.2 for the two of melody 2.
  anchors = _unit((1, 0, 0), (0, 1, 0), (0, 0, 1))
  positives = _unit((1, 0, 0), (0, 1, 0), (0, 0, -1))
  margin = 0.2
  loss, metrics = melody.semi_hard_triplet_loss(jnp.asarray(anchors), jnp.asarray(positives),
                                                margin)
  assert float(metrics["semi_hard_fraction"]) == 0.0
  np.testing.assert_allclose(float(loss), 2 * 2.2 / 6, rtol=1e-6)
  np.testing.assert_allclose(float(loss), reference_semi_hard_loss(anchors, positives, margin),
                             rtol=1e-6)


def test_random_batches_match_the_reference():
  rng = np.random.default_rng(0)
  for margin, batch in itertools.product((0.2, 1.0), (3, 6)):
    anchors = rng.normal(size=(batch, 4)).astype(np.float32)
    anchors /= np.linalg.norm(anchors, axis=-1, keepdims=True)
    positives = anchors + 0.5 * rng.normal(size=anchors.shape).astype(np.float32)
    positives /= np.linalg.norm(positives, axis=-1, keepdims=True)
    loss, _ = melody.semi_hard_triplet_loss(jnp.asarray(anchors), jnp.asarray(positives), margin)
    np.testing.assert_allclose(float(loss), reference_semi_hard_loss(anchors, positives, margin),
                               rtol=1e-5, atol=1e-7)


def _params(model, seed=0):
  return numpy_params.draw_params(jax.eval_shape(model.init, jax.random.key(0), {}), seed)


def _batch(config, batch, seed=0):
  rng = np.random.default_rng(seed)
  anchor = 0.3 * rng.normal(size=(batch, config.window_samples))
  return {"anchor": anchor.astype(np.float32),
          "positive": (anchor + 0.1 * rng.normal(size=anchor.shape)).astype(np.float32)}


def test_negatives_span_the_global_batch_on_8_devices():
  model = melody.MelodyModel(TOY)
  params = _params(model)
  batch = _batch(TOY, 16)
  loss_fn = lambda p, b: model.loss_fn(p, b, None)[0]
  single = float(jax.jit(loss_fn)(params, batch))
  partitioner = partitioning.Partitioner()
  assert partitioner.data_parallel == 8
  sharded_batch = partitioner.make_global_batch(batch)
  assert sharded_batch["anchor"].sharding.spec == P("data", None)
  loss = partitioner.jit(loss_fn, in_shardings=(partitioner.replicated(),
                                                {k: partitioner.batch_sharding(2) for k in batch}),
                         out_shardings=partitioner.replicated())(params, sharded_batch)
  np.testing.assert_allclose(float(loss), single, rtol=1e-5)
  # Each device alone (2 pairs, 2 negatives per anchor) gives another loss.
  shard = lambda i: {k: v[2 * i:2 * i + 2] for k, v in batch.items()}
  local = np.mean([float(jax.jit(loss_fn)(params, shard(i))) for i in range(8)])
  assert abs(local - single) > 1e-3


@pytest.mark.parametrize("seconds,windows", [(10.0, 3), (4.0, 1), (2.0, 1), (10.5, 4), (30.0, 10)])
def test_paper_windows_are_4s_every_3s_and_cover_the_audio(seconds, windows):
  config = melody.MelodyConfig()
  samples = int(seconds * config.sample_rate_hz)
  starts = melody.window_starts(samples, config)
  assert len(starts) == windows
  np.testing.assert_array_equal(starts, np.arange(windows) * 3 * config.sample_rate_hz)
  assert starts[-1] + config.window_samples >= samples


def test_long_audio_gives_each_window_its_own_embedding():
  model = melody.MelodyModel(TOY)
  params = _params(model)
  samples = int(1.2 * TOY.sample_rate_hz)  # windows at 0, 0.3, 0.6, 0.9 s; the last padded
  audio = np.random.default_rng(1).normal(size=(2, samples)).astype(np.float32)
  whole = np.asarray(jax.jit(model.embed_audio)(params, audio))
  assert whole.shape == (2, 4, TOY.embedding_dim)
  padded = np.pad(audio, ((0, 0), (0, 3 * TOY.window_hop_samples + TOY.window_samples - samples)))
  for w, start in enumerate(melody.window_starts(samples, TOY)):
    alone = np.asarray(model.embed_windows(params, padded[:, start:start + TOY.window_samples]))
    np.testing.assert_allclose(whole[:, w], alone, atol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(whole, axis=-1), 1.0, rtol=1e-5)


def test_more_windows_than_a_chunk_give_the_same_embeddings():
  small_chunks = melody.MelodyModel(melody.MelodyConfig(**{**TOY.__dict__, "window_batch_size": 3}))
  model = melody.MelodyModel(TOY)
  params = _params(model)
  audio = np.random.default_rng(2).normal(size=(2, 2 * TOY.sample_rate_hz)).astype(np.float32)
  np.testing.assert_allclose(jax.jit(small_chunks.embed_audio)(params, audio),
                             jax.jit(model.embed_audio)(params, audio), atol=1e-5)


def test_training_a_few_steps_lowers_the_loss():
  model = melody.MelodyModel(TOY)
  params = _params(model)
  batch = _batch(TOY, 8, seed=3)
  tx = optax.adam(3e-3)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(lambda p: model.loss_fn(p, batch, None)[0])(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  opt_state = tx.init(params)
  losses = []
  for _ in range(20):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.5 * losses[0]


def test_windows_must_be_whole_stft_hops():
  with pytest.raises(UserError, match="stft_hop_samples"):
    melody.MelodyConfig(window_hop_seconds=3.005)


def test_paper_scale_gin_is_the_default_config_and_tiny_is_smaller():
  from musiclm_jax import gin_models  # gin only here: the model module itself is pure
  paper = gin_models.build_model(["models/melody.gin", "scales/melody_paper.gin"])
  assert paper.config == melody.MelodyConfig()
  tiny = gin_models.build_model(["models/melody.gin", "scales/melody_tiny.gin"])
  assert tiny.config.window_seconds == 4.0 and tiny.config.embedding_dim == 192
  assert tiny.config.d_model < paper.config.d_model
  experiment = gin_models.build_model(["experiments/melody_synth.gin"],
                                      ["DATA_DIR = '/data'", "MODEL_DIR = '/run'"])
  assert experiment.config == tiny.config
