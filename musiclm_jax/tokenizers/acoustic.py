"""Acoustic tokens A: a frozen SoundStream as the cascade's `tokenizers.AcousticTokenizer`.

  tokenizer = SoundStreamTokenizer.load("runs/soundstream_tiny/export")
  codes = tokenizer.encode(audio_24k)   # [batch, ceil(samples / 480), levels] int32
  audio = tokenizer.decode(codes)       # [batch, frames * 480] float32
"""
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax.models import soundstream
from musiclm_jax.models.base import Params


class SoundStreamTokenizer:
  """A frozen codec as the cascade's `tokenizers.AcousticTokenizer`: numpy in, numpy out."""

  def __init__(self, model: soundstream.SoundStreamModel, params: Params,
               export_dir: str | None = None):
    """export_dir: where the params came from, recorded in token caches' metadata."""
    self.model = model
    self.params = params
    self.export_dir = export_dir
    self.codebook_size = model.config.codebook_size
    self.num_levels = model.config.num_levels
    self.sample_rate_hz = model.config.sample_rate_hz
    self.hop_length = model.config.hop_length
    self._encode = jax.jit(model.encode)
    self._decode = jax.jit(model.decode)

  @classmethod
  def load(cls, export_dir: str) -> "SoundStreamTokenizer":
    """From a musiclm-export folder of a SoundStream run (its config.gin gives the sizes)."""
    model = gin_models.model_from_export(export_dir, soundstream.SoundStreamModel, "SoundStream")
    spec = {"audio": jax.ShapeDtypeStruct((1, model.config.hop_length), jnp.float32)}
    return cls(*gin_models.load_export(export_dir, spec, model), export_dir=export_dir)

  def num_frames(self, num_samples: int) -> int:
    return self.model.num_frames(num_samples)

  def encode(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] -> codes [batch, ceil(samples / hop), levels] int32."""
    return np.asarray(self._encode(self.params, jnp.asarray(audio, jnp.float32)))

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """codes [batch, frames, levels] -> audio [batch, frames * hop]."""
    return np.asarray(self._decode(self.params, jnp.asarray(codes, jnp.int32)))
