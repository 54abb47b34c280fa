"""The codec's discriminators: multi-resolution complex STFT and multi-scale waveform.

Each discriminator returns (logits, features): logits for the hinge loss and
the activations of every hidden layer for feature matching. `Discriminators`
runs all of them and returns a list of those pairs.

  STFT (SoundStream, EnCodec's MS-STFTD): the real and imaginary parts of a
    complex STFT as two channels of a 2-D conv net over [frames, bins], one
    net per FFT size, so that both phase and several time-frequency
    resolutions are judged.
  Waveform (MelGAN): 1-D grouped strided convs over the waveform at several
    sample rates (average-pooled by 2 each time).
"""
import dataclasses
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from musiclm_jax.audio import spectral

_SLOPE = 0.2
Output = tuple[jax.Array, list[jax.Array]]


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
  """Sizes of both discriminator families (gin: `discriminators.DiscriminatorConfig`).

  stft_fft_sizes: one STFT discriminator per FFT size (hop = n_fft / 4).
  stft_channels: channels of every STFT conv.
  wave_scales: waveform discriminators, at rates 1, 1/2, 1/4, ...
  wave_channels: channels of the first waveform conv; each strided conv
    multiplies them by 4 up to `wave_max_channels`.
  wave_downsamples: strided (by 4) grouped convs per waveform discriminator.
  """
  stft_fft_sizes: tuple[int, ...] = (2048, 1024, 512)
  stft_channels: int = 32
  wave_scales: int = 3
  wave_channels: int = 16
  wave_max_channels: int = 1024
  wave_downsamples: int = 4


def _kernel_init(ndim: int):
  names = (None,) * (ndim - 2) + ("conv_in", "conv_out")
  return nn.with_logical_partitioning(nn.initializers.lecun_normal(), names)


def _taps_conv(lhs: jax.Array, rhs: jax.Array, window_strides, padding, lhs_dilation=None,
               rhs_dilation=None, feature_group_count=1, **unused) -> jax.Array:
  """`lax.conv_general_dilated` of a stride-1 1-D conv of one input channel, as a matmul of taps.

  XLA's TPU compiler spends ~100 s compiling the wide (15-tap) single-channel
  conv that opens each waveform discriminator, with its gradients (register
  allocation in codegen), against ~1 s for these shifted copies and one matmul.
  lhs: [batch, time, 1] (NWC), rhs: [taps, 1, out] (WIO) -> [batch, frames, out];
  padding: 'SAME' / 'VALID' or one (low, high) pair, as nn.Conv passes it.
  """
  del unused  # nn.Conv's channels-last dimension numbers and default precision.
  if (tuple(window_strides) != (1,) or lhs.shape[-1] != 1 or feature_group_count != 1
      or any(d is not None and tuple(d) != (1,) for d in (lhs_dilation, rhs_dilation))):
    raise ValueError("_taps_conv takes undilated stride-1 convs of one input channel")
  taps = rhs.shape[0]
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:2], (taps,), window_strides, padding)
  (low, high), = padding
  x = jnp.pad(lhs[..., 0], ((0, 0), (low, high)))
  frames = x.shape[1] - taps + 1
  windows = jnp.stack([x[:, i:i + frames] for i in range(taps)], axis=-1)  # [batch, frames, taps]
  return jnp.einsum("btk,ko->bto", windows, rhs[:, 0])


def _conv(features: int, kernel: Sequence[int], **kwargs) -> nn.Conv:
  return nn.Conv(features, tuple(kernel), padding="SAME", kernel_init=_kernel_init(len(kernel) + 2),
                 bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
                 **kwargs)


class STFTDiscriminator(nn.Module):
  """audio [batch, time] -> (logits [batch, frames', bins', 1], features)."""
  n_fft: int
  channels: int = 32

  @nn.compact
  def __call__(self, audio: jax.Array) -> Output:
    spec = spectral.stft(audio, n_fft=self.n_fft, hop_length=self.n_fft // 4)
    # Scaling by 1/sqrt(n_fft) keeps every resolution's input near unit size.
    x = jnp.stack([spec.real, spec.imag], axis=-1) / jnp.sqrt(float(self.n_fft))
    features = []
    x = nn.leaky_relu(_conv(self.channels, (3, 9))(x), _SLOPE)
    features.append(x)
    for dilation in (1, 2, 4):
      x = _conv(self.channels, (3, 9), strides=(1, 2), kernel_dilation=(dilation, 1))(x)
      x = nn.leaky_relu(x, _SLOPE)
      features.append(x)
    x = nn.leaky_relu(_conv(self.channels, (3, 3))(x), _SLOPE)
    features.append(x)
    return _conv(1, (3, 3))(x), features


class WaveDiscriminator(nn.Module):
  """audio [batch, time] -> (logits [batch, time', 1], features)."""
  channels: int = 16
  max_channels: int = 1024
  downsamples: int = 4

  @nn.compact
  def __call__(self, audio: jax.Array) -> Output:
    x = audio[..., None]
    features = []
    x = nn.leaky_relu(_conv(self.channels, (15,), conv_general_dilated=_taps_conv)(x), _SLOPE)
    features.append(x)
    channels = self.channels
    for _ in range(self.downsamples):
      channels = min(channels * 4, self.max_channels)
      groups = max(channels // 64, 1)
      x = nn.leaky_relu(_conv(channels, (41,), strides=(4,), feature_group_count=groups)(x), _SLOPE)
      features.append(x)
    x = nn.leaky_relu(_conv(channels, (5,))(x), _SLOPE)
    features.append(x)
    return _conv(1, (3,))(x), features


class Discriminators(nn.Module):
  """audio [batch, time] -> [(logits, features)] for every discriminator."""
  config: DiscriminatorConfig = DiscriminatorConfig()

  @nn.compact
  def __call__(self, audio: jax.Array) -> list[Output]:
    c = self.config
    outputs = [STFTDiscriminator(n_fft, c.stft_channels, name=f"stft_{n_fft}")(audio)
               for n_fft in c.stft_fft_sizes]
    x = audio
    for scale in range(c.wave_scales):
      if scale:
        x = nn.avg_pool(x[..., None], (4,), strides=(2,), padding="SAME")[..., 0]
      outputs.append(WaveDiscriminator(c.wave_channels, c.wave_max_channels, c.wave_downsamples,
                                       name=f"wave_{scale}")(x))
    return outputs
