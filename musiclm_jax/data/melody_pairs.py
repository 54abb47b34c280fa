"""Pairs of clips with one melody and different acoustics: the melody embedder's `BatchSource`.

Every clip of the synth corpus offers views of its melody, time-aligned:
  mix       the clip as rendered (melody, accompaniment, drums);
  pair      the same notes on other instruments (clips with `has_melody_pair`);
  whistle, hum  the labelled melody notes sung by `melody_voices`, transposed
            and stretched a little.
Row i of a batch is two different views of one crop of one clip:

  source = MelodyPairBatchSource("synth_music/tiny", data_dir="runs/tfds", batch_size=16,
                                 crop_seconds=4.0)
  next(source.get_batches())  # {'anchor': [16, 96000] f32, 'positive': [16, 96000] f32}

A batch never holds two clips of one source piece (a piece repeats its phrases,
so another clip of it would be a false negative). Splits are the corpus's,
which share no source piece. Batches are seeded like `AudioBatchSource`'s
((seed, batch) alone), each host keeps its rows; evaluation takes the first
clip of each piece once, mix against a voice or the pair.
"""
import dataclasses
import functools
from typing import Iterator, NamedTuple, Sequence

from absl import logging
import numpy as np

from musiclm_jax.data import audio_batches
from musiclm_jax.data import melody_voices
from musiclm_jax.data import tfds_audio
from musiclm_jax.data.pipeline import Batch
from musiclm_jax.errors import UserError

MIN_TUNE_NOTES = 3  # in a clip a melody line hums: a tune, not a held note

MIX = "mix"
PAIR = "pair"
# A voice needs a tune, not a stray note: at least this many notes in the crop.
_MIN_VOICE_NOTES = 2


class MelodyClip(NamedTuple):
  """One clip: its piece, audio [time], other-instrument audio [time] or None, melody notes."""
  source_id: str
  audio: np.ndarray
  pair_audio: np.ndarray | None
  notes: melody_voices.Notes


@dataclasses.dataclass(frozen=True)
class MelodyPairBatchSource(audio_batches.AudioBatchSource):
  """(anchor, positive) crops of one melody (see the module docstring).

  Attributes (besides AudioBatchSource's; crop_seconds is the embedder's window):
    variation: how far the whistle and hum stray from the labels.
  """
  crop_seconds: float = 4.0
  variation: melody_voices.Variation = melody_voices.Variation()

  def get_batches(self, shard_index: int = 0, num_shards: int = 1,
                  start_batch: int = 0) -> Iterator[Batch]:
    """Yields {'anchor', 'positive'} [batch_size // num_shards, crop_samples] from start_batch."""
    if self.batch_size % num_shards:
      raise UserError(f"batch_size {self.batch_size} is not divisible by {num_shards} hosts")
    clips = load_melody_clips(self.dataset, self.data_dir, self.split, self.sample_rate_hz,
                              self.crop_samples)
    pieces = _clips_by_piece(clips)
    rows = self.batch_size // num_shards
    mine = range(shard_index * rows, (shard_index + 1) * rows)
    if self.repeat:
      if len(pieces) < self.batch_size:
        raise UserError(f"{self.dataset}/{self.split} has {len(pieces)} source pieces, fewer than "
                        f"batch_size {self.batch_size}: a batch takes one clip per piece; "
                        "lower batch_size or use a larger corpus")
      return self._random(clips, pieces, mine, start_batch)
    return self._in_order(clips, pieces, mine, start_batch)

  def views(self, clip: MelodyClip, start: int) -> list[str]:
    """The views a crop at sample `start` of `clip` offers."""
    available = [MIX] + ([PAIR] if clip.pair_audio is not None else [])
    notes = melody_voices.crop(clip.notes, start / self.sample_rate_hz, self.crop_seconds)
    if len(notes.pitch) >= _MIN_VOICE_NOTES:
      available += list(melody_voices.VOICES)
    return available

  def render_view(self, view: str, clip: MelodyClip, start: int,
                  rng: np.random.Generator) -> np.ndarray:
    """[crop_samples] float32: `view` of the crop of `clip` at sample `start`."""
    if view == MIX:
      return clip.audio[start:start + self.crop_samples]
    if view == PAIR:
      return clip.pair_audio[start:start + self.crop_samples]
    notes = melody_voices.crop(clip.notes, start / self.sample_rate_hz, self.crop_seconds)
    return melody_voices.render(view, notes, self.crop_seconds, self.sample_rate_hz, rng,
                                self.variation)

  def _row(self, clip: MelodyClip, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    start = int(rng.integers(0, len(clip.audio) - self.crop_samples + 1))
    views = self.views(clip, start)
    if len(views) < 2:  # no pair, no tune here: the clip's first crop may have one
      start = 0
      views = self.views(clip, start)
    # A clip with neither a pair nor a tune gives its mix twice: a trivial but true pair.
    first, second = rng.choice(len(views), 2, replace=False) if len(views) > 1 else (0, 0)
    return (self.render_view(views[first], clip, start, rng),
            self.render_view(views[second], clip, start, rng))

  def _random(self, clips, pieces, mine, start_batch):
    batch = start_batch
    while True:
      rng = np.random.default_rng([self.seed, batch])
      chosen = rng.choice(len(pieces), self.batch_size, replace=False)
      picks = [pieces[p][rng.integers(len(pieces[p]))] for p in chosen]
      rows = [self._row(clips[picks[r]], np.random.default_rng([self.seed, batch, r]))
              for r in mine]
      yield {"anchor": np.stack([a for a, _ in rows]), "positive": np.stack([p for _, p in rows])}
      batch += 1

  def _in_order(self, clips, pieces, mine, start_batch):
    firsts = [group[0] for group in pieces]
    for batch in range(start_batch, len(firsts) // self.batch_size):
      rows = []
      for r in mine:
        index = firsts[batch * self.batch_size + r]
        clip, rng = clips[index], np.random.default_rng([self.seed, index])
        views = self.views(clip, 0)
        other = views[1 + int(rng.integers(len(views) - 1))] if len(views) > 1 else MIX
        rows.append((self.render_view(MIX, clip, 0, rng), self.render_view(other, clip, 0, rng)))
      yield {"anchor": np.stack([a for a, _ in rows]), "positive": np.stack([p for _, p in rows])}


def _clips_by_piece(clips: tuple[MelodyClip, ...]) -> list[list[int]]:
  """Clip indices grouped by source piece, pieces in order of first appearance."""
  groups: dict[str, list[int]] = {}
  for index, clip in enumerate(clips):
    groups.setdefault(clip.source_id, []).append(index)
  return list(groups.values())


@functools.lru_cache(maxsize=4)
def load_melody_clips(dataset: str, data_dir: str | None, split: str, sample_rate_hz: int,
                      min_samples: int) -> tuple[MelodyClip, ...]:
  """Every clip of a synth_music split at least `min_samples` long, with its views' material."""
  builder, _ = tfds_audio.open_audio_dataset(dataset, data_dir, "audio", sample_rate_hz)
  features = builder.info.features
  for key in ("source_id", "melody", "melody_pair"):
    if key not in features:
      raise UserError(f"{dataset} has no feature {key!r}: melody pairs come from a "
                      "synth_music corpus (melody labels and same-melody renderings)")
  clips, too_short = [], 0
  for example in builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
    audio = np.asarray(example["audio"], np.float32).reshape(-1)
    if len(audio) < min_samples:
      too_short += 1
      continue
    pair = np.asarray(example["melody_pair"]["audio"], np.float32).reshape(-1)
    clips.append(MelodyClip(example["source_id"].decode(), audio,
                            pair if example["has_melody_pair"] and len(pair) >= min_samples
                            else None, melody_voices.melody_notes(example)))
  if too_short:
    logging.warning("%s/%s: skipped %d clips shorter than %d samples", dataset, split,
                    too_short, min_samples)
  if not clips:
    raise UserError(f"{dataset}/{split} has no clip of at least {min_samples} samples: "
                    "lower crop_seconds")
  return tuple(clips)


def first_tunes(clips: Sequence[MelodyClip], seconds: float, limit: int,
                min_notes: int = MIN_TUNE_NOTES) -> list[tuple[MelodyClip, melody_voices.Notes]]:
  """(clip, its melody's notes in [0, seconds)) of the first clip of each source piece whose
  first `seconds` hold at least `min_notes` notes, for the first `limit` such pieces: the
  held-out tunes the demo hums, as the benchmarks pick them."""
  tunes = {}
  for clip in clips:
    notes = melody_voices.crop(clip.notes, 0.0, seconds)
    if len(notes.pitch) >= min_notes and clip.source_id not in tunes:
      tunes[clip.source_id] = (clip, notes)
    if len(tunes) == limit:
      break
  return list(tunes.values())
