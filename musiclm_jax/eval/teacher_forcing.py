"""Teacher-forced cross-entropy of a stage on crops of cached clips: does it read its M, its prefix?

  records = read_clips(cache_dir, "validation", None, num_clips=80)
  result = prefix_gap(cascade.load_stage(export_dir), records,
                      training_crop_seconds(export_dir), seed=0)

The cores of `benchmarks/conditioning_gap.py` (M swapped between clips) and
`benchmarks/prefix_gap.py` (the prefix swapped), kept out of the scripts so the
tests import them. Both draw, for each clip i, one crop of the stage's training
length by `tasks.crop_ids` several times from the same generator (seeded with
(seed, i)), so the rows share the crop and differ only in the swapped tokens,
and score every row by one CE from the stage's own `loss_fn` (no dropout);
`paired_row_gaps` reduces the rows the same way for both.

Conditioning gap (semantic and coarse stage): M (the clip's M_A or its
caption's M_T) is the clip's own (own), clip i + 1's (rolled) or NULL_ID in
M's positions (null: the row classifier-free guidance subtracts). The melody
gap of a semantic stage on [M | melody] swaps its melody tokens the same way,
with M the clip's own: does the stage read the tune it is given?

Prefix gap (coarse and fine stage): a stage's prefix is the kind of its layout
that is neither its target nor its conditioning (`token_layout.StageConfig`):
S for the coarse stage [M | S | Ac], the coarse levels A[:, :4] for the fine
stage [Ac | Af]; the semantic stage has none. own is the clip as it is, rolled
the clip with its prefix stream replaced by clip i + 1's; the conditioning and
targets stay the clip's.

rolled − own > 0 means the stage's predictions depend on the tokens swapped.
Whether reading the prefix helps on held-out clips is another question: own
against the targets' code frequencies alone (the unigram of
`eval/token_information.py`) answers it.

Sampling given the real past (coarse stage): a clip's coarse tokens drawn in the
cascade's windows with the cascade's knobs, each from the stage's prediction
given the clip's real S and real earlier coarse tokens, not its own samples
(`sample_given_real_past`). Decoded, it is what the stage's one-step errors
sound like without their compounding in free sampling (`benchmarks/decode_levels.py
--source=teacher_forced`).
"""
import functools
from typing import Callable, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import cascade
from musiclm_jax import decoding
from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import musiclm_spec as spec
from musiclm_jax import paths
from musiclm_jax import window_plan
from musiclm_jax.data import pipeline
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import significance
from musiclm_jax.models import lm

CONDITIONING_ROWS = ("own", "rolled", "null")
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


def paired_row_gaps(stage_lm: cascade.StageLM, records: Sequence[token_cache.Record],
                    rows_of_clip: Callable[[int], Sequence[np.ndarray]], names: Sequence[str],
                    length: int) -> dict:
  """The CE of each clip's rows, reduced: means, paired gaps to the first row, their p-values.

  rows_of_clip: clip index i -> ids [length] per row of `names`, the first being the clip's
    own (one jitted call scores a clip's rows together). length: the targets' feature length.
  Returns {'ce_<row>' (nats per target token, mean over clips) per row, then per other row
  'gap_<row>_minus_<first>' (mean of the per-clip differences) and 'p_<row>_above_<first>'
  (one-sided sign-flip permutation p over clips), 'per_clip': {'clip_id', <row> per row}},
  CEs rounded to DECIMALS.
  """
  row_ce = row_cross_entropy(stage_lm)
  ce = {name: [] for name in names}
  for i in range(len(records)):
    values = jax.device_get(row_ce(pipeline.decoder_features(rows_of_clip(i), length)))
    for name, value in zip(names, values, strict=True):
      ce[name].append(float(value))
  first, *others = names
  result = {f"ce_{name}": round(float(np.mean(ce[name])), DECIMALS) for name in names}
  for name in others:
    result[f"gap_{name}_minus_{first}"] = round(
        float(np.mean(np.subtract(ce[name], ce[first]))), DECIMALS)
    result[f"p_{name}_above_{first}"] = significance.permutation_p_value(ce[name], ce[first],
                                                                        paired=True)
  return {**result, "per_clip": {"clip_id": [r.clip_id for r in records],
                                 **{name: [round(v, DECIMALS) for v in ce[name]]
                                    for name in names}}}


def conditioning_rows(model: lm.DecoderOnlyLM, frames: dict[str, int],
                      record: token_cache.Record, other: token_cache.Record, kind: str,
                      melody: str | None, seed: list[int],
                      swap: str = "mulan") -> tuple[np.ndarray, ...]:
  """(own, rolled, null) ids [length] int32 of one crop of `record` by `tasks.crop_ids`, drawn
  by a generator seeded with `seed` for each row, so all three share the crop.

  kind: the M of the rows ('mulan' or 'mulan_text').
  swap: the conditioning that differs between the rows, `record`'s, `other`'s, NULL_ID:
    'mulan' (M; the melody codes as `melody` says, the same in every row) or 'melody' (the
    codes of the stage's melody kind, `StageConfig.melody_kind`; M is `record`'s in every row).
  melody: with swap 'mulan', None (the stage reads no melody), 'own' (the record's melody
    codes) or 'null' (NULL_ID in their place, as a text-only prompt); with swap 'melody', 'own'.
  """
  melody_kind = model.stage.melody_kind

  def codes(r):  # the melody codes of clip r (`tasks.clip_melody`)
    return tasks.clip_melody(melody_kind, r.melody, r.labels, len(r.semantic))

  def crop(m, melody_codes):
    return tasks.crop_ids(model.stage.name, frames, m, record.semantic, record.acoustic,
                          np.random.default_rng(seed), melody_codes,
                          melody_kind=melody_kind or "melody")[0]

  if swap == "melody":
    rows = [crop(getattr(record, kind), codes(r)) for r in (record, other)]
  else:
    rows = [crop(getattr(r, kind), codes(record) if melody else None) for r in (record, other)]
  swapped = melody_kind if swap == "melody" else swap
  rows.append(np.asarray(model.remove_conditioning(rows[0][None], kinds=(swapped,)))[0])
  if swap == "mulan" and melody == "null":
    rows = [np.asarray(model.remove_conditioning(row[None], kinds=(melody_kind,)))[0]
            for row in rows]
  return tuple(rows)


def conditioning_gap(stage_lm: cascade.StageLM, records: list[token_cache.Record], kind: str,
                     crop_seconds: float | None, own_melody: bool, seed: int,
                     swap: str = "mulan") -> dict:
  """Per-clip CEs of the rows in CONDITIONING_ROWS, their paired gaps and one-sided sign-flip ps.

  records: clips of one split, at least 2 (clip i gets clip i + 1's M or melody, the last the
    first's), each with a non-empty M of `kind` ('mulan' or 'mulan_text'). crop_seconds: the
    stage's training crop (None: the paper's). swap: what differs between the rows
    (`conditioning_rows`): 'mulan' (M) or 'melody' (the melody tokens of a stage on
    [M | melody]; M is the clip's own). own_melody: with swap 'mulan', a stage on
    [M | melody] reads the clip's melody tokens (else NULL ones).
  Returns {'stage', 'swap', 'melody' (None: the stage reads none), 'crop_seconds',
  'condition_dropout_rate', 'clips', and `paired_row_gaps`' figures of (own, rolled, null)}.
  """
  model = stage_lm.model
  stage = model.stage
  if stage is None or "mulan" not in stage.condition_kinds:
    raise UserError(f"the export holds a {getattr(stage, 'name', 'plain')} LM, which reads no "
                    "MuLan tokens: point at a semantic or coarse stage")
  if swap == "melody" and stage.melody_kind is None:
    raise UserError(f"the {stage.name} stage reads no melody tokens: swap its M (--swap=mulan), "
                    "or point at a stage trained with experiments/semantic_melody_stage.gin")
  melody = None if stage.melody_kind is None else (
      "own" if own_melody or swap == "melody" else "null")
  if stage.melody_kind == "melody" and melody and any(r.melody is None for r in records):
    raise UserError("the stage reads melody tokens and the token cache has none: tokenize with "
                    "the melody tokenizer the stage was trained with")
  frames = tasks.crop_frames(stage.name, crop_seconds)
  length = tasks.feature_lengths(stage.name, crop_seconds, stage.melody_kind)["targets"]

  def rows_of_clip(i):
    return conditioning_rows(model, frames, records[i], records[(i + 1) % len(records)], kind,
                             melody, [seed, i], swap)

  return {"stage": stage.name, "swap": swap, "melody": melody, "crop_seconds": crop_seconds,
          "condition_dropout_rate": model.condition_dropout_rate, "clips": len(records),
          **paired_row_gaps(stage_lm, records, rows_of_clip, CONDITIONING_ROWS, length)}


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


def prefix_rows(stage: token_layout.StageConfig, kind: str, frames: dict[str, int],
                record: token_cache.Record, other: token_cache.Record,
                seed: list[int]) -> tuple[np.ndarray, np.ndarray]:
  """(own, rolled) ids [length] int32 of one crop of `record` by `tasks.crop_ids`.

  kind: the stage's `prefix_kind`. rolled is drawn from `record` with its prefix stream
  replaced by `other`'s (cut or cyclically repeated to the record's length, so the crop
  start, drawn from that length by a generator seeded with `seed` for both rows, is the same).
  A stage trained with a melody kind reads `record`'s own melody codes in both rows.
  """
  semantic, acoustic = record.semantic, record.acoustic
  if kind == "semantic":
    semantic = _cyclic(other.semantic, len(semantic))
  else:  # the fine stage's coarse levels
    levels = token_layout.COARSE.num_levels
    acoustic = np.concatenate([_cyclic(other.acoustic[:, :levels], len(acoustic)),
                               acoustic[:, levels:]], axis=1)
  melody = tasks.clip_melody(stage.melody_kind, record.melody, record.labels,
                             len(record.semantic))
  return tuple(tasks.crop_ids(stage.name, frames, record.mulan, s, a,
                              np.random.default_rng(seed), melody,
                              melody_kind=stage.melody_kind or "melody")[0]
               for s, a in ((record.semantic, record.acoustic), (semantic, acoustic)))


def prefix_gap(stage_lm: cascade.StageLM, records: list[token_cache.Record],
               crop_seconds: float | None, seed: int) -> dict:
  """Per-clip CEs of the rows in PREFIX_ROWS, their paired gap and its one-sided sign-flip p.

  records: clips of one split, at least 2 (clip i is rolled with clip i + 1, the last with
    the first). crop_seconds: the stage's training crop (None: the paper's).
  Returns {'stage', 'prefix', 'crop_seconds', 'clips', and `paired_row_gaps`' figures of
  (own, rolled)}.
  """
  stage = stage_lm.model.stage
  kind = prefix_kind(stage)
  frames = tasks.crop_frames(stage.name, crop_seconds)
  length = tasks.feature_lengths(stage.name, crop_seconds, stage.melody_kind)["targets"]

  def rows_of_clip(i):
    return prefix_rows(stage, kind, frames, records[i], records[(i + 1) % len(records)], [seed, i])

  return {"stage": stage.name, "prefix": kind, "crop_seconds": crop_seconds,
          "clips": len(records),
          **paired_row_gaps(stage_lm, records, rows_of_clip, PREFIX_ROWS, length)}


@functools.partial(jax.jit, static_argnames=("model", "num_codes"))
def _one_step_samples(model, params, prompt, targets, key, knobs, real_token_rate, *, num_codes):
  """Each of `targets` [1, m] drawn given the prompt [1, n] and the real targets before it.

  One forward pass over [BOS | prompt | targets[:-1]]: position n + k predicts target k. The
  knobs are `SamplingConfig.predict_kwargs()`; guidance mixes the conditional and NULL rows as
  `lm.DecoderOnlyLM.predict_batch` does. Each draw is replaced by the real target with
  probability real_token_rate. Returns ids [m] int32.
  """
  rows = jnp.concatenate([jnp.full((1, 1), token_layout.PAD_ID, jnp.int32), prompt,
                          targets[:, :-1]], axis=1)
  guidance_scale = knobs.pop("guidance_scale")
  if guidance_scale is None:
    logits = model.apply(params, rows)[0, prompt.shape[1]:]
  else:
    logits = lm.guide(model.apply(params, jnp.concatenate([rows, model.remove_conditioning(rows)])),
                      guidance_scale)[0, prompt.shape[1]:]
  steps = jnp.arange(targets.shape[1])
  logits, first_id = model.allowed_logits(logits, model.target_tokens_in(prompt)[0] + steps,
                                          num_codes)
  keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, steps)
  drawn = first_id + decoding.sample_logits(keys, logits, **knobs)
  # fold_in(key, m): a stream no draw (steps 0 .. m - 1) uses.
  keep = jax.random.uniform(jax.random.fold_in(key, len(steps)), drawn.shape) < real_token_rate
  return jnp.where(keep, targets[0], drawn)


def sample_given_real_past(stage_lm: cascade.StageLM, record: token_cache.Record,
                           windows: window_plan.Windows, sampling: decoding.SamplingConfig,
                           seed: int, num_codes: int | None = None,
                           real_token_rate: float = 0.0) -> np.ndarray:
  """Coarse codes [T_a, 4] of `record`, each drawn by the coarse stage given the real past.

  The cascade's coarse windows (`window_plan.stage_chunks`) and prompts, with the caption's
  M_T (what a text prompt gives), the clip's own S, and for every token the clip's real
  coarse tokens before it in its window where free sampling feeds back its own draws.
  sampling and seed: the stage's knobs and the request's seed (window w draws with the
  cascade's `window_key`). num_codes: codes per level the codec holds (None: the layout's).
  real_token_rate: each token is the real one with this probability, else the draw: a stage
  whose held-out CE is lower by a set amount (each token's probability p becomes
  rate + (1 - rate) p) and whose errors are this stage's, fewer.
  """
  model, params = stage_lm
  if model.stage is None or model.stage.name != "coarse":
    raise UserError(f"the export holds a {getattr(model.stage, 'name', 'plain')} LM: sampling "
                    "given the real past is measured on a coarse stage")
  if not len(record.mulan_text):
    raise UserError(f"clip {record.clip_id} has no M_T: tokenize its cache with captions")
  layout = model.stage.layout
  per = spec.ACOUSTIC_PER_SEMANTIC
  coarse = record.acoustic[None, :, :token_layout.COARSE.num_levels]
  sampled = np.zeros_like(coarse[0])
  knobs = sampling.predict_kwargs()
  for window, (prefix, begin, end) in enumerate(
      window_plan.stage_chunks(windows, "coarse", len(record.semantic))):
    # A stage trained with a melody kind reads a NULL tune, as a text prompt gives it.
    melody = (cascade.melody_ids(layout, model.stage.melody_kind, None, prefix, end, 1)
              if model.stage.melody_kind else None)
    prompt = cascade.coarse_prompt(layout, record.mulan_text[None], record.semantic[None],
                                   coarse, prefix, begin, end, melody)
    targets = layout.encode_stream("coarse", coarse[:, begin * per:end * per])
    ids = _one_step_samples(model, params, jnp.asarray(prompt), jnp.asarray(targets),
                            cascade.window_key(seed, "coarse", window), dict(knobs),
                            np.float32(real_token_rate), num_codes=num_codes)
    sampled[begin * per:end * per] = layout.decode_stream("coarse", np.asarray(ids)[None])[0]
  return sampled
