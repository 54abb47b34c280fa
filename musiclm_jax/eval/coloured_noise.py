"""The "not music" baseline: noise with the real clips' average spectrum and each real clip's loudness.

  noise = coloured_noise(reference_clips, seed=0)    # one noise clip per real clip, same length

Every metric scores this set too, so "closer to real than coloured noise" can
be read off the report: a generation that only matches the long-term spectrum
of music (what a smeared, noisy decoder can reach) scores like this set.
"""
from typing import Sequence

import librosa
import numpy as np

# Frames of the average power spectrum: 2048 samples resolve 12 Hz at 24 kHz.
N_FFT = 2048


def average_power_spectrum(clips: Sequence[np.ndarray], n_fft: int = N_FFT) -> np.ndarray:
  """clips, each [time] -> [n_fft // 2 + 1], the mean power per frequency bin over all their frames."""
  frames = [np.abs(librosa.stft(np.asarray(clip, np.float32), n_fft=n_fft)) ** 2 for clip in clips]
  return np.concatenate(frames, axis=1).mean(axis=1)


def coloured_noise(clips: Sequence[np.ndarray], seed: int = 0, n_fft: int = N_FFT) -> list[np.ndarray]:
  """Gaussian noise clips [time] shaped by `clips`' average power spectrum, clip i as long and as
  loud (RMS) as clips[i]."""
  spectrum = average_power_spectrum(clips, n_fft)
  rng = np.random.default_rng(seed)
  noise = []
  for clip in clips:
    length = len(clip)
    bins = np.linspace(0.0, 1.0, length // 2 + 1)
    amplitude = np.sqrt(np.interp(bins, np.linspace(0.0, 1.0, len(spectrum)), spectrum))
    phases = rng.normal(size=len(bins)) + 1j * rng.normal(size=len(bins))
    shaped = np.fft.irfft(amplitude * phases, n=length)
    rms = np.sqrt(np.mean(np.square(clip, dtype=np.float64)))
    noise.append((shaped * rms / max(np.sqrt(np.mean(shaped ** 2)), 1e-12)).astype(np.float32))
  return noise
