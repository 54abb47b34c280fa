"""The jnp STFT / mel / log-mel match librosa's defaults to close tolerance."""
import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from musiclm_jax.audio import spectral

RATE_HZ = 24_000


@pytest.fixture(scope="module")
def audio_noisy_chord():
  rng = np.random.default_rng(0)
  t = np.arange(RATE_HZ // 2) / RATE_HZ
  chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6, 3000.0)) / 4
  return (chord + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop_length,win_length", [(2048, 512, None), (512, 128, 400)])
def test_stft_matches_librosa(audio_noisy_chord, n_fft, hop_length, win_length):
  expected = librosa.stft(audio_noisy_chord, n_fft=n_fft, hop_length=hop_length,
                          win_length=win_length)
  got = np.asarray(spectral.stft(jnp.asarray(audio_noisy_chord), n_fft, hop_length, win_length))
  assert got.shape == expected.T.shape
  np.testing.assert_allclose(got, expected.T, atol=1e-3 * np.abs(expected).max())


@pytest.mark.parametrize("kwargs", [
    dict(n_mels=128),
    dict(n_mels=64, fmin=30.0, fmax=8000.0),
    dict(n_mels=40, fmin=20.0, fmax=11000.0, htk=True),
])
def test_mel_filterbank_matches_librosa(kwargs):
  expected = librosa.filters.mel(sr=RATE_HZ, n_fft=1024, **kwargs)
  got = spectral.mel_filterbank(RATE_HZ, 1024, kwargs["n_mels"], kwargs.get("fmin", 0.0),
                                kwargs.get("fmax"), htk=kwargs.get("htk", False))
  np.testing.assert_allclose(np.asarray(got).T, expected, atol=1e-6, rtol=1e-4)


def test_mel_spectrogram_matches_librosa(audio_noisy_chord):
  expected = librosa.feature.melspectrogram(y=audio_noisy_chord, sr=RATE_HZ, n_fft=1024,
                                            hop_length=256, n_mels=80)
  got = np.asarray(spectral.mel_spectrogram(jnp.asarray(audio_noisy_chord), RATE_HZ,
                                            n_fft=1024, hop_length=256, n_mels=80))
  np.testing.assert_allclose(got.T, expected, rtol=1e-3, atol=1e-4 * expected.max())


def test_log_mel_matches_librosa_power_to_db(audio_noisy_chord):
  mel = librosa.feature.melspectrogram(y=audio_noisy_chord, sr=RATE_HZ)
  expected = librosa.power_to_db(mel, top_db=80.0)
  got = np.asarray(spectral.log_mel_spectrogram(jnp.asarray(audio_noisy_chord), RATE_HZ))
  np.testing.assert_allclose(got.T, expected, atol=0.01)


def test_batched_and_jitted_equal_per_example(audio_noisy_chord):
  batch = jnp.stack([jnp.asarray(audio_noisy_chord), 0.1 * jnp.asarray(audio_noisy_chord)])
  log_mel = jax.jit(lambda x: spectral.log_mel_spectrogram(x, RATE_HZ, n_fft=512,
                                                           hop_length=160, n_mels=64))
  batched = log_mel(batch)
  assert batched.shape == (2, 1 + len(audio_noisy_chord) // 160, 64)
  for i in range(2):
    np.testing.assert_allclose(batched[i], log_mel(batch[i]), atol=1e-4)
  # 0.1x amplitude is 20 dB quieter wherever the top_db floor does not bite.
  assert float(jnp.max(batched[0]) - jnp.max(batched[1])) == pytest.approx(20.0, abs=0.01)


def test_too_short_input_says_so():
  with pytest.raises(ValueError, match="fewer than n_fft"):
    spectral.stft(jnp.zeros(100), n_fft=512, center=False)
