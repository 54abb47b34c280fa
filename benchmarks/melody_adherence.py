"""Does the melody adherence measure tell a tune's own rendering from another tune's?

  .venv/bin/python benchmarks/melody_adherence.py [num_tunes] [seconds]

No trained model: random tunes (one note per 0.25-0.75 s within an octave and
a half) are whistled without variation as the "melody input", and hummed with
the corpus's variation (transposed up to 3 semitones, stretched up to 5 %,
detuned, vibrato, octave jumps) as the "music" (`data/melody_voices`). A
useful measure scores each hum against its own whistle far above against the
next tune's (eval/melody.py: pYIN contours, pitch-class agreement at the best
transposition). On generated music the same call is
`melody_eval.melody_adherence(generated_audio, melody_inputs, 24_000)`.
"""
import json
import sys

import numpy as np

from musiclm_jax.data import melody_voices
from musiclm_jax.eval import melody as melody_eval

RATE_HZ = 24_000
num_tunes = int(sys.argv[1]) if len(sys.argv) > 1 else 20
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
rng = np.random.default_rng(0)
whistles, hums = [], []
for _ in range(num_tunes):
  ends = np.cumsum(rng.uniform(0.25, 0.75, int(seconds / 0.25)))
  ends = ends[ends < seconds]
  starts = np.concatenate([[0.0], ends[:-1]])
  notes = melody_voices.Notes(rng.integers(60, 79, len(ends)), starts, ends - 0.02)
  whistles.append(melody_voices.render(melody_voices.WHISTLE, notes, seconds, RATE_HZ, rng,
                                       melody_voices.NO_VARIATION))
  hums.append(melody_voices.render(melody_voices.HUM, notes, seconds, RATE_HZ, rng))
result = melody_eval.melody_adherence(hums, whistles, RATE_HZ)
matched, mismatched = np.array(result["matched_per_pair"]), np.array(result["mismatched_per_pair"])
print(json.dumps({"num_tunes": num_tunes, "seconds": seconds,
                  "matched_mean": round(result["matched"], 3),
                  "mismatched_mean": round(result["mismatched"], 3),
                  "pairs_matched_above_mismatched": int(np.sum(matched > mismatched))}, indent=1))
