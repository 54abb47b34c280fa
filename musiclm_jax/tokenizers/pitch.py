"""The `pitch` melody kind's tokenizer: a tune's pitch class every 80 ms, by pYIN (no weights).

What a stage conditioned on the tune frame by frame reads at inference
(`data/tune_pitch.py`; beyond the paper). It follows the `MelodyTokenizer`
protocol, so the cascade takes it where the paper's melody tokenizer goes.
"""
import numpy as np

from musiclm_jax import musiclm_spec as spec
from musiclm_jax.data import token_layout
from musiclm_jax.data import tune_pitch


class PitchTokenizer:
  """audio [batch, samples] at 24 kHz -> pitch codes [batch, frames, 1]."""
  codebook_size = token_layout.PITCH.codebook_size
  num_levels = token_layout.PITCH.num_levels
  hop_seconds = spec.PITCH_HOP_SECONDS

  def num_frames(self, num_samples: int) -> int:
    return tune_pitch.num_frames(num_samples, spec.SAMPLE_RATE_HZ)

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    frames = self.num_frames(audio.shape[1])
    return np.stack([tune_pitch.from_audio(row, spec.SAMPLE_RATE_HZ, frames) for row in audio])
