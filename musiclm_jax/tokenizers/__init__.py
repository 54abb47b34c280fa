"""What the cascade and the tokenize binary need of each frozen tokenizer.

Every tokenizer takes 24 kHz mono audio as float32 `[batch, samples]` (and
resamples inside if its model runs at another rate) and returns int32 codes
without any vocabulary offset: `data/token_layout.py` adds those.

The package's modules implement them from frozen exports and write the token
cache: semantic.py (w2v-BERT + k-means, fitted by kmeans_fit.py), acoustic.py
(SoundStream), conditioning.py (MuLan + RVQ, fitted by rvq_fit.py),
melody.py (melody embedder + 24 x 512 RVQ, fitted there with rvq_fit's k-means)
and cache_writer.py (musiclm-tokenize's work).
"""
from typing import Protocol, Sequence

import numpy as np


class SemanticTokenizer(Protocol):
  """w2v-BERT features + k-means: S at 25 Hz."""
  codebook_size: int  # 1024 at paper scale

  def num_frames(self, num_samples: int) -> int:
    """Tokens for `num_samples` of 24 kHz audio: ceil(num_samples / 960)."""

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> S [batch, num_frames(samples)] in [0, codebook_size)."""


class AcousticTokenizer(Protocol):
  """SoundStream: A at 50 Hz × levels, and the waveform back."""
  codebook_size: int
  num_levels: int

  def num_frames(self, num_samples: int) -> int:
    """Frames for `num_samples` of 24 kHz audio: ceil(num_samples / 480)."""

  def encode(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] -> A [batch, num_frames(samples), num_levels] in [0, codebook_size)."""

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """A [batch, frames, num_levels] -> audio [batch, frames * 480] at 24 kHz."""


class ConditioningTokenizer(Protocol):
  """MuLan + RVQ: M_A from audio for training, M_T from text for inference."""
  codebook_size: int
  num_levels: int  # 12 at paper scale

  def audio_tokens(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> M_A [batch, num_levels] in [0, codebook_size)."""

  def text_tokens(self, texts: Sequence[str]) -> np.ndarray:
    """texts [batch] -> M_T [batch, num_levels] in [0, codebook_size)."""


class MelodyTokenizer(Protocol):
  """Melody embedder + RVQ: one frame of melody tokens per window (every 3 s at paper scale)."""
  codebook_size: int  # 512 at paper scale
  num_levels: int  # 24 at paper scale
  hop_seconds: float  # between frames; the stages read musiclm_spec.MELODY_HOP_SECONDS

  def num_frames(self, num_samples: int) -> int:
    """Frames for `num_samples` of 24 kHz audio: one per window (at least one)."""

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> [batch, num_frames(samples), num_levels]."""
