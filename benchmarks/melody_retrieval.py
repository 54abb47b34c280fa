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

from musiclm_jax.eval import melody as melody_eval

export_dir, data_dir = sys.argv[1:3]
print(json.dumps(melody_eval.embedder_retrieval(
    export_dir, "synth_music/tiny", data_dir, ("validation", "test"),
    sys.argv[3] if len(sys.argv) > 3 else None), indent=1))
