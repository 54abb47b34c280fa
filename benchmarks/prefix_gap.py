r"""Does a stage read its prefix? Teacher-forced CE given its own and another clip's prefix.

  .venv/bin/python benchmarks/prefix_gap.py --export_dir=runs/demo/fine/export \
      --token_cache_dir=runs/demo/tokens --split=validation

The prefix counterpart of `conditioning_gap.py`, for the coarse stage (prefix S)
and the fine stage (prefix: the coarse levels A[:, :4]). For each clip of a
token cache split, one crop of the stage's training length (CROP_SECONDS of the
export's config.gin) is built by `tasks.crop_ids`, twice from the same
generator seed (seed, clip index), so the crop is the same, with the prefix
being

  own      the clip's own
  rolled   the next clip's (clip i gets clip i + 1's S, or its A[:, :4] beside
           clip i's own fine levels): the conditioning and targets stay the clip's

and the stage's own `loss_fn` (no dropout) gives the mean cross-entropy, in
nats per target token, of each row (`eval/teacher_forcing.py`). rolled − own > 0
means the stage's predictions depend on the prefix it reads; about 0 means it
predicts its targets as if the prefix were not there (issue #15: the reference
run's fine stage at 400 steps). Whether reading it helps is ce_own against the
targets' unigram CE (`token_information.py`). The p-value is a one-sided
sign-flip permutation test over clips (`eval/significance.py`). Prints one
JSON line: the means, the paired gap, its p-value, per-clip CEs (to re-slice
offline) and the 1-minute load. A semantic stage has no prefix (a one-line
error).
"""
import json
import os

from absl import flags

from musiclm_jax import cascade
from musiclm_jax import gin_utils
from musiclm_jax.eval import teacher_forcing

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "musiclm-export folder of a coarse or fine "
                                  "stage.", required=True)
_TOKEN_CACHE_DIR = flags.DEFINE_string("token_cache_dir", None, "musiclm-tokenize folder, "
                                       "tokenized with the stage's tokenizers.", required=True)
_SPLIT = flags.DEFINE_string("split", "validation", "Split of the token cache.")
_NUM_CLIPS = flags.DEFINE_integer("num_clips", 0, "The first this many clips of the split; 0: all.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds each clip's crop with (seed, clip index).")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  stage_lm = cascade.load_stage(_EXPORT_DIR.value)
  teacher_forcing.prefix_kind(stage_lm.model.stage)  # a semantic stage fails before any reading
  # The coarse stage reads M_A (the rows keep the clip's own); the fine stage reads no M.
  kind = "mulan" if "mulan" in stage_lm.model.stage.condition_kinds else None
  records = teacher_forcing.read_clips(_TOKEN_CACHE_DIR.value, _SPLIT.value, kind,
                                       _NUM_CLIPS.value)
  result = teacher_forcing.prefix_gap(stage_lm, records,
                                      teacher_forcing.training_crop_seconds(_EXPORT_DIR.value),
                                      _SEED.value)
  print(json.dumps({"benchmark": "prefix_gap", "export_dir": _EXPORT_DIR.value,
                    "token_cache_dir": _TOKEN_CACHE_DIR.value, "split": _SPLIT.value,
                    "seed": _SEED.value, **result,
                    "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}),
        flush=True)


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --export_dir, --token_cache_dir, --split, "
                "--num_clips, --seed")
