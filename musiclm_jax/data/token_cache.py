"""The token cache: every clip of a dataset through the frozen tokenizers, on disk.

`musiclm-tokenize` writes it once; the stage tasks (`data/tasks.py`) read it
for every training run. A cache is a folder:

  metadata.json                            what wrote it (see `CacheMetadata`) and counts
  config.gin                               the tokenize run's resolved gin config
  train.tfrecord-00000-of-00004            tf.train.Example records, one per clip
  train.tfrecord-00000-of-00004.json       that shard's counts (records, skips by reason)
  validation.tfrecord-00000-of-00001 ...

A record holds the tokens without vocabulary offsets (`token_layout` adds
those per stage): M_A [mulan_levels], S [T_s] at 25 Hz, A [T_a, levels] at
50 Hz stored flattened time-major, with T_a == 2 * T_s, optionally melody
tokens [T_m, melody_levels] (one frame per melody window, 3 s hop) when the
cache was written with a melody tokenizer, plus the caption, its M_T
[mulan_levels] (empty without a caption; caches written before it existed
read as empty), the dataset's other (non-audio) features as JSON, and the
clip id.

A shard only appears under its final name once it and its counts are
complete (written under a temporary name, then renamed), so "the file
exists" means "this shard is done": a killed run resumes by skipping those.
Files are accessed through tf.io.gfile, so a cache can live on GCS.
"""
import bisect
import dataclasses
import json
import os
import struct
from typing import Any, Iterator, Sequence

import numpy as np
import tensorflow as tf

from musiclm_jax.errors import UserError

METADATA_FILE = "metadata.json"
FORMAT_VERSION = 1
_TMP_SUFFIX = ".tmp"

# How the tasks parse a record (tf.io.parse_single_example).
FEATURE_SPEC = {
    "clip_id": tf.io.FixedLenFeature([], tf.string),
    "mulan_tokens": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    "mulan_text_tokens": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    "semantic_tokens": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    "acoustic_tokens": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    "acoustic_levels": tf.io.FixedLenFeature([], tf.int64),
    "melody_tokens": tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True),
    "melody_levels": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "num_samples": tf.io.FixedLenFeature([], tf.int64),
    "caption": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "labels_json": tf.io.FixedLenFeature([], tf.string, default_value="{}"),
}


@dataclasses.dataclass
class Record:
  """One clip's tokens (codes without offsets).

  Attributes:
    clip_id: unique within the dataset (TFDS's tfds_id).
    mulan: M_A [mulan_levels] int32.
    semantic: S [T_s] int32, 25 Hz.
    acoustic: A [T_a, acoustic_levels] int32, 50 Hz; T_a == 2 * T_s.
    num_samples: 24 kHz samples that were tokenized (T_s * 960).
    caption: the dataset's caption, or "".
    labels: the dataset's other non-audio features, JSON-able.
    melody: melody tokens [T_m, melody_levels] int32, or None (a cache without them).
    mulan_text: M_T [mulan_levels] int32 of the caption, or empty without one:
      what a text prompt gives the stages at inference (`tasks` may train on it).
  """
  clip_id: str
  mulan: np.ndarray
  semantic: np.ndarray
  acoustic: np.ndarray
  num_samples: int
  caption: str = ""
  labels: dict[str, Any] = dataclasses.field(default_factory=dict)
  melody: np.ndarray | None = None
  mulan_text: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros([0], np.int32))


def _int64s(values) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values).reshape(-1)))


def _bytes(value: str) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))


def serialize(record: Record) -> bytes:
  """Record -> serialized tf.train.Example."""
  acoustic = np.asarray(record.acoustic)
  features = {
      "clip_id": _bytes(record.clip_id),
      "mulan_tokens": _int64s(record.mulan),
      "mulan_text_tokens": _int64s(record.mulan_text),
      "semantic_tokens": _int64s(record.semantic),
      "acoustic_tokens": _int64s(acoustic),
      "acoustic_levels": _int64s([acoustic.shape[1]]),
      "num_samples": _int64s([record.num_samples]),
      "caption": _bytes(record.caption),
      "labels_json": _bytes(json.dumps(record.labels, sort_keys=True)),
  }
  if record.melody is not None:
    melody = np.asarray(record.melody)
    features.update(melody_tokens=_int64s(melody), melody_levels=_int64s([melody.shape[1]]))
  return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def deserialize(serialized: bytes) -> Record:
  """Serialized tf.train.Example -> Record (numpy; for tools and tests)."""
  feature = tf.train.Example.FromString(serialized).features.feature
  ints = lambda k: np.asarray(feature[k].int64_list.value, np.int32)
  text = lambda k: feature[k].bytes_list.value[0].decode("utf-8")
  levels = int(feature["acoustic_levels"].int64_list.value[0])
  melody = None
  if "melody_levels" in feature:
    melody = ints("melody_tokens").reshape(-1, int(feature["melody_levels"].int64_list.value[0]))
  return Record(clip_id=text("clip_id"), mulan=ints("mulan_tokens"),
                semantic=ints("semantic_tokens"),
                acoustic=ints("acoustic_tokens").reshape(-1, levels),
                num_samples=int(feature["num_samples"].int64_list.value[0]),
                caption=text("caption"), labels=json.loads(text("labels_json")), melody=melody,
                mulan_text=ints("mulan_text_tokens"))


# Files.

def shard_path(cache_dir: str, split: str, shard: int, num_shards: int) -> str:
  return os.path.join(cache_dir, f"{split}.tfrecord-{shard:05d}-of-{num_shards:05d}")


def shard_pattern(cache_dir: str, split: str) -> str:
  """Glob of the finished shards of `split` (never temporary files or sidecars)."""
  return os.path.join(cache_dir, f"{split}.tfrecord-?????-of-?????")


def finished_shards(cache_dir: str, split: str) -> list[str]:
  return sorted(tf.io.gfile.glob(shard_pattern(cache_dir, split)))


def write_json_atomically(path: str, value: Any) -> None:
  tmp = path + _TMP_SUFFIX
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(json.dumps(value, indent=1, sort_keys=True))
  tf.io.gfile.rename(tmp, path, overwrite=True)


def read_json(path: str) -> Any:
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def write_shard(path: str, records: Sequence[Record], stats: dict[str, Any]) -> None:
  """Writes the records, then `stats` beside them, then publishes the shard by renaming.

  stats: JSON-able counts of the shard (e.g. {'num_records', 'skipped'}).
  """
  tmp = path + _TMP_SUFFIX
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(tmp) as writer:
    for record in records:
      writer.write(serialize(record))
  # Sidecar first: a published shard always has its counts.
  write_json_atomically(path + ".json", dict(stats, num_records=len(records)))
  tf.io.gfile.rename(tmp, path, overwrite=True)


def read_shard(path: str) -> Iterator[Record]:
  for serialized in tf.data.TFRecordDataset(path).as_numpy_iterator():
    yield deserialize(serialized)


def read_split(cache_dir: str, split: str) -> Iterator[Record]:
  """Every record of `split`, shard by shard, in the order they were written."""
  for path in finished_shards(cache_dir, split):
    yield from read_shard(path)


# A TFRecord is: length (uint64 LE), its masked CRC (4 bytes), the data, the data's CRC (4 bytes).
_HEADER = struct.Struct("<QI")
_CRC_BYTES = 4


def _record_offsets(path: str) -> list[int]:
  """Byte offsets of the records of one TFRecord file, read from their length headers only."""
  offsets, offset = [], 0
  size = tf.io.gfile.stat(path).length
  with tf.io.gfile.GFile(path, "rb") as f:
    while offset < size:
      f.seek(offset)
      length, _ = _HEADER.unpack(f.read(_HEADER.size))
      offsets.append(offset)
      offset += _HEADER.size + length + _CRC_BYTES
  return offsets


class SplitReader:
  """Record i of a split, read without reading the records before it.

  Records are numbered shard by shard, in the order they were written (the
  order of `read_split`). Opening a split reads every record's length header
  once, so the cost of opening does not depend on which records are read
  later: a resumed run reads record i as fast as a fresh one.
  """

  def __init__(self, cache_dir: str, split: str):
    self._paths = finished_shards(cache_dir, split)
    self._offsets = [_record_offsets(path) for path in self._paths]
    self._starts = np.cumsum([0] + [len(o) for o in self._offsets]).tolist()
    self._files = {}

  def __len__(self) -> int:
    return self._starts[-1]

  def __getitem__(self, index: int) -> Record:
    if not 0 <= index < len(self):
      raise IndexError(f"record {index} of {len(self)}")
    shard = bisect.bisect_right(self._starts, index) - 1
    if shard not in self._files:
      self._files[shard] = tf.io.gfile.GFile(self._paths[shard], "rb")
    f = self._files[shard]
    f.seek(self._offsets[shard][index - self._starts[shard]])
    length, _ = _HEADER.unpack(f.read(_HEADER.size))
    return deserialize(f.read(length))


# Metadata.

@dataclasses.dataclass(frozen=True)
class CacheMetadata:
  """What a cache holds; `config` must match for a run to add shards to a cache.

  Attributes:
    config: tokenizers (class, codebook sizes, levels), dataset and split
      specs, rates and clip settings: everything that changes the tokens.
    splits: per cache split, {'num_shards', 'num_clips'} planned, plus counts
      summed over the finished shards ('finished_shards', 'num_records', 'skipped').
  """
  config: dict[str, Any]
  splits: dict[str, dict[str, Any]]

  @property
  def mulan_levels(self) -> int:
    return self.config["mulan"]["num_levels"]

  @property
  def acoustic_levels(self) -> int:
    return self.config["acoustic"]["num_levels"]

  @property
  def has_melody(self) -> bool:
    return "melody" in self.config

  def codebook_size(self, tokenizer: str) -> int:
    return self.config[tokenizer]["codebook_size"]

  def to_json(self) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "config": self.config, "splits": self.splits}


def load_metadata(cache_dir: str) -> CacheMetadata:
  """What a finished cache holds, for its readers, with each split's counts taken from the
  finished shards on disk (`split_counts`).

  UserError if the folder is no cache, or if a split has fewer finished shards than
  planned: musiclm-tokenize writes metadata.json when it starts, so a cache still being
  written, or one whose run was stopped, would otherwise be read as if it were whole.
  """
  path = os.path.join(cache_dir, METADATA_FILE)
  if not tf.io.gfile.exists(path):
    raise UserError(f"{cache_dir} is not a token cache (no {METADATA_FILE}): write one with "
                    "musiclm-tokenize or fix TOKEN_CACHE_DIR")
  value = read_json(path)
  if value.get("format_version") != FORMAT_VERSION:
    raise UserError(f"{path} has format version {value.get('format_version')}, this code reads "
                    f"{FORMAT_VERSION}: re-tokenize into a new folder")
  splits = _with_counts(cache_dir, value["splits"])
  for split, counts in splits.items():
    if counts["finished_shards"] < counts["num_shards"]:
      raise UserError(f"{cache_dir} is unfinished: {counts['finished_shards']} of "
                      f"{counts['num_shards']} {split} shards written; run musiclm-tokenize to "
                      "the end with the same settings (it resumes)")
  return CacheMetadata(value["config"], splits)


def _with_counts(cache_dir: str, planned: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
  """Each split's plan with the counts of its finished shards on disk (`split_counts`)."""
  return {split: dict(plan, **split_counts(cache_dir, split)) for split, plan in planned.items()}


def split_counts(cache_dir: str, split: str) -> dict[str, Any]:
  """Counts summed over the finished shards of `split`."""
  counts = {"finished_shards": 0, "num_records": 0, "skipped": {}}
  for path in finished_shards(cache_dir, split):
    stats = read_json(path + ".json")
    counts["finished_shards"] += 1
    counts["num_records"] += stats["num_records"]
    for reason, n in stats.get("skipped", {}).items():
      counts["skipped"][reason] = counts["skipped"].get(reason, 0) + n
  return counts


def write_metadata(cache_dir: str, config: dict[str, Any],
                   planned: dict[str, dict[str, Any]]) -> CacheMetadata:
  """Writes metadata.json with the counts of the shards finished so far.

  Every process of a multi-host run calls this when it starts and when it
  ends; each write recounts the shards on disk, so the last one has the
  totals. Raises UserError if the folder holds a cache written with another
  config.
  """
  path = os.path.join(cache_dir, METADATA_FILE)
  if tf.io.gfile.exists(path):
    old = read_json(path)
    if old.get("config") != config:
      changed = sorted(k for k in set(old.get("config", {})) | set(config)
                       if old.get("config", {}).get(k) != config.get(k))
      raise UserError(f"{cache_dir} holds a cache written with other settings ({', '.join(changed)}): "
                      "tokenize into a new folder, or delete this one to start over")
  metadata = CacheMetadata(config, _with_counts(cache_dir, planned))
  tf.io.gfile.makedirs(cache_dir)
  write_json_atomically(path, metadata.to_json())
  return metadata
