"""Semantic tokens S: w2v-BERT MLM-layer features quantized by k-means, 25 per second.

  tokenizer = SemanticTokenizer.load(w2v_bert_export_dir, kmeans_path)
  tokens = tokenizer.tokenize(audio_24k)       # [batch, ceil(samples / 960)] int32
  distances = tokenizer.distance_matrix()      # [K, K], for the memorization analysis

`fit_kmeans` makes the k-means file from an exported w2v-BERT and a TFDS audio
dataset (binary: musiclm_jax/fit_kmeans.py): features of `layer` are streamed
from random crops, standardised per dimension (AudioLM), seeded by k-means++
on a first sample and refined by mini-batch k-means.
"""
from typing import Iterator

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import exports
from musiclm_jax.data import audio_batches
from musiclm_jax.errors import UserError
from musiclm_jax.layers import kmeans as kmeans_lib
from musiclm_jax.models import w2v_bert


class SemanticTokenizer:
  """A frozen w2v-BERT + k-means as the cascade's `tokenizers.SemanticTokenizer`."""

  def __init__(self, model: w2v_bert.W2vBertModel, params, codebook: kmeans_lib.Codebook,
               layer: int):
    config = model.config
    fitted = codebook.metadata
    for key, value in (("layer", layer), ("frame_rate_hz", config.frame_rate_hz),
                       ("sample_rate_hz", config.sample_rate_hz)):
      if key in fitted and fitted[key] != value:
        raise UserError(f"the k-means file was fitted with {key}={fitted[key]} but the tokenizer "
                        f"uses {value}: refit k-means (python -m musiclm_jax.fit_kmeans) or match it")
    self.model = model
    self.params = params
    self.codebook = codebook
    self.layer = layer
    self.codebook_size = codebook.num_clusters
    self.input_sample_rate_hz = config.input_sample_rate_hz
    self.frame_rate_hz = config.frame_rate_hz
    self._features = jax.jit(lambda p, audio: model.features(p, audio, layer))
    self._tokenize = jax.jit(lambda p, audio: codebook.assign(model.features(p, audio, layer)))

  @classmethod
  def load(cls, w2v_bert_export_dir: str, kmeans_path: str,
           layer: int | None = None) -> "SemanticTokenizer":
    """From a musiclm-export folder of a w2v-BERT run and a k-means file.

    layer: MLM-module layer to read (1-based); None takes the one k-means was fitted on.
    """
    codebook = kmeans_lib.Codebook.load(kmeans_path)
    model, params = load_w2v_bert(w2v_bert_export_dir)
    return cls(model, params, codebook, codebook.metadata["layer"] if layer is None else layer)

  def num_frames(self, num_samples: int) -> int:
    """ceil(num_samples / 960) at 24 kHz: two SoundStream frames per token."""
    return self.model.num_frames(num_samples)

  def features(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> [batch, num_frames(samples), d_model] float32."""
    return np.asarray(self._features(self.params, jnp.asarray(audio, jnp.float32)))

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> S [batch, num_frames(samples)] int32 in [0, codebook_size)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2 or audio.shape[1] == 0:
      raise UserError(f"tokenize takes audio [batch, samples] with samples > 0, got shape {audio.shape}")
    return np.asarray(self._tokenize(self.params, jnp.asarray(audio)))

  def distance_matrix(self) -> np.ndarray:
    """[codebook_size, codebook_size] Euclidean distances between the centroids."""
    return self.codebook.distance_matrix()


def load_w2v_bert(export_dir: str) -> tuple[w2v_bert.W2vBertModel, dict]:
  """(model, params) of a musiclm-export folder of a w2v-BERT run."""
  model = exports.model_from_export(export_dir)
  if not isinstance(model, w2v_bert.W2vBertModel):
    raise UserError(f"{export_dir} holds a {type(model).__name__}, not w2v-BERT: "
                    "point at the export of a w2v-BERT run")
  spec = {"audio": jax.ShapeDtypeStruct((1, model.config.input_hop_length), jnp.float32)}
  return exports.load_export(export_dir, spec, model)


def _feature_batches(model: w2v_bert.W2vBertModel, params, layer: int,
                     source: audio_batches.AudioBatchSource) -> Iterator[jax.Array]:
  """[batch * frames, d_model] features of successive batches of `source`."""
  extract = jax.jit(lambda p, audio: model.features(p, audio, layer).reshape(
      -1, model.config.conformer.d_model))
  for batch in source.get_batches():
    yield extract(params, jnp.asarray(batch["audio"]))


def fit_kmeans(*, w2v_bert_export_dir: str, output_path: str,
               source: audio_batches.AudioBatchSource, layer: int, num_clusters: int = 1024,
               init: str = "kmeans++", init_batches: int = 20, num_steps: int = 200,
               reassignment_ratio: float = 0.01, eval_batches: int = 10,
               seed: int = 0) -> kmeans_lib.Codebook:
  """Fits and saves the k-means of MLM-module layer `layer` of an exported w2v-BERT.

  Args:
    source: batches of 24 kHz audio crops (random crops forever: repeat=True).
    init_batches: batches whose features give the standardisation and the
      k-means++ seeds (need at least num_clusters frames; ~10-50 x K is good).
    num_steps: mini-batch updates after the init, one batch each.
    eval_batches: further batches on which the final inertia and token
      perplexity are measured (and stored in the file's metadata).
  Returns:
    The saved codebook.
  """
  model, params = load_w2v_bert(w2v_bert_export_dir)
  features = _feature_batches(model, params, layer, source)
  sample = np.concatenate([np.asarray(next(features)) for _ in range(init_batches)])
  mean, std = kmeans_lib.standardization(sample)
  standardize = lambda x: (x - mean) / std  # noqa: E731  (jnp or np alike)
  km = kmeans_lib.MiniBatchKMeans(num_clusters, init=init, reassignment_ratio=reassignment_ratio)
  init_rng, update_rng = jax.random.split(jax.random.key(seed))
  logging.info("k-means init (%s) on %d frames", init, len(sample))
  state = jax.jit(km.init_state)(jnp.asarray(standardize(sample)), init_rng)
  update = jax.jit(km.update)
  frames_seen = len(sample)
  for step in range(num_steps):
    batch = next(features)
    frames_seen += batch.shape[0]
    state, stats = update(state, standardize(batch), jax.random.fold_in(update_rng, step))
    if step % 50 == 0 or step == num_steps - 1:
      logging.info("k-means step %d: batch inertia/frame %.4f, reseeded %d", step,
                   float(stats["batch_inertia"]), int(stats["reseeded"]))
  centroids = np.asarray(state["centroids"])
  held_out = np.concatenate([np.asarray(next(features)) for _ in range(eval_batches)])
  held_out = jnp.asarray(standardize(held_out))
  ids = np.asarray(kmeans_lib.nearest(held_out, centroids))
  config = model.config
  codebook = kmeans_lib.Codebook(centroids, mean, std, metadata={
      "layer": layer, "sample_rate_hz": config.sample_rate_hz,
      "input_sample_rate_hz": config.input_sample_rate_hz, "frame_rate_hz": config.frame_rate_hz,
      "w2v_bert_export_dir": w2v_bert_export_dir, "init": init,
      "frames_seen": frames_seen,
      "inertia_per_frame": float(kmeans_lib.inertia(held_out, centroids)) / len(held_out),
      "token_perplexity": kmeans_lib.token_perplexity(ids, num_clusters),
      "clusters_used": int(len(np.unique(ids)))})
  codebook.save(output_path)
  logging.info("k-means saved to %s: %s", output_path, codebook.metadata)
  return codebook
