"""The tune as pitch-class codes: the `pitch` melody kind (beyond the paper, docs/design.md §11).

Frame f covers [f, f + 1) * PITCH_HOP_SECONDS (80 ms); its code is the pitch class of the
tune's note there (0 = C ... 11 = B) or `token_layout.NO_PITCH_CODE` where no note sounds.
A stage conditioned on these codes reads the tune frame by frame, not as one 4 s embedding,
and a hum in any octave gives its song's classes:

  from_labels(labels, num_frames)        training: a clip's melody labels [frames, 1]
  from_audio(audio, rate_hz, num_frames) inference: a hummed, whistled or played tune (pYIN)
"""
from typing import Mapping

import numpy as np

from musiclm_jax import musiclm_spec as spec
from musiclm_jax.audio import pitch
from musiclm_jax.data import melody_voices
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError

NO_PITCH = token_layout.NO_PITCH_CODE
# A frame names a class when at least this share of its pitch-tracker frames are voiced.
MIN_VOICED_SHARE = 0.5


def num_frames(num_samples: int, sample_rate_hz: int) -> int:
  """Pitch frames of `num_samples` of audio: the last, partial frame counts."""
  return int(np.ceil(num_samples / sample_rate_hz / spec.PITCH_HOP_SECONDS - 1e-6))


def from_notes(notes: melody_voices.Notes, frames: int) -> np.ndarray:
  """Codes [frames, 1] int32: the class of the note sounding at each frame's centre (of
  overlapping notes, the one that started last), NO_PITCH where none does."""
  centres = (np.arange(frames) + 0.5) * spec.PITCH_HOP_SECONDS
  codes = np.full(frames, NO_PITCH, np.int32)
  for index in np.argsort(notes.start_s, kind="stable"):
    sounding = (centres >= notes.start_s[index]) & (centres < notes.end_s[index])
    codes[sounding] = int(round(float(notes.pitch[index]))) % 12
  return codes[:, None]


def from_labels(labels: Mapping, frames: int) -> np.ndarray:
  """`from_notes` of a clip's melody labels (a token cache record's `labels`, a synth_music
  example's features): {'melody': {'pitch', 'start_s', 'end_s'}}."""
  if "melody" not in labels:
    raise UserError("a clip has no melody labels ('melody': pitch, start_s, end_s), which the "
                    "pitch melody kind trains on: use a corpus that has them (synth_music) or "
                    "the paper's melody tokens (MELODY = True)")
  return from_notes(melody_voices.melody_notes(labels), frames)


def from_audio(audio: np.ndarray, sample_rate_hz: int, frames: int | None = None) -> np.ndarray:
  """Codes [frames, 1] int32 of a tune's audio [samples] (one voice: hummed, whistled, sung or
  played): each frame's most common pYIN pitch class, NO_PITCH unless `MIN_VOICED_SHARE` of its
  tracker frames are voiced. frames: None, all of the audio's (`num_frames`)."""
  frames = num_frames(len(audio), sample_rate_hz) if frames is None else frames
  midi, voiced = pitch.pitch_contour(audio, sample_rate_hz)
  owner = np.floor(np.arange(len(midi)) / pitch.FRAMES_PER_SECOND / spec.PITCH_HOP_SECONDS)
  classes = np.where(voiced, np.round(np.nan_to_num(midi)) % 12, NO_PITCH).astype(np.int32)
  codes = np.full(frames, NO_PITCH, np.int32)
  for frame in range(frames):
    mine = classes[owner == frame]
    sung = mine[mine != NO_PITCH]
    if len(mine) and len(sung) >= MIN_VOICED_SHARE * len(mine):
      codes[frame] = np.bincount(sung, minlength=12).argmax()
  return codes[:, None]
