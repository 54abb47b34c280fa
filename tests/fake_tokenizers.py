"""Deterministic stand-ins for the frozen tokenizers (musiclm_jax/tokenizers/__init__.py protocols).

For tests of the token cache, the tasks and the cascade that must not depend
on trained w2v-BERT or MuLan models. Tokens are simple functions of the input,
so a test can predict them.
"""
import zlib

import numpy as np

from musiclm_jax import musiclm_spec
from musiclm_jax.data import token_layout

_SEMANTIC_HOP = musiclm_spec.SAMPLES_PER_SEMANTIC_FRAME
_ACOUSTIC_HOP = musiclm_spec.SAMPLES_PER_ACOUSTIC_FRAME
_ACOUSTIC_LEVELS = token_layout.COARSE.num_levels + token_layout.FINE.num_levels


class FakeSemanticTokenizer:
  """S from each 40 ms frame's RMS level, quantized to `codebook_size` bins."""

  def __init__(self, codebook_size: int = 1024):
    self.codebook_size = codebook_size

  def num_frames(self, num_samples: int) -> int:
    return -(-num_samples // _SEMANTIC_HOP)

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    frames = self.num_frames(audio.shape[1])
    padded = np.pad(audio, ((0, 0), (0, frames * _SEMANTIC_HOP - audio.shape[1])))
    rms = np.sqrt(np.mean(padded.reshape(audio.shape[0], frames, -1) ** 2, axis=-1))
    return np.minimum(rms * self.codebook_size, self.codebook_size - 1).astype(np.int32)


class FakeConditioningTokenizer:
  """M_T from a CRC of the text; M_A from the clip's overall RMS level."""

  def __init__(self, codebook_size: int = 1024, num_levels: int = token_layout.MULAN.num_levels):
    self.codebook_size = codebook_size
    self.num_levels = num_levels

  def audio_tokens(self, audio: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(np.asarray(audio, np.float32) ** 2, axis=-1))
    level = np.minimum(rms * self.codebook_size, self.codebook_size - 1).astype(np.int32)
    return (level[:, None] + np.arange(self.num_levels)) % self.codebook_size

  def text_tokens(self, texts) -> np.ndarray:
    seeds = [zlib.crc32(t.encode()) for t in texts]
    return np.stack([np.random.default_rng(s).integers(0, self.codebook_size, self.num_levels)
                     for s in seeds]).astype(np.int32)


# Loaders with the real tokenizers' signatures, for gin configs in tests (the paths are unused).

def load_fake_conditioning(export_dir: str, rvq_path: str) -> FakeConditioningTokenizer:
  del export_dir, rvq_path
  return FakeConditioningTokenizer()


def load_fake_semantic(export_dir: str, kmeans_path: str) -> FakeSemanticTokenizer:
  del export_dir, kmeans_path
  return FakeSemanticTokenizer()


class FakeAcousticTokenizer:
  """A from each 20 ms frame's RMS level: level q holds (bin + 7 q) % codebook_size."""

  def __init__(self, codebook_size: int = 1024, num_levels: int = _ACOUSTIC_LEVELS):
    self.codebook_size = codebook_size
    self.num_levels = num_levels

  def num_frames(self, num_samples: int) -> int:
    return -(-num_samples // _ACOUSTIC_HOP)

  def encode(self, audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    frames = self.num_frames(audio.shape[1])
    padded = np.pad(audio, ((0, 0), (0, frames * _ACOUSTIC_HOP - audio.shape[1])))
    rms = np.sqrt(np.mean(padded.reshape(audio.shape[0], frames, -1) ** 2, axis=-1))
    level = np.minimum(rms * self.codebook_size, self.codebook_size - 1).astype(np.int32)
    return (level[..., None] + 7 * np.arange(self.num_levels)) % self.codebook_size

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """Each frame becomes a constant at its level-0 code's RMS bin."""
    level = np.asarray(codes)[..., 0].astype(np.float32) / self.codebook_size
    return np.repeat(level, _ACOUSTIC_HOP, axis=-1)


class FakeMelodyTokenizer:
  """Melody tokens from each window's RMS level: 4 s windows every 3 s, level q (bin + 5 q) % size."""

  hop_seconds = musiclm_spec.MELODY_HOP_SECONDS
  window_seconds = 4.0

  def __init__(self, codebook_size: int = token_layout.MELODY.codebook_size,
               num_levels: int = token_layout.MELODY.num_levels):
    self.codebook_size = codebook_size
    self.num_levels = num_levels
    self._hop = round(self.hop_seconds * musiclm_spec.SAMPLE_RATE_HZ)
    self._window = round(self.window_seconds * musiclm_spec.SAMPLE_RATE_HZ)

  def num_frames(self, num_samples: int) -> int:
    return 1 + -(-max(num_samples - self._window, 0) // self._hop)

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, np.float32)
    starts = np.arange(self.num_frames(audio.shape[1])) * self._hop
    padded = np.pad(audio, ((0, 0), (0, starts[-1] + self._window - audio.shape[1])))
    rms = np.stack([np.sqrt(np.mean(padded[:, s:s + self._window] ** 2, axis=-1)) for s in starts],
                   axis=1)
    level = np.minimum(rms * self.codebook_size, self.codebook_size - 1).astype(np.int32)
    return (level[..., None] + 5 * np.arange(self.num_levels)) % self.codebook_size


def load_fake_melody(export_dir: str, rvq_path: str) -> FakeMelodyTokenizer:
  del export_dir, rvq_path
  return FakeMelodyTokenizer()
