"""MuLan's conditioning tokenizer: RVQ fitting with scarce data, the protocol, export -> fit -> eval."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import numpy_params
from musiclm_jax import checkpoints
from musiclm_jax import gin_models
from musiclm_jax.errors import UserError
from musiclm_jax.eval import retrieval
from musiclm_jax.tokenizers import conditioning
from musiclm_jax.tokenizers import rvq_fit

# A toy MuLan whose text tower takes the real MiniLM vocabulary (30522 ids).
TOY_GIN = """
from __gin__ import dynamic_registration
from musiclm_jax.layers import bert
from musiclm_jax.models import mulan

MODEL = @mulan.MuLanModel()
mulan.MuLanModel.config = @mulan.MuLanConfig()
mulan.MuLanConfig:
  window_seconds = 0.2
  window_hop_seconds = 0.1
  n_fft = 256
  stft_window_samples = 240
  stft_hop_samples = 120
  n_mels = 16
  resnet_stage_sizes = (1,)
  resnet_width = 4
  resnet_groups = 2
  embedding_dim = 8
  max_text_length = 16
  text = @bert.BertConfig()
bert.BertConfig:
  hidden_size = 16
  num_layers = 1
  num_heads = 2
  intermediate_size = 32
  max_position_embeddings = 16
"""


@pytest.fixture(scope="module")
def toy_export(tmp_path_factory):
  """An exported toy MuLan (numpy-drawn params) with its config.gin."""
  folder = tmp_path_factory.mktemp("mulan_export")
  (folder / "config.gin").write_text(TOY_GIN)
  model = gin_models.model_from_export(str(folder))
  c = model.config
  spec = {"audio": jax.ShapeDtypeStruct((1, c.window_samples), jnp.float32),
          "text_ids": jax.ShapeDtypeStruct((1, c.max_text_length), jnp.int32)}
  params = numpy_params.draw_params(jax.eval_shape(model.init, jax.random.key(0), spec))
  checkpoints.export_params(params, str(folder), gin_config_path=None)
  return str(folder), model, params


def _clustered(n, dim=8, seed=0):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(5, dim))
  x = centres[rng.integers(0, 5, n)] + 0.3 * rng.normal(size=(n, dim))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_fit_rvq_with_fewer_vectors_than_codes():
  x = _clustered(60)
  quantizer, state = rvq_fit.fit_rvq(x, num_levels=12, codebook_size=1024, min_vectors_per_code=2)
  assert state["codebooks"].shape == (12, 1024, 8)
  codes = np.asarray(quantizer.encode(state, jnp.asarray(x)[:, None])[:, 0])
  assert codes.dtype == np.int32 and codes.shape == (60, 12)
  assert codes.min() >= 0 and codes.max() < 30  # 60 // 2 fitted codes; the copies never win
  # The first levels split the data; each level can only lower the error, and
  # 60 vectors are used up (reconstructed almost exactly) well before level 12.
  assert all(len(np.unique(codes[:, q])) > 5 for q in range(2))
  errors = [float(np.mean((x - np.asarray(quantizer.decode(state, codes[:, None], q))[:, 0]) ** 2))
            for q in (1, 2, 4, 12)]
  assert all(a >= b - 1e-7 for a, b in zip(errors, errors[1:])) and errors[-1] < 0.1 * errors[0]
  again = rvq_fit.fit_rvq(x, num_levels=12, codebook_size=1024, min_vectors_per_code=2)[1]
  np.testing.assert_array_equal(state["codebooks"], again["codebooks"])


def test_fit_rvq_caps_the_fitted_codes_and_the_cap_makes_level_1_a_clustering_of_the_data():
  # 5 far-apart clusters (one-hot centres, small noise); 200 // 2 = 100 codes without the cap.
  rng = np.random.default_rng(0)
  cluster = np.arange(200) % 5
  x = (np.eye(8)[cluster] + 0.02 * rng.normal(size=(200, 8))).astype(np.float32)
  quantizer, state = rvq_fit.fit_rvq(x, num_levels=4, codebook_size=64, max_fitted_codes=5)
  codes = np.asarray(quantizer.encode(state, jnp.asarray(x)[:, None])[:, 0])
  assert codes.max() < 5 and state["codebooks"].shape == (4, 64, 8)
  # 5 level-1 codes on 5 clusters: each cluster's vectors share one code (an independent
  # reference: the cluster each vector was drawn from).
  for c in range(5):
    assert len(np.unique(codes[cluster == c, 0])) == 1
  assert len(np.unique(codes[:, 0])) == 5
  uncapped = rvq_fit.fit_rvq(x, num_levels=4, codebook_size=64)
  assert np.asarray(uncapped[0].encode(uncapped[1], jnp.asarray(x)[:, None])[:, 0])[:, 0].max() >= 5
  with pytest.raises(UserError, match="max_fitted_codes 65 is outside"):
    rvq_fit.fit_rvq(x, num_levels=4, codebook_size=64, max_fitted_codes=65)


def test_rvq_file_round_trip(tmp_path):
  quantizer, state = rvq_fit.fit_rvq(_clustered(40), num_levels=3, codebook_size=16)
  path = conditioning.save_rvq(str(tmp_path / "rvq.npz"), quantizer, state)
  loaded_quantizer, loaded = conditioning.load_rvq(path)
  assert loaded_quantizer == quantizer
  jax.tree.map(np.testing.assert_array_equal, loaded, state)


def test_tokens_are_in_range_deterministic_and_follow_the_protocol(toy_export):
  _, model, params = toy_export
  c = model.config
  embeddings = _clustered(40)
  tokenizer = conditioning.MuLanTokenizer(model, params, *rvq_fit.fit_rvq(embeddings))
  assert (tokenizer.num_levels, tokenizer.codebook_size) == (12, 1024)
  audio = np.random.default_rng(0).normal(size=(3, 3 * c.window_samples)).astype(np.float32) * 0.1
  texts = ["calm solo piano", "fast drums and distorted guitar", "a choir sings"]
  for tokens in (tokenizer.audio_tokens(audio), tokenizer.text_tokens(texts)):
    assert tokens.shape == (3, 12) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() < 1024
  np.testing.assert_array_equal(tokenizer.audio_tokens(audio), tokenizer.audio_tokens(audio))
  np.testing.assert_array_equal(tokenizer.text_tokens(texts), tokenizer.text_tokens(texts))
  # A text's tokens do not depend on the rest of its batch.
  np.testing.assert_array_equal(tokenizer.text_tokens(texts[1:2]), tokenizer.text_tokens(texts)[1:2])


def test_export_fit_load_evaluate(toy_export, synth_music_micro, tmp_path):
  export_dir, _, _ = toy_export
  data_dir = os.path.dirname(os.path.dirname(os.path.dirname(synth_music_micro.data_dir)))
  rvq_path = str(tmp_path / "rvq.npz")
  fitted = rvq_fit.fit_rvq_on_dataset(export_dir=export_dir, rvq_path=rvq_path,
                                              dataset="synth_music/micro", data_dir=data_dir)
  loaded = conditioning.MuLanTokenizer.load(export_dir, rvq_path)
  audio = np.random.default_rng(1).normal(size=(2, 4800)).astype(np.float32)
  np.testing.assert_array_equal(loaded.audio_tokens(audio), fitted.audio_tokens(audio))
  results = retrieval.evaluate_splits(loaded, dataset="synth_music/micro", data_dir=data_dir,
                                      splits=("train",), output_dir=str(tmp_path))
  with open(tmp_path / "retrieval_train.json") as f:
    saved = json.load(f)
  assert saved["retrieval"] == results["train"]["retrieval"]
  assert len(saved["token_agreement"]["own_clip"]) == 12


def test_retrieval_metrics_and_agreement_on_known_cases():
  rng = np.random.default_rng(0)
  audio = np.linalg.qr(rng.normal(size=(20, 20)))[0]  # orthonormal rows
  perfect = retrieval.retrieval_metrics(audio, audio)
  assert perfect["text_to_audio_recall@1"] == perfect["audio_to_text_recall@1"] == 1.0
  assert perfect["chance_recall@1"] == 0.05 and perfect["chance_recall@10"] == 0.5
  shifted = retrieval.retrieval_metrics(audio, np.roll(audio, 1, axis=0))
  assert shifted["text_to_audio_recall@1"] == 0.0
  tokens = np.arange(12)[None].repeat(4, 0) + 100 * np.arange(4)[:, None]
  agreement = retrieval.token_agreement(tokens, tokens)
  assert agreement["own_clip"] == [1.0] * 12 and agreement["random_clip"] == [0.0] * 12
