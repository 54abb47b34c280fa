"""AudioBatchSource: deterministic crops, resume positions, host shards, eval passes."""
import pathlib

import numpy as np
import pytest

from musiclm_jax.data import audio_batches
from musiclm_jax.errors import UserError


@pytest.fixture(scope="module")
def source(synth_music_micro):
  root = pathlib.Path(synth_music_micro.data_dir).parents[2]  # <root>/synth_music/micro/1.0.0
  return audio_batches.AudioBatchSource("synth_music/micro", data_dir=str(root), batch_size=4,
                                        crop_seconds=0.25, seed=3)


def _take(iterator, n):
  return [next(iterator)["audio"] for _ in range(n)]


def test_crops_are_deterministic_and_differ_between_batches(source):
  first = _take(source.get_batches(), 3)
  again = _take(source.get_batches(), 3)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert first[0].shape == (4, 6000) and first[0].dtype == np.float32
  assert not np.array_equal(first[0], first[1])
  other_seed = audio_batches.AudioBatchSource(**{**source.__dict__, "seed": 4})
  assert not np.array_equal(next(other_seed.get_batches())["audio"], first[0])


def test_start_batch_resumes_where_an_uninterrupted_run_would_be(source):
  straight = _take(source.get_batches(), 5)
  resumed = _take(source.get_batches(start_batch=3), 2)
  np.testing.assert_array_equal(resumed[0], straight[3])
  np.testing.assert_array_equal(resumed[1], straight[4])


def test_hosts_read_contiguous_rows_of_the_global_batch(source):
  full = next(source.get_batches())["audio"]
  halves = [next(source.get_batches(shard, 2))["audio"] for shard in range(2)]
  np.testing.assert_array_equal(np.concatenate(halves), full)
  with pytest.raises(UserError, match="not divisible"):
    next(source.get_batches(0, 3))


def test_crops_come_from_the_clips(source):
  clips = audio_batches._load_clips(source.dataset, source.data_dir, source.split, "audio",
                                    24_000, source.crop_samples)
  crop = next(source.get_batches())["audio"][0]
  assert any(_contains(clip, crop) for clip in clips)


def _contains(clip, crop):
  starts = np.flatnonzero(clip == crop[0])
  return any(np.array_equal(clip[s:s + len(crop)], crop) for s in starts)


def test_eval_reads_each_clip_once_from_its_start(source):
  evaluation = audio_batches.AudioBatchSource(**{**source.__dict__, "split": "train", "repeat": False,
                                                 "batch_size": 2})
  batches = list(evaluation.get_batches())
  clips = audio_batches._load_clips(source.dataset, source.data_dir, "train", "audio", 24_000,
                                    source.crop_samples)
  assert len(batches) == len(clips) // 2
  np.testing.assert_array_equal(batches[0]["audio"][1], clips[1][:source.crop_samples])
  assert len(list(evaluation.get_batches(start_batch=1))) == len(batches) - 1


def test_user_mistakes_are_one_line_errors(source):
  too_long = audio_batches.AudioBatchSource(**{**source.__dict__, "crop_seconds": 60.0})
  with pytest.raises(UserError, match="lower crop_seconds"):
    next(too_long.get_batches())
  wrong_rate = audio_batches.AudioBatchSource(**{**source.__dict__, "sample_rate_hz": 16_000})
  with pytest.raises(UserError, match="16000 Hz"):
    next(wrong_rate.get_batches())
  missing = audio_batches.AudioBatchSource("no_such_dataset/x", data_dir=source.data_dir)
  with pytest.raises(UserError, match="cannot open TFDS dataset"):
    next(missing.get_batches())
