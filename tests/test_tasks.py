"""Stage tasks over token caches: crops decode to the cached tokens, follow gin, mix, and train."""
import ast
import subprocess
import sys

import gin
import numpy as np
import pytest
import seqio

from musiclm_jax import gin_utils
from musiclm_jax import metrics as metrics_lib
from musiclm_jax import musiclm_spec
from musiclm_jax import partitioning
from musiclm_jax import trainer as trainer_lib
from musiclm_jax.data import pipeline
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
from conftest import REPO_DIR
from test_token_cache import random_record

# Semantic frames of the cached clips: one shorter than every crop below, two longer.
TRAIN_FRAMES = (3, 12, 40)
VALIDATION_FRAMES = (20,)
CROP_SECONDS = {"semantic": 0.4, "coarse": 0.2, "fine": 0.1}  # 10, 5 semantic; 5 acoustic frames


def write_cache(cache_dir, seed, acoustic_levels=12, train_frames=TRAIN_FRAMES):
  """A cache of random tokens; returns clip_id -> Record."""
  rng = np.random.default_rng(seed)
  config = {"mulan": {"num_levels": 12, "codebook_size": 1024}, "semantic": {"codebook_size": 1024},
            "acoustic": {"num_levels": acoustic_levels, "codebook_size": 1024}}
  records = {}
  for split, frames in (("train", train_frames), ("validation", VALIDATION_FRAMES)):
    split_records = [random_record(rng, f"{seed}-{split}-{i}", n, acoustic_levels)
                     for i, n in enumerate(frames)]
    token_cache.write_shard(token_cache.shard_path(str(cache_dir), split, 0, 1), split_records, {})
    records.update((r.clip_id, r) for r in split_records)
  token_cache.write_metadata(str(cache_dir), config,
                             {"train": {"num_shards": 1}, "validation": {"num_shards": 1}})
  return records


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
  cache_dir = tmp_path_factory.mktemp("cache")
  return str(cache_dir), write_cache(cache_dir, seed=0)


def _examples(name, stage, split="train", seed=0, epochs=1, crop_seconds=None):
  lengths = tasks.feature_lengths(stage, crop_seconds or CROP_SECONDS[stage])
  ds = seqio.get_mixture_or_task(name).get_dataset(lengths, split=split, shuffle=False, seed=seed,
                                                   num_epochs=epochs)
  return list(ds.as_numpy_iterator())


def _expected_codes(stage, record, start, frames):
  """Codes per kind of the crop of `record` starting at 50 Hz frame `start`."""
  acoustic = record.acoustic[start:start + frames.get("coarse", 0)]
  if stage == "fine":
    return {"coarse": acoustic[:, :4], "fine": acoustic[:, 4:]}
  codes = {"mulan": record.mulan[None],
           "semantic": record.semantic[start // 2:start // 2 + frames["semantic"], None]}
  return dict(codes, coarse=acoustic[:, :4]) if stage == "coarse" else codes


@pytest.mark.parametrize("stage", musiclm_spec.STAGES)
def test_crops_decode_to_the_cached_tokens_at_their_offset(cache, stage):
  cache_dir, records = cache
  name = tasks.register_cache_task(stage, cache_dir, CROP_SECONDS[stage], name=f"t_{stage}")
  frames = tasks.crop_frames(stage, CROP_SECONDS[stage])
  layout = tasks.LAYOUTS[stage]
  full_length = tasks.feature_lengths(stage, CROP_SECONDS[stage])["targets"]
  starts = []
  for ex in _examples(name, stage, epochs=4):
    record = records[ex["clip_id"].decode()]
    start = int(ex["crop_start_frame"])
    if stage != "fine":
      assert start % 2 == 0  # semantic frames are two acoustic frames
    expected = _expected_codes(stage, record, start, frames)
    ids, position = ex["targets"], 0
    for kind in layout.kinds:  # the sequence is the layout's kinds, in order
      size = expected[kind.name].size
      np.testing.assert_array_equal(layout.decode_stream(kind.name, ids[position:position + size]),
                                    expected[kind.name])
      position += size
    assert position == len(ids)
    if len(record.acoustic) >= frames.get("coarse", 0) and len(record.semantic) >= frames.get("semantic", 0):
      assert len(ids) == full_length
    else:  # kept whole, not padded
      assert start == 0 and len(ids) < full_length
    starts.append(start)
  assert len(set(starts)) > 3  # random crops, new ones every epoch


def test_crop_lengths_and_alignment_of_the_coarse_stage(cache):
  cache_dir, records = cache
  name = tasks.register_cache_task("coarse", cache_dir, 0.2, name="t_coarse_align")
  for ex in _examples(name, "coarse"):
    record = records[ex["clip_id"].decode()]
    semantic_frames = min(5, len(record.semantic))
    # 12 MuLan + 5 semantic (25 Hz) + 10 coarse frames (50 Hz) x 4 levels: the same 0.2 s.
    assert len(ex["targets"]) == 12 + semantic_frames + 2 * semantic_frames * 4
  assert tasks.feature_lengths("semantic") == {"targets": 762}  # the paper's 30 s
  assert tasks.feature_lengths("coarse") == {"targets": 12 + 250 + 500 * 4}
  assert tasks.feature_lengths("fine") == {"targets": 150 * 12}


def test_crops_are_deterministic_per_seed(cache):
  name = tasks.register_cache_task("semantic", cache[0], 0.4, name="t_seeded")
  crops = lambda seed: [(ex["clip_id"], int(ex["crop_start_frame"]))
                        for ex in _examples(name, "semantic", seed=seed, epochs=3)]
  assert crops(1) == crops(1)
  assert crops(1) != crops(2)


def test_validation_is_the_caches_own_split(cache):
  name = tasks.register_cache_task("fine", cache[0], 0.1, name="t_validation")
  clip_ids = {ex["clip_id"].decode() for ex in _examples(name, "fine", split="validation")}
  assert clip_ids == {"clip-0-validation-0"}


def test_a_mixture_combines_caches(cache, tmp_path):
  other = write_cache(tmp_path, seed=1, train_frames=(30, 30, 30, 30, 30, 30))
  name = tasks.register_cache_task("semantic", [cache[0], str(tmp_path)], 0.4, name="t_mix")
  mixture = seqio.get_mixture_or_task(name)
  assert isinstance(mixture, seqio.Mixture)
  assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == {"t_mix.0": 3, "t_mix.1": 6}
  ds = mixture.get_dataset({"targets": 22}, split="train", shuffle=True, seed=0)
  seen = [tuple(ex["targets"][:12]) for ex in ds.take(60).as_numpy_iterator()]
  from_other = {tuple(r.mulan + token_layout.semantic_layout().offsets["mulan"]
                      + 1024 * np.arange(12)) for r in other.values()}
  assert 0 < sum(s in from_other for s in seen) < len(seen)


def test_registering_again_replaces_and_bad_caches_are_user_errors(cache, tmp_path):
  first = tasks.register_cache_task("fine", cache[0], 0.1, name="t_again")
  assert tasks.register_cache_task("fine", cache[0], 0.1, name="t_again") == first
  tasks.register_cache_task("fine", cache[0], 0.2, name="t_again")
  assert len(_examples("t_again", "fine", crop_seconds=0.2)[1]["targets"]) == 10 * 12
  write_cache(tmp_path / "eight", seed=2, acoustic_levels=8)
  with pytest.raises(UserError, match="8 acoustic"):
    tasks.register_cache_task("fine", str(tmp_path / "eight"), name="t_eight")
  with pytest.raises(UserError, match="not a token cache"):
    tasks.register_cache_task("fine", str(tmp_path), name="t_none")
  with pytest.raises(UserError, match="unknown stage"):
    tasks.register_cache_task("medium", cache[0])


@pytest.mark.parametrize("stage", musiclm_spec.STAGES)
def test_stage_gin_files_register_the_task_with_their_crop(cache, stage):
  conditioned = stage != "fine"
  rates = ["TEXT_TOKEN_RATE = 0.25", "CONDITION_DROPOUT_RATE = 0.125"] if conditioned else []
  try:
    gin_utils.parse_gin([f"experiments/{stage}_stage.gin"],
                        [f"TOKEN_CACHE_DIR = '{cache[0]}'", f"CROP_SECONDS = {CROP_SECONDS[stage]}",
                         *rates])
    name = gin.get_configurable(tasks.register_cache_task)()
    lengths = gin.get_configurable(tasks.feature_lengths)()
    # The shared run's %STAGE and the entry file's model are the same stage.
    model_stage = gin.query_parameter("lm.DecoderOnlyLM.stage").configurable.name
    model = gin.get_configurable(lm.DecoderOnlyLM)()
  finally:
    gin.clear_config()
  assert name == f"token_cache_{stage}" and model_stage == f"{stage}_stage"
  assert model.condition_dropout_rate == (0.125 if conditioned else 0.0)
  assert tasks.random_access(name).text_rate == (0.25 if conditioned else 0.0)
  with pytest.raises(UserError, match="--gin.TOKEN_CACHE_DIR"):
    tasks.register_cache_task(stage, None)
  assert lengths == tasks.feature_lengths(stage, CROP_SECONDS[stage])
  assert max(len(ex["targets"]) for ex in _examples(name, stage)) == lengths["targets"]


def test_a_tiny_stage_trains_from_a_cache(cache, tmp_path):
  stage = musiclm_spec.coarse_stage()
  name = tasks.register_cache_task("coarse", cache[0], 0.2, name="t_train")
  lengths = tasks.feature_lengths("coarse", 0.2)
  def dataset(split):
    return pipeline.DatasetConfig(name, lengths, split=split, batch_size=2, pack=split == "train",
                                  shuffle=split == "train", repeat=split == "train")
  config = transformer.TransformerConfig(d_model=32, num_layers=1, num_heads=2, d_ff=64)
  steps = 6
  result = trainer_lib.train(
      model=lm.DecoderOnlyLM(config, stage), model_dir=str(tmp_path), total_steps=steps,
      train_dataset_cfg=dataset("train"), eval_dataset_cfg=dataset("validation"),
      eval_period=steps, eval_steps=1, learning_rate=1e-2, log_period=1, checkpoint_period=steps,
      async_checkpointing=False, partitioner=partitioning.Partitioner(num_devices=1))
  assert result["step"] == steps
  records = metrics_lib.read_jsonl(tmp_path / "metrics.jsonl")
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert len(losses) == steps and losses[-1] < losses[0]
  assert np.isfinite([r["eval/loss"] for r in records if "eval/loss" in r]).all()


_IMPORT_DATA_THEN_FIXTURES = """
import importlib, pkgutil, seqio
import musiclm_jax.data
for module in pkgutil.walk_packages(musiclm_jax.data.__path__, "musiclm_jax.data."):
  if not module.name.startswith("musiclm_jax.data.synthetic"):
    importlib.import_module(module.name)
by_pipelines = set(seqio.TaskRegistry.names())
from musiclm_jax.data.synthetic import stage_tasks, toy_tasks
fixtures = {toy_tasks.TOY_TASK_NAME, *map(stage_tasks.task_name, stage_tasks.LAYOUTS)}
print(sorted(by_pipelines & fixtures), sorted(fixtures - set(seqio.TaskRegistry.names())), sep="\\n")
"""


def test_importing_data_pipelines_registers_no_fixture_task():
  # A fresh interpreter: this one's registry already holds whatever other tests imported.
  result = subprocess.run([sys.executable, "-c", _IMPORT_DATA_THEN_FIXTURES], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=300, check=True)
  registered_early, never_registered = map(ast.literal_eval, result.stdout.splitlines()[-2:])
  assert not registered_early and not never_registered, (registered_early, never_registered)


def _conditioning(ex, stage):
  """The MuLan codes [1, 12] an example is conditioned on."""
  layout = tasks.LAYOUTS[stage]
  return layout.decode_stream("mulan", ex["targets"][:token_layout.MULAN.num_levels])[0]


@pytest.mark.parametrize("stage", ["semantic", "coarse"])
def test_text_rate_conditions_on_the_captions_m_t_at_that_rate(cache, stage):
  cache_dir, records = cache
  name = tasks.register_cache_task(stage, cache_dir, CROP_SECONDS[stage], name=f"t_text_{stage}",
                                   text_rate=0.3)
  paper = tasks.register_cache_task(stage, cache_dir, CROP_SECONDS[stage], name=f"t_paper_{stage}")
  picks = []
  examples = _examples(name, stage, epochs=100)
  for ex, paper_ex in zip(examples, _examples(paper, stage, epochs=100)):
    record = records[ex["clip_id"].decode()]
    codes = _conditioning(ex, stage)
    is_text = np.array_equal(codes, record.mulan_text)
    assert is_text or np.array_equal(codes, record.mulan)
    picks.append(is_text)
    # The choice is drawn after the crop: the same crops as the paper's task, only M differs.
    assert ex["crop_start_frame"] == paper_ex["crop_start_frame"]
    np.testing.assert_array_equal(ex["targets"][12:], paper_ex["targets"][12:])
    assert np.array_equal(_conditioning(paper_ex, stage), record.mulan)
  # 300 draws at p = 0.3: mean 90, sd 7.9; the bounds are 4 sd.
  assert 58 <= sum(picks) <= 122, sum(picks)
  assert [_conditioning(ex, stage).tolist() for ex in examples[:30]] == [
      _conditioning(ex, stage).tolist() for ex in _examples(name, stage, epochs=10)]


def test_clips_without_m_t_keep_m_a_and_fine_has_no_text_rate(tmp_path):
  records = write_cache(tmp_path, seed=2)
  for path in token_cache.finished_shards(str(tmp_path), "train"):
    kept = list(token_cache.read_shard(path))
    for record in kept:
      record.mulan_text = np.zeros([0], np.int32)  # a cache written before M_T existed
    token_cache.write_shard(path, kept, {})
  name = tasks.register_cache_task("semantic", str(tmp_path), 0.4, name="t_no_text", text_rate=1.0)
  for ex in _examples(name, "semantic", epochs=3):
    np.testing.assert_array_equal(_conditioning(ex, "semantic"),
                                  records[ex["clip_id"].decode()].mulan)
  with pytest.raises(UserError, match="text_rate 0.5 for the fine stage"):
    tasks.register_cache_task("fine", str(tmp_path), 0.1, name="t_fine_text", text_rate=0.5)
  with pytest.raises(UserError, match="text_rate 1.5"):
    tasks.register_cache_task("semantic", str(tmp_path), 0.4, name="t_bad_text", text_rate=1.5)


def test_random_access_examples_pick_m_t_like_the_seqio_task(cache):
  cache_dir, records = cache
  name = tasks.register_cache_task("semantic", cache_dir, 0.4, name="t_text_random", text_rate=0.5)
  examples = tasks.random_access(name)
  picks = []
  for index in range(examples.num_examples("train")):
    for seed in range(40):
      ex = examples.example("train", index, np.random.default_rng(seed))
      record = records[ex["clip_id"]]
      picks.append(np.array_equal(_conditioning(ex, "semantic"), record.mulan_text))
      again = examples.example("train", index, np.random.default_rng(seed))
      np.testing.assert_array_equal(ex["targets"], again["targets"])
  assert 0.35 <= np.mean(picks) <= 0.65  # 120 draws at p = 0.5: sd 0.046
  with pytest.raises(UserError, match="holds no 'test' clips: tokenize that split"):
    examples.num_examples("test")  # the cache has train and validation splits only
