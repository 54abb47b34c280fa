"""Tempo, key and spectral flatness of audio, and how well tempo and key agree with labels.

  bpm = estimate_tempo_bpm(audio, sample_rate_hz)      # librosa's beat tracker
  key = estimate_key(audio, sample_rate_hz)            # Key(tonic=9, mode="minor") = "A minor"
  flatness = spectral_flatness(audio)                  # 0 (tonal) .. 1 (white noise)
  tempo_agreement([bpm...], [labelled_bpm...])         # accuracy, octave errors, other errors
  key_agreement([key...], [parse_key("A minor")...])   # accuracy, MIREX weighted score

Attribute adherence compares these with a caption's labels. Beat trackers
often lock onto half or double the labelled tempo, a different mistake from
missing the pulse, so octave errors are counted apart from other errors
(tolerance 4%, as MIREX tempo accuracy). Keys are scored exactly and with the
MIREX weights (fifth above 0.5, relative 0.3, parallel 0.2), since a near key is a
smaller mistake than an unrelated one.
"""
import dataclasses
import re
from typing import Sequence

import librosa
import numpy as np

from musiclm_jax.errors import UserError

# Onset-envelope hop for the beat tracker: 8 ms keeps tempo quantisation below 1% at 170 BPM.
ONSET_HOP_SECONDS = 0.008
# An estimate within 4% of a tempo counts as that tempo (MIREX).
TEMPO_TOLERANCE = 0.04
OCTAVE_FACTORS = (2.0, 0.5)

PITCH_CLASS_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_NATURAL_PITCH_CLASSES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_ACCIDENTALS = {"#": 1, "♯": 1, "b": -1, "♭": -1}
# Krumhansl & Kessler (1982) probe-tone ratings of the 12 pitch classes above the tonic.
MAJOR_PROFILE = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
MINOR_PROFILE = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
MODE_PROFILES = {"major": MAJOR_PROFILE, "minor": MINOR_PROFILE}


@dataclasses.dataclass(frozen=True)
class Key:
  tonic: int  # pitch class, 0 = C
  mode: str  # "major" or "minor"

  def __str__(self):
    return f"{PITCH_CLASS_NAMES[self.tonic]} {self.mode}"


def parse_key(text: str) -> Key:
  """'F# minor', 'Bb major', 'c minor' -> Key."""
  match = re.fullmatch(r"\s*([A-Ga-g])([#♯b♭]*)\s+(major|minor)\s*", text)
  if not match:
    raise UserError(f"cannot read key {text!r}: write a tonic and a mode, e.g. 'F# minor'")
  letter, accidentals, mode = match.groups()
  tonic = _NATURAL_PITCH_CLASSES[letter.upper()] + sum(_ACCIDENTALS[a] for a in accidentals)
  return Key(tonic % 12, mode)


def estimate_tempo_bpm(audio: np.ndarray, sample_rate_hz: int) -> float:
  """audio [time] -> the tempo librosa's dynamic-programming beat tracker settles on, in BPM."""
  tempo, _ = librosa.beat.beat_track(y=np.asarray(audio, np.float32), sr=sample_rate_hz,
                                     hop_length=round(ONSET_HOP_SECONDS * sample_rate_hz))
  return float(np.atleast_1d(tempo)[0])


def _rotations(profile: Sequence[float]) -> np.ndarray:
  """[12 tonics, 12 pitch classes]: row t is the profile with its tonic at pitch class t."""
  return np.stack([np.roll(profile, tonic) for tonic in range(12)])


def key_from_chroma(chroma: np.ndarray) -> Key:
  """chroma [12] (energy per pitch class, any scale) -> the key whose profile correlates best."""
  best = None
  for mode, profile in MODE_PROFILES.items():
    correlations = [np.corrcoef(chroma, rotated)[0, 1] for rotated in _rotations(profile)]
    tonic = int(np.argmax(correlations))
    if best is None or correlations[tonic] > best[0]:
      best = (correlations[tonic], Key(tonic, mode))
  return best[1]


def estimate_key(audio: np.ndarray, sample_rate_hz: int) -> Key:
  """audio [time] -> key, from the constant-Q chroma averaged over the clip (Krumhansl-Schmuckler)."""
  chroma = librosa.feature.chroma_cqt(y=np.asarray(audio, np.float32), sr=sample_rate_hz)
  return key_from_chroma(chroma.mean(axis=1))


def spectral_flatness(audio: np.ndarray) -> float:
  """audio [time] -> the mean over frames of the power spectrum's geometric over arithmetic
  mean (Wiener entropy): near 0 for tones, about 0.56 for white noise."""
  return float(librosa.feature.spectral_flatness(y=np.asarray(audio, np.float32)).mean())


def tempo_agreement(estimated_bpm: Sequence[float], labelled_bpm: Sequence[float]) -> dict[str, float]:
  """Shares of clips whose estimate is the labelled tempo, half/double it, or neither (sum to 1)."""
  estimated, labelled = np.asarray(estimated_bpm, np.float64), np.asarray(labelled_bpm, np.float64)
  if estimated.shape != labelled.shape or estimated.ndim != 1 or not estimated.size:
    raise UserError(f"{estimated.size} tempo estimates for {labelled.size} labelled tempos: "
                    f"give one estimate per labelled clip")

  def near(factor):
    return np.abs(estimated - factor * labelled) <= TEMPO_TOLERANCE * factor * labelled

  correct = near(1.0)
  octave = ~correct & np.any([near(f) for f in OCTAVE_FACTORS], axis=0)
  return {"accuracy": float(correct.mean()), "octave_error": float(octave.mean()),
          "other_error": float((~correct & ~octave).mean())}


def key_score(estimated: Key, labelled: Key) -> float:
  """MIREX key score: 1 same key, 0.5 a fifth above in the same mode, 0.3 relative, 0.2 parallel."""
  interval = (estimated.tonic - labelled.tonic) % 12
  if estimated.mode == labelled.mode:
    return {0: 1.0, 7: 0.5}.get(interval, 0.0)
  # Relative keys share their notes: the minor tonic is 9 semitones above the major one.
  relative = 9 if labelled.mode == "major" else 3
  return {relative: 0.3, 0: 0.2}.get(interval, 0.0)


def key_agreement(estimated: Sequence[Key], labelled: Sequence[Key]) -> dict[str, float]:
  """Share of exact keys and the mean MIREX weighted score over clips."""
  if len(estimated) != len(labelled) or not estimated:
    raise UserError(f"{len(estimated)} key estimates for {len(labelled)} labelled keys: "
                    f"give one estimate per labelled clip")
  scores = [key_score(e, l) for e, l in zip(estimated, labelled)]
  return {"accuracy": float(np.mean([s == 1.0 for s in scores])),
          "weighted_score": float(np.mean(scores))}
