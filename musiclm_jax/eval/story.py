"""Story mode adherence: does the label judge's genre over time follow a story's segments?

  _, (_, rate, _), stories = clip_sets.read_infer_lines("runs/demo/samples")
  figures = story_report(stories, rate, reference, tagger, judge)   # or one line saying why not
  figures["generated"]["own_segment_accuracy"], figures["real"]["own_segment_accuracy"]

A story line changes its prompt at segment boundaries; each segment's text is a
caption of the reference split, so its genre is that clip's label. Each story
clip is cut into consecutive windows of the judge's tagger input length (musicnn:
3 s, 187 frames at 16 kHz) from its start: a window is the unit the judge's
features are made of (a shorter one is repeat-padded, a longer one averages
windows and blurs the change). A window that straddles a segment boundary, or
runs past the clip's end, is left out: it has no one segment to answer to. The
judge (eval/label_judge.py) predicts each window's genre from the tagger's
penultimate features of that window alone:

  own    the predicted genre is its segment's genre
  other  it is the genre of the segment a derangement pairs its segment with
         (for two segments, the other one): the control, what following the
         wrong segment would score

A story is skipped, and counted, when a segment is no reference caption, when a
segment shares its genre with the segment it is paired with (no change to
follow), or when no window lies inside one segment. The p-value is one-sided,
paired over windows (own minus other, sign flips; eval/significance.py): windows
of one clip are not independent, so it is optimistic with few stories.

The same measure on real audio (`story_report`'s "real"): every story rebuilt from
its segments' reference clips, each cut (or looped, when shorter) to its segment's
length: what a generator that played the captioned clips would score with this judge.
"""
import functools
from typing import Callable, Sequence

import numpy as np

from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import prompt_adherence
from musiclm_jax.eval import significance

NO_STORIES = "no story line in the musiclm-infer folder"
NOT_A_CAPTION = "a segment not a reference caption"
ONE_SEGMENT = "one segment"
SAME_GENRE = "segments of one genre"


def window_segments(num_samples: int, sample_rate_hz: int, segment_seconds: Sequence[float],
                    window_seconds: float) -> tuple[np.ndarray, np.ndarray]:
  """(start [windows] in samples, segment index [windows]) of the consecutive `window_seconds`
  windows from a clip's start that lie inside one segment; windows straddling a boundary or
  running past the clip's or the last segment's end are left out."""
  window = round(window_seconds * sample_rate_hz)
  starts = np.arange(num_samples // window) * window
  segment_ends = np.round(np.cumsum(segment_seconds) * sample_rate_hz)  # [segments] samples
  first = np.searchsorted(segment_ends, starts, side="right")  # segment of the first sample
  last = np.searchsorted(segment_ends, starts + window - 1, side="right")
  inside = (first == last) & (last < len(segment_ends))
  return starts[inside], first[inside]


def tagger_features(tagger, windows: np.ndarray, sample_rate_hz: int) -> np.ndarray:
  """windows [windows, samples] -> the judge's features [windows, D] (musicnn: 200): the
  tagger's (`eval/musicnn.MusicnnTagger`) penultimate layer of each, averaged over the tagger
  windows in it (one, for windows of its input length), all in one network call."""
  return tagger.batched(windows, sample_rate_hz)["penultimate"].mean(axis=1)


def story_adherence(stories: Sequence[clip_sets.Story], sample_rate_hz: int,
                    genre_of: dict[str, str], window_features: Callable[[np.ndarray, int], np.ndarray],
                    judge: label_judge.LabelJudge, window_seconds: float,
                    seed: int = 0) -> dict | str:
  """The judge's genre per window against the stories' segments (see the module docstring).

  stories: audio [time] at sample_rate_hz each; genre_of: reference caption -> genre;
  window_features: (audio [windows, window samples], rate) -> the judge's features
  [windows, D], called once per story.
  Returns {"window_seconds", "own_segment_accuracy", "other_segment_accuracy", "p_value",
  "stories", "windows" (scored), "skipped": {reason: stories}, "timelines": per scored
  story {"segments": [{"text", "genre", "seconds"}], "start_s" [windows], "predicted"
  [windows] (genre), "segment" [windows] (index)}}, or one line saying why no story scored.
  """
  window = round(window_seconds * sample_rate_hz)
  no_window = f"no {window_seconds:.3g} s window inside one segment"
  skipped = dict.fromkeys((ONE_SEGMENT, NOT_A_CAPTION, SAME_GENRE, no_window), 0)
  own, other, timelines = [], [], []
  for story in stories:
    texts = [text for text, _ in story.segments]
    if len(texts) < 2:
      skipped[ONE_SEGMENT] += 1
      continue
    if not all(text in genre_of for text in texts):
      skipped[NOT_A_CAPTION] += 1
      continue
    genres = np.asarray([genre_of[text] for text in texts])
    # One pairing per segment count: a story and its real rebuild get the same control.
    partner = prompt_adherence.derangement(len(texts), seed)  # [segments]
    if np.any(genres == genres[partner]):
      skipped[SAME_GENRE] += 1
      continue
    starts, segment = window_segments(len(story.audio), sample_rate_hz,
                                      [seconds for _, seconds in story.segments], window_seconds)
    if not len(starts):
      skipped[no_window] += 1
      continue
    features = window_features(np.stack([story.audio[s:s + window] for s in starts]),
                               sample_rate_hz)
    predicted = np.asarray(label_judge.predict(judge, features)["genre"])
    own.append(predicted == genres[segment])
    other.append(predicted == genres[partner[segment]])
    timelines.append({"segments": [{"text": text, "genre": str(genre), "seconds": seconds}
                                   for (text, seconds), genre in zip(story.segments, genres)],
                      "start_s": (starts / sample_rate_hz).tolist(), "predicted": predicted.tolist(),
                      "segment": segment.tolist()})
  if not timelines:
    counts = ", ".join(f"{n} with {why}" for why, n in skipped.items() if n)
    return (f"no story line could be scored ({counts or 'none given'}): story segments need "
            f"captions of the reference split of two genres, each at least {window_seconds:.3g} s")
  own, other = np.concatenate(own).astype(np.float64), np.concatenate(other).astype(np.float64)
  return {"window_seconds": window_seconds, "own_segment_accuracy": float(own.mean()),
          "other_segment_accuracy": float(other.mean()),
          "p_value": significance.permutation_p_value(own, other, paired=True, seed=seed),
          "stories": len(timelines), "windows": len(own),
          "skipped": {why: n for why, n in skipped.items() if n}, "timelines": timelines}


def real_stories(stories: Sequence[clip_sets.Story],
                 reference: clip_sets.Reference) -> list[clip_sets.Story]:
  """Each story whose segments are all reference captions, rebuilt from their reference clips,
  each cut to its segment's length or looped to it when shorter (at the reference's rate)."""
  by_text = {text: i for i, text in enumerate(reference.texts)}
  rebuilt = []
  for story in stories:
    if all(text in by_text for text, _ in story.segments):
      rebuilt.append(clip_sets.Story(np.concatenate([
          np.resize(reference.audio[by_text[text]], round(seconds * reference.sample_rate_hz))
          for text, seconds in story.segments]), story.segments))
  return rebuilt


def story_report(stories: Sequence[clip_sets.Story], sample_rate_hz: int | None,
                 reference: clip_sets.Reference, tagger, judge: label_judge.LabelJudge,
                 seed: int = 0) -> dict | str:
  """{"generated": story_adherence of the story clips, "real": the same of `real_stories`}, or
  one line saying why there is none. tagger: the musicnn tagger whose penultimate features
  the judge reads (`eval/musicnn.MusicnnTagger`)."""
  if not stories:
    return NO_STORIES
  if reference.genre is None:
    return "the reference split has no genre labels"
  genre_of = dict(zip(reference.texts, reference.genre))
  window_seconds = tagger.window_seconds
  window_features = functools.partial(tagger_features, tagger)
  generated = story_adherence(stories, sample_rate_hz, genre_of, window_features, judge,
                              window_seconds, seed)
  if isinstance(generated, str):
    return generated
  return {"generated": generated,
          "real": story_adherence(real_stories(stories, reference), reference.sample_rate_hz,
                                  genre_of, window_features, judge, window_seconds, seed)}
