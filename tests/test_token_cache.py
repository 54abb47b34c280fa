"""The token cache's files: exact round trips, atomic shards, metadata that guards a resume."""
import json
import os

import numpy as np
import pytest

from musiclm_jax.data import token_cache
from musiclm_jax.errors import UserError


def random_record(rng, index: int, semantic_frames: int, acoustic_levels: int = 12,
                  codebook_size: int = 1024) -> token_cache.Record:
  return token_cache.Record(
      clip_id=f"clip-{index}", mulan=rng.integers(0, codebook_size, 12).astype(np.int32),
      semantic=rng.integers(0, codebook_size, semantic_frames).astype(np.int32),
      acoustic=rng.integers(0, codebook_size, (2 * semantic_frames, acoustic_levels)).astype(np.int32),
      num_samples=960 * semantic_frames, caption=f"ünïcode caption {index}",
      labels={"genre": "jazz", "tempo_bpm": 92.5, "instruments": ["piano", "bass"],
              "melody": {"pitch": [60, 62]}},
      mulan_text=rng.integers(0, codebook_size, 12).astype(np.int32))


def assert_same_record(a: token_cache.Record, b: token_cache.Record):
  assert (a.clip_id, a.caption, a.labels, a.num_samples) == (b.clip_id, b.caption, b.labels,
                                                             b.num_samples)
  for name in ("mulan", "semantic", "acoustic", "mulan_text"):
    np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert getattr(a, name).shape == getattr(b, name).shape


def test_shards_round_trip_records_exactly(tmp_path):
  rng = np.random.default_rng(0)
  records = [random_record(rng, i, frames) for i, frames in enumerate([5, 1, 13])]
  records.append(random_record(rng, 3, 4, codebook_size=2))  # codes 0 and 1 are real codes too
  records[1].mulan_text = np.zeros([0], np.int32)  # no caption, no M_T
  path = token_cache.shard_path(str(tmp_path), "train", 0, 1)
  token_cache.write_shard(path, records, {"skipped": {"digital silence": 2}})
  back = list(token_cache.read_split(str(tmp_path), "train"))
  assert len(back) == len(records)
  for a, b in zip(records, back):
    assert_same_record(a, b)
  assert token_cache.read_json(path + ".json") == {"skipped": {"digital silence": 2}, "num_records": 4}


def test_only_finished_shards_are_read(tmp_path):
  rng = np.random.default_rng(1)
  done = token_cache.shard_path(str(tmp_path), "train", 1, 3)
  token_cache.write_shard(done, [random_record(rng, 0, 3)], {})
  # What a killed run leaves behind: a temporary shard and a temporary sidecar.
  killed = token_cache.shard_path(str(tmp_path), "train", 2, 3)
  (tmp_path / (os.path.basename(killed) + ".tmp")).write_bytes(b"half a record")
  (tmp_path / (os.path.basename(killed) + ".json.tmp")).write_text("{")
  assert sorted(os.listdir(tmp_path))[:2] == [os.path.basename(done), os.path.basename(done) + ".json"]
  assert token_cache.finished_shards(str(tmp_path), "train") == [done]
  assert [r.clip_id for r in token_cache.read_split(str(tmp_path), "train")] == ["clip-0"]
  assert token_cache.split_counts(str(tmp_path), "train") == {
      "finished_shards": 1, "num_records": 1, "skipped": {}}


def test_a_split_reader_reads_any_record_directly(tmp_path):
  rng = np.random.default_rng(2)
  for shard, frames in enumerate([(5, 1, 13), (2,), (7, 3)]):
    token_cache.write_shard(token_cache.shard_path(str(tmp_path), "train", shard, 3),
                            [random_record(rng, 10 * shard + i, n) for i, n in enumerate(frames)], {})
  in_order = list(token_cache.read_split(str(tmp_path), "train"))  # TFRecordDataset: the reference
  reader = token_cache.SplitReader(str(tmp_path), "train")
  assert len(reader) == 6
  for index in [5, 0, 3, 3, 1, 4, 2, 0]:
    assert_same_record(reader[index], in_order[index])
  with pytest.raises(IndexError):
    reader[6]


CONFIG = {"mulan": {"num_levels": 12, "codebook_size": 1024},
          "semantic": {"codebook_size": 1024},
          "acoustic": {"num_levels": 12, "codebook_size": 1024}, "dataset": "d/c"}


def test_metadata_counts_finished_shards_and_guards_the_config(tmp_path):
  cache = str(tmp_path / "cache")
  planned = {"train": {"num_shards": 2, "num_clips": 5}}
  token_cache.write_metadata(cache, CONFIG, planned)
  rng = np.random.default_rng(2)
  for shard, skipped in ((0, {"too short": 1}), (1, {"too short": 2, "unreadable": 1})):
    token_cache.write_shard(token_cache.shard_path(cache, "train", shard, 2),
                            [random_record(rng, shard, 2)], {"skipped": skipped})
  metadata = token_cache.write_metadata(cache, CONFIG, planned)
  assert metadata.splits["train"] == {"num_shards": 2, "num_clips": 5, "finished_shards": 2,
                                      "num_records": 2, "skipped": {"too short": 3, "unreadable": 1}}
  loaded = token_cache.load_metadata(cache)
  assert loaded == metadata and loaded.acoustic_levels == 12 and loaded.codebook_size("semantic") == 1024
  with open(os.path.join(cache, "metadata.json")) as f:
    assert json.load(f)["format_version"] == token_cache.FORMAT_VERSION
  other = dict(CONFIG, semantic={"codebook_size": 512})
  with pytest.raises(UserError, match="other settings \\(semantic\\)"):
    token_cache.write_metadata(cache, other, planned)


def test_a_cache_with_unwritten_shards_is_refused_until_tokenize_finishes(tmp_path):
  # musiclm-tokenize writes metadata.json first: a reader must not take a cache still being
  # written (or a stopped run's) for a whole one.
  cache = str(tmp_path / "cache")
  planned = {"train": {"num_shards": 2, "num_clips": 2},
             "validation": {"num_shards": 1, "num_clips": 1}}
  token_cache.write_metadata(cache, CONFIG, planned)
  rng = np.random.default_rng(3)
  shards = (("train", 0, 2), ("train", 1, 2), ("validation", 0, 1))
  for (split, shard, num_shards), missing in zip(shards, ("0 of 2 train", "1 of 2 train",
                                                          "0 of 1 validation")):
    with pytest.raises(UserError) as e:
      token_cache.load_metadata(cache)
    message = str(e.value)
    assert "unfinished" in message and "musiclm-tokenize" in message and "\n" not in message
    assert missing in message, message
    token_cache.write_shard(token_cache.shard_path(cache, split, shard, num_shards),
                            [random_record(rng, shard, 2)], {"skipped": {}})
  # Whole now; the counts are the shards', not those metadata.json was written with (none).
  assert token_cache.load_metadata(cache).splits["train"] == {
      "num_shards": 2, "num_clips": 2, "finished_shards": 2, "num_records": 2, "skipped": {}}


def test_a_folder_without_metadata_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="not a token cache"):
    token_cache.load_metadata(str(tmp_path))
