"""Teacher-forced cross-entropy of a stage on crops of cached clips; does it read its prefix?

  records = read_clips(cache_dir, "validation", None, num_clips=80)
  result = prefix_gap(cascade.load_stage(export_dir), records,
                      training_crop_seconds(export_dir), seed=0)

What `benchmarks/conditioning_gap.py` (M swapped between clips) and
`benchmarks/prefix_gap.py` (the prefix swapped) share: the stage's training
crop length, the clips, one CE per row from the stage's own `loss_fn` (no
dropout). Here too is the prefix gap, the prefix counterpart of the
conditioning gap, kept out of the benchmark script so the tests import it.

A stage's prefix is the kind of its layout that is neither its target nor its
conditioning (`token_layout.StageConfig`): S for the coarse stage [M | S | Ac],
the coarse levels A[:, :4] for the fine stage [Ac | Af]; the semantic stage has
none. For each clip i, one crop of the training length is drawn by
`tasks.crop_ids` twice from the same generator, once from the clip as it is
(own) and once from the clip with its prefix stream replaced by clip i + 1's
(rolled), so the two rows share the crop, the conditioning and the targets and
differ only in the prefix tokens. rolled − own > 0 means the stage's
predictions depend on the prefix it reads. Whether that dependence helps on
held-out clips is another question: own against the targets' code frequencies
alone (the unigram of `eval/token_information.py`) answers it.
"""
from typing import Callable

import gin
import jax
import numpy as np

from musiclm_jax import cascade
from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import paths
from musiclm_jax.data import pipeline
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import significance

PREFIX_ROWS = ("own", "rolled")
# Decimals of the reported CEs (nats): the fine stage's prefix gap was measured at 1e-4.
DECIMALS = 5


def training_crop_seconds(export_dir: str) -> float | None:
  """CROP_SECONDS of the stage's training run (None: the paper's crop), from its config.gin."""
  with gin_models.isolated_gin_config():
    gin_utils.parse_gin([paths.join(export_dir, "config.gin")], [])
    try:
      return gin.query_parameter("%CROP_SECONDS")
    except ValueError:
      raise UserError(f"{export_dir}/config.gin sets no CROP_SECONDS: export a stage trained "
                      "with experiments/*_stage.gin") from None


def read_clips(cache_dir: str, split: str, kind: str | None,
               num_clips: int) -> list[token_cache.Record]:
  """The split's first `num_clips` records (0: all), each with a non-empty M of `kind`
  ('mulan' or 'mulan_text'; None: M is not needed)."""
  token_cache.load_metadata(cache_dir)  # a one-line error for a folder that is no cache
  reader = token_cache.SplitReader(cache_dir, split)
  records = [reader[i] for i in range(min(num_clips or len(reader), len(reader)))]
  if len(records) < 2:
    raise UserError(f"the {split} split of {cache_dir} has {len(records)} record(s): swapping "
                    "tokens between clips needs 2")
  if kind is not None and any(not len(getattr(r, kind)) for r in records):
    raise UserError(f"{cache_dir} has {split} records without {kind} tokens: re-tokenize it with "
                    "a MuLan tokenizer (and captions, for mulan_text)")
  return records


def row_cross_entropy(stage_lm: cascade.StageLM) -> Callable[[pipeline.Batch], jax.Array]:
  """A jitted function: decoder features of [rows, length] -> mean CE [rows] (nats per target
  token) of each row under the stage's `loss_fn` without dropout."""
  model, params = stage_lm
  # loss_fn averages over its batch, so vmap over single-row batches gives one CE per row.
  return jax.jit(jax.vmap(lambda row: model.loss_fn(
      params, {key: value[None] for key, value in row.items()}, None)[1]["cross_entropy"]))


def prefix_kind(stage: token_layout.StageConfig | None) -> str:
  """The kind of the stage's layout that is neither its target nor its conditioning:
  'semantic' (coarse stage) or 'coarse' (fine stage)."""
  kinds = [] if stage is None else [
      kind.name for kind in stage.layout.kinds
      if kind.name != stage.target_kind and kind.name not in stage.condition_kinds]
  if not kinds:
    raise UserError(f"the export holds a {getattr(stage, 'name', 'plain')} LM, which reads no "
                    "prefix: point at a coarse or fine stage")
  return kinds[0]


def _cyclic(codes: np.ndarray, frames: int) -> np.ndarray:
  """codes [T, ...] cut, or repeated from its start, to [frames, ...]."""
  return np.resize(codes, (frames,) + codes.shape[1:])


def prefix_rows(stage: token_layout.StageConfig, frames: dict[str, int],
                record: token_cache.Record, other: token_cache.Record,
                seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
  """(own, rolled) ids [length] int32 of one crop of `record` by `tasks.crop_ids`.

  rolled is drawn from `record` with its prefix stream replaced by `other`'s
  (cut or cyclically repeated to the record's length, so the crop start, drawn
  from that length by a generator seeded with `seed` for both rows, is the same).
  """
  kind = prefix_kind(stage)
  semantic, acoustic = record.semantic, record.acoustic
  if kind == "semantic":
    semantic = _cyclic(other.semantic, len(semantic))
  else:  # the fine stage's coarse levels
    levels = token_layout.COARSE.num_levels
    acoustic = np.concatenate([_cyclic(other.acoustic[:, :levels], len(acoustic)),
                               acoustic[:, levels:]], axis=1)
  return tuple(tasks.crop_ids(stage.name, frames, record.mulan, s, a,
                              np.random.default_rng(seed))[0]
               for s, a in ((record.semantic, record.acoustic), (semantic, acoustic)))


def prefix_gap(stage_lm: cascade.StageLM, records: list[token_cache.Record],
               crop_seconds: float | None, seed: int) -> dict:
  """Per-clip CEs of the rows in PREFIX_ROWS, their paired gap and its one-sided sign-flip p.

  records: clips of one split, at least 2 (clip i is rolled with clip i + 1, the last with
    the first). crop_seconds: the stage's training crop (None: the paper's).
  Returns {'stage', 'prefix', 'crop_seconds', 'clips', 'ce_own', 'ce_rolled' (nats per
  target token, mean over clips), 'gap_rolled_minus_own', 'p_rolled_above_own',
  'per_clip': {'clip_id', 'own', 'rolled'}}.
  """
  stage = stage_lm.model.stage
  kind = prefix_kind(stage)
  frames = tasks.crop_frames(stage.name, crop_seconds)
  length = tasks.feature_lengths(stage.name, crop_seconds)["targets"]
  row_ce = row_cross_entropy(stage_lm)
  ce = {row: [] for row in PREFIX_ROWS}
  for i, record in enumerate(records):
    rows = prefix_rows(stage, frames, record, records[(i + 1) % len(records)], [seed, i])
    values = jax.device_get(row_ce(pipeline.decoder_features(rows, length)))
    for row, value in zip(PREFIX_ROWS, values):
      ce[row].append(float(value))
  return {"stage": stage.name, "prefix": kind, "crop_seconds": crop_seconds,
          "clips": len(records),
          **{f"ce_{row}": round(float(np.mean(ce[row])), DECIMALS) for row in PREFIX_ROWS},
          "gap_rolled_minus_own": round(float(np.mean(np.subtract(ce["rolled"], ce["own"]))),
                                        DECIMALS),
          "p_rolled_above_own": significance.permutation_p_value(ce["rolled"], ce["own"],
                                                                 paired=True),
          "per_clip": {"clip_id": [r.clip_id for r in records],
                       **{row: [round(v, DECIMALS) for v in ce[row]] for row in PREFIX_ROWS}}}
