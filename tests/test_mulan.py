"""MuLan: the InfoNCE loss, global negatives across devices, windowing, freezing, pre-trained text tower."""
import json
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest
from safetensors.numpy import save_file

import numpy_params
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.errors import UserError
from musiclm_jax.layers import bert
from musiclm_jax.models import mulan

TINY_TEXT = bert.BertConfig(vocab_size=64, hidden_size=16, num_layers=1, num_heads=2,
                            intermediate_size=32, max_position_embeddings=16, dropout_rate=0.0)
# The paper's front end (10 s windows, 1 s hop, 25/10 ms frames) on a toy ResNet.
PAPER_FRONT_END = mulan.MuLanConfig(resnet_stage_sizes=(1,), resnet_width=4, resnet_groups=2,
                                    text=TINY_TEXT, embedding_dim=8, window_batch_size=32)
# Everything small: 0.2 s windows, 0.1 s hop.
TOY = mulan.MuLanConfig(window_seconds=0.2, window_hop_seconds=0.1, n_fft=256,
                        stft_window_samples=240, stft_hop_samples=120, n_mels=16,
                        resnet_stage_sizes=(1,), resnet_width=4, resnet_groups=2, text=TINY_TEXT,
                        embedding_dim=8)


def _spec(config, batch, length=8):
  return {"audio": jax.ShapeDtypeStruct((batch, config.window_samples), jnp.float32),
          "text_ids": jax.ShapeDtypeStruct((batch, length), jnp.int32),
          "text_mask": jax.ShapeDtypeStruct((batch, length), jnp.int32)}


def _params(model, batch=2, seed=0):
  params = numpy_params.draw_params(jax.eval_shape(model.init, jax.random.key(0), _spec(model.config, batch)), seed)
  return dict(params, log_logit_scale=jnp.asarray(math.log(10.0)))


def _batch(config, batch, seed=0, length=8):
  rng = np.random.default_rng(seed)
  mask = (np.arange(length)[None] < rng.integers(2, length + 1, (batch, 1))).astype(np.int32)
  return {"audio": (0.3 * rng.normal(size=(batch, config.window_samples))).astype(np.float32),
          "text_ids": (rng.integers(1, TINY_TEXT.vocab_size, (batch, length)) * mask).astype(np.int32),
          "text_mask": mask}


def test_contrastive_loss_equals_hand_computed_infonce_and_is_symmetric():
  audio = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  text = jnp.array([[1.0, 0.0], [0.6, 0.8]])
  scale = 2.0  # logits = 2 * [[1, 0.6], [0, 0.8]]
  audio_to_text = ((math.log(math.exp(2) + math.exp(1.2)) - 2)
                   + (math.log(math.exp(0) + math.exp(1.6)) - 1.6)) / 2
  text_to_audio = ((math.log(math.exp(2) + math.exp(0)) - 2)
                   + (math.log(math.exp(1.2) + math.exp(1.6)) - 1.6)) / 2
  loss, metrics = mulan.contrastive_loss(audio, text, jnp.asarray(scale))
  np.testing.assert_allclose(float(metrics["audio_to_text_loss"]), audio_to_text, rtol=1e-6)
  np.testing.assert_allclose(float(metrics["text_to_audio_loss"]), text_to_audio, rtol=1e-6)
  np.testing.assert_allclose(float(loss), (audio_to_text + text_to_audio) / 2, rtol=1e-6)
  swapped, _ = mulan.contrastive_loss(text, audio, jnp.asarray(scale))
  np.testing.assert_allclose(float(swapped), float(loss), rtol=1e-6)
  assert float(metrics["audio_to_text_accuracy"]) == 1.0


def test_negatives_span_the_global_batch_on_8_devices():
  model = mulan.MuLanModel(TOY)
  params = _params(model)
  batch = _batch(TOY, 16)
  single = float(jax.jit(model.loss_fn)(params, batch, None)[0])
  partitioner = partitioning.Partitioner()
  assert partitioner.data_parallel == 8
  sharded_batch = partitioner.make_global_batch(batch)
  assert sharded_batch["audio"].sharding.spec == P("data", None)
  loss = partitioner.jit(lambda p, b: model.loss_fn(p, b, None)[0],
                         in_shardings=(partitioner.replicated(), {k: partitioner.batch_sharding(2) for k in batch}),
                         out_shardings=partitioner.replicated())(params, sharded_batch)
  np.testing.assert_allclose(float(loss), single, rtol=1e-5)
  # Had each device only seen its own 2 examples, the loss would be the mean of
  # 2-way losses: much smaller than the 16-way one.
  shard_loss = jax.jit(lambda p, b: model.loss_fn(p, b, None)[0])
  local = np.mean([float(shard_loss(params, {k: v[2 * i:2 * i + 2] for k, v in batch.items()}))
                   for i in range(8)])
  assert abs(local - single) > 0.5


@pytest.mark.parametrize("seconds,windows", [(10, 1), (30, 21), (180, 171)])
def test_long_audio_is_the_mean_of_10s_windows_every_second(seconds, windows):
  config = PAPER_FRONT_END
  samples = seconds * config.sample_rate_hz
  starts = mulan.window_starts(samples, config)
  assert len(starts) == windows and starts[0] == 0
  assert np.all(np.diff(starts) == 100)  # 1 s of 10 ms frames
  assert starts[-1] + config.frames_per_window == config.num_frames(samples)
  model = mulan.MuLanModel(config)
  params = _params(model)
  audio = np.random.default_rng(seconds).normal(size=(1, samples)).astype(np.float32) * 0.1
  embed = jax.jit(model.embed_audio)
  whole = np.asarray(embed(params, audio))[0]
  # Each window embedded on its own, as a 10 s crop of the waveform.
  offsets = starts * config.stft_hop_samples
  crops = np.stack([audio[0, o:o + config.window_samples] for o in offsets])
  per_window = np.concatenate([np.asarray(embed(params, crops[i:i + 24]))
                               for i in range(0, len(crops), 24)])
  mean = per_window.mean(0)
  np.testing.assert_allclose(whole, mean / np.linalg.norm(mean), atol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(whole), 1.0, rtol=1e-5)


def test_short_audio_is_zero_padded_to_one_window():
  model = mulan.MuLanModel(TOY)
  params = _params(model)
  audio = np.random.default_rng(0).normal(size=(1, TOY.window_samples // 2)).astype(np.float32)
  padded = np.pad(audio, ((0, 0), (0, TOY.window_samples - audio.shape[1])))
  embed = jax.jit(model.embed_audio)
  np.testing.assert_allclose(embed(params, audio), embed(params, padded), atol=1e-6)


def test_frozen_text_encoder_does_not_move_and_the_rest_trains():
  config = mulan.MuLanConfig(**{**TOY.__dict__, "freeze_text_encoder": True})
  model = mulan.MuLanModel(config)
  params = _params(model, batch=4)
  tx = mulan.contrastive_optimizer(1e-2, freeze_text_encoder=True)
  batch = _batch(config, 4)

  @jax.jit
  def update(params):
    grads = jax.grad(lambda p: model.loss_fn(p, batch, jax.random.key(0))[0])(params)
    return tx.update(grads, tx.init(params), params)[0]

  updates = update(params)
  moved = jax.tree.map(lambda u: float(jnp.abs(u).max()) > 0, updates)
  assert not any(jax.tree.leaves(moved[mulan.TEXT_ENCODER]))
  assert all(jax.tree.leaves(moved["text_projection"])) and all(jax.tree.leaves(moved["audio_projection"]))
  assert moved["log_logit_scale"]


def _write_hf_bert(path, c: bert.BertConfig, seed=0):
  """A random BertModel checkpoint with Hugging Face's names, layout and config.json."""
  rng = np.random.default_rng(seed)
  d, f = c.hidden_size, c.intermediate_size
  shapes = {"embeddings.word_embeddings.weight": (c.vocab_size, d),
            "embeddings.position_embeddings.weight": (c.max_position_embeddings, d),
            "embeddings.token_type_embeddings.weight": (c.type_vocab_size, d),
            "embeddings.LayerNorm.weight": (d,), "embeddings.LayerNorm.bias": (d,)}
  for i in range(c.num_layers):
    p = f"encoder.layer.{i}."
    for name in ("self.query", "self.key", "self.value", "output.dense"):
      shapes.update({f"{p}attention.{name}.weight": (d, d), f"{p}attention.{name}.bias": (d,)})
    shapes.update({f"{p}attention.output.LayerNorm.weight": (d,), f"{p}attention.output.LayerNorm.bias": (d,),
                   f"{p}intermediate.dense.weight": (f, d), f"{p}intermediate.dense.bias": (f,),
                   f"{p}output.dense.weight": (d, f), f"{p}output.dense.bias": (d,),
                   f"{p}output.LayerNorm.weight": (d,), f"{p}output.LayerNorm.bias": (d,)})
  save_file({k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()},
            str(path / "model.safetensors"))
  (path / "config.json").write_text(json.dumps({
      "vocab_size": c.vocab_size, "hidden_size": d, "num_hidden_layers": c.num_layers,
      "num_attention_heads": c.num_heads, "intermediate_size": f,
      "max_position_embeddings": c.max_position_embeddings, "type_vocab_size": c.type_vocab_size,
      "layer_norm_eps": c.layer_norm_eps}))


def test_text_tower_starts_from_a_hugging_face_checkpoint(tmp_path):
  _write_hf_bert(tmp_path, TINY_TEXT)
  text = bert.BertConfig.from_pretrained(str(tmp_path), dropout_rate=0.0)
  assert text == TINY_TEXT
  config = mulan.MuLanConfig(**{**TOY.__dict__, "text": text, "text_checkpoint_dir": str(tmp_path)})
  model = mulan.MuLanModel(config)
  partitioner = partitioning.Partitioner(num_devices=2)
  trainer = trainer_lib.Trainer(model, partitioner, mulan.contrastive_optimizer(), _spec(config, 2),
                                ema_decay=0.9)
  state = trainer.init_state()
  loaded = bert.load_pretrained(str(tmp_path), text)
  jax.tree.map(np.testing.assert_array_equal, state.params[mulan.TEXT_ENCODER], loaded)
  jax.tree.map(np.testing.assert_array_equal, state.ema_params[mulan.TEXT_ENCODER], loaded)

  # Loaded after init, not inside it: the traced init holds no copy of the checkpoint.
  init = jax.make_jaxpr(model.init)(jax.random.key(0), _spec(config, 1))
  largest_loaded = max(x.size for x in jax.tree.leaves(loaded))
  assert all(np.size(c) < largest_loaded for c in init.consts), [np.shape(c) for c in init.consts]


def test_windows_must_be_whole_stft_hops():
  with pytest.raises(UserError, match="stft_hop_samples"):
    mulan.MuLanConfig(window_hop_seconds=0.015)
