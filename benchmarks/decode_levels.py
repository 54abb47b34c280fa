r"""What the codec's first N levels carry: a copy of a musiclm-infer folder, re-decoded.

  .venv/bin/python benchmarks/decode_levels.py --infer_dir=runs/demo/samples \
      --output_dir=/tmp/levels_4 --soundstream_export_dir=runs/demo/soundstream/export \
      --levels=4 --source=tokens        # or --source=real --data_dir=runs/demo/tfds
  # or --source=teacher_forced --coarse_export_dir=runs/demo/coarse/export \
  #     --token_cache_dir=runs/demo/tokens
  # then musiclm-eval with SAMPLES_DIR=/tmp/levels_4 (JUDGE_PATH: the run's judge)

Issue #15 asks where a prompt's information is lost; this isolates the link tokens →
audio. The copy keeps the folder's results.jsonl (so musiclm-eval pairs each clip with
its caption as before) and replaces each plain text line's WAVs:

  tokens  the sample's own acoustic codes (musiclm-infer --gin.SAVE_TOKENS=True)
          through the first N levels: is what the fine stage adds music, or noise?
  real    the codec's codes of the held-out clip with that caption, through the first
          N levels: the audio a perfect coarse stage (N = 4) would give, with no fine
          stage. Lines whose caption is not in the split are left as generated.
  teacher_forced  that clip's coarse codes as the coarse stage samples them given the
          clip's real past (its S and, for each token, the real coarse tokens before it:
          `teacher_forcing.sample_given_real_past`), with the line's coarse knobs,
          windows and seeds, through the first N <= 4 levels: the stage's one-step errors
          without their compounding in free sampling. Between tokens and real.

SoundStream trains with quantizer dropout, so N < 12 levels is an input its decoder
was trained on. Spectrograms and token files are not copied (they would describe the
old audio). Prints one JSON line.
"""
import functools
import json
import os
import shutil

from absl import flags
import jax
import numpy as np

from musiclm_jax import cascade
from musiclm_jax import decoding
from musiclm_jax import gin_utils
from musiclm_jax import results_file
from musiclm_jax.audio import io as audio_io
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import teacher_forcing
from musiclm_jax.tokenizers import acoustic

_INFER_DIR = flags.DEFINE_string("infer_dir", None, "musiclm-infer folder.", required=True)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where the copy goes (must not exist).",
                                  required=True)
_EXPORT_DIR = flags.DEFINE_string("soundstream_export_dir", None, "The run's codec export.",
                                  required=True)
_LEVELS = flags.DEFINE_integer("levels", 4, "Codec levels decoded (the first N).")
_SOURCE = flags.DEFINE_enum("source", "tokens", ["tokens", "real", "teacher_forced"],
                            "Whose codes: the samples' saved tokens, each caption's real "
                            "held-out clip, or the coarse stage's draws given that clip's past.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "TFDS folder of the run's corpus (--source=real).")
_DATASET = flags.DEFINE_string("dataset", "synth_music/tiny", "Its dataset (--source=real).")
_SPLIT = flags.DEFINE_string("split", "validation", "Its held-out split (--source=real, "
                             "teacher_forced).")
_COARSE_EXPORT_DIR = flags.DEFINE_string("coarse_export_dir", None, "The coarse stage "
                                         "(--source=teacher_forced).")
_TOKEN_CACHE_DIR = flags.DEFINE_string("token_cache_dir", None, "Token cache of the corpus, "
                                       "with captions (--source=teacher_forced).")
_REAL_TOKEN_RATE = flags.DEFINE_float("real_token_rate", 0.0, "Each teacher-forced token is "
                                      "the real one with this probability (a better stage).")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  if os.path.exists(_OUTPUT_DIR.value):
    raise UserError(f"{_OUTPUT_DIR.value} exists: give a new --output_dir")
  codec = acoustic.SoundStreamTokenizer.load(_EXPORT_DIR.value)
  if not 1 <= _LEVELS.value <= codec.num_levels:
    raise UserError(f"--levels={_LEVELS.value}: the codec has 1 to {codec.num_levels} levels")
  real = clips = None
  if _SOURCE.value == "teacher_forced":
    if _LEVELS.value > token_layout.COARSE.num_levels:
      raise UserError(f"--levels={_LEVELS.value}: the coarse stage samples the first "
                      f"{token_layout.COARSE.num_levels} levels; decode at most those")
    if not (_COARSE_EXPORT_DIR.value and _TOKEN_CACHE_DIR.value):
      raise UserError("--source=teacher_forced needs --coarse_export_dir and --token_cache_dir")
    coarse_stage = cascade.load_stage(_COARSE_EXPORT_DIR.value)
    clips = {r.caption: r for r in teacher_forcing.read_clips(_TOKEN_CACHE_DIR.value,
                                                               _SPLIT.value, "mulan_text", 0)}
  elif _SOURCE.value == "real":
    reference = clip_sets.read_reference(_DATASET.value, _DATA_DIR.value, _SPLIT.value)
    if reference.sample_rate_hz != codec.sample_rate_hz:
      raise UserError(f"{_DATASET.value} is at {reference.sample_rate_hz} Hz, the codec at "
                      f"{codec.sample_rate_hz} Hz: give the corpus the codec was trained on")
    real = dict(zip(reference.texts, reference.audio))
  shutil.copytree(_INFER_DIR.value, _OUTPUT_DIR.value,
                  ignore=shutil.ignore_patterns("*.png", "*.npz", "index.html"))
  # Compiled once per clip length, not run op by op for every sample.
  decode = jax.jit(functools.partial(codec.model.decode, num_levels=_LEVELS.value))
  replaced = 0
  for record in results_file.read(_OUTPUT_DIR.value, "generated"):
    if not results_file.is_text_line(record):
      continue
    for sample in record["samples"]:
      if clips is not None:
        if record["text"] not in clips:
          continue
        codes = teacher_forcing.sample_given_real_past(
            coarse_stage, clips[record["text"]], cascade.Windows(**record["windows"]),
            decoding.SamplingConfig(**record["sampling"]["coarse"]), sample["seed"],
            codec.codebook_size, _REAL_TOKEN_RATE.value)[None]
      elif real is None:  # a one-line error when the folder has no tokens
        tokens = results_file.read_tokens(_INFER_DIR.value, sample.get("tokens", ""))
        codes = tokens["acoustic"][None]
        if codes.shape[-1] < _LEVELS.value:  # a cascade that decoded no fine level saved 4
          raise UserError(f"{sample['tokens']} holds {codes.shape[-1]} levels, not "
                          f"--levels={_LEVELS.value}: decode at most those")
      elif record["text"] in real:
        codes = codec.encode(real[record["text"]][None])
      else:
        continue
      audio = np.asarray(decode(codec.params, codes))[0]
      path = os.path.join(_OUTPUT_DIR.value, sample["wav"])
      length = sample["num_audio_samples"]
      audio_io.save_wav(path, np.pad(audio[:length], (0, max(0, length - len(audio)))),
                         codec.sample_rate_hz)
      replaced += 1
  print(json.dumps({"benchmark": "decode_levels", "source": _SOURCE.value,
                    "levels": _LEVELS.value, "samples_replaced": replaced,
                    "real_token_rate": _REAL_TOKEN_RATE.value,
                    "output_dir": _OUTPUT_DIR.value}))


if __name__ == "__main__":
  gin_utils.run(main)
