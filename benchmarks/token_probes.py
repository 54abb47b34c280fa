r"""Where is the prompt lost? Genre / instrument / mood probes of each token stream of the chain.

  .venv/bin/python benchmarks/token_probes.py --token_cache_dir=runs/demo/tokens \
      [--split=validation] [--generated_dir=runs/demo/samples]

Fits the label judge's heads on bags of tokens (`eval/token_probes.py`) of the token
cache's --train_split for each representation the records have (M_T, M_A, semantic,
coarse, fine) and prints one JSON line per representation: per head the held-out
(--split) score, the majority-class baseline, the mean over shuffled labels and the
label-permutation p-value. With --generated_dir (a musiclm-infer folder generated with
SAVE_TOKENS=True from the held-out split's captions), one more line per generated
representation (M_T, semantic, coarse, fine): the generated tokens scored against their
prompt's clip's labels and against a shuffled prompt's, with the paired permutation p.
Each line also carries the 1-minute load average. (--generated_dir, not --samples_dir:
eval/prompt_adherence.py, which the probes import, defines that flag.)
"""
import json
import os

from absl import flags

from musiclm_jax import gin_utils
from musiclm_jax.eval import token_probes

_TOKEN_CACHE_DIR = flags.DEFINE_string("token_cache_dir", None, "musiclm-tokenize folder of a "
                                       "labelled corpus (synth_music).", required=True)
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train", "Split the probes are fitted on.")
_SPLIT = flags.DEFINE_string("split", "validation", "Held-out split the probes score.")
_GENERATED_DIR = flags.DEFINE_string("generated_dir", None, "musiclm-infer OUTPUT_DIR made with "
                                   "SAVE_TOKENS=True from the held-out split's captions.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the permutations and the prompt derangement.")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  train = token_probes.read_records(_TOKEN_CACHE_DIR.value, _TRAIN_SPLIT.value)
  held_out = token_probes.read_records(_TOKEN_CACHE_DIR.value, _SPLIT.value)
  generated = token_probes.read_generated(_GENERATED_DIR.value) if _GENERATED_DIR.value else None
  probes = token_probes.fit_probes(train)
  rows = token_probes.probe_real(probes, train, held_out, _SEED.value)
  if generated is not None:
    rows += token_probes.probe_generated(probes, train, held_out, *generated, seed=_SEED.value)
  for row in rows:
    print(json.dumps({"benchmark": "token_probes", "token_cache_dir": _TOKEN_CACHE_DIR.value,
                      "train_split": _TRAIN_SPLIT.value, "split": _SPLIT.value,
                      "generated_dir": _GENERATED_DIR.value, **row,
                      "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}),
          flush=True)


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --token_cache_dir, --train_split, --split, "
                "--generated_dir, --seed")
