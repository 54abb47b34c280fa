"""Fits the semantic-token k-means on an exported w2v-BERT (binary: musiclm_jax/fit_kmeans.py).

Features of MLM-module layer `layer` are streamed from random crops of a TFDS
audio dataset, standardised per dimension (AudioLM), seeded by k-means++ on a
first sample and refined by mini-batch k-means. `semantic.SemanticTokenizer.load`
reads the file this writes.
"""
from typing import Iterator

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax.data import audio_batches
from musiclm_jax.layers import kmeans as kmeans_lib
from musiclm_jax.models import w2v_bert
from musiclm_jax.tokenizers import semantic


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
  model, params = semantic.load_w2v_bert(w2v_bert_export_dir)
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
