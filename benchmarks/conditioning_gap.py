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
nats per target token, of each row (`eval/teacher_forcing.py`). rolled − own > 0
means the stage's prediction depends on which clip's M it reads; on training
clips that can be M acting as a clip id, on held-out clips it is M describing
the music. The p-values are one-sided sign-flip permutation tests over clips
(`eval/significance.py`). Prints one JSON line: the means, the paired gaps,
their p-values, per-clip CEs (to re-slice offline) and the 1-minute load.

Works for the semantic and the coarse stage (both read M; the fine stage has
no conditioning). A semantic stage on [M | melody] gets NULL melody tokens
(`--melody=null`, a text-only prompt, as its melody dropout trained it) or the
clip's own (`--melody=own`); only M changes between the three rows.

`--swap=melody` swaps the melody tokens instead (the clip's own, the next
clip's, NULL), with M the clip's own in every row: rolled − own > 0 means the
stage reads the tune it is given.
"""
import json
import os

from absl import flags

from musiclm_jax import cascade
from musiclm_jax import gin_utils
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
_SWAP = flags.DEFINE_enum("swap", "mulan", ["mulan", "melody"],
                          "What differs between the rows: M, or the melody tokens (M own).")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 0, "The first this many clips of the split; 0: all.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds each clip's crop with (seed, clip index).")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  records = teacher_forcing.read_clips(_TOKEN_CACHE_DIR.value, _SPLIT.value, _CONDITIONING.value,
                                       _NUM_CLIPS.value)
  stage_lm = cascade.load_stage(_EXPORT_DIR.value)
  result = teacher_forcing.conditioning_gap(
      stage_lm, records, _CONDITIONING.value,
      teacher_forcing.training_crop_seconds(_EXPORT_DIR.value), _MELODY.value == "own",
      _SEED.value, _SWAP.value)
  print(json.dumps({"benchmark": "conditioning_gap", "export_dir": _EXPORT_DIR.value,
                    "token_cache_dir": _TOKEN_CACHE_DIR.value, "split": _SPLIT.value,
                    "conditioning": _CONDITIONING.value, **result,
                    "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}),
        flush=True)


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --export_dir, --token_cache_dir, --split, "
                "--conditioning, --melody, --swap")
