"""Reading, resampling and writing audio files on the host (numpy).

Every loader returns float32 in [-1, 1]. SoundStream works at 24 kHz and
w2v-BERT at 16 kHz, so callers pass the rate they need and get mono audio at
that rate, checked by `validation.check_audio` first.
"""
import os
import warnings

import librosa
import numpy as np
import soundfile
import soxr

from musiclm_jax.audio import validation


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
  """Decodes a file as it is stored.

  Returns:
    (samples [time, channels] float32, sample_rate_hz).
  Raises:
    AudioError(UNREADABLE) if neither soundfile nor librosa can decode it.
  """
  path = os.fspath(path)
  try:
    samples, sample_rate_hz = soundfile.read(path, dtype="float32", always_2d=True)
    return samples, int(sample_rate_hz)
  except (soundfile.LibsndfileError, RuntimeError, TypeError) as sf_error:
    first_error = sf_error
  # librosa falls back to audioread (ffmpeg and friends) for formats that
  # libsndfile lacks, such as m4a.
  try:
    with warnings.catch_warnings():  # librosa warns that it is falling back, as we asked
      warnings.simplefilter("ignore", (UserWarning, FutureWarning))
      samples, sample_rate_hz = librosa.load(path, sr=None, mono=False, dtype=np.float32)
  except Exception as error:  # pylint: disable=broad-except
    raise validation.AudioError(
        validation.AudioProblem.UNREADABLE,
        f"cannot decode ({first_error}; {error}); check the file or convert it to WAV/FLAC",
        path) from error
  samples = samples[:, None] if samples.ndim == 1 else samples.T
  return np.ascontiguousarray(samples), int(sample_rate_hz)


def pcm_to_float(samples: np.ndarray) -> np.ndarray:
  """Integer PCM of any width -> float32 in [-1, 1); floats pass through as float32.

  Signed b-bit PCM spans [-2^(b-1), 2^(b-1)); unsigned (WAV's 8-bit) is offset
  by 2^(b-1), its silence. Scaling by the dtype's own width matters: TFDS
  stores audio as int16 or int32 depending on the dataset.
  """
  if not np.issubdtype(samples.dtype, np.integer):
    return samples.astype(np.float32, copy=False)
  info = np.iinfo(samples.dtype)
  half_range = (int(info.max) - int(info.min) + 1) // 2
  zero = int(info.min) + half_range
  # float64 keeps int32 exact before the division.
  return ((samples.astype(np.float64) - zero) / half_range).astype(np.float32)


def to_mono(samples: np.ndarray) -> np.ndarray:
  """[time, channels] or [time] -> [time], averaging channels."""
  return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
  """Resamples [time] or [time, channels] with soxr's high-quality filter."""
  if from_hz == to_hz:
    return samples.astype(np.float32, copy=False)
  return soxr.resample(samples, from_hz, to_hz, quality="HQ").astype(np.float32, copy=False)


def load_audio(path: str | os.PathLike, sample_rate_hz: int,
               checks: validation.AudioChecks = validation.AudioChecks()) -> np.ndarray:
  """Reads, checks, mixes to mono and resamples a file.

  Returns:
    [time] float32 at `sample_rate_hz`.
  Raises:
    AudioError naming what is wrong with the file.
  """
  samples, file_rate_hz = read_audio(path)
  validation.check_audio(samples, file_rate_hz, checks, source=os.fspath(path))
  return resample(to_mono(samples), file_rate_hz, sample_rate_hz)


def save_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate_hz: int,
             subtype: str = "PCM_16") -> None:
  """Writes [time] or [time, channels] floats in [-1, 1] as a WAV file."""
  soundfile.write(os.fspath(path), np.clip(samples, -1.0, 1.0), sample_rate_hz,
                  subtype=subtype, format="WAV")
