r"""Does a hum get its song's melody tokens? Level-1 code agreement of hummed tunes and their mixes.

  .venv/bin/python benchmarks/hum_codes.py --export_dir=runs/demo/melody/export \
      --rvq_paths=runs/demo/melody/rvq.npz,other/rvq.npz --data_dir=runs/demo/tfds

The semantic stage trains on the melody tokens of real mixes; at inference it
gets a hum's. For the first --num_pieces held-out pieces of a synth_music
corpus (one clip each, its first --seconds, at least 3 notes of tune, as the
demo picks them), the mix and the tune hummed or whistled as the demo renders
it are tokenized with each RVQ, window by window. Prints, per RVQ, the share of
windows whose level-1 code (and levels 1-2) the hum shares with its own mix and
with the piece before's mix (chance for this RVQ's cells), and how many distinct
level-1 codes the mixes use. The melody analogue of MuLan's text/audio level-1
agreement (docs/design.md §10, §11).
"""
import json
import os

from absl import flags
import numpy as np

from musiclm_jax import gin_utils
from musiclm_jax import musiclm_spec as spec
from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices
from musiclm_jax.tokenizers import melody as melody_tokenizer

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "musiclm-export folder of a melody run.",
                                  required=True)
_RVQ_PATHS = flags.DEFINE_list("rvq_paths", None, "fit_melody_rvq files to compare.",
                               required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS folder of the corpus.", required=True)
_DATASET = flags.DEFINE_string("dataset", "synth_music/small", "A synth_music corpus.")
_NUM_PIECES = flags.DEFINE_integer("num_pieces", 40, "Held-out pieces (one clip each).")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Seconds of each clip, from its start.")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  rate_hz, seconds = spec.SAMPLE_RATE_HZ, _SECONDS.value
  clips = melody_pairs.load_melody_clips(_DATASET.value, _DATA_DIR.value, "validation", rate_hz,
                                         round(seconds * rate_hz))
  tunes = melody_pairs.first_tunes(clips, seconds, _NUM_PIECES.value)
  mixes = np.stack([clip.audio[:round(seconds * rate_hz)] for clip, _ in tunes])
  hums = np.stack([melody_voices.voice_tune(i, notes, seconds, rate_hz)[1]
                   for i, (_, notes) in enumerate(tunes)])
  results = {}
  for rvq_path in _RVQ_PATHS.value:
    tokenizer = melody_tokenizer.MelodyTokenizer.load(_EXPORT_DIR.value, rvq_path)
    mix, hum = tokenizer.tokenize(mixes), tokenizer.tokenize(hums)  # [pieces, windows, levels]
    other = np.roll(mix, 1, axis=0)  # piece i against piece i - 1's mix
    results[rvq_path] = {
        "level_1_own_mix": round(float((hum[..., 0] == mix[..., 0]).mean()), 3),
        "level_1_other_mix": round(float((hum[..., 0] == other[..., 0]).mean()), 3),
        "levels_1_2_own_mix": round(float((hum[..., :2] == mix[..., :2]).all(-1).mean()), 3),
        "distinct_level_1_codes_of_mixes": int(len(np.unique(mix[..., 0])))}
  print(json.dumps({"benchmark": "hum_codes", "pieces": len(tunes), "windows": int(mix.shape[1]),
                    "rvqs": results, "load_average_1min": round(os.getloadavg()[0], 2)}),
        flush=True)


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --export_dir, --rvq_paths, --data_dir")
