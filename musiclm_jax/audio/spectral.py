"""STFT, mel filterbank and log-mel spectrogram in jax.numpy.

These run on device inside models (the MuLan audio tower and the melody
embedder take log-mels), and they follow librosa's defaults and formulas
(`librosa.stft`, `librosa.filters.mel`, `librosa.feature.melspectrogram`,
`librosa.power_to_db`) so that features computed on the host with librosa and
on device with this module agree. Outputs are time-major: [..., frames, bins],
the transpose of librosa's [..., bins, frames].
"""
import math

import jax.numpy as jnp

from musiclm_jax.errors import UserError

_SLANEY_LINEAR_HZ_PER_MEL = 200.0 / 3
_SLANEY_LOG_START_HZ = 1000.0
_SLANEY_LOG_STEP = math.log(6.4) / 27.0


def hann_window(length: int) -> jnp.ndarray:
  """Periodic Hann window [length], as scipy's get_window('hann', fftbins=True)."""
  n = jnp.arange(length, dtype=jnp.float32)
  return 0.5 - 0.5 * jnp.cos(2.0 * jnp.pi * n / length)


def stft(samples: jnp.ndarray, n_fft: int = 2048, hop_length: int = 512,
         win_length: int | None = None, center: bool = True) -> jnp.ndarray:
  """Short-time Fourier transform with a Hann window.

  Args:
    samples: [..., time] float.
    n_fft: FFT size.
    hop_length: samples between frames.
    win_length: window size, centred in the FFT frame (default n_fft).
    center: zero-pad n_fft // 2 on both sides, as librosa's default.

  Returns:
    [..., frames, n_fft // 2 + 1] complex64, frames = 1 + time // hop_length
    when centred.
  """
  win_length = win_length or n_fft
  window = hann_window(win_length)
  left = (n_fft - win_length) // 2
  window = jnp.pad(window, (left, n_fft - win_length - left))
  if center:
    pad = [(0, 0)] * (samples.ndim - 1) + [(n_fft // 2, n_fft // 2)]
    samples = jnp.pad(samples, pad)
  num_frames = 1 + (samples.shape[-1] - n_fft) // hop_length
  if num_frames < 1:
    raise ValueError(f"{samples.shape[-1]} samples are fewer than n_fft={n_fft}; "
                     "pass longer audio or a smaller n_fft")
  starts = jnp.arange(num_frames) * hop_length
  frames = samples[..., starts[:, None] + jnp.arange(n_fft)[None, :]]
  return jnp.fft.rfft(frames * window, axis=-1)


def hz_to_mel(frequencies_hz: jnp.ndarray, htk: bool = False) -> jnp.ndarray:
  """Hz -> mel on the Slaney (default) or HTK scale."""
  frequencies_hz = jnp.asarray(frequencies_hz, jnp.float32)
  if htk:
    return 2595.0 * jnp.log10(1.0 + frequencies_hz / 700.0)
  linear = frequencies_hz / _SLANEY_LINEAR_HZ_PER_MEL
  log_start_mel = _SLANEY_LOG_START_HZ / _SLANEY_LINEAR_HZ_PER_MEL
  logarithmic = log_start_mel + jnp.log(
      jnp.maximum(frequencies_hz, _SLANEY_LOG_START_HZ) / _SLANEY_LOG_START_HZ) / _SLANEY_LOG_STEP
  return jnp.where(frequencies_hz >= _SLANEY_LOG_START_HZ, logarithmic, linear)


def mel_to_hz(mels: jnp.ndarray, htk: bool = False) -> jnp.ndarray:
  """Mel -> Hz, the inverse of `hz_to_mel`."""
  mels = jnp.asarray(mels, jnp.float32)
  if htk:
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
  log_start_mel = _SLANEY_LOG_START_HZ / _SLANEY_LINEAR_HZ_PER_MEL
  linear = mels * _SLANEY_LINEAR_HZ_PER_MEL
  logarithmic = _SLANEY_LOG_START_HZ * jnp.exp(_SLANEY_LOG_STEP * (mels - log_start_mel))
  return jnp.where(mels >= log_start_mel, logarithmic, linear)


def mel_filterbank(sample_rate_hz: int, n_fft: int, n_mels: int = 128,
                   f_min_hz: float = 0.0, f_max_hz: float | None = None,
                   htk: bool = False, slaney_norm: bool = True) -> jnp.ndarray:
  """Triangular mel filters, as librosa.filters.mel.

  Returns:
    [n_fft // 2 + 1, n_mels]: multiply a power spectrum [..., freq] by it.
  """
  f_max_hz = sample_rate_hz / 2.0 if f_max_hz is None else f_max_hz
  fft_hz = jnp.linspace(0.0, sample_rate_hz / 2.0, n_fft // 2 + 1)
  mel_points = jnp.linspace(hz_to_mel(f_min_hz, htk), hz_to_mel(f_max_hz, htk), n_mels + 2)
  edges_hz = mel_to_hz(mel_points, htk)
  widths_hz = jnp.diff(edges_hz)
  distance_hz = edges_hz[:, None] - fft_hz[None, :]
  rising = -distance_hz[:-2] / widths_hz[:-1, None]
  falling = distance_hz[2:] / widths_hz[1:, None]
  weights = jnp.maximum(0.0, jnp.minimum(rising, falling))
  if slaney_norm:
    weights = weights * (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
  return weights.T


def mel_spectrogram(samples: jnp.ndarray, sample_rate_hz: int, n_fft: int = 2048,
                    hop_length: int = 512, n_mels: int = 128, f_min_hz: float = 0.0,
                    f_max_hz: float | None = None, power: float = 2.0) -> jnp.ndarray:
  """Mel spectrogram, as librosa.feature.melspectrogram with its defaults.

  Args:
    samples: [..., time] float.

  Returns:
    [..., frames, n_mels] float32.
  """
  magnitude = jnp.abs(stft(samples, n_fft=n_fft, hop_length=hop_length)) ** power
  filters = mel_filterbank(sample_rate_hz, n_fft, n_mels, f_min_hz, f_max_hz)
  return magnitude @ filters


def power_to_db(power: jnp.ndarray, amin: float = 1e-10,
                top_db: float | None = 80.0) -> jnp.ndarray:
  """10 log10(power) with floor `amin`, as librosa.power_to_db(ref=1.0).

  Args:
    power: [..., frames, bins]; `top_db` clamps each example to `top_db`
      below its own maximum over (frames, bins).
  """
  db = 10.0 * jnp.log10(jnp.maximum(power, amin))
  if top_db is None:
    return db
  peak_db = jnp.max(db, axis=(-2, -1), keepdims=True)
  return jnp.maximum(db, peak_db - top_db)


def log_mel_spectrogram(samples: jnp.ndarray, sample_rate_hz: int, n_fft: int = 2048,
                        hop_length: int = 512, n_mels: int = 128, f_min_hz: float = 0.0,
                        f_max_hz: float | None = None,
                        top_db: float | None = 80.0) -> jnp.ndarray:
  """Log-mel spectrogram in dB: [..., time] -> [..., frames, n_mels]."""
  mels = mel_spectrogram(samples, sample_rate_hz, n_fft, hop_length, n_mels, f_min_hz, f_max_hz)
  return power_to_db(mels, top_db=top_db)


class WindowedAudioConfig:
  """Mixin of embedder configs that cut audio into `window_seconds` every `window_hop_seconds`.

  The dataclass using it has `sample_rate_hz`, `window_seconds`,
  `window_hop_seconds` and `stft_hop_samples`. Windows and their hop must be
  whole numbers of STFT hops, so each window's log-mel frames are a slice of
  the whole clip's.
  """

  def check_windows(self, model_name: str) -> None:
    for name in ("window_samples", "window_hop_samples"):
      if getattr(self, name) % self.stft_hop_samples:
        raise UserError(f"{model_name} {name}={getattr(self, name)} is not a multiple of "
                        f"stft_hop_samples={self.stft_hop_samples}: change window_seconds, "
                        "window_hop_seconds or stft_hop_samples")

  @property
  def window_samples(self) -> int:
    return int(round(self.window_seconds * self.sample_rate_hz))

  @property
  def window_hop_samples(self) -> int:
    return int(round(self.window_hop_seconds * self.sample_rate_hz))

  def log_mel(self, audio: jnp.ndarray) -> jnp.ndarray:
    """audio [batch, samples] -> log-mel [batch, frames, n_mels], in dB / 20.

    Uses the config's n_fft, stft_window_samples, stft_hop_samples, n_mels and
    f_max_hz; the STFT is uncentred and there is no top_db clamp: a clamp
    depends on the loudest frame of the whole input, which would make a
    window's features depend on what surrounds it.
    """
    spectrum = stft(audio, n_fft=self.n_fft, hop_length=self.stft_hop_samples,
                    win_length=self.stft_window_samples, center=False)
    filters = mel_filterbank(self.sample_rate_hz, self.n_fft, self.n_mels, 0.0, self.f_max_hz)
    return power_to_db(jnp.square(jnp.abs(spectrum)) @ filters, top_db=None) / 20.0
