"""Audio crops and tokenized captions from a captioned TFDS dataset: MuLan's `BatchSource`.

Works like `audio_batches.AudioBatchSource` (same fields, same seeded,
resumable batches, same host sharding) and adds, for every crop, the token
ids of a text describing its clip. Training draws the text with
`caption_augment.augment_caption` (caption, sentences, shuffled aspects or a
subset); evaluation uses the caption as written. Text is tokenized here, on
the host, so the model only sees integer ids:

  source = CaptionBatchSource("synth_music/tiny", data_dir="runs/tfds", batch_size=16,
                              crop_seconds=10.0)
  next(source.get_batches())  # {'audio': [16, 240000] f32, 'text_ids': [16, 128] i32,
                              #  'text_mask': [16, 128] i32}

Any TFDS dataset with an audio feature, a caption and/or an aspect list works
(synth_music, musiccaps, audio_folder with captions). Clips shorter than a
crop or with no text are skipped with a count in the log.
"""
import dataclasses
import functools
from typing import Iterator, NamedTuple

from absl import logging
import numpy as np

from musiclm_jax.audio import rates
from musiclm_jax.data import audio_batches
from musiclm_jax.data import caption_augment
from musiclm_jax.data import tfds_audio
from musiclm_jax.data.pipeline import Batch
from musiclm_jax.errors import UserError
from musiclm_jax.layers import bert


class CaptionedClips(NamedTuple):
  """One split in host memory: clips[i] is described by captions[i] and aspects[i]."""
  audio: tuple[np.ndarray, ...]
  captions: tuple[str, ...]
  aspects: tuple[tuple[str, ...], ...]


@dataclasses.dataclass(frozen=True)
class CaptionBatchSource(audio_batches.AudioBatchSource):
  """Audio crops (see AudioBatchSource) plus token ids of a text for each.

  Attributes:
    caption_key, aspects_key: text features ('' for one the dataset lacks).
    tokenizer_dir: folder with the text tower's tokenizer.json (default: MiniLM's).
    max_text_length: tokens per text, padded or truncated.
    augmentation: kinds of text drawn in training; evaluation uses the caption.
  """
  caption_key: str = "caption"
  aspects_key: str = "aspect_list"
  tokenizer_dir: str | None = None
  max_text_length: int = 128
  augmentation: caption_augment.TextAugmentation = caption_augment.TextAugmentation()

  def get_batches(self, shard_index: int = 0, num_shards: int = 1,
                  start_batch: int = 0) -> Iterator[Batch]:
    """Yields {'audio', 'text_ids', 'text_mask'} of [batch_size // num_shards, ...] from `start_batch`."""
    if self.batch_size % num_shards:
      raise UserError(f"batch_size {self.batch_size} is not divisible by {num_shards} hosts")
    clips = load_captioned_clips(self.dataset, self.data_dir, self.split, self.audio_key,
                                 self.caption_key, self.aspects_key, self.sample_rate_hz,
                                 self.crop_samples)
    tokenizer = bert.BertTokenizer(self.tokenizer_dir, self.max_text_length)
    rows = self.batch_size // num_shards
    mine = slice(shard_index * rows, (shard_index + 1) * rows)
    if self.repeat:
      return self._random(clips, tokenizer, mine, start_batch)
    return self._in_order(clips, tokenizer, mine, start_batch)

  def _random(self, clips, tokenizer, mine, start_batch):
    batch = start_batch
    while True:
      rng = np.random.default_rng([self.seed, batch])
      picks, crops = self.random_crops(rng, clips.audio)
      texts = [caption_augment.augment_caption(clips.captions[p], clips.aspects[p], rng,
                                               self.augmentation) for p in picks]
      yield self._batch(crops[mine], texts[mine], tokenizer)
      batch += 1

  def _in_order(self, clips, tokenizer, mine, start_batch):
    for batch in range(start_batch, len(clips.audio) // self.batch_size):
      group = range(batch * self.batch_size, (batch + 1) * self.batch_size)[mine]
      yield self._batch([clips.audio[i][:self.crop_samples] for i in group],
                        [eval_text(clips, i) for i in group], tokenizer)

  def _batch(self, crops, texts, tokenizer) -> Batch:
    ids, mask = tokenizer(texts)
    return {"audio": np.stack(crops), "text_ids": ids, "text_mask": mask}


def eval_text(clips: CaptionedClips, index: int) -> str:
  """The text evaluation pairs with clip `index`: its caption, else its aspects in order."""
  return clips.captions[index] or ", ".join(clips.aspects[index])


@functools.lru_cache(maxsize=4)
def load_captioned_clips(dataset: str, data_dir: str | None, split: str, audio_key: str = "audio",
                         caption_key: str = "caption", aspects_key: str = "aspect_list",
                         sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ, min_samples: int = 1) -> CaptionedClips:
  """Every clip of the split at least `min_samples` long that has a caption or aspects."""
  builder, _ = tfds_audio.open_audio_dataset(dataset, data_dir, audio_key, sample_rate_hz)
  features = builder.info.features
  for key in (caption_key, aspects_key):
    if key and key not in features:
      raise UserError(f"{dataset} has no feature {key!r}: set caption_key/aspects_key to one of "
                      f"{sorted(features.keys())} or to ''")
  audio, captions, aspects = [], [], []
  too_short = no_text = 0
  for example in builder.as_dataset(split=split, shuffle_files=False).as_numpy_iterator():
    samples = np.asarray(example[audio_key], np.float32).reshape(-1)
    caption = example[caption_key].decode() if caption_key else ""
    tags = tuple(a.decode() for a in example[aspects_key]) if aspects_key else ()
    if len(samples) < min_samples:
      too_short += 1
    elif not caption.strip() and not any(t.strip() for t in tags):
      no_text += 1
    else:
      audio.append(samples)
      captions.append(caption)
      aspects.append(tags)
  if too_short or no_text:
    logging.warning("%s/%s: skipped %d clips shorter than %d samples and %d without text",
                    dataset, split, too_short, min_samples, no_text)
  if not audio:
    raise UserError(f"{dataset}/{split} has no captioned clip of at least {min_samples} samples: "
                    "lower crop_seconds or check the split")
  return CaptionedClips(tuple(audio), tuple(captions), tuple(aspects))
