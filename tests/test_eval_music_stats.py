"""Tempo and key estimation recover the labels of synthetic clips, and the agreement metrics
reject wrong labels."""
import numpy as np
import pytest

from musiclm_jax.errors import UserError
from musiclm_jax.eval import music_stats
from musiclm_jax.eval.music_stats import Key

SAMPLE_RATE_HZ = 16000


def _click_track(tempo_bpm, seconds=12.0):
  """[time] 1 kHz clicks on every beat, the first of each bar louder."""
  audio = np.zeros(int(seconds * SAMPLE_RATE_HZ), np.float32)
  n = np.arange(int(0.03 * SAMPLE_RATE_HZ))
  click = np.sin(2 * np.pi * 1000 * n / SAMPLE_RATE_HZ) * np.exp(-n / (0.005 * SAMPLE_RATE_HZ))
  for beat, start_s in enumerate(np.arange(0.0, seconds - 0.05, 60.0 / tempo_bpm)):
    start = int(start_s * SAMPLE_RATE_HZ)
    audio[start:start + len(click)] += (1.0 if beat % 4 == 0 else 0.6) * click[:len(audio) - start]
  return audio


def _tone(midi_pitch, seconds):
  t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
  frequency_hz = 440.0 * 2 ** ((midi_pitch - 69) / 12)
  return sum(np.sin(2 * np.pi * frequency_hz * k * t) / k ** 1.5 for k in (1, 2, 3, 4)) * np.exp(-1.5 * t)


def _cadence(key, chord_seconds=2.0):
  """[time] I-IV-V-I (minor: i-iv-V-i, the V with its leading tone) in `key`, twice, with a bass."""
  third = 4 if key.mode == "major" else 3
  chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)] * 2
  return 0.1 * np.concatenate([sum(_tone(60 + key.tonic + i, chord_seconds) for i in chord)
                               + _tone(48 + key.tonic + chord[0], chord_seconds)
                               for chord in chords]).astype(np.float32)


TEMPOS_BPM = (72.0, 96.0, 120.0, 150.0)


@pytest.fixture(scope="module")
def estimated_tempos():
  return [music_stats.estimate_tempo_bpm(_click_track(bpm), SAMPLE_RATE_HZ) for bpm in TEMPOS_BPM]


def test_beat_tracker_recovers_click_track_tempos(estimated_tempos):
  np.testing.assert_allclose(estimated_tempos, TEMPOS_BPM, rtol=0.02)
  assert music_stats.tempo_agreement(estimated_tempos, TEMPOS_BPM) == {
      "accuracy": 1.0, "octave_error": 0.0, "other_error": 0.0}


def test_tempo_agreement_fails_on_wrong_labels_and_counts_octaves_apart(estimated_tempos):
  assert music_stats.tempo_agreement(estimated_tempos, [1.15 * t for t in TEMPOS_BPM]) == {
      "accuracy": 0.0, "octave_error": 0.0, "other_error": 1.0}
  halved = [t / 2 for t in TEMPOS_BPM[:2]] + [t * 2 for t in TEMPOS_BPM[2:]]
  assert music_stats.tempo_agreement(estimated_tempos, halved)["octave_error"] == 1.0
  with pytest.raises(UserError, match="one estimate per labelled clip"):
    music_stats.tempo_agreement([100.0], [100.0, 90.0])


KEYS = (Key(0, "major"), Key(9, "minor"), Key(6, "major"), Key(3, "minor"), Key(10, "major"),
        Key(4, "minor"))


def test_key_estimator_recovers_cadence_keys():
  estimated = [music_stats.estimate_key(_cadence(key), SAMPLE_RATE_HZ) for key in KEYS]
  assert [str(k) for k in estimated] == [str(k) for k in KEYS]
  assert music_stats.key_agreement(estimated, KEYS) == {"accuracy": 1.0, "weighted_score": 1.0}


def test_key_agreement_fails_on_wrong_labels_with_mirex_weights():
  tritone = [Key((k.tonic + 6) % 12, k.mode) for k in KEYS]
  assert music_stats.key_agreement(KEYS, tritone) == {"accuracy": 0.0, "weighted_score": 0.0}
  # Estimated key vs label: a fifth above, relative minor/major, parallel.
  assert music_stats.key_score(Key(7, "major"), Key(0, "major")) == 0.5
  assert music_stats.key_score(Key(5, "major"), Key(0, "major")) == 0.0
  assert music_stats.key_score(Key(9, "minor"), Key(0, "major")) == 0.3
  assert music_stats.key_score(Key(0, "major"), Key(9, "minor")) == 0.3
  assert music_stats.key_score(Key(0, "minor"), Key(0, "major")) == 0.2


def test_parse_key_reads_any_spelling():
  assert music_stats.parse_key("F# minor") == music_stats.parse_key("Gb minor") == Key(6, "minor")
  assert music_stats.parse_key("Eb major") == Key(3, "major") and str(Key(3, "major")) == "Eb major"
  assert music_stats.parse_key("B# major") == Key(0, "major")
  with pytest.raises(UserError, match="e.g. 'F# minor'"):
    music_stats.parse_key("H dorian")


def test_spectral_flatness_is_the_geometric_over_arithmetic_mean_power():
  rng = np.random.default_rng(0)
  noise = rng.normal(size=SAMPLE_RATE_HZ).astype(np.float32)
  power = np.abs(np.fft.rfft(noise[:2048] * np.hanning(2049)[:2048])) ** 2
  assert music_stats.spectral_flatness(noise) == pytest.approx(
      np.exp(np.mean(np.log(power))) / np.mean(power), abs=0.1)
  assert 0.45 < music_stats.spectral_flatness(noise) < 0.65  # exp(-Euler's gamma) for white noise
  assert music_stats.spectral_flatness(_tone(69, 1.0)) < 0.01
