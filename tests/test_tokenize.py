"""musiclm-tokenize: the cache holds every clip's tokens once, resumes, splits across hosts, skips bad audio."""
import os
import shutil

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

import fake_tokenizers
import numpy_params
from conftest import TESTS_DIR, run_binary, sine
from musiclm_jax import musiclm_spec
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.errors import UserError
from musiclm_jax.models import soundstream
from musiclm_jax.tokenizers import acoustic
from musiclm_jax.tokenizers import cache_writer

FAKES = dict(semantic_tokenizer=fake_tokenizers.FakeSemanticTokenizer(),
             acoustic_tokenizer=fake_tokenizers.FakeAcousticTokenizer(),
             conditioning_tokenizer=fake_tokenizers.FakeConditioningTokenizer())


def _tokenize(builder, cache_dir, **kwargs):
  args = dict(FAKES, dataset=builder.info.full_name.rsplit("/", 1)[0],
              data_dir=builder.data_dir_root, cache_dir=str(cache_dir), clips_per_shard=2,
              batch_size=2, process_index=0, process_count=1)
  return cache_writer.tokenize_dataset(**dict(args, **kwargs))


def _tfds_clips(builder, split):
  """tfds_id -> [samples] float32 audio of every clip of the split."""
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          read_config=tfds.ReadConfig(add_tfds_id=True))
  return {ex["tfds_id"].decode(): ex["audio"] for ex in ds.as_numpy_iterator()}


def _shard_bytes(cache_dir):
  return {name: (cache_dir / name).read_bytes() for name in sorted(os.listdir(cache_dir))
          if ".tfrecord-" in name}


@pytest.fixture(scope="module")
def micro_cache(synth_music_micro, tmp_path_factory):
  cache_dir = tmp_path_factory.mktemp("cache")
  metadata = _tokenize(synth_music_micro, cache_dir)
  return cache_dir, metadata


def test_every_clip_once_with_its_tokens(synth_music_micro, micro_cache):
  cache_dir, metadata = micro_cache
  for split in ("train", "validation"):
    clips = _tfds_clips(synth_music_micro, split)
    records = list(token_cache.read_split(str(cache_dir), split))
    assert sorted(r.clip_id for r in records) == sorted(clips)
    for record in records:
      # 24 kHz already; trimmed to whole 40 ms frames, never padded.
      audio = clips[record.clip_id][None, :record.num_samples]
      assert record.num_samples == len(clips[record.clip_id]) // 960 * 960 > 0
      assert record.acoustic.shape == (2 * len(record.semantic), 12)
      np.testing.assert_array_equal(record.semantic, FAKES["semantic_tokenizer"].tokenize(audio)[0])
      np.testing.assert_array_equal(record.acoustic, FAKES["acoustic_tokenizer"].encode(audio)[0])
      np.testing.assert_array_equal(record.mulan, FAKES["conditioning_tokenizer"].audio_tokens(audio)[0])
      np.testing.assert_array_equal(record.mulan_text,
                                    FAKES["conditioning_tokenizer"].text_tokens([record.caption])[0])
      assert record.caption and record.labels["genre"] and "audio" not in record.labels
      assert "audio" not in record.labels["melody_pair"]
  assert metadata.splits["train"]["num_shards"] == 3  # 6 clips, 2 per shard
  assert metadata.splits["train"]["num_records"] == 6 and metadata.splits["train"]["skipped"] == {}
  assert metadata.config["acoustic"]["class"] == "fake_tokenizers.FakeAcousticTokenizer"


def test_a_melody_tokenizer_adds_melody_tokens_the_melody_stage_trains_on(synth_music_micro,
                                                                            micro_cache, tmp_path):
  melody = fake_tokenizers.FakeMelodyTokenizer()
  metadata = _tokenize(synth_music_micro, tmp_path, melody_tokenizer=melody, splits=("train",))
  assert metadata.has_melody and not token_cache.load_metadata(str(micro_cache[0])).has_melody
  assert metadata.config["melody"]["hop_seconds"] == 3.0
  clips = _tfds_clips(synth_music_micro, "train")
  plain = {r.clip_id: r for r in token_cache.read_split(str(micro_cache[0]), "train")}
  for record in token_cache.read_split(str(tmp_path), "train"):
    audio = clips[record.clip_id][None, :record.num_samples]
    np.testing.assert_array_equal(record.melody, melody.tokenize(audio)[0])
    np.testing.assert_array_equal(record.semantic, plain[record.clip_id].semantic)
    assert plain[record.clip_id].melody is None
  name = tasks.register_cache_task("semantic", str(tmp_path), 1.0, name="tok_melody", melody=True)
  example = tasks.random_access(name).example("train", 0, np.random.default_rng(0))
  layout = musiclm_spec.semantic_stage(melody=True).layout
  assert layout.contains("melody", example["targets"]).sum() == 24  # 1 s: 1 window


def test_a_killed_run_resumes_and_keeps_finished_shards(synth_music_micro, micro_cache, tmp_path):
  full_dir, _ = micro_cache
  cache_dir = tmp_path / "cache"
  shutil.copytree(full_dir, cache_dir)
  expected = _shard_bytes(full_dir)
  # Killed while writing shard 1: its file is a temporary one, the others are done.
  shard1 = os.path.basename(token_cache.shard_path("", "train", 1, 3))
  os.remove(cache_dir / shard1)
  os.remove(cache_dir / (shard1 + ".json"))
  (cache_dir / (shard1 + ".tmp")).write_bytes(b"partial")
  for name in expected:
    if not name.startswith(shard1):
      os.utime(cache_dir / name, (1, 1))  # so that a rewrite would show
  metadata = _tokenize(synth_music_micro, cache_dir)
  assert _shard_bytes(cache_dir) == expected
  assert not [n for n in os.listdir(cache_dir) if n.endswith(".tmp")]
  rewritten = [n for n in expected if os.stat(cache_dir / n).st_mtime != 1]
  assert sorted(rewritten) == [shard1, shard1 + ".json"]
  assert metadata.splits["train"]["finished_shards"] == 3


def test_two_hosts_write_disjoint_shards_that_cover_every_clip(synth_music_micro, micro_cache,
                                                               tmp_path):
  full_dir, _ = micro_cache
  per_host = []
  for host in (0, 1):
    _tokenize(synth_music_micro, tmp_path, process_index=host, process_count=2)
    per_host.append(set(_shard_bytes(tmp_path)) - set().union(*per_host))
  assert per_host[0] and per_host[1] and not per_host[0] & per_host[1]
  assert {n for n in per_host[1] if not n.endswith(".json")} == {"train.tfrecord-00001-of-00003"}
  # Together: the single-host cache, byte for byte.
  assert _shard_bytes(tmp_path) == _shard_bytes(full_dir)
  assert token_cache.load_metadata(str(tmp_path)).splits["train"]["num_records"] == 6


def test_resuming_with_other_tokenizers_is_refused(synth_music_micro, micro_cache, tmp_path):
  shutil.copytree(micro_cache[0], tmp_path / "cache")
  other = fake_tokenizers.FakeSemanticTokenizer(codebook_size=512)
  with pytest.raises(UserError, match="other settings \\(semantic\\)"):
    _tokenize(synth_music_micro, tmp_path / "cache", semantic_tokenizer=other)


class BadClips(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Five 16 kHz clips: two good, one silent, one with a NaN, one too short."""
  VERSION = tfds.core.Version("1.0.0")
  SAMPLE_RATE_HZ = 16_000

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "audio": tfds.features.Audio(shape=(None,), dtype=np.float32,
                                     sample_rate=self.SAMPLE_RATE_HZ),
        "caption": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    rate = self.SAMPLE_RATE_HZ
    nan = sine(330, 1.5, rate)
    nan[100] = np.nan
    clips = {"good 1": sine(440, 1.5, rate), "good 2": sine(220, 1.2, rate),
             "silent": np.zeros(rate * 2, np.float32), "nan": nan, "short": sine(440, 0.5, rate)}
    for key, audio in clips.items():
      yield key, {"audio": audio, "caption": key}


@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory):
  builder = BadClips(data_dir=str(tmp_path_factory.mktemp("tfds")))
  builder.download_and_prepare()
  return builder


def _tokenize_bad(builder, cache_dir, **kwargs):
  return _tokenize(builder, cache_dir, splits=["train"], clips_per_shard=8, **kwargs)


def test_bad_clips_are_counted_with_reasons(bad_clips, tmp_path):
  metadata = _tokenize_bad(bad_clips, tmp_path)
  assert metadata.splits["train"]["skipped"] == {"digital silence": 1, "NaN/Inf samples": 1,
                                                 "too short": 1}
  records = list(token_cache.read_split(str(tmp_path), "train"))
  assert sorted(r.caption for r in records) == ["good 1", "good 2"]
  # Resampled from 16 kHz: 1.5 s is 36,000 samples at 24 kHz, 37 whole semantic frames.
  by_caption = {r.caption: r for r in records}
  assert by_caption["good 1"].num_samples == 37 * 960
  assert by_caption["good 2"].semantic.shape == (30,)
  stats = token_cache.read_json(token_cache.finished_shards(str(tmp_path), "train")[0] + ".json")
  assert "is shorter than the minimum" in stats["skipped_examples"]["too short"]


def test_unreadable_records_are_counted(bad_clips, tmp_path):
  data_dir = tmp_path / "tfds"
  shutil.copytree(bad_clips.data_dir_root, data_dir)
  (shard,) = [p for p in (data_dir / "bad_clips/1.0.0").iterdir() if ".tfrecord-" in p.name]
  shard.write_bytes(shard.read_bytes()[:-10])  # the last record is cut short
  metadata = _tokenize_bad(bad_clips, tmp_path / "cache", data_dir=str(data_dir))
  counts = metadata.splits["train"]
  assert counts["skipped"]["unreadable"] == 1
  assert counts["num_records"] + sum(counts["skipped"].values()) == 5


def test_real_soundstream_tokenizer_keeps_frames_aligned(synth_music_micro, tmp_path):
  config = soundstream.SoundStreamConfig(channels=2, embedding_dim=8, num_levels=12,
                                         codebook_size=16, dilations=(1,), weight_norm=False)
  model = soundstream.SoundStreamModel(config)
  audio = jax.ShapeDtypeStruct((1, config.hop_length), np.float32)
  generator = numpy_params.draw_params(jax.eval_shape(model.codec.init, jax.random.key(0), audio))
  quantizer = dict(model.rvq.init_state(), codebooks=np.random.default_rng(0).normal(
      size=(12, 16, 8)).astype(np.float32), initialized=np.float32(1))
  codec = acoustic.SoundStreamTokenizer(model, {soundstream.GENERATOR: generator["params"],
                                                soundstream.QUANTIZER: quantizer})
  _tokenize(synth_music_micro, tmp_path, acoustic_tokenizer=codec, splits=["validation"],
            batch_size=4)
  (record,) = token_cache.read_split(str(tmp_path), "validation")
  assert record.acoustic.shape == (2 * len(record.semantic), 12) == (100, 12)
  assert len(np.unique(record.acoustic)) > 1 and record.acoustic.max() < 16


def test_binary_writes_a_cache_and_reports_counts(synth_music_micro, tmp_path):
  result = run_binary(
      "musiclm_jax.tokenize_dataset", f"--gin_file={os.path.join(TESTS_DIR, 'gin', 'tokenize_fakes.gin')}",
      "--gin.DATASET='synth_music/micro'", f"--gin.DATA_DIR='{synth_music_micro.data_dir_root}'",
      f"--gin.TOKEN_CACHE_DIR='{tmp_path}'", timeout_seconds=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "train: 6 records in 3/3 shards; skipped none" in result.stdout
  assert "validation: 1 records in 1/1 shards" in result.stdout
  assert (tmp_path / "config.gin").exists()
  assert len(list(token_cache.read_split(str(tmp_path), "train"))) == 6


def test_tokenize_gin_binds_the_real_tokenizer_loaders():
  semantic = pytest.importorskip("musiclm_jax.tokenizers.semantic")
  conditioning = pytest.importorskip("musiclm_jax.tokenizers.conditioning")
  import gin  # pylint: disable=import-outside-toplevel
  from musiclm_jax import gin_utils  # pylint: disable=import-outside-toplevel
  try:
    gin_utils.parse_gin(["runs/tokenize.gin"], ["DATASET = 'd'", "TOKEN_CACHE_DIR = '/c'",
                                                "KMEANS_PATH = '/k.npz'"])
    loaders = {name: gin.query_parameter(f"cache_writer.tokenize_dataset.{name}_tokenizer")
               for name in ("semantic", "acoustic", "conditioning")}
    kmeans = gin.query_parameter("semantic.SemanticTokenizer.load.kmeans_path")
  finally:
    gin.clear_config()
  assert loaders["semantic"].configurable.wrapped == semantic.SemanticTokenizer.load
  assert loaders["acoustic"].configurable.wrapped == acoustic.SoundStreamTokenizer.load
  assert loaders["conditioning"].configurable.wrapped == conditioning.MuLanTokenizer.load
  assert repr(kmeans) == "%KMEANS_PATH"
