"""Captions and aspect lists say exactly what the labels (and so the audio) hold."""
import re

import numpy as np
import pytest

from musiclm_jax.data.synth_music import caption as caption_lib
from musiclm_jax.data.synth_music import compose
from musiclm_jax.data.synth_music import labels
from musiclm_jax.data.synth_music import scores
from musiclm_jax.data.synth_music import styles

INSTRUMENT_VOCABULARY = set(labels.INSTRUMENT_NAMES.values()) | set(labels.PERCUSSION_NAMES)
REQUIRED_GENRES = {"rock", "jazz", "classical", "electronic", "folk", "ambient", "hip-hop", "latin"}


def assert_caption_agrees(caption: str, aspects: list[str], genre: str, instruments: list[str],
                          tempo_bpm: float, key: str, mode: str, mood: list[str]) -> None:
  """Parses a caption and its aspects and checks every fact against the labels."""
  assert genre in caption and aspects[0] == genre
  assert not re.search(r"\b[Aa] [aeiou]", caption), f"wrong article in {caption!r}"
  assert int(re.search(r"at (\d+) bpm", caption).group(1)) == round(tempo_bpm)
  assert f"{round(tempo_bpm)} bpm" in aspects
  assert re.search(r"in ([A-G][b#]? (?:major|minor))", caption).group(1) == key
  assert key in aspects and key.endswith(mode)
  assert [a for a in aspects if a in INSTRUMENT_VOCABULARY] == instruments
  # Every instrument is named, and no other instrument is.
  rest = caption.lower()
  for name in sorted(instruments, key=len, reverse=True):
    assert name in rest, f"{name!r} missing from {caption!r}"
    rest = rest.replace(name, "")
  assert not [name for name in INSTRUMENT_VOCABULARY if name in rest], caption
  tempo_word = re.search(r"The tempo is (slow|medium|fast)", caption).group(1)
  expected_tempo_word = ("slow" if tempo_bpm < labels.SLOW_BELOW_BPM else
                         "fast" if tempo_bpm > labels.FAST_ABOVE_BPM else "medium")
  assert tempo_word == expected_tempo_word
  assert f"{tempo_word} tempo" in aspects
  said_mood = re.search(r"the mood is (\w+) and (\w+)", caption).groups()
  assert sorted(said_mood) == sorted(mood)
  assert set(mood) <= set(labels.MOOD_WORDS[(tempo_word, mode)])
  assert set(mood) <= set(aspects)


def _clip_caption(piece, start_s=0.0, seconds=4.0, seed=0):
  clip = labels.clip_labels(piece, start_s, seconds)
  return clip, caption_lib.write_caption(clip, np.random.default_rng(seed))


def test_at_least_the_required_genres_exist():
  assert REQUIRED_GENRES <= set(styles.GENRES)


@pytest.mark.parametrize("genre", sorted(styles.GENRES))
def test_template_captions_agree_with_labels(genre):
  for seed in range(4):
    piece = compose.compose(genre, 8.0, np.random.default_rng(seed), f"{genre}/{seed}")
    for start_s in (0.0, 4.0):
      clip, caption = _clip_caption(piece, start_s, seed=seed)
      assert_caption_agrees(caption.text, caption.aspect_list, piece.genre, clip.instruments,
                            piece.tempo_bpm, piece.key, piece.mode, caption.mood)
      assert ("drums" in clip.instruments or "latin percussion" in clip.instruments) == bool(
          styles.GENRES[genre].drums)


@pytest.mark.parametrize("kind,path", [(scores.CHORALE, "bach/bwv10.7.mxl"),
                                       (scores.FOLK_TUNE, "ryansMammoth/7thRegimentReel.abc")])
def test_score_captions_agree_with_labels(kind, path):
  for seed in range(3):
    piece = scores.score_piece(kind, path, 6.0, np.random.default_rng(seed), path)
    clip, caption = _clip_caption(piece, seed=seed)
    assert_caption_agrees(caption.text, caption.aspect_list, piece.genre, clip.instruments,
                          piece.tempo_bpm, piece.key, piece.mode, caption.mood)
    assert piece.style in caption.text


def test_caption_checker_catches_a_wrong_instrument():
  piece = compose.compose("jazz", 4.0, np.random.default_rng(0), "jazz/0")
  clip, caption = _clip_caption(piece)
  wrong = caption.text.replace(clip.instruments[0], "bagpipe")
  with pytest.raises(AssertionError):
    assert_caption_agrees(wrong, caption.aspect_list, piece.genre, clip.instruments,
                          piece.tempo_bpm, piece.key, piece.mode, caption.mood)


def test_labels_list_only_parts_that_sound_in_the_clip():
  notes = [labels.Note(60, 0.0, 1.0)]
  piece = labels.Piece(
      source_id="x", source="template", genre="pop", style="pop", tempo_bpm=100, key_tonic="C",
      mode="major", duration_s=4.0, parts=[
          labels.Part("melody", 73, [labels.Note(72, t, t + 0.5) for t in (0.0, 2.5, 3.0)]),
          labels.Part("harmony", 0, notes, "block"),
          labels.Part("bass", 33, [labels.Note(36, 1.99, 2.5)], "root_fifth")])
  first = labels.clip_labels(piece, 0.0, 2.0)
  second = labels.clip_labels(piece, 2.0, 2.0)
  assert first.instruments == ["flute", "piano"]  # the bass note starts too late to sound
  assert second.instruments == ["flute", "bass guitar"]
  assert [(n.pitch, n.start_s, n.end_s) for n in second.melody] == [(72, 0.5, 1.0), (72, 1.0, 1.5)]


def test_composition_is_seeded_and_follows_its_key():
  first = compose.compose("folk", 8.0, np.random.default_rng(7), "a")
  again = compose.compose("folk", 8.0, np.random.default_rng(7), "a")
  assert first == again
  tonic = labels.NOTE_NAMES.index(first.key_tonic)
  scale = styles.MAJOR_SCALE if first.mode == "major" else styles.MINOR_SCALE
  in_key = {(tonic + s) % 12 for s in scale}
  assert all(n.pitch % 12 in in_key for n in first.melody_part.notes)
