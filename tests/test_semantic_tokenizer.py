"""Semantic tokenizer: k-means fitted from an export, exactly 25 Hz, deterministic, the protocol."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_params
from musiclm_jax import checkpoints
from musiclm_jax import gin_models
from musiclm_jax.data import audio_batches
from musiclm_jax.errors import UserError
from musiclm_jax.models import w2v_bert
from musiclm_jax.tokenizers import kmeans_fit
from musiclm_jax.tokenizers import semantic

NUM_CLUSTERS = 8

# A w2v-BERT small enough to compile in seconds, as its export's config.gin binds it.
CONFIG_GIN = """
from __gin__ import dynamic_registration
from musiclm_jax.layers import conformer
from musiclm_jax.models import w2v_bert

MODEL = @w2v_bert.W2vBertModel()
w2v_bert.W2vBertModel.config = @w2v_bert.W2vBertConfig()
w2v_bert.W2vBertConfig:
  num_mel_bins = 32
  subsampling_channels = 4
  conformer = @conformer.ConformerConfig()
  contrastive_layers = 1
  mlm_layers = 2
  codebook_size = 16
  codevector_dim = 16
conformer.ConformerConfig:
  d_model = 32
  num_heads = 2
  d_ff = 64
  conv_kernel_size = 3
"""


@pytest.fixture(scope="module")
def export_and_kmeans(tmp_path_factory, synth_music_micro):
  """An exported random-weight w2v-BERT and a k-means fitted on its layer-2 features."""
  root = tmp_path_factory.mktemp("semantic")
  config_path = root / "config.gin"
  config_path.write_text(CONFIG_GIN)
  model = gin_models.model_from_export(str(root))
  spec = {"audio": jax.ShapeDtypeStruct((1, 960), jnp.float32)}
  params = numpy_params.draw_params(jax.eval_shape(model.init, jax.random.key(0), spec))
  export_dir = root / "export"
  checkpoints.export_params(params, str(export_dir), gin_config_path=str(config_path))
  kmeans_path = str(root / "kmeans.npz")
  data_dir = pathlib.Path(synth_music_micro.data_dir).parents[2]  # <root>/synth_music/micro/1.0.0
  source = audio_batches.AudioBatchSource("synth_music/micro", data_dir=str(data_dir),
                                          batch_size=2, crop_seconds=1.0)
  codebook = kmeans_fit.fit_kmeans(
      w2v_bert_export_dir=str(export_dir), output_path=kmeans_path, source=source, layer=2,
      num_clusters=NUM_CLUSTERS, init_batches=2, num_steps=3, eval_batches=1)
  return str(export_dir), kmeans_path, codebook


@pytest.fixture(scope="module")
def tokenizer(export_and_kmeans):
  export_dir, kmeans_path, _ = export_and_kmeans
  return semantic.SemanticTokenizer.load(export_dir, kmeans_path)


def test_fitted_kmeans_records_where_its_features_come_from(export_and_kmeans):
  _, _, codebook = export_and_kmeans
  meta = codebook.metadata
  assert meta["layer"] == 2 and meta["sample_rate_hz"] == 16000 and meta["frame_rate_hz"] == 25.0
  assert meta["frames_seen"] == (2 + 3) * 2 * 25
  assert 1.0 <= meta["token_perplexity"] <= NUM_CLUSTERS
  assert codebook.centroids.shape == (NUM_CLUSTERS, 32) and np.isfinite(codebook.centroids).all()


@pytest.mark.parametrize("num_samples", [1, 959, 961, 24_000 * 2 + 5])
def test_tokens_are_25_hz_for_any_length(tokenizer, num_samples):
  audio = np.random.default_rng(num_samples).uniform(-0.5, 0.5, (2, num_samples)).astype(np.float32)
  tokens = tokenizer.tokenize(audio)
  assert tokenizer.num_frames(num_samples) == -(-num_samples // 960)
  assert tokens.shape == (2, tokenizer.num_frames(num_samples)) and tokens.dtype == np.int32
  assert tokens.min() >= 0 and tokens.max() < tokenizer.codebook_size == NUM_CLUSTERS


def test_same_audio_gives_same_tokens_whatever_else_is_in_the_batch(tokenizer, synth_music_micro):
  # Music, not noise: the k-means was fitted on music, and white noise falls in one cluster.
  example = next(synth_music_micro.as_dataset(split="train").take(1).as_numpy_iterator())
  clip = np.asarray(example["audio"], np.float32).reshape(-1)[:24_000]
  rng = np.random.default_rng(0)
  first = tokenizer.tokenize(np.stack([clip, rng.uniform(-0.5, 0.5, 24_000).astype(np.float32)]))
  again = tokenizer.tokenize(np.stack([np.zeros(24_000, np.float32), clip]))
  np.testing.assert_array_equal(first[0], again[1])
  assert len(np.unique(first)) > 1


def test_tokens_are_the_kmeans_assignment_of_the_layer_features(tokenizer):
  audio = np.random.default_rng(3).uniform(-0.5, 0.5, (1, 4800)).astype(np.float32)
  features = tokenizer.features(audio)
  assert features.shape == (1, 5, 32)
  book = tokenizer.codebook
  standardized = (features - book.feature_mean) / book.feature_std
  brute = np.argmin(((standardized[..., None, :] - book.centroids) ** 2).sum(-1), -1)
  np.testing.assert_array_equal(tokenizer.tokenize(audio), brute)
  distances = tokenizer.distance_matrix()
  assert distances.shape == (NUM_CLUSTERS, NUM_CLUSTERS)


def test_mismatched_layer_and_missing_files_fail_with_one_line(export_and_kmeans):
  export_dir, kmeans_path, _ = export_and_kmeans
  with pytest.raises(UserError, match="layer=2 but the tokenizer uses 1"):
    semantic.SemanticTokenizer.load(export_dir, kmeans_path, layer=1)
  with pytest.raises(UserError, match="fit_kmeans"):
    semantic.SemanticTokenizer.load(export_dir, kmeans_path + ".missing")
  with pytest.raises(UserError, match="not w2v-BERT|musiclm-export"):
    semantic.SemanticTokenizer.load(kmeans_path + "_no_export", kmeans_path)
  assert isinstance(w2v_bert.W2vBertConfig().num_frames(1), int)
