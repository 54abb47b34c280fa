r"""What does one context tell about each acoustic level? Held-out CE of count tables.

  .venv/bin/python benchmarks/token_information.py --token_cache_dir=runs/demo/tokens \
      [--train_split=train] [--split=validation] [--generated_dir=runs/demo/samples]

For every acoustic level q of the token cache (1..12 for the paper's codec), the
cross-entropy in nats per token of the --split clips' level-q codes under count
tables fitted on the --train_split clips (`eval/token_information.py`): the
unigram, and the code given the same frame's level-1 code, the same frame's
level q - 1 code, the same level's code in the previous frame (within a clip),
or the semantic token of the same time. Each table is interpolated with the
unigram, its weight chosen on held-out train clips (never on --split), and
reported. A context whose table stays at the unigram holds no (pairwise)
information about that level a table can find; it is an independent reference
for what a stage reading that context can reach (issue #15: on the reference
run's codec, fine levels 5-12 given level 1 or the level before stay within
0.01 nats of their unigram).

With --generated_dir (a musiclm-infer folder that saved its tokens), the clips scored
are the generated ones instead: how far their transitions are from what real clips
do (issue #15, docs/design.md §10: on the reference run, real held-out level 1 given
its previous frame scores 4.82 nats, the sampled coarse tokens 6.26 at temperature 0.95
and 4.79 at 0.7).

Prints one JSON line (per level, {ce, weight} per context; the token counts; the
1-minute load), then the same as a table.
"""
import json
import os

from absl import flags

from musiclm_jax import gin_utils
from musiclm_jax import results_file
from musiclm_jax.data import token_cache
from musiclm_jax.errors import UserError
from musiclm_jax.eval import token_information

_TOKEN_CACHE_DIR = flags.DEFINE_string("token_cache_dir", None, "musiclm-tokenize folder.",
                                       required=True)
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train", "Split the tables are counted on.")
_SPLIT = flags.DEFINE_string("split", "validation", "Held-out split they are scored on.")
_GENERATED_DIR = flags.DEFINE_string("generated_dir", None, "musiclm-infer OUTPUT_DIR with "
                                      "SAVE_TOKENS: score its text lines' tokens, not --split.")
_HEADERS = {"unigram": "unigram", "level_1": "| level 1", "previous_level": "| level q-1",
            "previous_frame": "| previous frame", "semantic": "| S"}


def read_codes(cache_dir: str, split: str) -> tuple[list, list]:
  """(acoustic [T, levels] per clip, semantic [T // 2] per clip) of every record of the split."""
  reader = token_cache.SplitReader(cache_dir, split)
  if not len(reader):
    raise UserError(f"{cache_dir} has no finished shard of split {split!r}: tokenize it or "
                    "pick another")
  records = [reader[i] for i in range(len(reader))]
  return [r.acoustic for r in records], [r.semantic for r in records]


def read_generated(samples_dir: str) -> tuple[list, list]:
  """(acoustic [T, levels] per sample, semantic [T // 2] per sample) of a musiclm-infer
  folder's text lines (`results_file.text_line_tokens`)."""
  samples = results_file.text_line_tokens(samples_dir)
  if not samples:
    raise UserError(f"{samples_dir} holds no saved tokens of a text line: run musiclm-infer "
                    "with SAVE_TOKENS=True")
  return [t["acoustic"] for _, _, t in samples], [t["semantic"] for _, _, t in samples]


def _cell(result: dict | None) -> str:
  return "–" if result is None else f"{result['ce']:.3f} (l {result['weight']})"


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  metadata = token_cache.load_metadata(_TOKEN_CACHE_DIR.value)
  train = read_codes(_TOKEN_CACHE_DIR.value, _TRAIN_SPLIT.value)
  held_out = (read_generated(_GENERATED_DIR.value) if _GENERATED_DIR.value
              else read_codes(_TOKEN_CACHE_DIR.value, _SPLIT.value))
  rows = token_information.level_information(
      *train, *held_out, acoustic_codes=metadata.codebook_size("acoustic"),
      semantic_codes=metadata.codebook_size("semantic"))
  rounded = [{name: value if not isinstance(value, dict) else
              {"ce": round(value["ce"], 4), "weight": value["weight"]}
              for name, value in row.items()} for row in rows]
  print(json.dumps({"benchmark": "token_information", "token_cache_dir": _TOKEN_CACHE_DIR.value,
                    "train_split": _TRAIN_SPLIT.value, "split": _SPLIT.value,
                    "generated_dir": _GENERATED_DIR.value,
                    "train_clips": len(train[0]), "held_out_clips": len(held_out[0]),
                    "held_out_tokens_per_level": sum(len(a) for a in held_out[0]),
                    "weights": token_information.WEIGHTS,
                    "tune_fraction": token_information.TUNE_FRACTION, "levels": rounded,
                    "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}),
        flush=True)
  names = token_information.CONTEXTS
  print("\nnats per token, held out (l: the table's weight against the unigram)\n")
  print("| level | " + " | ".join(_HEADERS[name] for name in names) + " |")
  print("|---" * (len(names) + 1) + "|")
  for row in rows:
    print(f"| {row['level']} | " + " | ".join(
        f"{row[name]['ce']:.3f}" if name == "unigram" else _cell(row[name]) for name in names)
          + " |")


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --token_cache_dir, --train_split, --split and "
                            "--generated_dir")
