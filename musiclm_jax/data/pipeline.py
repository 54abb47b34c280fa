"""Input pipelines → per-host numpy batches for the trainer (T5X's DatasetConfig).

The trainer accepts any `BatchSource`: an object whose `get_batches` yields
this host's share of each global batch from a given position. Pipelines are
deterministic given their seed, so a position is just the number of batches
served, and a resumed run sees exactly the batches an uninterrupted run would
have seen. `DatasetConfig` is the SeqIO source; audio sources for the
tokenizers implement the same protocol.

Stage tasks over token caches (and mixtures of them) are read by index, the
way Grain and MaxText do it: example p of the global stream is a pure function
of (seed, p) (its member task, epoch, record through a per-epoch permutation,
and crop), and host h computes only its rows of batch b, so starting at batch
b costs the same for every b. Other SeqIO tasks, and packing, go through
SeqIO's tf.data pipeline, where a resumed run replays the batches before its
position.
"""
import bisect
import dataclasses
import functools
from typing import Iterator, Mapping, Protocol, Sequence

from absl import logging
import numpy as np
import seqio
import tensorflow as tf

from musiclm_jax.data import tasks
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
    seed: shuffle and crop seed; the same seed gives the same batches.
    pack: pack several examples per row (SeqIO's packing: read through
      tf.data, so a resumed run replays the batches before its position).
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
  members = [] if cfg.pack else _random_access_members(provider)
  if members:
    return _indexed_batches(cfg, members, shard_index, num_shards, start_batch)
  return _seqio_batches(cfg, provider, shard_index, num_shards, start_batch)


def _random_access_members(provider) -> list[tuple[tasks.CacheExamples, float]]:
  """(examples, mixing rate) of each task of `provider`, or [] if one has no random access."""
  if isinstance(provider, seqio.Mixture):
    members = [(tasks.random_access(t.name), provider.get_rate(t)) for t in provider.tasks]
  else:
    members = [(tasks.random_access(provider.name), 1.0)]
  return members if all(examples is not None for examples, _ in members) else []


def _seqio_batches(cfg: DatasetConfig, provider, shard_index: int, num_shards: int,
                   start_batch: int) -> Iterator[Batch]:
  """SeqIO's tf.data pipeline, each host reading its own shard of the data."""
  if start_batch:
    logging.warning("resuming %s at batch %d by replaying the batches before it",
                    cfg.mixture_or_task_name, start_batch)
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


def _indexed_batches(cfg: DatasetConfig, members: Sequence[tuple[tasks.CacheExamples, float]],
                     shard_index: int, num_shards: int, start_batch: int) -> Iterator[Batch]:
  """Batch b computed from b alone; this host keeps its contiguous rows of it."""
  if cfg.seed < 0:
    raise UserError(f"seed {cfg.seed} is negative: use a seed >= 0")
  order = ExampleOrder([examples.num_examples(cfg.split) for examples, _ in members],
                       [rate for _, rate in members], cfg.seed, cfg.shuffle, cfg.repeat)
  rows = cfg.batch_size // num_shards
  length = cfg.task_feature_lengths["targets"]
  batch = start_batch
  while cfg.repeat or (batch + 1) * cfg.batch_size <= order.num_examples:
    first = batch * cfg.batch_size + shard_index * rows
    examples = []
    for position in range(first, first + rows):
      member, index, epoch = order(position)
      rng = np.random.default_rng([cfg.seed, _CROP_STREAM, member, epoch, index])
      examples.append(members[member][0].example(cfg.split, index, rng))
    yield decoder_features([ex["targets"] for ex in examples], length)
    batch += 1


def decoder_features(targets: Sequence[np.ndarray], length: int) -> Batch:
  """What `seqio.DecoderFeatureConverter(pack=False)` makes of trimmed 'targets' sequences.

  targets: ids [<= length ...] per row (longer ones are cut, as SeqIO's tasks do).
  Returns {'decoder_target_tokens', 'decoder_input_tokens': [rows, length] int32,
  'decoder_loss_weights': [rows, length] float32}: PAD (0) after each sequence,
  inputs shifted right behind BOS (0), loss on every non-PAD target.
  """
  target_tokens = np.zeros((len(targets), length), np.int32)
  for row, ids in enumerate(targets):
    ids = ids[:length]
    target_tokens[row, :len(ids)] = ids
  input_tokens = np.zeros_like(target_tokens)
  input_tokens[:, 1:] = target_tokens[:, :-1]
  return {"decoder_target_tokens": target_tokens, "decoder_input_tokens": input_tokens,
          "decoder_loss_weights": (target_tokens != 0).astype(np.float32)}


# Streams of random numbers drawn from a seed: kept apart so no draw repeats another's.
_MIX_STREAM, _SHUFFLE_STREAM, _CROP_STREAM = 0, 1, 2
# A repeating mixture is laid out in blocks of this many examples, each holding every member's
# share of the block (its rate rounded to 1 / _MIX_BLOCK) in an order shuffled per block: the
# member of example p, and how many of its examples came before, follow from p in constant time.
_MIX_BLOCK = 1024


class ExampleOrder:
  """Global example number -> (member, index in its split, epoch): a pure function of the seed.

  Repeating (training): member k serves its examples in epochs, each epoch a
  permutation of its split drawn from (seed, k, epoch) (the identity without
  shuffling). Once through (evaluation): the members' splits one after
  another, shuffled as a whole if asked, `num_examples` in all.
  """

  def __init__(self, sizes: Sequence[int], rates: Sequence[float], seed: int, shuffle: bool,
               repeat: bool):
    self.sizes, self.seed, self.shuffle, self.repeat = list(sizes), seed, shuffle, repeat
    self.num_examples = sum(self.sizes)
    self._starts = np.cumsum([0] + self.sizes).tolist()
    self._per_block = _apportion(rates, _MIX_BLOCK)
    self._permutation = functools.lru_cache(maxsize=2 * len(self.sizes))(self._permutation)
    self._block = functools.lru_cache(maxsize=4)(self._block)

  def __call__(self, position: int) -> tuple[int, int, int]:
    if not self.repeat:
      if self.shuffle:
        position = int(self._permutation(-1, 0)[position])
      member = bisect.bisect_right(self._starts, position) - 1
      return member, position - self._starts[member], 0
    block, offset = divmod(position, _MIX_BLOCK)
    members, ranks = self._block(block)
    member = int(members[offset])
    epoch, index = divmod(block * self._per_block[member] + int(ranks[offset]), self.sizes[member])
    if self.shuffle:
      index = int(self._permutation(member, epoch)[index])
    return member, index, epoch

  def _permutation(self, member: int, epoch: int) -> np.ndarray:
    """Of member's split, or of all members' examples (member -1)."""
    size = self.num_examples if member < 0 else self.sizes[member]
    return np.random.default_rng([self.seed, _SHUFFLE_STREAM, member + 1, epoch]).permutation(size)

  def _block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
    """[_MIX_BLOCK] member of each example of the block, and its rank among that member's."""
    members = np.repeat(np.arange(len(self.sizes)), self._per_block)
    members = np.random.default_rng([self.seed, _MIX_STREAM, block]).permutation(members)
    ranks = np.empty_like(members)
    for member in range(len(self.sizes)):
      ranks[members == member] = np.arange(self._per_block[member])
    return members, ranks


def _apportion(rates: Sequence[float], total: int) -> list[int]:
  """Integers proportional to `rates` summing to `total` (largest remainders); UserError if one is 0."""
  shares = np.asarray(rates, np.float64) / np.sum(rates) * total
  counts = np.floor(shares).astype(int)
  for i in np.argsort(counts - shares)[:total - counts.sum()]:
    counts[i] += 1
  if not counts.all():
    raise UserError(f"mixing rates {list(rates)} give a member less than 1/{total} of the "
                    "examples: raise its rate or leave it out")
  return counts.tolist()
