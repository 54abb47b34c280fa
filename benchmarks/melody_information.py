r"""Which token stream carries the tune? Held-out CE of the melody's pitch class given a token.

  .venv/bin/python benchmarks/melody_information.py --token_cache_dir=runs/demo/tokens \
      --data_dir=runs/demo/tfds [--dataset=synth_music/small]

A melody-conditioned chain can only make music follow a tune if the tokens it
generates can hold the tune. For every frame of a token cache's clips of a
synth_music corpus while its melody plays a note, the target is that note's
pitch class (the corpus's melody labels; frames between notes are left out),
and the context is one token of the frame: the semantic token (25 Hz), or the
codec's level-1 or level-2 code (50 Hz). Count tables fitted on the train
split, interpolated with the pitch-class frequencies by a weight chosen on
held-out train clips (`eval/token_information.table_information`), give the
cross-entropy in nats per frame on the held-out split (`given_token`), beside
the frequencies' own (`prior`). prior − given_token is what the stream tells
about the tune (a table can only find what one token says alone).

Prints one JSON line: per stream {prior, given_token, weight}, the frame counts and the
1-minute load.
"""
import json
import os

from absl import flags
import numpy as np
import tensorflow_datasets as tfds

from musiclm_jax import gin_utils
from musiclm_jax import musiclm_spec as spec
from musiclm_jax.data import melody_voices
from musiclm_jax.data import tfds_audio
from musiclm_jax.data import token_cache
from musiclm_jax.errors import UserError
from musiclm_jax.eval import token_information

_TOKEN_CACHE_DIR = flags.DEFINE_string("token_cache_dir", None, "musiclm-tokenize folder of a "
                                       "synth_music corpus.", required=True)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS folder of the corpus (melody labels).",
                                required=True)
_DATASET = flags.DEFINE_string("dataset", "synth_music/small", "The corpus the cache tokenized.")
_TRAIN_SPLIT = flags.DEFINE_string("train_split", "train", "Split the tables are counted on.")
_SPLIT = flags.DEFINE_string("split", "validation", "Held-out split they are scored on.")
PITCH_CLASSES = 12


def pitch_classes(notes, frames: int, frames_per_second: float) -> np.ndarray:
  """The melody's pitch class [frames] at each frame's centre, -1 where no note sounds."""
  centres = (np.arange(frames) + 0.5) / frames_per_second
  classes = np.full(frames, -1, np.int64)
  for pitch, start_s, end_s in zip(notes.pitch, notes.start_s, notes.end_s):
    classes[(centres >= start_s) & (centres < end_s)] = pitch % 12
  return classes


def read_split(split: str) -> dict[str, tuple[list, list]]:
  """{stream: (contexts [frames] per clip, pitch classes [frames] per clip)}, sounding frames."""
  builder, _ = tfds_audio.open_audio_dataset(_DATASET.value, _DATA_DIR.value)
  if "melody" not in builder.info.features:
    raise UserError(f"{_DATASET.value} has no melody labels: point at a synth_music corpus")
  notes = {example["tfds_id"].decode(): melody_voices.melody_notes(example)
           for example in builder.as_dataset(
               split=split, read_config=tfds.ReadConfig(add_tfds_id=True)).as_numpy_iterator()}
  reader = token_cache.SplitReader(_TOKEN_CACHE_DIR.value, split)
  if not len(reader):
    raise UserError(f"{_TOKEN_CACHE_DIR.value} has no finished shard of split {split!r}")
  streams = {"semantic": ([], []), "acoustic_level_1": ([], []), "acoustic_level_2": ([], [])}
  for record in (reader[i] for i in range(len(reader))):
    if record.clip_id not in notes:
      raise UserError(f"clip {record.clip_id} of the token cache is not in {_DATASET.value}/"
                      f"{split} of {_DATA_DIR.value}: point at the corpus it tokenized")
    for name, tokens, rate_hz in (
        ("semantic", record.semantic, spec.SEMANTIC_RATE_HZ),
        ("acoustic_level_1", record.acoustic[:, 0], spec.ACOUSTIC_RATE_HZ),
        ("acoustic_level_2", record.acoustic[:, 1], spec.ACOUSTIC_RATE_HZ)):
      classes = pitch_classes(notes[record.clip_id], len(tokens), rate_hz)
      sounding = classes >= 0
      streams[name][0].append(np.asarray(tokens, np.int64)[sounding])
      streams[name][1].append(classes[sounding])
  return streams


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  metadata = token_cache.load_metadata(_TOKEN_CACHE_DIR.value)
  codes = {"semantic": metadata.codebook_size("semantic"),
           "acoustic_level_1": metadata.codebook_size("acoustic"),
           "acoustic_level_2": metadata.codebook_size("acoustic")}
  train, held_out = read_split(_TRAIN_SPLIT.value), read_split(_SPLIT.value)
  result = {}
  for name in codes:
    prior = token_information.unigram_information(train[name][1], held_out[name][1],
                                                  PITCH_CLASSES)
    given = token_information.table_information(*train[name], *held_out[name], codes[name],
                                                PITCH_CLASSES)
    result[name] = {"prior": round(prior["ce"], 4), "given_token": round(given["ce"], 4),
                    "weight": given["weight"]}
  print(json.dumps({
      "benchmark": "melody_information", "token_cache_dir": _TOKEN_CACHE_DIR.value,
      "train_split": _TRAIN_SPLIT.value, "split": _SPLIT.value,
      "held_out_clips": len(held_out["semantic"][1]),
      "held_out_frames": {name: int(sum(len(c) for c in held_out[name][1])) for name in codes},
      "ce_nats_per_frame": result,
      "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}), flush=True)


if __name__ == "__main__":
  gin_utils.run(main, usage="configure with --token_cache_dir, --data_dir, --dataset, "
                            "--train_split and --split")
