"""Story adherence: windows inside one segment, own vs other segment's genre, skips, real baseline.

A stand-in tagger and judge: "audio" of genre A hovers around +1, of genre B around -1, C
around 0 with a large spread; a window's feature is its mean and spread, and the judge is
label_judge.fit on such features, so it tells A, B and C apart.
"""
import json

import numpy as np
import pytest

from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import report as report_lib
from musiclm_jax.eval import story

RATE_HZ = 100
LEVEL = {"A": (1.0, 0.3), "B": (-1.0, 0.3), "C": (0.0, 2.0)}  # genre -> (mean, spread) of its audio
GENRE_OF = {"an A caption": "A", "another A caption": "A", "a B caption": "B", "a C caption": "C"}


def _audio(genre, seconds, seed):
  mean, spread = LEVEL[genre]
  return np.random.default_rng(seed).normal(mean, spread, round(seconds * RATE_HZ))


def _features(audio, rate):
  del rate
  return np.asarray([audio.mean(), audio.std()])


def _batch_features(windows, rate):
  return np.stack([_features(window, rate) for window in windows])


class FakeTagger:
  """1 s input windows whose penultimate features are `_features`."""
  window_seconds = 1.0

  def batched(self, clips, rate):  # each clip one input window
    return {"penultimate": _batch_features(clips, rate)[:, None]}


@pytest.fixture(scope="module")
def judge():
  genres = ["A", "B", "C"] * 20
  rows = np.stack([_features(_audio(g, 1.0, seed), RATE_HZ) for seed, g in enumerate(genres)])
  rng = np.random.default_rng(0)
  moods = [["calm", "tense"][i] for i in rng.integers(2, size=len(genres))]
  instruments = [("piano",) if on else () for on in rng.integers(2, size=len(genres))]
  return label_judge.fit(rows, genres, instruments, moods)


def _story(segments, audio_genres, seed=0):
  """A story of (caption, seconds) segments whose audio is of `audio_genres`, one per segment."""
  audio = np.concatenate([_audio(g, seconds, seed + k)
                          for k, ((_, seconds), g) in enumerate(zip(segments, audio_genres))])
  return clip_sets.Story(audio, tuple(segments))


def _adherence(stories, judge, seed=0):
  return story.story_adherence(stories, RATE_HZ, GENRE_OF, _batch_features, judge, 1.0, seed=seed)


def test_windows_straddling_a_boundary_or_the_end_are_left_out():
  # 6 s at 100 Hz, 1 s windows from 0: the boundary at 2.5 s falls inside window 2 (2-3 s).
  starts, segment = story.window_segments(600, RATE_HZ, (2.5, 3.5), 1.0)
  assert starts.tolist() == [0, 100, 300, 400, 500] and segment.tolist() == [0, 0, 1, 1, 1]
  # A boundary on a window edge drops nothing; a clip 10 samples short loses its last window.
  starts, segment = story.window_segments(590, RATE_HZ, (2.0, 4.0), 1.0)
  assert starts.tolist() == [0, 100, 200, 300, 400] and segment.tolist() == [0, 0, 1, 1, 1]
  # Audio past the last segment's end is in no segment.
  assert story.window_segments(800, RATE_HZ, (2.0, 4.0), 1.0)[0].tolist() == [0, 100, 200, 300, 400, 500]
  # 3 s windows: 0-3 s straddles the boundary, 3-6 s the last segment's end at 5 s.
  assert story.window_segments(600, RATE_HZ, (2.5, 2.5), 3.0)[0].size == 0


def test_a_story_that_follows_its_segments_scores_own_and_the_swapped_one_other(judge):
  segments = [("an A caption", 5.5), ("a B caption", 5.5)]
  follows = _adherence([_story(segments, "AB")], judge)
  # 11 s, 1 s windows: windows 0-4 in segment 0, 5 (5-6 s) straddles, 6-10 in segment 1.
  assert follows["windows"] == 10 and follows["stories"] == 1
  assert follows["own_segment_accuracy"] == 1.0 and follows["other_segment_accuracy"] == 0.0
  assert follows["p_value"] == pytest.approx(1 / 2 ** 10)  # exact: only the observed signs reach it
  timeline = follows["timelines"][0]
  assert timeline["start_s"] == [0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0, 10.0]
  assert timeline["predicted"] == ["A"] * 5 + ["B"] * 5
  assert timeline["segment"] == [0] * 5 + [1] * 5
  assert [s["genre"] for s in timeline["segments"]] == ["A", "B"]

  swapped = _adherence([_story(segments, "BA")], judge)  # the music plays the other segment
  assert swapped["own_segment_accuracy"] == 0.0 and swapped["other_segment_accuracy"] == 1.0
  assert swapped["p_value"] == 1.0
  json.dumps(follows)  # eval.json holds it


def test_three_segments_take_their_control_from_a_derangement(judge):
  segments = [("an A caption", 3.0), ("a B caption", 3.0), ("a C caption", 3.0)]
  figures = _adherence([_story(segments, "ABC")], judge)
  assert figures["windows"] == 9 and figures["own_segment_accuracy"] == 1.0
  assert figures["other_segment_accuracy"] == 0.0  # every partner is another genre


def test_stories_that_cannot_show_a_change_are_skipped_and_counted(judge):
  same = _story([("an A caption", 3.0), ("another A caption", 3.0)], "AA")
  unknown = _story([("an A caption", 3.0), ("no caption of the split", 3.0)], "AB")
  single = _story([("an A caption", 3.0)], "A")
  short = _story([("an A caption", 0.5), ("a B caption", 0.5)], "AB")
  scored = _story([("an A caption", 2.0), ("a B caption", 2.0)], "AB")
  figures = _adherence([same, unknown, single, short, scored], judge)
  assert figures["stories"] == 1 and figures["windows"] == 4
  assert figures["skipped"] == {story.SAME_GENRE: 1, story.NOT_A_CAPTION: 1, story.ONE_SEGMENT: 1,
                                "no 1 s window inside one segment": 1}
  reason = _adherence([same, short], judge)
  assert isinstance(reason, str) and "\n" not in reason
  assert "1 with segments of one genre" in reason and "at least 1 s" in reason


def test_report_scores_real_stories_of_the_same_captions_looped_to_the_segments(judge, tmp_path):
  texts = list(GENRE_OF)
  reference = clip_sets.Reference([_audio(GENRE_OF[t], 1.5, 100 + i) for i, t in enumerate(texts)],
                                  RATE_HZ, texts, None, None, genre=[GENRE_OF[t] for t in texts])
  segments = [("an A caption", 4.0), ("a B caption", 3.0)]
  # Music that ignores its prompt: genre C throughout.
  generated = [_story(segments, "CC")]
  rebuilt = story.real_stories(generated, reference)
  assert len(rebuilt) == 1 and len(rebuilt[0].audio) == 7 * RATE_HZ
  np.testing.assert_array_equal(rebuilt[0].audio[150:300], reference.audio[0][:150])  # looped
  np.testing.assert_array_equal(rebuilt[0].audio[400:550], reference.audio[2])
  figures = story.story_report(generated, RATE_HZ, reference, FakeTagger(), judge)
  assert figures["generated"]["own_segment_accuracy"] == 0.0
  assert figures["real"]["own_segment_accuracy"] == 1.0
  assert figures["real"]["other_segment_accuracy"] == 0.0 and figures["real"]["windows"] == 7
  assert story.story_report([], None, reference, FakeTagger(), judge) == story.NO_STORIES
  unlabelled = clip_sets.Reference(reference.audio, RATE_HZ, texts, None, None)
  assert "no genre labels" in story.story_report(generated, RATE_HZ, unlabelled, FakeTagger(), judge)

  report = {"sets": {"generated": {"title": "generated", "clips": 1, "paired_clips": 1}},
            "metrics": {}, "unavailable": {}, "sets_not_given": {}, "notes": {}, "fad_curves": {},
            "story": figures}
  line = report_lib.headline(report)
  assert "own segment 0.00 / other segment 0.00" in line and "real own segment 1.00" in line
  page = open(report_lib.write_html(str(tmp_path / "eval.html"), report)).read()
  assert "Story mode" in page and "0 s C [0]" in page


def test_one_tagger_call_per_story_gives_each_window_its_own_features():
  pytest.importorskip("musicnn", reason="musicnn is not installed")
  from musiclm_jax.eval import musicnn  # pylint: disable=g-import-not-at-top
  tagger = musicnn.MusicnnTagger("MTT_musicnn")
  rate = 24_000
  window = round(tagger.window_seconds * rate)
  t = np.arange(4 * window) / rate  # a tone gliding up, with noise: every window differs
  audio = 0.3 * np.sin(2 * np.pi * (200 + 100 * t) * t) + np.random.default_rng(0).normal(
      0, 0.05, len(t))
  windows = audio.reshape(4, window).astype(np.float32)
  batched = story.tagger_features(tagger, windows, rate)
  one_by_one = np.stack([tagger(w, rate)["penultimate"].mean(axis=0) for w in windows])
  assert batched.shape == (4, 200)
  np.testing.assert_allclose(batched, one_by_one, rtol=1e-4, atol=1e-4)
  assert np.abs(one_by_one - one_by_one[0]).max() > 0.1  # the windows' features differ
