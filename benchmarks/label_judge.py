"""The label judge's held-out accuracy on real synth audio, and real music against coloured noise.

  .venv/bin/python benchmarks/label_judge.py runs/tfds [NUM_CLIPS]

Builds a synth_music corpus of NUM_CLIPS (default 100) 4 s clips, one per piece
(30% validation), trains eval/label_judge.py on the train split's real audio
and scores the validation split against its labels, next to a majority-class
baseline; then the "is it music" measures and the judge's genre accuracy on the
real validation clips and on coloured noise shaped like them.
"""
import json
import sys

import numpy as np

from musiclm_jax.data.synth_music import builder
from musiclm_jax.data.synth_music import corpus
from musiclm_jax.eval import clip_sets
from musiclm_jax.eval import coloured_noise
from musiclm_jax.eval import label_judge
from musiclm_jax.eval import music_stats
from musiclm_jax.eval import musicnn
from musiclm_jax.eval import pitch_model

data_dir = sys.argv[1]
num_clips = int(sys.argv[2]) if len(sys.argv) > 2 else 100
config = builder.SynthMusicConfig(
    name=f"judge{num_clips}", description=f"{num_clips} x 4 s clips for the label judge",
    spec=corpus.CorpusSpec(num_clips=num_clips, clip_seconds=4.0, clips_per_piece=1,
                           split_fractions=(0.3, 0.0), melody_pair_fraction=0.0))
builder.build_synth_music(data_dir, config)
dataset = {"dataset": f"synth_music/{config.name}", "data_dir": data_dir}
train = clip_sets.read_judge_split(split="train", **dataset)
held_out = clip_sets.read_judge_split(split="validation", **dataset)
tagger = musicnn.MusicnnTagger("MTT_musicnn")
judge = label_judge.train(tagger, train.audio, train.sample_rate_hz, train.genre, train.instruments,
                          train.mood)
pitch = pitch_model.BasicPitch()


def majority_accuracy(train_labels, held_out_labels):
  values, counts = np.unique(train_labels, return_counts=True)
  return float(np.mean(np.asarray(held_out_labels) == values[counts.argmax()]))


results = {"train_clips": len(train.audio), "held_out_clips": len(held_out.audio),
           "classes": {head: len(classes) for head, classes in judge.classes.items()},
           "majority_genre_accuracy": majority_accuracy(train.genre, held_out.genre),
           "majority_mood_accuracy": majority_accuracy(train.mood, held_out.mood)}
noise = coloured_noise.coloured_noise(held_out.audio, seed=0)
for name, clips in (("real", held_out.audio), ("coloured_noise", noise)):
  features = np.stack([tagger(a, held_out.sample_rate_hz)["penultimate"].mean(axis=0) for a in clips])
  scores = label_judge.clip_scores(judge, features, held_out.genre, held_out.instruments,
                                   held_out.mood)
  posteriorgrams = [pitch(a, held_out.sample_rate_hz) for a in clips]
  results[name] = {
      **{score: float(values.mean()) for score, values in scores.items()},
      "spectral_flatness": float(np.mean([music_stats.spectral_flatness(a) for a in clips])),
      "notes_per_second": float(np.mean([pitch_model.notes_per_second(p, pitch.frames_per_second)
                                         for p in posteriorgrams])),
      "pitch_salience": float(np.mean([pitch_model.pitch_salience(p) for p in posteriorgrams]))}
print(json.dumps(results, indent=1))
