"""Losses and quality measures of the neural codec (SoundStream, EnCodec).

Audio is [batch, time] float in [-1, 1]; losses are scalars averaged over the
batch. Mel spectrograms come from musiclm_jax.audio.spectral so that the loss
and the evaluation measure the same thing.
"""
import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from musiclm_jax.audio import spectral

MEL_FFT_SIZES = (64, 128, 256, 512, 1024, 2048)
_LOG_FLOOR = 1e-5


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """Weights of the generator's loss terms (gin: `codec_losses.LossWeights`).

  mel: multi-scale mel reconstruction (linear L1 + log L1).
  waveform: L1 on samples; it is what makes the phase, hence SI-SNR, right early on.
  adversarial: hinge loss against every discriminator.
  feature_matching: L1 between discriminator features of real and decoded audio.
  commitment: pulls the encoder output toward its codes.
  """
  mel: float = 1.0
  waveform: float = 0.1
  adversarial: float = 1.0
  feature_matching: float = 10.0
  commitment: float = 1.0


def _mels(audio: jax.Array, sample_rate_hz: int, n_fft: int, n_mels: int) -> jax.Array:
  # Small FFTs cannot resolve many mel bands: cap the count so no filter is empty.
  return spectral.mel_spectrogram(audio, sample_rate_hz, n_fft=n_fft, hop_length=n_fft // 4,
                                  n_mels=min(n_mels, n_fft // 4), power=1.0)


def mel_reconstruction_loss(reference: jax.Array, estimate: jax.Array, sample_rate_hz: int,
                            fft_sizes: Sequence[int] = MEL_FFT_SIZES,
                            n_mels: int = 64) -> jax.Array:
  """Mean over FFT sizes of L1(mel) + L1(log mel): the multi-scale spectral loss."""
  total = 0.0
  for n_fft in fft_sizes:
    a = _mels(reference, sample_rate_hz, n_fft, n_mels)
    b = _mels(estimate, sample_rate_hz, n_fft, n_mels)
    total += jnp.mean(jnp.abs(a - b)) + jnp.mean(
        jnp.abs(jnp.log(a + _LOG_FLOOR) - jnp.log(b + _LOG_FLOOR)))
  return total / len(fft_sizes)


def mel_distance(reference: jax.Array, estimate: jax.Array, sample_rate_hz: int,
                 fft_sizes: Sequence[int] = MEL_FFT_SIZES, n_mels: int = 64) -> jax.Array:
  """Multi-scale mel distance: mean over FFT sizes of L1 between natural-log mels.

  Magnitude mels, hop n_fft / 4, floor 1e-5; 0 for identical audio.
  """
  total = 0.0
  for n_fft in fft_sizes:
    a = _mels(reference, sample_rate_hz, n_fft, n_mels)
    b = _mels(estimate, sample_rate_hz, n_fft, n_mels)
    total += jnp.mean(jnp.abs(jnp.log(a + _LOG_FLOOR) - jnp.log(b + _LOG_FLOOR)))
  return total / len(fft_sizes)


def si_snr_db(reference: jax.Array, estimate: jax.Array) -> jax.Array:
  """Scale-invariant SNR in dB per example: [batch, time] -> [batch]."""
  reference = reference - reference.mean(-1, keepdims=True)
  estimate = estimate - estimate.mean(-1, keepdims=True)
  scale = jnp.sum(estimate * reference, -1, keepdims=True) / (
      jnp.sum(reference ** 2, -1, keepdims=True) + 1e-8)
  target = scale * reference
  noise = estimate - target
  return 10.0 * jnp.log10((jnp.sum(target ** 2, -1) + 1e-8) / (jnp.sum(noise ** 2, -1) + 1e-8))


def discriminator_hinge_loss(real_logits: Sequence[jax.Array],
                             fake_logits: Sequence[jax.Array]) -> jax.Array:
  """Sum over discriminators of mean relu(1 - D(x)) + mean relu(1 + D(G(x)))."""
  return sum(jnp.mean(jax.nn.relu(1.0 - r)) + jnp.mean(jax.nn.relu(1.0 + f))
             for r, f in zip(real_logits, fake_logits))


def generator_hinge_loss(fake_logits: Sequence[jax.Array]) -> jax.Array:
  """Sum over discriminators of mean relu(1 - D(G(x))), SoundStream's generator hinge."""
  return sum(jnp.mean(jax.nn.relu(1.0 - f)) for f in fake_logits)


def feature_matching_loss(real_features: Sequence[Sequence[jax.Array]],
                          fake_features: Sequence[Sequence[jax.Array]]) -> jax.Array:
  """Mean over discriminators and layers of L1(features of x, features of G(x)).

  The real features are constants: this loss trains the generator only.
  """
  terms = [jnp.mean(jnp.abs(jax.lax.stop_gradient(r) - f))
           for rs, fs in zip(real_features, fake_features) for r, f in zip(rs, fs)]
  return sum(terms) / len(terms)
