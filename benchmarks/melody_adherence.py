"""Does the melody adherence measure tell a tune's own rendering from another tune's?

  .venv/bin/python benchmarks/melody_adherence.py [num_tunes] [seconds] \
      [data_dir [codec_export_dir]]

No trained model. Two kinds of "music" are scored against melody inputs, each
against its own tune and the next one's (eval/melody.py):

  hums    random tunes (one note per 0.25-0.75 s within an octave and a half)
          whistled without variation as the melody input, and hummed with the
          corpus's variation (transposed up to 3 semitones, stretched up to
          5 %, detuned, vibrato, octave jumps) as the music (`data/melody_voices`).
  mixes   with a data_dir holding a built synth_music/small (e.g. runs/demo/tfds):
          the first num_tunes held-out pieces' real mixes (their first `seconds`,
          one clip per piece, at least 3 notes of tune), against their tune hummed
          or whistled as the demo hums it. Each is scored with three readers of the
          music's pitch: the measure's (basic-pitch, the tune among the 3 strongest
          pitch classes), basic-pitch's single strongest class, and pYIN (one
          voice, as the melody input is read). With a codec_export_dir (e.g.
          runs/demo/soundstream/export), also the mixes through that codec's first
          2 levels (the demo's decode) and all 12, read as the measure reads music:
          how much of the tune the cascade's audio path keeps.

A useful measure scores own far above another's: real mixes are the ceiling a
melody-conditioned model can reach. On generated music the same call is
`melody_eval.melody_adherence(generated_audio, melody_inputs, 24_000, pitch)`.
"""
import json
import os
import sys

import numpy as np

from musiclm_jax.audio import pitch as audio_pitch
from musiclm_jax.data import melody_pairs
from musiclm_jax.data import melody_voices
from musiclm_jax.eval import melody as melody_eval
from musiclm_jax.eval import pitch_model
from musiclm_jax.tokenizers import acoustic

RATE_HZ = 24_000
CODEC_LEVELS = (2, 12)  # the demo's DECODE_LEVELS, and all of the paper's


def summary(matched, mismatched) -> dict:
  matched, mismatched = np.asarray(matched), np.asarray(mismatched)
  return {"matched_mean": round(float(matched.mean()), 3),
          "mismatched_mean": round(float(mismatched.mean()), 3),
          "pairs_matched_above_mismatched": int(np.sum(matched > mismatched))}


def one_hot(contour: np.ndarray) -> np.ndarray:
  """A pYIN contour [frames] as pitch-class salience [frames, 12]: one class, none unvoiced."""
  profile = np.zeros((len(contour), 12), np.float32)
  voiced = np.isfinite(contour)
  profile[voiced, np.round(contour[voiced]).astype(int) % 12] = 1.0
  return profile


def hums(num_tunes: int, seconds: float, pitch) -> dict:
  rng = np.random.default_rng(0)
  whistles, music = [], []
  for _ in range(num_tunes):
    ends = np.cumsum(rng.uniform(0.25, 0.75, int(seconds / 0.25)))
    ends = ends[ends < seconds]
    starts = np.concatenate([[0.0], ends[:-1]])
    notes = melody_voices.Notes(rng.integers(60, 79, len(ends)), starts, ends - 0.02)
    whistles.append(melody_voices.render(melody_voices.WHISTLE, notes, seconds, RATE_HZ, rng,
                                         melody_voices.NO_VARIATION))
    music.append(melody_voices.render(melody_voices.HUM, notes, seconds, RATE_HZ, rng))
  result = melody_eval.melody_adherence(music, whistles, RATE_HZ, pitch)
  return summary(result["matched_per_pair"], result["mismatched_per_pair"])


def mixes(num_tunes: int, seconds: float, data_dir: str, pitch,
          codec_export_dir: str | None) -> dict:
  clips = melody_pairs.load_melody_clips("synth_music/small", data_dir, "validation", RATE_HZ, 1)
  pieces = melody_pairs.first_tunes(clips, seconds, num_tunes)
  tunes = [audio_pitch.pitch_contour(melody_voices.voice_tune(i, notes, seconds, RATE_HZ)[1],
                                     RATE_HZ)[0] for i, (_, notes) in enumerate(pieces)]
  music = [clip.audio[:round(seconds * RATE_HZ)] for clip, _ in pieces]
  classes = [melody_eval.music_pitch_classes(pitch, audio, RATE_HZ) for audio in music]
  readers = {"basic_pitch_top_3": (classes, melody_eval.TOP_PITCH_CLASSES),
             "basic_pitch_top_1": (classes, 1),
             "pyin": ([one_hot(audio_pitch.pitch_contour(a, RATE_HZ)[0]) for a in music], 1)}
  if codec_export_dir:  # the mixes' codes decoded from the first N levels, read as generated
    codec = acoustic.SoundStreamTokenizer.load(codec_export_dir)
    for levels in CODEC_LEVELS:
      decoded = [codec.decode(codec.encode(audio[None])[..., :levels])[0] for audio in music]
      readers[f"codec_{levels}_levels_basic_pitch_top_3"] = (
          [melody_eval.music_pitch_classes(pitch, audio, RATE_HZ) for audio in decoded],
          melody_eval.TOP_PITCH_CLASSES)
  n = len(music)
  result = {"pieces": n}
  for name, (profiles, top) in readers.items():
    result[name] = summary(
        [melody_eval.pitch_class_agreement(tunes[i], profiles[i], top) for i in range(n)],
        [melody_eval.pitch_class_agreement(tunes[(i + 1) % n], profiles[i], top)
         for i in range(n)])
  return result


if __name__ == "__main__":
  num_tunes = int(sys.argv[1]) if len(sys.argv) > 1 else 20
  seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 6.0
  model = pitch_model.BasicPitch()
  report = {"num_tunes": num_tunes, "seconds": seconds, "hums": hums(num_tunes, seconds, model)}
  if len(sys.argv) > 3:
    report["mixes"] = mixes(num_tunes, seconds, sys.argv[3], model,
                            sys.argv[4] if len(sys.argv) > 4 else None)
  report["load_average_1min"] = round(os.getloadavg()[0], 2)
  print(json.dumps(report, indent=1))
