r"""Does a stage read its MuLan conditioning? Teacher-forced CE given its own, another's and NULL M.

  .venv/bin/python benchmarks/conditioning_gap.py --export_dir=runs/demo/semantic/export \
      --token_cache_dir=runs/demo/tokens --split=validation --conditioning=mulan_text

For each clip of a token cache split, one crop of the stage's training length
(CROP_SECONDS of the export's config.gin) is built by the stage task's own
`tasks.crop_ids`, three times from the same generator seed so the crop is the
same, with M (the clip's M_A, `--conditioning=mulan`, or its caption's M_T,
`mulan_text`) being

  own      the clip's own M
  rolled   the M of the next clip of the split (clip i gets clip i + 1's)
  null     NULL_ID in place of M (the row classifier-free guidance subtracts;
           a trained mode only if `condition_dropout_rate` > 0, which is printed)

and the stage's own `loss_fn` (no dropout) gives the mean cross-entropy, in
nats per target token, of each row. rolled − own > 0 means the stage's
prediction depends on which clip's M it reads; on training clips that can be
M acting as a clip id, on held-out clips it is M describing the music. The
p-values are one-sided sign-flip permutation tests over clips
(`eval/significance.py`). Prints one JSON line: the means, the paired gaps,
their p-values, per-clip CEs (to re-slice offline) and the 1-minute load.

Works for the semantic and the coarse stage (both read M; the fine stage has
no conditioning). A semantic stage on [M | melody] gets NULL melody tokens
(`--melody=null`, a text-only prompt, as its melody dropout trained it) or the
clip's own (`--melody=own`); only M changes between the three rows.
"""
import json
import os

from absl import flags
import jax
import numpy as np

from musiclm_jax import cascade
from musiclm_jax import gin_utils
from musiclm_jax.data import pipeline
from musiclm_jax.data import tasks
from musiclm_jax.data import token_cache
from musiclm_jax.errors import UserError
from musiclm_jax.eval import significance
from musiclm_jax.eval import teacher_forcing

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "musiclm-export folder of a semantic or "
                                  "coarse stage.", required=True)
_TOKEN_CACHE_DIR = flags.DEFINE_string("token_cache_dir", None, "musiclm-tokenize folder, "
                                       "tokenized with the stage's tokenizers.", required=True)
_SPLIT = flags.DEFINE_string("split", "validation", "Split of the token cache.")
_CONDITIONING = flags.DEFINE_enum("conditioning", "mulan", ["mulan", "mulan_text"],
                                  "M: the clip's M_A (mulan) or its caption's M_T (mulan_text).")
_MELODY = flags.DEFINE_enum("melody", "null", ["null", "own"],
                            "Melody tokens of a stage on [M | melody]: NULL or the clip's own.")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 0, "The first this many clips of the split; 0: all.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds each clip's crop with (seed, clip index).")
ROWS = ("own", "rolled", "null")


def conditioning_gap(stage_lm: cascade.StageLM, records: list[token_cache.Record], kind: str,
                     crop_seconds: float | None, own_melody: bool, seed: int) -> dict:
  """Per-clip CEs of the rows in ROWS and their paired gaps; see the module docstring."""
  model = stage_lm.model
  stage = model.stage
  if stage is None or "mulan" not in stage.condition_kinds:
    raise UserError(f"the export holds a {getattr(stage, 'name', 'plain')} LM, which reads no "
                    "MuLan tokens: point at a semantic or coarse stage")
  melody = "melody" in stage.condition_kinds
  if melody and any(r.melody is None for r in records):
    raise UserError("the stage reads melody tokens and the token cache has none: tokenize with "
                    "the melody tokenizer the stage was trained with")
  frames = tasks.crop_frames(stage.name, crop_seconds)
  length = tasks.feature_lengths(stage.name, crop_seconds, melody)["targets"]
  row_ce = teacher_forcing.row_cross_entropy(stage_lm)  # one clip's three rows at a time
  conditioning = [getattr(r, kind) for r in records]
  ce = {row: [] for row in ROWS}
  for i, record in enumerate(records):
    sequences = [tasks.crop_ids(stage.name, frames, m, record.semantic, record.acoustic,
                                np.random.default_rng([seed, i]),
                                record.melody if melody else None)[0]
                 for m in (conditioning[i], conditioning[(i + 1) % len(records)])]
    sequences.append(np.asarray(model.remove_conditioning(sequences[0][None], kinds=("mulan",)))[0])
    if melody and not own_melody:
      sequences = [np.asarray(model.remove_conditioning(s[None], kinds=("melody",)))[0]
                   for s in sequences]
    values = jax.device_get(row_ce(pipeline.decoder_features(sequences, length)))
    for row, value in zip(ROWS, values):
      ce[row].append(float(value))
  result = {f"ce_{row}": round(float(np.mean(ce[row])), 4) for row in ROWS}
  for row in ("rolled", "null"):
    result[f"gap_{row}_minus_own"] = round(float(np.mean(np.subtract(ce[row], ce["own"]))), 4)
    result[f"p_{row}_above_own"] = significance.permutation_p_value(ce[row], ce["own"], paired=True)
  return {"stage": stage.name, "melody": ("own" if own_melody else "null") if melody else None,
          "crop_seconds": crop_seconds, "condition_dropout_rate": model.condition_dropout_rate,
          "clips": len(records), **result,
          "per_clip": {"clip_id": [r.clip_id for r in records],
                       **{row: [round(v, 4) for v in ce[row]] for row in ROWS}}}


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  records = teacher_forcing.read_clips(_TOKEN_CACHE_DIR.value, _SPLIT.value, _CONDITIONING.value,
                                       _NUM_CLIPS.value)
  stage_lm = cascade.load_stage(_EXPORT_DIR.value)
  result = conditioning_gap(stage_lm, records, _CONDITIONING.value,
                            teacher_forcing.training_crop_seconds(_EXPORT_DIR.value),
                            _MELODY.value == "own", _SEED.value)
  print(json.dumps({"benchmark": "conditioning_gap", "export_dir": _EXPORT_DIR.value,
                    "token_cache_dir": _TOKEN_CACHE_DIR.value, "split": _SPLIT.value,
                    "conditioning": _CONDITIONING.value, **result,
                    "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}),
        flush=True)


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --export_dir, --token_cache_dir, --split, "
                "--conditioning, --melody")
