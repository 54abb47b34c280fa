r"""Resume cost of the stage input: seconds to the first batch when starting at batch b.

  .venv/bin/python benchmarks/resume.py
  .venv/bin/python benchmarks/resume.py --clips=256 --replay_batches=2000

Writes a small synthetic token cache (random tokens, --clips clips of
--clip_seconds) into a temporary folder, reads it with the train
`DatasetConfig` of experiments/semantic_stage.gin (tiny scale: batch 8, 10 s
crops), and prints one JSON line: seconds from `get_batches(start_batch=b)` to
its first batch, the best of --repeats after a first start at batch 0 (timed
apart as index_open_seconds), for b = 10 and 100,000 by index (how
token-cache tasks are read), and for b = 10 and --replay_batches through
SeqIO's tf.data path (how packing and other SeqIO tasks are read, and how all
were before: it replays every batch before b; SeqIO caches a cache this small
in memory, so at scale replaying costs more), with the 1-minute load average,
since other work on the machine slows every figure.
"""
import json
import os
import tempfile
import time

from absl import flags
import gin
import numpy as np
import seqio

from musiclm_jax import gin_utils
from musiclm_jax import musiclm_spec as spec
from musiclm_jax.data import pipeline
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout

_CLIPS = flags.DEFINE_integer("clips", 64, "Clips in the synthetic cache.")
_CLIP_SECONDS = flags.DEFINE_float("clip_seconds", 20.0, "Length of each clip.")
_REPLAY_BATCHES = flags.DEFINE_integer("replay_batches", 1000,
                                       "Far position timed on the replaying path.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed starts per position; the fastest is reported.")

SHARDS = 4


def _write_cache(cache_dir: str, clips: int, clip_seconds: float) -> None:
  rng = np.random.default_rng(0)
  size = token_layout.SEMANTIC.codebook_size
  acoustic_levels = token_layout.COARSE.num_levels + token_layout.FINE.num_levels
  frames = int(clip_seconds * spec.SEMANTIC_RATE_HZ)
  records = [token_cache.Record(
      clip_id=f"clip-{i}", mulan=rng.integers(0, size, token_layout.MULAN.num_levels),
      semantic=rng.integers(0, size, frames),
      acoustic=rng.integers(0, size, (spec.ACOUSTIC_PER_SEMANTIC * frames, acoustic_levels)),
      num_samples=spec.SAMPLES_PER_SEMANTIC_FRAME * frames) for i in range(clips)]
  for shard in range(SHARDS):
    token_cache.write_shard(token_cache.shard_path(cache_dir, "train", shard, SHARDS),
                            records[shard::SHARDS], {})
  config = {"mulan": {"num_levels": token_layout.MULAN.num_levels, "codebook_size": size},
            "semantic": {"codebook_size": size},
            "acoustic": {"num_levels": acoustic_levels, "codebook_size": size}}
  token_cache.write_metadata(cache_dir, config, {"train": {"num_shards": SHARDS}})


def _seconds_to_first_batch(batches_from, start_batch: int) -> float:
  best = float("inf")
  for _ in range(_REPEATS.value):
    begin = time.perf_counter()
    next(batches_from(start_batch))
    best = min(best, time.perf_counter() - begin)
  return best


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  with tempfile.TemporaryDirectory() as cache_dir:
    _write_cache(cache_dir, _CLIPS.value, _CLIP_SECONDS.value)
    gin_utils.parse_gin(["experiments/semantic_stage.gin"],
                        [f"TOKEN_CACHE_DIR = '{cache_dir}'"])
    cfg = gin.query_parameter("trainer.train.train_dataset_cfg").scoped_configurable_fn()
    provider = seqio.get_mixture_or_task(cfg.mixture_or_task_name)
    by_index = lambda b: cfg.get_batches(start_batch=b)
    replaying = lambda b: pipeline._seqio_batches(cfg, provider, 0, 1, b)  # pylint: disable=protected-access
    # The first start of each path opens the data (index: reads the record headers; tf.data:
    # builds the graph), whatever the position: timed apart, so the positions compare alone.
    begin = time.perf_counter()
    next(by_index(0))
    open_seconds = time.perf_counter() - begin
    next(replaying(0))
    result = {
        "batch_size": cfg.batch_size, "targets_length": cfg.task_feature_lengths["targets"],
        "clips": _CLIPS.value, "clip_seconds": _CLIP_SECONDS.value,
        "index_open_seconds": open_seconds,
        "index_seconds_at_10": _seconds_to_first_batch(by_index, 10),
        "index_seconds_at_100000": _seconds_to_first_batch(by_index, 100_000),
        "replay_seconds_at_10": _seconds_to_first_batch(replaying, 10),
        f"replay_seconds_at_{_REPLAY_BATCHES.value}": _seconds_to_first_batch(
            replaying, _REPLAY_BATCHES.value),
    }
  result["index_ratio_100000_to_10"] = (result["index_seconds_at_100000"]
                                        / result["index_seconds_at_10"])
  result = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
  print(json.dumps(dict(result, load_average_1min=os.getloadavg()[0])))


if __name__ == "__main__":
  # gin_utils.run also sets the binaries' XLA:CPU flags before JAX starts.
  gin_utils.run(main, usage="configure with --clips, --clip_seconds, --replay_batches, --repeats")
