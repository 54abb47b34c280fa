"""Melody tokens: 4 s windows every 3 s (3 per 10 s), 24 x 512 RVQ codes, export -> fit -> load."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_params
from musiclm_jax import checkpoints
from musiclm_jax import gin_models
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.layers import rvq as rvq_lib
from musiclm_jax.tokenizers import melody as melody_tokenizer

RATE_HZ = 24_000
# The paper's windows (the config's defaults) on a one-block embedder.
TOY_GIN = """
from __gin__ import dynamic_registration
from musiclm_jax.models import melody

MODEL = @melody.MelodyModel()
melody.MelodyModel.config = @melody.MelodyConfig()
melody.MelodyConfig:
  stft_hop_samples = 960
  n_mels = 16
  patch_frames = 5
  d_model = 16
  num_layers = 1
  num_heads = 2
  head_dim = None
  d_ff = 32
  embedding_dim = 8
"""


@pytest.fixture(scope="module")
def toy_export(tmp_path_factory):
  """An exported toy melody embedder (numpy-drawn params) with its config.gin."""
  folder = tmp_path_factory.mktemp("melody_export")
  (folder / "config.gin").write_text(TOY_GIN)
  model = gin_models.model_from_export(str(folder))
  params = numpy_params.draw_params(jax.eval_shape(model.init, jax.random.key(0), {}))
  checkpoints.export_params(params, str(folder), gin_config_path=None)
  return str(folder), model, params


def _clips(count, seconds, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * RATE_HZ)) / RATE_HZ
  return [(0.3 * np.sin(2 * np.pi * rng.uniform(150, 900) * t)
           + 0.05 * rng.normal(size=t.shape)).astype(np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def fitted(toy_export, tmp_path_factory):
  folder, model, params = toy_export
  rvq_path = str(tmp_path_factory.mktemp("melody_rvq") / "rvq.npz")
  tokenizer = melody_tokenizer.fit_melody_rvq(model, params, _clips(8, 10.0), rvq_path=rvq_path,
                                              kmeans_iterations=5)
  return tokenizer, melody_tokenizer.MelodyTokenizer.load(folder, rvq_path)


def test_three_token_frames_per_10_s_in_range_and_deterministic(fitted):
  tokenizer, loaded = fitted
  audio = np.stack(_clips(2, 10.0, seed=1))
  tokens = tokenizer.tokenize(audio)
  kind = token_layout.MELODY
  assert tokenizer.num_frames(audio.shape[1]) == 3
  assert tokens.shape == (2, 3, kind.num_levels) and tokens.dtype == np.int32
  assert tokens.min() >= 0 and tokens.max() < kind.codebook_size
  np.testing.assert_array_equal(tokenizer.tokenize(audio), tokens)
  np.testing.assert_array_equal(loaded.tokenize(audio), tokens)  # the saved RVQ and export
  # The codes are the RVQ's of each window's embedding.
  embeddings = tokenizer.embeddings(audio)
  expected = tokenizer.quantizer.encode(tokenizer.rvq_state, jnp.asarray(embeddings))
  np.testing.assert_array_equal(tokens, np.asarray(expected))
  # They flow into the semantic stage's layout as the melody kind.
  layout = token_layout.semantic_layout(melody=True)
  stream = layout.encode_stream("melody", tokens[0])
  assert stream.shape == (3 * kind.num_levels,) and np.all(layout.contains("melody", stream))
  np.testing.assert_array_equal(layout.decode_stream("melody", stream), tokens[0])


@pytest.mark.parametrize("seconds,frames", [(4.0, 1), (7.0, 2), (30.0, 10)])
def test_frames_follow_the_3_s_hop(fitted, seconds, frames):
  tokenizer, _ = fitted
  assert tokenizer.num_frames(int(seconds * RATE_HZ)) == frames


def test_an_rvq_of_other_sizes_is_a_one_line_error(toy_export):
  _, model, params = toy_export
  quantizer = rvq_lib.ResidualVQ(12, 1024, model.config.embedding_dim)
  with pytest.raises(UserError, match="refit"):
    melody_tokenizer.MelodyTokenizer(model, params, quantizer, quantizer.init_state())


@pytest.mark.parametrize("fitted_codes", [None, 2])
def test_fit_on_a_synth_split_through_the_binarys_gin(toy_export, synth_music_micro, tmp_path,
                                                     fitted_codes):
  import gin  # the binary's config; the tokenizer module itself is gin-free
  from musiclm_jax import gin_utils
  root = pathlib.Path(synth_music_micro.data_dir).parents[2]  # <root>/synth_music/micro/1.0.0
  gin.clear_config()
  gin_utils.parse_gin(["runs/fit_melody_rvq.gin"], [
      f"EXPORT_DIR = '{toy_export[0]}'", f"DATA_DIR = '{root}'", f"OUTPUT_DIR = '{tmp_path}'",
      "DATASET = 'synth_music/micro'", "melody.fit_melody_rvq_on_dataset.kmeans_iterations = 3",
      f"FITTED_CODES_PER_LEVEL = {fitted_codes}"])
  tokenizer = gin.get_configurable(melody_tokenizer.fit_melody_rvq_on_dataset)()
  gin.clear_config()
  loaded = melody_tokenizer.MelodyTokenizer.load(toy_export[0], str(tmp_path / "rvq.npz"))
  audio = np.stack(_clips(1, 5.0, seed=2))
  np.testing.assert_array_equal(loaded.tokenize(audio), tokenizer.tokenize(audio))
  assert tokenizer.tokenize(audio).shape == (1, 2, token_layout.MELODY.num_levels)
  # FITTED_CODES_PER_LEVEL caps the codes each level fits (rvq_fit.fit_rvq, tested there).
  used = (np.asarray(tokenizer.rvq_state["cluster_size"]) > 0).sum(axis=1)
  assert used.max() == 2 if fitted_codes else used.max() > 2
