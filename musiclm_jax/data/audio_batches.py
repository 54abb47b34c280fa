"""Fixed-length audio crops from a TFDS audio dataset: the codec's `BatchSource`.

The split is read once into host memory (the codec's corpora are small; a
10 s clip at 24 kHz is 1 MB), then batch i is drawn from a generator seeded
with (seed, i) alone, so a run resumed at batch i sees exactly the batches an
uninterrupted run would have, without replaying the first i. Each host keeps
its contiguous rows of every global batch, matching
`Partitioner.make_global_batch`.

  source = AudioBatchSource("synth_music/tiny", data_dir="/tmp/tfds", batch_size=16,
                            crop_seconds=1.0)
  batches = source.get_batches()        # {'audio': [16, 24000] float32} forever

Training (`repeat=True`) takes random crops of random clips with replacement;
evaluation (`repeat=False`) takes the first crop of every clip, in order,
once. Clips shorter than a crop are skipped with a count in the log: padding
would teach the codec silence that is not there.
"""
import dataclasses
import functools
from typing import Iterator, Sequence

from absl import logging
import numpy as np

from musiclm_jax.audio import rates
from musiclm_jax.data import tfds_audio
from musiclm_jax.data.pipeline import Batch
from musiclm_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class AudioBatchSource:
  """Random fixed-length crops of one split of a prepared TFDS audio dataset.

  Attributes:
    dataset: TFDS name with config, e.g. 'synth_music/tiny', as prepared in `data_dir`.
    data_dir: TFDS data directory holding it.
    split: split to read (TFDS slicing such as 'train[:10]' works).
    batch_size: global batch size (all hosts together).
    crop_seconds: length of every crop.
    sample_rate_hz: rate the model expects; the dataset must already be at it.
    audio_key: feature holding [time] float audio.
    seed: the same seed gives the same batches.
    repeat: random crops forever (training) or each clip's first crop once (eval).
  """
  dataset: str
  data_dir: str | None = None
  split: str = "train"
  batch_size: int = 16
  crop_seconds: float = 1.0
  sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ
  audio_key: str = "audio"
  seed: int = 0
  repeat: bool = True

  @property
  def crop_samples(self) -> int:
    return int(round(self.crop_seconds * self.sample_rate_hz))

  def get_batches(self, shard_index: int = 0, num_shards: int = 1,
                  start_batch: int = 0) -> Iterator[Batch]:
    """Yields {'audio': [batch_size // num_shards, crop_samples] float32} from `start_batch` on."""
    if self.batch_size % num_shards:
      raise UserError(f"batch_size {self.batch_size} is not divisible by {num_shards} hosts")
    clips = _load_clips(self.dataset, self.data_dir, self.split, self.audio_key,
                        self.sample_rate_hz, self.crop_samples)
    rows = self.batch_size // num_shards
    mine = slice(shard_index * rows, (shard_index + 1) * rows)
    if self.repeat:
      return self._random_crops(clips, mine, start_batch)
    return self._first_crops(clips, mine, start_batch)

  def random_crops(self, rng: np.random.Generator,
                   clips: Sequence[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """(picked clip indices [batch_size], crops): random crops of clips drawn with replacement."""
    picks = rng.integers(0, len(clips), self.batch_size)
    starts = [rng.integers(0, len(clips[p]) - self.crop_samples + 1) for p in picks]
    return picks, [clips[p][s:s + self.crop_samples] for p, s in zip(picks, starts)]

  def _random_crops(self, clips, mine, start_batch):
    batch = start_batch
    while True:
      _, crops = self.random_crops(np.random.default_rng([self.seed, batch]), clips)
      yield {"audio": np.stack(crops[mine])}
      batch += 1

  def _first_crops(self, clips, mine, start_batch):
    for batch in range(start_batch, len(clips) // self.batch_size):
      group = clips[batch * self.batch_size:(batch + 1) * self.batch_size][mine]
      yield {"audio": np.stack([clip[:self.crop_samples] for clip in group])}


@functools.lru_cache(maxsize=4)
def _load_clips(dataset: str, data_dir: str | None, split: str, audio_key: str,
                sample_rate_hz: int, crop_samples: int) -> tuple[np.ndarray, ...]:
  """Every clip of the split at least one crop long, as [time] float32 arrays."""
  builder, _ = tfds_audio.open_audio_dataset(dataset, data_dir, audio_key, sample_rate_hz)
  clips, too_short = [], 0
  for example in builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
    audio = np.asarray(example[audio_key], np.float32).reshape(-1)
    if len(audio) < crop_samples:
      too_short += 1
      continue
    clips.append(audio)
  if too_short:
    logging.warning("%s/%s: skipped %d clips shorter than %d samples", dataset, split,
                    too_short, crop_samples)
  if not clips:
    raise UserError(f"{dataset}/{split} has no clip of at least {crop_samples} samples: "
                    "lower crop_seconds")
  return tuple(clips)
