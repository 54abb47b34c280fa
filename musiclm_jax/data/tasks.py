"""SeqIO tasks of the three stages over token caches (`data/token_cache.py`).

An example is one random crop of one cached clip, as a 'targets' sequence
in the stage's `token_layout`:

  semantic  [M_A | S]             crop 30 s (paper): 12 + 750 tokens
  coarse    [M_A | S | Ac]        crop 10 s: 12 + 250 + 500 x 4 tokens
  fine      [Ac | Af]             crop 3 s: 150 x 4 + 150 x 8 tokens

Multi-level streams are flattened time-major, levels interleaved. In the
coarse stage the S and Ac crops cover the same time (acoustic frames 2 s0 ..
2 (s0 + n) for semantic frames s0 .. s0 + n). A clip shorter than the crop is
kept whole, never padded: the sequence is shorter, and the feature converter
pads it with PAD ids that carry no loss. Crops are drawn per example from
SeqIO's seeds, so the same `seed` gives the same crops, and every epoch new
ones (SeqIO repeats before these preprocessors). Each split of the task is the
cache's own split. Register from gin, without code, with the name as the value:

  MIXTURE_OR_TASK_NAME = @tasks.register_cache_task()
  TASK_FEATURE_LENGTHS = @tasks.feature_lengths()
  tasks.register_cache_task.cache_dirs = [%TOKEN_CACHE_DIR]   # several: a mixture

Besides 'targets', task examples carry 'clip_id' and 'crop_start_frame' (50 Hz
frames) to trace a sequence back to its clip; the feature converter drops them.
"""
import functools
from typing import Mapping, Sequence

import numpy as np
import seqio
import tensorflow as tf

from musiclm_jax import musiclm_spec as spec
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError

LAYOUTS = {name: stage.layout for name, stage in spec.STAGE_CONFIGS.items()}
_COARSE_LEVELS = token_layout.COARSE.num_levels
_TRACE_FEATURES = ("clip_id", "crop_start_frame")
# name -> the arguments it was registered with, to re-register on a change.
_REGISTERED: dict[str, tuple] = {}


def stage_sequence(layout: token_layout.TokenLayout, codes: Mapping[str, np.ndarray]) -> np.ndarray:
  """The one way stage sequences are built (also by `synthetic.stage_tasks`).

  codes: for each kind of `layout`, codes [..., frames, levels] (no offsets).
  Returns ids [..., sum of frames * levels] int32: the kinds in the layout's order.
  """
  names = [kind.name for kind in layout.kinds]
  if set(codes) != set(names):
    raise ValueError(f"{layout} needs codes of {names}, got {sorted(codes)}")
  return np.concatenate([layout.encode_stream(name, codes[name]) for name in names],
                        axis=-1).astype(np.int32)


def _check_stage(stage: str) -> None:
  if stage not in spec.STAGES:
    raise UserError(f"unknown stage {stage!r}: use one of {', '.join(spec.STAGES)}")


def crop_frames(stage: str, crop_seconds: float | None = None) -> dict[str, int]:
  """Frames of each cropped stream of `stage`: {'semantic': 750} for a 30 s semantic crop."""
  _check_stage(stage)
  seconds = spec.PAPER_CROP_SECONDS[stage] if crop_seconds is None else crop_seconds
  if stage == "fine":  # no semantic tokens: any whole number of 20 ms frames
    acoustic = int(round(seconds * spec.ACOUSTIC_RATE_HZ))
    if acoustic < 1:
      raise UserError(f"crop of {seconds} s is shorter than one 20 ms acoustic frame")
    return {"coarse": acoustic, "fine": acoustic}
  semantic = int(round(seconds * spec.SEMANTIC_RATE_HZ))
  if semantic < 1:
    raise UserError(f"crop of {seconds} s is shorter than one 40 ms semantic frame")
  acoustic = semantic * spec.ACOUSTIC_PER_SEMANTIC
  return {"semantic": {"semantic": semantic},
          "coarse": {"semantic": semantic, "coarse": acoustic}}[stage]


def feature_lengths(stage: str, crop_seconds: float | None = None) -> dict[str, int]:
  """{'targets': tokens of a full crop}: TASK_FEATURE_LENGTHS for `stage`."""
  frames = crop_frames(stage, crop_seconds)
  length = sum(token_layout.KINDS[kind].num_levels * n for kind, n in frames.items())
  if stage != "fine":
    length += token_layout.MULAN.num_levels
  return {"targets": length}


def _parse(ex: Mapping[str, tf.Tensor], acoustic_levels: int) -> dict[str, tf.Tensor]:
  acoustic = tf.reshape(tf.cast(ex["acoustic_tokens"], tf.int32), [-1, acoustic_levels])
  semantic = tf.cast(ex["semantic_tokens"], tf.int32)
  tf.debugging.assert_equal(tf.shape(acoustic)[0],
                            spec.ACOUSTIC_PER_SEMANTIC * tf.shape(semantic)[0],
                            message="cached clip with T_a != 2 T_s")
  return {"clip_id": ex["clip_id"], "mulan": tf.cast(ex["mulan_tokens"], tf.int32),
          "semantic": semantic, "acoustic": acoustic}


def _crop_start(seed, length, crop):
  """Uniform start in [0, length - crop], or 0 when the clip is shorter than the crop."""
  return tf.random.stateless_uniform([], seed=seed, minval=0,
                                     maxval=tf.maximum(length - crop, 0) + 1, dtype=tf.int32)


@seqio.map_over_dataset(num_seeds=1)
def random_crop(ex: Mapping[str, tf.Tensor], seed, stage: str, frames: Mapping[str, int]):
  """A parsed clip -> the codes of one crop, per kind of the stage's layout ([frames, levels])."""
  semantic, acoustic = ex["semantic"], ex["acoustic"]
  if stage == "fine":
    start = _crop_start(seed, tf.shape(acoustic)[0], frames["fine"])
    window = acoustic[start:start + frames["fine"]]
    out = {"coarse": window[:, :_COARSE_LEVELS], "fine": window[:, _COARSE_LEVELS:]}
  else:
    semantic_start = _crop_start(seed, tf.shape(semantic)[0], frames["semantic"])
    out = {"mulan": ex["mulan"][None, :],
           "semantic": semantic[semantic_start:semantic_start + frames["semantic"], None]}
    start = semantic_start * spec.ACOUSTIC_PER_SEMANTIC
    if stage == "coarse":
      out["coarse"] = acoustic[start:start + frames["coarse"], :_COARSE_LEVELS]
  return dict(out, clip_id=ex["clip_id"], crop_start_frame=start)


def flatten(ds: tf.data.Dataset, layout: token_layout.TokenLayout) -> tf.data.Dataset:
  """Codes per kind -> {'targets': ids [length]} via `stage_sequence` (plus the trace features)."""
  names = [kind.name for kind in layout.kinds]

  def to_ids(*codes):
    return stage_sequence(layout, dict(zip(names, codes)))

  def fn(ex):
    targets = tf.numpy_function(to_ids, [ex[n] for n in names], tf.int32, stateful=False)
    targets.set_shape([None])
    return dict({k: ex[k] for k in _TRACE_FEATURES}, targets=targets)
  return ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE)


def _check_cache(cache_dir: str, stage: str) -> tuple[token_cache.CacheMetadata, dict[str, int]]:
  """The cache's metadata and records per finished split; UserError if the stage cannot use it."""
  metadata = token_cache.load_metadata(cache_dir)
  for cache_key, kind in (("mulan", token_layout.MULAN), ("semantic", token_layout.SEMANTIC),
                          ("acoustic", token_layout.COARSE)):
    if metadata.codebook_size(cache_key) > kind.codebook_size:
      raise UserError(f"{cache_dir}: {cache_key} codebook of {metadata.codebook_size(cache_key)} "
                      f"codes does not fit the stage layouts ({kind.codebook_size})")
  levels = token_layout.COARSE.num_levels + token_layout.FINE.num_levels
  if metadata.acoustic_levels != levels or metadata.mulan_levels != token_layout.MULAN.num_levels:
    raise UserError(f"{cache_dir}: {metadata.acoustic_levels} acoustic and {metadata.mulan_levels} "
                    f"MuLan levels, the stages need {levels} and {token_layout.MULAN.num_levels}")
  records = {split: token_cache.split_counts(cache_dir, split)["num_records"]
             for split in metadata.splits}
  records = {split: n for split, n in records.items() if n}
  if not records:
    raise UserError(f"{cache_dir} holds no finished shard yet: run musiclm-tokenize to the end")
  return metadata, records


def _add_task(name: str, stage: str, cache_dir: str, frames: Mapping[str, int]) -> int:
  """Registers one cache's task; returns its number of train records (0 if none)."""
  metadata, records = _check_cache(cache_dir, stage)
  layout = LAYOUTS[stage]
  seqio.TaskRegistry.add(
      name,
      source=seqio.TFExampleDataSource(
          {split: token_cache.shard_pattern(cache_dir, split) for split in records},
          token_cache.FEATURE_SPEC, num_input_examples=records),
      preprocessors=[
          seqio.map_over_dataset(functools.partial(
              _parse, acoustic_levels=metadata.acoustic_levels)),
          functools.partial(random_crop, stage=stage, frames=dict(frames)),
          functools.partial(flatten, layout=layout),
      ],
      output_features={"targets": seqio.Feature(seqio.PassThroughVocabulary(layout.vocab_size),
                                                add_eos=False)})
  return records.get("train", 0)


def _remove(name: str) -> None:
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  for task in [t for t in seqio.TaskRegistry.names() if t == name or t.startswith(f"{name}.")]:
    seqio.TaskRegistry.remove(task)


def register_cache_task(stage: str, cache_dirs: str | Sequence[str] | None,
                        crop_seconds: float | None = None, name: str | None = None,
                        rates: Sequence[float] | None = None) -> str:
  """Registers `stage`'s task over one cache, or a mixture over several; returns its name.

  Args:
    stage: 'semantic', 'coarse' or 'fine'.
    cache_dirs: token cache folder(s) written by musiclm-tokenize.
    crop_seconds: crop length (default: the paper's, spec.PAPER_CROP_SECONDS).
    name: task or mixture name (default 'token_cache_<stage>'). Registering
      the same name again with other arguments replaces it.
    rates: mixing rates of the caches (default: their numbers of train records).
  """
  _check_stage(stage)
  cache_dirs = [cache_dirs] if isinstance(cache_dirs, str) else list(cache_dirs or [])
  if not cache_dirs:
    raise UserError("no token cache given: pass --gin.TOKEN_CACHE_DIR=\\\"DIR\\\" (a folder "
                    "written by musiclm-tokenize, or a list of them)")
  if rates is not None and len(rates) != len(cache_dirs):
    raise UserError(f"{len(rates)} mixing rates for {len(cache_dirs)} caches: give one per cache")
  name = name or f"token_cache_{stage}"
  key = (stage, tuple(cache_dirs), crop_seconds, None if rates is None else tuple(rates))
  if _REGISTERED.get(name) == key:
    return name
  if name in _REGISTERED:
    _remove(name)
  elif name in seqio.TaskRegistry.names() or name in seqio.MixtureRegistry.names():
    raise UserError(f"SeqIO task or mixture {name!r} already exists: pick another name")
  frames = crop_frames(stage, crop_seconds)
  if len(cache_dirs) == 1:
    _add_task(name, stage, cache_dirs[0], frames)
  else:
    tasks = [f"{name}.{i}" for i in range(len(cache_dirs))]
    sizes = [_add_task(task, stage, cache_dir, frames) for task, cache_dir in zip(tasks, cache_dirs)]
    seqio.MixtureRegistry.add(name, list(zip(tasks, rates or sizes)))
  _REGISTERED[name] = key
  return name
