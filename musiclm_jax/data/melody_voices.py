"""Synthetic voices that sing a labelled melody, as a person hums or whistles it.

The synth corpus renders melodies on instruments only; someone trying "hum a
tune, get a song" gives a voice. These renderers turn melody labels (MIDI
pitches with start and end times) into two voices, with the liberties a person
takes, so that a hum learns to meet its song:

  whistle  a sine at the pitch (often an octave up), light vibrato, breath noise;
  hum      a harmonic source shaped by the formants of a closed-mouth vowel,
           vibrato, a constant detuning of the whole tune plus a per-note
           scatter (a singer is slightly off-pitch), often an octave down;
both     transposed by a few semitones and time-stretched by a few percent
         (`Variation`), gliding between notes.

Everything is numpy and drawn from the caller's generator, so a seed fixes the audio.
"""
import dataclasses
from typing import NamedTuple

import numpy as np
import scipy.signal

WHISTLE = "whistle"
HUM = "hum"
VOICES = (WHISTLE, HUM)

_A4_HZ = 440.0
_A4_MIDI = 69
_GLIDE_SECONDS = 0.03  # time constant of the pitch glide between notes
_ATTACK_SECONDS = 0.03
_RELEASE_SECONDS = 0.06
# Closed-mouth vowels ("mm", "oo", "oh"): (formant Hz, bandwidth Hz, gain) triples.
_HUM_FORMANTS = (
    ((250.0, 120.0, 1.0), (1100.0, 200.0, 0.15), (2300.0, 250.0, 0.05)),
    ((300.0, 100.0, 1.0), (870.0, 150.0, 0.4), (2240.0, 200.0, 0.1)),
    ((500.0, 100.0, 1.0), (900.0, 150.0, 0.5), (2400.0, 200.0, 0.1)),
)
_HUM_MAX_HZ = 4000.0  # harmonics above this carry no melody and little hum energy


class Notes(NamedTuple):
  """A melody: pitch [notes] MIDI numbers, start_s and end_s [notes] seconds."""
  pitch: np.ndarray
  start_s: np.ndarray
  end_s: np.ndarray


def melody_notes(example) -> Notes:
  """The melody labels of a synth_music example (numpy, `as_numpy_iterator`) or of a token
  cache record's labels (JSON lists): example['melody'] = {'pitch', 'start_s', 'end_s'}."""
  melody = example["melody"]
  return Notes(np.asarray(melody["pitch"], np.int64), np.asarray(melody["start_s"], np.float64),
               np.asarray(melody["end_s"], np.float64))


@dataclasses.dataclass(frozen=True)
class Variation:
  """How far a rendered voice strays from the labels (each drawn uniformly per clip).

  Attributes:
    max_transpose_semitones: whole-semitone transposition in [-max, max].
    max_stretch: time-stretch factor in [1 - max, 1 + max].
    max_detune_cents: the hum's constant offset from equal temperament.
    note_scatter_cents: standard deviation of the hum's per-note pitch error.
    vibrato_hz, vibrato_cents: (low, high) of the vibrato rate and depth.
    octave_probability: chance that a whistle goes an octave up, a hum an octave down.
  """
  max_transpose_semitones: int = 3
  max_stretch: float = 0.05
  max_detune_cents: float = 30.0
  note_scatter_cents: float = 10.0
  vibrato_hz: tuple[float, float] = (4.5, 6.5)
  vibrato_cents: tuple[float, float] = (10.0, 40.0)
  octave_probability: float = 0.3


NO_VARIATION = Variation(max_transpose_semitones=0, max_stretch=0.0, max_detune_cents=0.0,
                         note_scatter_cents=0.0, vibrato_cents=(0.0, 0.0), octave_probability=0.0)


def midi_to_hz(midi: np.ndarray) -> np.ndarray:
  return _A4_HZ * 2.0 ** ((np.asarray(midi, np.float64) - _A4_MIDI) / 12.0)


def crop(notes: Notes, start_s: float, seconds: float) -> Notes:
  """The notes sounding in [start_s, start_s + seconds), times relative to start_s."""
  keep = (notes.end_s > start_s) & (notes.start_s < start_s + seconds)
  return Notes(notes.pitch[keep], np.maximum(notes.start_s[keep] - start_s, 0.0),
               np.minimum(notes.end_s[keep] - start_s, seconds))


def _pitch_and_gate(notes: Notes, num_samples: int, sample_rate_hz: int,
                    cents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(MIDI pitch [samples] gliding between notes, amplitude envelope [samples] in [0, 1])."""
  t = np.arange(num_samples) / sample_rate_hz
  pitch = np.full(num_samples, np.nan)
  gate = np.zeros(num_samples)
  for p, start, end, c in zip(notes.pitch, notes.start_s, notes.end_s, cents):
    inside = (t >= start) & (t < end)
    pitch[inside] = p + c / 100.0
    attack = np.clip((t - start) / _ATTACK_SECONDS, 0.0, 1.0)
    release = np.clip((end - t) / _RELEASE_SECONDS, 0.0, 1.0)
    gate = np.maximum(gate, np.where(inside, np.minimum(attack, release), 0.0))
  # Hold the last pitch through rests (the gate is shut there) and before the first note.
  filled = np.where(np.isnan(pitch), 0, np.arange(num_samples))
  np.maximum.accumulate(filled, out=filled)
  first = np.flatnonzero(~np.isnan(pitch))
  pitch = pitch[filled] if first.size else np.full(num_samples, float(_A4_MIDI))
  if first.size:
    pitch[:first[0]] = pitch[first[0]]
  smoothing = np.exp(-1.0 / (_GLIDE_SECONDS * sample_rate_hz))
  glided = scipy.signal.lfilter([1 - smoothing], [1, -smoothing], pitch - pitch[0]) + pitch[0]
  return glided, gate


def render(voice: str, notes: Notes, seconds: float, sample_rate_hz: int,
           rng: np.random.Generator, variation: Variation = Variation()) -> np.ndarray:
  """The melody sung by `voice` (WHISTLE or HUM): [round(seconds * rate)] float32 at RMS ~0.1.

  The transposition and stretch are drawn from `variation` and `rng`; the notes
  keep their place in time after the stretch (a note at t sounds at t * stretch).
  """
  if voice not in VOICES:
    raise ValueError(f"voice must be one of {VOICES}, got {voice!r}")
  v = variation
  num_samples = int(round(seconds * sample_rate_hz))
  stretch = 1.0 + rng.uniform(-v.max_stretch, v.max_stretch)
  shift = rng.integers(-v.max_transpose_semitones, v.max_transpose_semitones + 1)
  if rng.random() < v.octave_probability:
    shift += 12 if voice == WHISTLE else -12
  cents = np.zeros(len(notes.pitch))
  if voice == HUM:
    cents = (rng.uniform(-v.max_detune_cents, v.max_detune_cents)
             + v.note_scatter_cents * rng.normal(size=len(notes.pitch)))
  moved = Notes(notes.pitch + shift, notes.start_s * stretch, notes.end_s * stretch)
  pitch, gate = _pitch_and_gate(moved, num_samples, sample_rate_hz, cents)
  t = np.arange(num_samples) / sample_rate_hz
  rate, depth = rng.uniform(*v.vibrato_hz), rng.uniform(*v.vibrato_cents)
  pitch = pitch + depth / 100.0 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
  f0 = midi_to_hz(pitch)
  phase = 2 * np.pi * np.cumsum(f0) / sample_rate_hz + rng.uniform(0, 2 * np.pi)
  noise = rng.normal(size=num_samples)
  if voice == WHISTLE:
    audio = np.sin(phase) + 0.05 * noise
  else:
    formants = _HUM_FORMANTS[rng.integers(len(_HUM_FORMANTS))]
    audio = np.zeros(num_samples)
    for k in range(1, int(_HUM_MAX_HZ / f0.min()) + 1):
      frequency = k * f0
      envelope = sum(g / (1.0 + ((frequency - f) / (bw / 2)) ** 2) for f, bw, g in formants)
      audio += np.where(frequency < _HUM_MAX_HZ, envelope / k, 0.0) * np.sin(k * phase)
    audio += 0.02 * noise
  audio *= gate
  rms = np.sqrt(np.mean(np.square(audio)))
  return (audio * (0.1 / rms if rms > 0 else 0.0)).astype(np.float32)


def voice_tune(index: int, notes: Notes, seconds: float,
               sample_rate_hz: int) -> tuple[str, np.ndarray]:
  """(voice, audio) of tune `index` of a set as the demo's melody lines voice them: the
  voices alternate by index, and each tune's variation is drawn from a generator seeded
  with its index, so the same tune sounds the same in the demo and the benchmarks."""
  voice = VOICES[index % len(VOICES)]
  return voice, render(voice, notes, seconds, sample_rate_hz, np.random.default_rng(index))
