"""Melody retrieval on held-out synth pieces: the melody embedder against chance and MuLan.

  .venv/bin/python benchmarks/melody_retrieval.py runs/melody_tiny/export runs/tfds \
      [runs/mulan_tiny/export]

Queries are the same notes on other instruments, whistled and hummed; the
candidates are the mixes of every held-out piece (validation + test splits of
synth_music/tiny), one 4 s crop each (eval/melody.py). With a MuLan export,
its audio embedding is measured the same way.
"""
import json
import sys

import jax

from musiclm_jax.data import melody_pairs
from musiclm_jax.eval import melody as melody_eval
from musiclm_jax.tokenizers import conditioning
from musiclm_jax.tokenizers import melody as melody_tokenizer

export_dir, data_dir = sys.argv[1:3]
model, params = melody_tokenizer.load_melody_embedder(export_dir)
source = melody_pairs.MelodyPairBatchSource("synth_music/tiny", data_dir=data_dir,
                                            crop_seconds=model.config.window_seconds)
clips = [clip for split in ("validation", "test")
         for clip in melody_pairs.load_melody_clips(source.dataset, data_dir, split,
                                                    source.sample_rate_hz, source.crop_samples)]
embed = jax.jit(model.embed_windows)
results = {"melody_embedder": melody_eval.melody_retrieval(lambda a: embed(params, a), clips,
                                                            source)}
if len(sys.argv) > 3:
  mulan_model, mulan_params = conditioning.load_mulan(sys.argv[3])
  embed_mulan = jax.jit(mulan_model.embed_audio)
  results["mulan_audio"] = melody_eval.melody_retrieval(lambda a: embed_mulan(mulan_params, a),
                                                        clips, source)
print(json.dumps(results, indent=1))
