"""Input pipelines → per-host numpy batches for the trainer (T5X's DatasetConfig).

The trainer accepts any `BatchSource`: an object whose `get_batches` yields
this host's share of each global batch from a given position. Pipelines are
deterministic given their seed, so a position is just the number of batches
served: a resumed run skips that many and sees exactly the batches an
uninterrupted run would have seen. `DatasetConfig` is the SeqIO source; audio
sources for the tokenizers implement the same protocol.
"""
import dataclasses
from typing import Iterator, Mapping, Protocol

import numpy as np
import seqio
import tensorflow as tf

from musiclm_jax.errors import UserError


Batch = dict[str, np.ndarray]


class BatchSource(Protocol):
  """What the trainer reads from."""

  def get_batches(self, shard_index: int = 0, num_shards: int = 1,
                  start_batch: int = 0) -> Iterator[Batch]:
    """Yields dicts of [batch_size // num_shards, ...] arrays, from `start_batch` on."""


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """What to read and how to batch it.

  Attributes:
    mixture_or_task_name: a registered SeqIO task or mixture.
    task_feature_lengths: e.g. {'targets': 762}.
    split: dataset split.
    batch_size: global batch size (all hosts together).
    shuffle: shuffle examples (with `seed`).
    seed: shuffle seed; the same seed gives the same batches.
    pack: pack several examples per row (SeqIO's packing).
    repeat: loop over the data forever (training) or once (eval).
    module: a module to import first so that its tasks are registered.
  """
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]
  split: str = "train"
  batch_size: int = 8
  shuffle: bool = True
  seed: int = 0
  pack: bool = False
  repeat: bool = True
  module: str | None = None

  def get_batches(self, shard_index: int = 0, num_shards: int = 1,
                  start_batch: int = 0) -> Iterator[Batch]:
    return get_batches(self, shard_index, num_shards, start_batch)


def get_batches(cfg: DatasetConfig, shard_index: int = 0, num_shards: int = 1,
                start_batch: int = 0) -> Iterator[Batch]:
  """Yields this host's share of each global batch, starting at `start_batch`.

  Each yields a dict of [batch_size // num_shards, length] arrays with the
  decoder feature names of `seqio.DecoderFeatureConverter`.
  """
  if cfg.batch_size % num_shards:
    raise UserError(f"batch_size {cfg.batch_size} is not divisible by {num_shards} hosts")
  if cfg.module:
    __import__(cfg.module)
  try:
    provider = seqio.get_mixture_or_task(cfg.mixture_or_task_name)
  except ValueError:
    raise UserError(f"no SeqIO task or mixture named {cfg.mixture_or_task_name!r}: check "
                    f"MIXTURE_OR_TASK_NAME and the module that registers it") from None
  ds = provider.get_dataset(
      sequence_length=dict(cfg.task_feature_lengths), split=cfg.split, shuffle=cfg.shuffle,
      seed=cfg.seed, shard_info=seqio.ShardInfo(shard_index, num_shards),
      num_epochs=None if cfg.repeat else 1)
  converter = seqio.DecoderFeatureConverter(pack=cfg.pack)
  ds = converter(ds, dict(cfg.task_feature_lengths))
  ds = ds.batch(cfg.batch_size // num_shards, drop_remainder=True)
  ds = ds.skip(start_batch).prefetch(tf.data.AUTOTUNE)
  for batch in ds.as_numpy_iterator():
    yield {k: v.astype(np.float32 if k.endswith("loss_weights") else np.int32)
           for k, v in batch.items()}
