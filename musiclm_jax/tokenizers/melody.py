"""The melody embedder + a 24 x 512 RVQ: melody tokens for the cascade's conditioning.

Audio is cut into the embedder's windows (4 s every 3 s at paper scale: three
per 10 s, `models/melody.window_starts`), each window's 192-d embedding is
quantized by an RVQ with the sizes of `token_layout.MELODY`, fitted on window
embeddings (`fit_melody_rvq`, the same per-level k-means as MuLan's RVQ,
`tokenizers/rvq_fit.py`; binary: musiclm-fit-melody-rvq).

  tokenizer = MelodyTokenizer.load("runs/melody_tiny_export", "runs/melody_tiny/rvq.npz")
  tokenizer.tokenize(audio_24k)  # [batch, num_frames(samples), 24] int32 in [0, 512)
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax.data import melody_pairs
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.layers import rvq as rvq_lib
from musiclm_jax.models import melody
from musiclm_jax.models.base import Params
from musiclm_jax.tokenizers import conditioning
from musiclm_jax.tokenizers import embedding_rvq
from musiclm_jax.tokenizers import rvq_fit

KIND = token_layout.MELODY


class MelodyTokenizer(embedding_rvq.EmbeddingRVQTokenizer):
  """A frozen melody embedder and its RVQ: numpy audio in, int32 tokens out."""

  def __init__(self, model: melody.MelodyModel, params: Params, quantizer: rvq_lib.ResidualVQ,
               rvq_state: rvq_lib.State):
    if (quantizer.num_levels, quantizer.codebook_size) != (KIND.num_levels, KIND.codebook_size):
      raise UserError(f"the RVQ is {quantizer.num_levels} x {quantizer.codebook_size} but melody "
                      f"tokens are {KIND.num_levels} x {KIND.codebook_size}: refit it")
    super().__init__(model, params, quantizer, rvq_state, "the melody embedder")
    self._embed = jax.jit(model.embed_audio)
    self._quantize = jax.jit(quantizer.encode)

  @classmethod
  def load(cls, export_dir: str, rvq_path: str) -> "MelodyTokenizer":
    """From a musiclm-export folder of a melody run and the RVQ file `fit_melody_rvq` wrote."""
    quantizer, state = conditioning.load_rvq(rvq_path)
    return cls(*load_melody_embedder(export_dir), quantizer, state)

  @property
  def hop_seconds(self) -> float:
    return self.model.config.window_hop_seconds

  def num_frames(self, num_samples: int) -> int:
    """Token frames for `num_samples` of 24 kHz audio: one per window (3 per 10 s, paper)."""
    return melody.num_windows(num_samples, self.model.config)

  def embeddings(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> [batch, num_frames(samples), D], unit vectors."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2:
      raise UserError(f"audio must be [batch, samples], got shape {audio.shape}")
    return np.asarray(self._embed(self.params, audio))

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] -> [batch, num_frames(samples), num_levels] int32 codes."""
    embeddings = jnp.asarray(self.embeddings(audio))
    return np.asarray(self._quantize(self.rvq_state, embeddings), np.int32)


def load_if_given(export_dir: str | None = None,
                  rvq_path: str | None = None) -> MelodyTokenizer | None:
  """`MelodyTokenizer.load`, or None when neither path is set (gin: melody tokens are optional)."""
  if (export_dir is None) != (rvq_path is None):
    raise UserError("set both MELODY_EXPORT_DIR and MELODY_RVQ_PATH (melody tokens) or neither")
  return None if export_dir is None else MelodyTokenizer.load(export_dir, rvq_path)


def load_melody_embedder(export_dir: str) -> tuple[melody.MelodyModel, Params]:
  """(model, params) of a musiclm-export folder of a melody run."""
  model = gin_models.model_from_export(export_dir, melody.MelodyModel, "the melody embedder")
  spec = {"anchor": jax.ShapeDtypeStruct((1, model.config.window_samples), jnp.float32)}
  return gin_models.load_export(export_dir, spec, model)


def window_embeddings(model: melody.MelodyModel, params: Params,
                      clips: Sequence[np.ndarray]) -> np.ndarray:
  """Embeddings [windows, D] of every window of every clip [time]."""
  embed = jax.jit(model.embed_audio)
  return np.concatenate([np.asarray(embed(params, np.asarray(clip, np.float32)[None]))[0]
                         for clip in clips])


def fit_melody_rvq(model: melody.MelodyModel, params: Params, clips: Sequence[np.ndarray], *,
                   rvq_path: str | None = None, min_vectors_per_code: int = 2,
                   kmeans_iterations: int = 20, seed: int = 0,
                   max_fitted_codes: int | None = None) -> MelodyTokenizer:
  """A MelodyTokenizer with an RVQ fitted on the window embeddings of `clips`, saved to rvq_path.

  max_fitted_codes: at most this many codes per level (`rvq_fit.fit_rvq`; None: as many as
  the data allows). Coarse cells are what let a hum share its song's codes.
  """
  quantizer, state = rvq_fit.fit_rvq(window_embeddings(model, params, clips), KIND.num_levels,
                                     KIND.codebook_size, min_vectors_per_code, kmeans_iterations,
                                     seed, max_fitted_codes)
  if rvq_path:
    conditioning.save_rvq(rvq_path, quantizer, state)
  return MelodyTokenizer(model, params, quantizer, state)


def fit_melody_rvq_on_dataset(*, export_dir: str, rvq_path: str, dataset: str, data_dir: str | None,
                              split: str = "train", min_vectors_per_code: int = 2,
                              kmeans_iterations: int = 20, seed: int = 0,
                              max_fitted_codes: int | None = None) -> MelodyTokenizer:
  """Fits the RVQ on every window of a synth_music split's clips and their other-instrument twins.

  Clips shorter than a window count too: the tokenizer zero-pads them the same way.
  """
  model, params = load_melody_embedder(export_dir)
  clips = melody_pairs.load_melody_clips(dataset, data_dir, split, model.config.sample_rate_hz, 1)
  audio = [c.audio for c in clips] + [c.pair_audio for c in clips if c.pair_audio is not None]
  return fit_melody_rvq(model, params, audio, rvq_path=rvq_path,
                        min_vectors_per_code=min_vectors_per_code,
                        kmeans_iterations=kmeans_iterations, seed=seed,
                        max_fitted_codes=max_fitted_codes)
