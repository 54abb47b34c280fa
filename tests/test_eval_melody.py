"""Melody retrieval: a pitch oracle finds every tune; any embedding scores as a direct count."""
import numpy as np

from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices
from musiclm_jax.eval import melody as melody_eval

RATE_HZ = 24_000
SOURCE = melody_pairs.MelodyPairBatchSource("unused", crop_seconds=1.0,
                                            variation=melody_voices.NO_VARIATION)


def _pieces(count=20):
  """Piece i holds one pitch (60 + i) twice: a sine mix over a quiet drone, a buzzier pair."""
  t = np.arange(2 * RATE_HZ) / RATE_HZ
  clips = []
  for i in range(count):
    f0 = melody_voices.midi_to_hz(60 + i)
    mix = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * np.sin(2 * np.pi * 55.0 * t)
    pair = sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t) for k in (1, 2, 3))
    notes = melody_voices.Notes(np.array([60 + i] * 2), np.array([0.0, 0.5]), np.array([0.45, 1.5]))
    clips.append(melody_pairs.MelodyClip(f"piece{i}", mix.astype(np.float32),
                                         pair.astype(np.float32) if i % 2 == 0 else None, notes))
  return clips


def _pitch_oracle(audio):
  """One-hot of the MIDI pitch of the strongest spectral peak: melody and nothing else."""
  spectrum = np.abs(np.fft.rfft(audio, axis=-1))
  peak_hz = np.argmax(spectrum, axis=-1) * RATE_HZ / audio.shape[-1]
  midi = np.round(69 + 12 * np.log2(np.maximum(peak_hz, 1.0) / 440.0)).astype(int)
  return np.eye(128)[np.clip(midi, 0, 127)]


def test_a_pitch_oracle_finds_every_tune_among_20_pieces():
  result = melody_eval.melody_retrieval(_pitch_oracle, _pieces(), SOURCE)
  assert result["num_candidates"] == 20 and result["chance_recall@1"] == 0.05
  assert result["pair"]["num_queries"] == 10 and result["pair"]["recall@1"] == 1.0
  assert result["whistle"]["num_queries"] == 20 and result["whistle"]["recall@1"] == 1.0


def test_recall_equals_a_direct_count_for_an_arbitrary_embedding():
  projection = np.random.default_rng(0).normal(size=(SOURCE.crop_samples, 6))
  embed = lambda audio: audio @ projection
  clips = _pieces()
  result = melody_eval.melody_retrieval(embed, clips, SOURCE)
  candidates = np.stack([embed(c.audio[:SOURCE.crop_samples]) for c in clips])
  for view in melody_eval.QUERY_VIEWS:
    hits = []
    for index, clip in enumerate(clips):
      if view in SOURCE.views(clip, 0):
        rng = np.random.default_rng([SOURCE.seed, index])
        query = embed(SOURCE.render_view(view, clip, 0, rng))
        hits.append(np.argmax(candidates @ query) == index)
    assert result[view]["recall@1"] == np.mean(hits), view
