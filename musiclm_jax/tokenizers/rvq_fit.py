"""Fits MuLan's conditioning RVQ (binary: musiclm_jax/fit_mulan_rvq.py).

Fitting (`fit_rvq`) is one k-means per level on the residuals of the level
before (`ResidualVQ.seed`). A level of K codes needs several vectors per
code: with n embeddings only K' = min(K, n // min_vectors_per_code) codes per
level are fitted and the codebook is filled up to K with copies of its first
code, which the nearest-code search never returns (ties go to the lowest
index). So a few hundred training clips give valid, deterministic ids in
[0, K) that use fewer than K codes per level, instead of k-means with more
clusters than points, which would put one code on every embedding at level 1
and leave the 11 levels after it quantizing exact zeros. With paper-scale
data (K' = K) nothing changes.

`max_fitted_codes` caps K' on purpose: a small MuLan places a caption near its
clip but not in the same one of 1024 cells, so text and audio share level-1
codes only when the cells are coarse (docs/design.md section 10: with 8 codes a
held-out caption gets its clip's level-1 code 0.79 of the time, with 1024 0.03).
"""

import os
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax.data import caption_batches
from musiclm_jax.errors import UserError
from musiclm_jax.layers import rvq as rvq_lib
from musiclm_jax.models import mulan
from musiclm_jax.models.base import Params
from musiclm_jax.tokenizers import conditioning


def fit_rvq(embeddings: np.ndarray, num_levels: int = 12, codebook_size: int = 1024,
            min_vectors_per_code: int = 2, kmeans_iterations: int = 20,
            seed: int = 0, max_fitted_codes: int | None = None
            ) -> tuple[rvq_lib.ResidualVQ, rvq_lib.State]:
  """A `num_levels` x `codebook_size` RVQ fitted by per-level k-means on embeddings [n, D].

  Only min(codebook_size, max_fitted_codes, n // min_vectors_per_code) codes
  per level are fitted; the rest copy code 0 and are never emitted (see the
  module docstring). max_fitted_codes None: as many as the data allows.
  """
  embeddings = np.asarray(embeddings, np.float32)
  n, dim = embeddings.shape
  if max_fitted_codes is not None and not 1 <= max_fitted_codes <= codebook_size:
    raise UserError(f"max_fitted_codes {max_fitted_codes} is outside [1, {codebook_size}]: "
                    "bind it within the codebook size, or None for as many as the data allows")
  wanted = max_fitted_codes or codebook_size
  fitted = max(1, min(wanted, n // min_vectors_per_code))
  if fitted < wanted:
    logging.warning("fitting %d of %d codes per level: %d embeddings are too few for more "
                    "(min_vectors_per_code=%d)", fitted, codebook_size, n, min_vectors_per_code)
  small = rvq_lib.ResidualVQ(num_levels, fitted, dim, kmeans_iterations=kmeans_iterations)
  state = jax.jit(small.seed)(small.init_state(), jnp.asarray(embeddings)[:, None, :],
                              jax.random.key(seed))
  fill = codebook_size - fitted
  codebooks = jnp.concatenate(
      [state["codebooks"], jnp.repeat(state["codebooks"][:, :1], fill, axis=1)], axis=1)
  counts = jnp.pad(state["cluster_size"], ((0, 0), (0, fill)))
  quantizer = rvq_lib.ResidualVQ(num_levels, codebook_size, dim)
  return quantizer, {"codebooks": codebooks, "cluster_size": counts,
                     "embed_sum": codebooks * counts[..., None],
                     "initialized": jnp.ones((), jnp.float32)}


def window_embeddings(model: mulan.MuLanModel, params: Params, clips: Sequence[np.ndarray],
                      batch_size: int = 16) -> np.ndarray:
  """Embeddings [windows, D] of every MuLan window of every clip (not averaged)."""
  c = model.config
  embed = jax.jit(model.embed_audio)
  windows = [clip[s * c.stft_hop_samples:s * c.stft_hop_samples + c.window_samples]
             for clip in clips for s in mulan.window_starts(len(clip), c)]
  windows = [np.pad(w, (0, c.window_samples - len(w))) for w in windows]
  out = [np.asarray(embed(params, np.stack(windows[i:i + batch_size])))
         for i in range(0, len(windows), batch_size)]
  return np.concatenate(out)


def fit_rvq_on_dataset(*, export_dir: str, rvq_path: str, dataset: str, data_dir: str | None,
                       split: str = "train", num_levels: int = 12, codebook_size: int = 1024,
                       min_vectors_per_code: int = 2, kmeans_iterations: int = 20,
                       seed: int = 0, max_fitted_codes: int | None = None
                       ) -> conditioning.MuLanTokenizer:
  """Fits the RVQ on MuLan audio embeddings of every window of a TFDS split; saves it to RVQ_PATH.

  Windows (10 s every 1 s at paper scale), not whole-clip means, are what the
  RVQ sees: more vectors from the same clips, spread like the embeddings
  M_A is taken from.
  """
  model, params = conditioning.load_mulan(export_dir)
  clips = caption_batches.load_captioned_clips(dataset, data_dir, split,
                                               sample_rate_hz=model.config.sample_rate_hz)
  embeddings = window_embeddings(model, params, clips.audio)
  logging.info("fitting the RVQ on %d window embeddings of %d clips", len(embeddings), len(clips.audio))
  quantizer, state = fit_rvq(embeddings, num_levels, codebook_size, min_vectors_per_code,
                             kmeans_iterations, seed, max_fitted_codes)
  conditioning.save_rvq(rvq_path, quantizer, state)
  return conditioning.MuLanTokenizer(model, params, quantizer, state)


def rvq_file(output_dir: str) -> str:
  """Where the fit binary writes the RVQ: OUTPUT_DIR/rvq.npz."""
  return os.path.join(output_dir, "rvq.npz")
