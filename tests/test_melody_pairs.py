"""Melody training pairs: voices follow the labelled notes, seeded batches, disjoint splits."""
import pathlib

import librosa
import numpy as np
import pytest

from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices

RATE_HZ = 24_000
# C D E F G C' with a rest before the last note.
TUNE = melody_voices.Notes(np.array([60, 62, 64, 65, 67, 72]),
                           np.array([0.1, 0.6, 1.1, 1.6, 2.1, 2.8]),
                           np.array([0.5, 1.0, 1.5, 2.0, 2.6, 3.8]))


def _note_pitches(audio, notes):
  """Median pYIN pitch (MIDI) over the middle of each note, and the voiced share there."""
  hop = 480
  f0, voiced, _ = librosa.pyin(audio, fmin=80, fmax=1200, sr=RATE_HZ, frame_length=2048,
                               hop_length=hop)
  times = librosa.times_like(f0, sr=RATE_HZ, hop_length=hop)
  medians, shares = [], []
  for start, end in zip(notes.start_s, notes.end_s):
    middle = (times > start + 0.1) & (times < end - 0.1)
    medians.append(np.median(librosa.hz_to_midi(f0[middle & voiced])))
    shares.append(voiced[middle].mean())
  return np.array(medians), np.array(shares)


@pytest.mark.parametrize("voice", melody_voices.VOICES)
def test_voice_sings_the_labelled_notes_when_nothing_varies(voice):
  audio = melody_voices.render(voice, TUNE, 4.0, RATE_HZ, np.random.default_rng(0),
                               melody_voices.NO_VARIATION)
  pitches, voiced = _note_pitches(audio, TUNE)
  np.testing.assert_allclose(pitches, TUNE.pitch, atol=0.2)
  assert np.all(voiced > 0.8)


@pytest.mark.parametrize("seed", [1, 2])
def test_hum_follows_the_tune_transposed_stretched_and_slightly_off_pitch(seed):
  variation = melody_voices.Variation(octave_probability=0.0)
  rng = np.random.default_rng(seed)
  audio = melody_voices.render(melody_voices.HUM, TUNE, 4.0, RATE_HZ, rng, variation)
  # Replay the generator's first two draws (stretch, transposition) to know where notes went.
  replay = np.random.default_rng(seed)
  stretch = 1.0 + replay.uniform(-0.05, 0.05)
  shift = replay.integers(-3, 4)
  stretched = melody_voices.Notes(TUNE.pitch, TUNE.start_s * stretch, TUNE.end_s * stretch)
  pitches, voiced = _note_pitches(audio, stretched)
  offsets = pitches - TUNE.pitch - shift
  # One detuning for the whole tune (<= 30 cents) plus small per-note scatter and vibrato.
  assert np.all(np.abs(offsets) < 0.6), offsets
  assert np.ptp(offsets) < 0.6, offsets
  assert np.all(voiced > 0.7)


def test_voices_are_deterministic_and_differ_by_seed():
  render = lambda seed: melody_voices.render(melody_voices.HUM, TUNE, 4.0, RATE_HZ,
                                             np.random.default_rng(seed))
  np.testing.assert_array_equal(render(3), render(3))
  assert not np.allclose(render(3), render(4))
  assert render(3).dtype == np.float32 and render(3).shape == (4 * RATE_HZ,)


@pytest.fixture
def source(synth_music_micro):
  root = pathlib.Path(synth_music_micro.data_dir).parents[2]  # <root>/synth_music/micro/1.0.0
  return melody_pairs.MelodyPairBatchSource("synth_music/micro", data_dir=str(root), batch_size=4,
                                            crop_seconds=1.0, seed=7)


def test_batches_are_seeded_resumable_and_split_across_hosts(source):
  first = [next(iter_) for iter_ in [source.get_batches()] for _ in range(2)]
  assert first[0]["anchor"].shape == first[0]["positive"].shape == (4, RATE_HZ)
  again = source.get_batches()
  for expected in first:
    got = next(again)
    for key in expected:
      np.testing.assert_array_equal(got[key], expected[key])
  resumed = next(source.get_batches(start_batch=1))
  np.testing.assert_array_equal(resumed["anchor"], first[1]["anchor"])
  halves = [next(source.get_batches(shard_index=i, num_shards=2)) for i in range(2)]
  for key in ("anchor", "positive"):
    np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), first[0][key])
  # The two sides of a row are different views, not copies.
  assert not np.allclose(first[0]["anchor"], first[0]["positive"])


def test_splits_share_no_source_piece_and_a_batch_no_piece(source):
  ids = {split: {c.source_id for c in melody_pairs.load_melody_clips(
      source.dataset, source.data_dir, split, RATE_HZ, source.crop_samples)}
         for split in ("train", "validation", "test")}
  assert all(ids.values())
  assert not ids["train"] & ids["validation"] and not ids["train"] & ids["test"]
  assert not ids["validation"] & ids["test"]
  too_big = melody_pairs.MelodyPairBatchSource(**{**source.__dict__, "batch_size": 64})
  with pytest.raises(melody_pairs.UserError, match="source pieces"):
    next(too_big.get_batches())


def test_every_view_of_a_clip_is_available_where_the_corpus_has_it(source):
  clips = melody_pairs.load_melody_clips(source.dataset, source.data_dir, "train", RATE_HZ,
                                         source.crop_samples)
  paired = [c for c in clips if c.pair_audio is not None]
  assert paired, "the micro corpus has melody pairs"
  views = source.views(paired[0], 0)
  assert melody_pairs.MIX in views and melody_pairs.PAIR in views
  for view in views:
    audio = source.render_view(view, paired[0], 0, np.random.default_rng(0))
    assert audio.shape == (source.crop_samples,) and np.all(np.isfinite(audio))


def test_first_tunes_takes_each_pieces_first_clip_with_enough_notes_in_its_start():
  def clip(source_id, starts_s):  # one 0.2 s note at each start
    starts = np.asarray(starts_s, float)
    notes = melody_voices.Notes(np.full(len(starts), 60), starts, starts + 0.2)
    return melody_pairs.MelodyClip(source_id, np.zeros(10), None, notes)

  clips = [clip("a", [0.0, 1.0]),  # two notes: not a tune
           clip("a", [0.0, 1.0, 2.0]),  # a's first clip with three
           clip("b", [0.0, 1.0, 5.0]),  # the third note starts after 4 s
           clip("a", [0.0, 0.5, 1.0, 1.5]),  # a already has its clip
           clip("c", [0.5, 1.5, 2.5]),
           clip("d", [0.0, 1.0, 2.0])]
  tunes = melody_pairs.first_tunes(clips, seconds=4.0, limit=2)
  assert len(tunes) == 2 and tunes[0][0] is clips[1] and tunes[1][0] is clips[4]
  np.testing.assert_allclose(tunes[1][1].start_s, [0.5, 1.5, 2.5])  # the notes in [0, 4 s)
  assert len(melody_pairs.first_tunes(clips, seconds=4.0, limit=10)) == 3  # a, c, d
  assert len(melody_pairs.first_tunes(clips, seconds=4.0, limit=10, min_notes=2)) == 4
