"""Coloured noise has the reference clips' average spectrum (by Welch's method) and each clip's loudness."""
import numpy as np
from scipy import signal

from musiclm_jax.eval import coloured_noise

RATE_HZ = 16_000


def _clips():
  """Two clips whose energy sits low: a 200 Hz tone in brown-ish noise, at different levels."""
  rng = np.random.default_rng(0)
  t = np.arange(2 * RATE_HZ) / RATE_HZ
  clips = []
  for level in (0.1, 0.4):
    brown = np.cumsum(rng.normal(size=len(t)))
    brown = brown - np.convolve(brown, np.ones(400) / 400, mode="same")
    clips.append((level * (np.sin(2 * np.pi * 200 * t) + 0.05 * brown)).astype(np.float32))
  return clips


def test_noise_has_the_average_spectrum_and_each_clips_loudness():
  clips = _clips()
  noise = coloured_noise.coloured_noise(clips, seed=0)
  assert [len(n) for n in noise] == [len(c) for c in clips]
  for n, c in zip(noise, clips):
    np.testing.assert_allclose(np.sqrt(np.mean(n ** 2)), np.sqrt(np.mean(c ** 2)), rtol=1e-4)

  def shape(x):  # Welch PSD in 1/8-octave-ish bands, normalised to sum 1
    _, psd = signal.welch(np.concatenate(x), fs=RATE_HZ, nperseg=1024)
    bands = np.array_split(psd[1:], 16)
    total = np.array([b.sum() for b in bands])
    return total / total.sum()

  reference, made = shape(clips), shape(noise)
  strong = reference > 1e-3
  np.testing.assert_allclose(made[strong], reference[strong], rtol=0.3)
  # White noise of the same loudness does not pass: the check can fail.
  white = [np.random.default_rng(1).normal(size=len(c)).astype(np.float32) for c in clips]
  assert not np.allclose(shape(white)[strong], reference[strong], rtol=0.3)


def test_noise_is_random_and_not_the_clip():
  clips = _clips()
  noise = coloured_noise.coloured_noise(clips, seed=0)
  assert coloured_noise.coloured_noise(clips, seed=0)[0].tolist() == noise[0].tolist()
  assert not np.allclose(coloured_noise.coloured_noise(clips, seed=1)[0], noise[0])
  assert abs(np.corrcoef(noise[0], clips[0])[0, 1]) < 0.1
