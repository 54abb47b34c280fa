"""Pitch contours (pYIN, Mauch & Dixon 2014, through librosa): the tune a melody carries.

  midi, voiced = pitch_contour(audio, sample_rate_hz)  # [frames] MIDI (NaN unvoiced), [frames] bool
  voiced_fraction(audio, sample_rate_hz)                # share of frames with a pitch

Audio is resampled to 16 kHz first: pYIN's cost grows with the rate, and a
sung, hummed or played tune's fundamental is far below 8 kHz.
"""
import librosa
import numpy as np

from musiclm_jax.audio import io

PITCH_RATE_HZ = 16_000
FRAME_SAMPLES = 2048  # 128 ms: several periods of the lowest pitch
HOP_SAMPLES = 512  # 32 ms: shorter than any note a tune is followed by
FRAMES_PER_SECOND = PITCH_RATE_HZ / HOP_SAMPLES  # frame i is centred on i / FRAMES_PER_SECOND s
FMIN_HZ = 65.0  # C2: a low hum
FMAX_HZ = 2100.0  # C7: a high whistle
# Pitch bins in semitones: coarse enough to be fast (pYIN's cost grows with the bins) and
# for white noise to come out unvoiced, fine enough to name each frame's pitch class.
RESOLUTION_SEMITONES = 0.5


def pitch_contour(audio: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray]:
  """audio [samples] -> (MIDI pitch [frames] float, NaN where unvoiced; voiced [frames] bool)."""
  y = io.resample(np.asarray(audio, np.float32), sample_rate_hz, PITCH_RATE_HZ)
  if len(y) < FRAME_SAMPLES:
    y = np.pad(y, (0, FRAME_SAMPLES - len(y)))
  f0, voiced, _ = librosa.pyin(y, fmin=FMIN_HZ, fmax=FMAX_HZ, sr=PITCH_RATE_HZ,
                               frame_length=FRAME_SAMPLES, hop_length=HOP_SAMPLES,
                               resolution=RESOLUTION_SEMITONES)
  voiced = voiced & np.isfinite(f0)
  return np.where(voiced, librosa.hz_to_midi(np.where(voiced, f0, 1.0)), np.nan), voiced


def voiced_fraction(audio: np.ndarray, sample_rate_hz: int) -> float:
  """Share of pYIN frames of audio [samples] that have a pitch: near 0 for noise or drums."""
  _, voiced = pitch_contour(audio, sample_rate_hz)
  return float(np.mean(voiced))
