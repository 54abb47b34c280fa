r"""How coarse must MuLan's RVQ be for a caption to get its own clip's codes? M_T vs M_A agreement.

  .venv/bin/python benchmarks/rvq_granularity.py --export_dir=runs/demo/mulan/export \
      --rvq_path=runs/demo/mulan/rvq.npz --data_dir=runs/demo/tfds --dataset=synth_music/tiny

MusicLM trains its stages on M_A (audio through MuLan and the RVQ) and samples
from M_T (the prompt through MuLan and the same RVQ), so a prompt is only
understood as far as M_T lands on the codes M_A of matching music had. For each
number of fitted codes per level in --codes (at most the training windows / 2,
as gin/runs/fit_mulan_rvq.gin's min_vectors_per_code = 2 allows), and with and without removing each
modality's mean (the train split's window and caption embeddings) before
quantizing, this fits an RVQ of the run's levels and codebook size on the train split's MuLan window
embeddings exactly as musiclm-fit-mulan-rvq does (`rvq_fit.fit_rvq`, seed 0)
and prints one JSON line per fit: per level, how often a held-out caption's
code equals its own clip's (`own`) and the mean over the other clips
(`random`, `retrieval.token_agreement`), pooled over --eval_splits, with the
1-minute load average. The first line is the run's own RVQ (--rvq_path) with
recall@1 of the embeddings themselves, which bounds what any quantization keeps.
"""
import json
import os

from absl import flags
import numpy as np

from musiclm_jax import gin_utils
from musiclm_jax.eval import retrieval
from musiclm_jax.tokenizers import conditioning
from musiclm_jax.tokenizers import rvq_fit

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "musiclm-export folder of a MuLan run.",
                                  required=True)
_RVQ_PATH = flags.DEFINE_string("rvq_path", None, "The run's musiclm-fit-mulan-rvq file.",
                                required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data folder holding --dataset.")
_DATASET = flags.DEFINE_string("dataset", "synth_music/tiny", "Captioned TFDS dataset.")
_EVAL_SPLITS = flags.DEFINE_list("eval_splits", ["validation", "test"], "Held-out splits, pooled.")
_CODES = flags.DEFINE_list("codes", ["8", "32", "128", "1024"], "Fitted codes per level to try.")
_LEVELS_SHOWN = flags.DEFINE_integer("levels_shown", 3, "Levels printed one by one.")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  tokenizer = conditioning.MuLanTokenizer.load(_EXPORT_DIR.value, _RVQ_PATH.value)
  model, params = tokenizer.model, tokenizer.params
  embeddings = lambda split: retrieval.split_embeddings(tokenizer, _DATASET.value, _DATA_DIR.value,
                                                        split)
  train_clips, _, train_text = embeddings("train")
  windows = rvq_fit.window_embeddings(model, params, train_clips.audio)
  held_out = [embeddings(split)[1:] for split in _EVAL_SPLITS.value]
  audio = np.concatenate([a for a, _ in held_out])
  text = np.concatenate([t for _, t in held_out])
  audio_mean, text_mean = windows.mean(axis=0), train_text.mean(axis=0)
  load = os.getloadavg()[0]
  own_rvq = retrieval.token_agreement(tokenizer.tokens(text), tokenizer.tokens(audio))
  print(json.dumps({"pairs": len(audio), "train_windows": len(windows),
                    "retrieval": retrieval.retrieval_metrics(audio, text),
                    "own_rvq_own_clip_first_levels": own_rvq["own_clip"][:_LEVELS_SHOWN.value],
                    "own_rvq_random_clip_first_levels": own_rvq["random_clip"][:_LEVELS_SHOWN.value],
                    "modality_mean_distance": float(np.linalg.norm(audio_mean - text_mean)),
                    "load_average": load}))
  for codes in (int(c) for c in _CODES.value):
    for centred in (False, True):
      shift_audio, shift_text = (audio_mean, text_mean) if centred else (0.0, 0.0)
      # At least 2 windows a code, as gin/runs/fit_mulan_rvq.gin fits.
      quantizer, state = rvq_fit.fit_rvq(windows - shift_audio, tokenizer.num_levels,
                                         tokenizer.codebook_size, max_fitted_codes=codes)
      fitted = conditioning.MuLanTokenizer(model, params, quantizer, state)
      agreement = retrieval.token_agreement(fitted.tokens(text - shift_text),
                                            fitted.tokens(audio - shift_audio))
      shown = _LEVELS_SHOWN.value
      print(json.dumps({
          "fitted_codes_per_level": min(codes, len(windows) // 2),
          "centred": centred,
          "own_clip_first_levels": [round(x, 3) for x in agreement["own_clip"][:shown]],
          "random_clip_first_levels": [round(x, 3) for x in agreement["random_clip"][:shown]],
          "own_clip_mean": float(np.mean(agreement["own_clip"])),
          "random_clip_mean": float(np.mean(agreement["random_clip"])),
          "distinct_audio_codes_level_1": agreement["distinct_audio_codes"][0],
          "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
  # gin_utils.run also sets the binaries' XLA:CPU flags before JAX starts.
  gin_utils.run(main, usage="configure with --export_dir, --rvq_path, --data_dir, --dataset, "
                "--eval_splits, --codes")
