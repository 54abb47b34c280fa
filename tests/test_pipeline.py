"""The stage input by index: batch b from b alone, equal to the uninterrupted stream, on any host."""
import numpy as np
import pytest
import seqio
import tensorflow as tf

from musiclm_jax import metrics as metrics_lib
from musiclm_jax import musiclm_spec
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import pipeline
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.errors import UserError
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
from test_tasks import write_cache

CROP_SECONDS = 0.4  # 10 semantic frames; the cached train clips have 3, 12 and 40
LENGTHS = tasks.feature_lengths("semantic", CROP_SECONDS)
LAYOUT = tasks.LAYOUTS["semantic"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  cache_dir = tmp_path_factory.mktemp("cache")
  return str(cache_dir), write_cache(cache_dir, seed=0)


def _config(name, **kwargs):
  return pipeline.DatasetConfig(name, LENGTHS, **dict(dict(batch_size=4), **kwargs))


def _take(batches, n):
  return [next(batches) for _ in range(n)]


def _assert_same(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _clip_of(row, records):
  """The cached record a semantic-stage row was cropped from (checked), by its MuLan tokens."""
  tokens = row["decoder_target_tokens"]
  mulan = LAYOUT.decode_stream("mulan", tokens[:12])[0]
  [record] = [r for r in records.values() if np.array_equal(r.mulan, mulan)]
  semantic = LAYOUT.decode_stream("semantic", tokens[12:][tokens[12:] != 0])[:, 0]
  starts = [s for s in range(len(record.semantic) - len(semantic) + 1)
            if np.array_equal(record.semantic[s:s + len(semantic)], semantic)]
  assert starts and len(semantic) == min(10, len(record.semantic))
  return record.clip_id


def test_resumed_batches_equal_the_uninterrupted_ones_across_epochs_and_hosts(cache):
  name = tasks.register_cache_task("semantic", cache[0], CROP_SECONDS, name="p_resume")
  cfg = _config(name)
  straight = _take(cfg.get_batches(), 12)  # 48 examples of 3 clips: 16 epochs
  for batch in range(12):
    _assert_same(next(cfg.get_batches(start_batch=batch)), straight[batch])
    hosts = [next(cfg.get_batches(host, 2, start_batch=batch)) for host in range(2)]
    _assert_same({k: np.concatenate([h[k] for h in hosts]) for k in hosts[0]}, straight[batch])
  rows = [{k: v[i] for k, v in b.items()} for b in straight for i in range(4)]
  clips = [_clip_of(row, cache[1]) for row in rows]
  for epoch in range(16):  # every clip once per epoch, in an order shuffled per epoch
    assert sorted(clips[3 * epoch:3 * epoch + 3]) == sorted(r for r in cache[1] if "train" in r)
  assert len({tuple(clips[3 * e:3 * e + 3]) for e in range(16)}) > 1
  longest = {tuple(r["decoder_target_tokens"]) for r, c in zip(rows, clips) if c == "clip-0-train-2"}
  assert len(longest) > 3  # new crops every epoch
  assert not np.array_equal(next(_config(name, seed=1).get_batches())["decoder_target_tokens"],
                            straight[0]["decoder_target_tokens"])


def test_a_far_position_reads_only_the_records_it_serves(cache, monkeypatch):
  name = tasks.register_cache_task("semantic", cache[0], CROP_SECONDS, name="p_far")
  read = []
  get_record = token_cache.SplitReader.__getitem__
  monkeypatch.setattr(token_cache.SplitReader, "__getitem__",
                      lambda self, i: read.append(i) or get_record(self, i))
  batch = next(_config(name).get_batches(1, 2, start_batch=10**9))
  assert len(read) == 2 and batch["decoder_target_tokens"].shape == (2, LENGTHS["targets"])


def test_batches_are_what_seqio_feature_converter_makes():
  rng = np.random.default_rng(0)
  targets = [rng.integers(2, 1000, n).astype(np.int32) for n in (1, 5, 9, 9)]
  ds = tf.data.Dataset.from_generator(lambda: ({"targets": t} for t in targets),
                                      output_signature={"targets": tf.TensorSpec([None], tf.int32)})
  reference = seqio.DecoderFeatureConverter(pack=False)(ds, {"targets": 9}).batch(4)
  expected = {k: v.astype(np.float32 if k.endswith("loss_weights") else np.int32)
              for k, v in next(reference.as_numpy_iterator()).items()}
  _assert_same(pipeline.decoder_features(targets, 9), expected)


def test_a_mixture_of_caches_is_read_by_index_at_its_rates(cache, tmp_path):
  other = write_cache(tmp_path, seed=1, train_frames=(30,) * 6)
  name = tasks.register_cache_task("semantic", [cache[0], str(tmp_path)], CROP_SECONDS,
                                   name="p_mix")
  cfg = _config(name, batch_size=16)
  batches = _take(cfg.get_batches(), 64)  # 1024 examples: rates 3 : 6 of the train records
  records = dict(cache[1], **other)
  clips = [_clip_of({k: v[i] for k, v in b.items()}, records) for b in batches for i in range(16)]
  assert sum(c.startswith("clip-1-") for c in clips) == 683  # 1024 * 6 / 9, rounded
  _assert_same(next(cfg.get_batches(1, 2, start_batch=63)),
               {k: v[8:] for k, v in batches[63].items()})


def test_evaluation_reads_each_record_once_in_order(cache):
  name = tasks.register_cache_task("semantic", cache[0], CROP_SECONDS, name="p_eval")
  batches = list(_config(name, batch_size=1, shuffle=False, repeat=False).get_batches())
  assert [_clip_of({k: v[0] for k, v in b.items()}, cache[1]) for b in batches] == [
      f"clip-0-train-{i}" for i in range(3)]
  assert not list(_config(name, batch_size=4, repeat=False).get_batches())  # 3 < one batch


def test_mixing_rates_too_small_for_a_block_are_user_errors():
  with pytest.raises(UserError, match="mixing rates"):
    pipeline.ExampleOrder([10, 10], [1, 10**6], seed=0, shuffle=True, repeat=True)


def _train(cfg, model_dir, stop_at_step=None):
  config = transformer.TransformerConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64)
  return trainer_lib.train(
      model=lm.DecoderOnlyLM(config, musiclm_spec.semantic_stage()), model_dir=str(model_dir),
      total_steps=6, stop_at_step=stop_at_step, train_dataset_cfg=cfg, learning_rate=1e-2,
      log_period=1, checkpoint_period=6, async_checkpointing=False,
      partitioner=partitioning.Partitioner(num_devices=1))


def test_a_resumed_stage_run_matches_the_uninterrupted_one(cache, tmp_path):
  name = tasks.register_cache_task("semantic", cache[0], CROP_SECONDS, name="p_train")
  cfg = _config(name, batch_size=2)
  _train(cfg, tmp_path / "straight")
  assert _train(cfg, tmp_path / "resumed", stop_at_step=3)["step"] == 3
  assert _train(cfg, tmp_path / "resumed")["step"] == 6
  losses = {run: {r["step"]: r["train/loss"] for r in metrics_lib.read_jsonl(
      tmp_path / run / "metrics.jsonl") if "train/loss" in r} for run in ("straight", "resumed")}
  assert sorted(losses["resumed"]) == list(range(1, 7))
  np.testing.assert_allclose([losses["resumed"][s] for s in range(4, 7)],
                             [losses["straight"][s] for s in range(4, 7)], rtol=1e-6)
