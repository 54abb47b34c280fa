"""Renders a `Piece` to audio with the `fluidsynth` program and a GM soundfont.

The command-line synth is used rather than pyfluidsynth because it needs no
Python binding and renders faster than real time offline. Rendering is
deterministic for a given soundfont, so the soundfont's name is part of the
corpus's identity and is recorded in the dataset description.
"""
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pretty_midi

from musiclm_jax.audio import io
from musiclm_jax.data.synth_music import labels

# Larger (better) soundfonts first; Debian's fluid-soundfont-gm and timgm6mb-soundfont.
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
)
SOUNDFONT_ENV = "MUSICLM_SOUNDFONT"
_TARGET_RMS = 0.1  # -20 dBFS
_MAX_PEAK = 0.9
# Shorter notes can round to a note-off before their note-on in the MIDI file;
# the stuck note never releases and fluidsynth then renders forever.
_MIN_NOTE_S = 0.02
_RENDER_TIMEOUT_S = 120.0


def find_soundfont() -> str:
  """The soundfont to render with: $MUSICLM_SOUNDFONT, else the best installed."""
  override = os.environ.get(SOUNDFONT_ENV)
  if override:
    if not os.path.exists(override):
      raise FileNotFoundError(
          f"${SOUNDFONT_ENV}={override} does not exist; point it at a .sf2 file.")
    return override
  for path in SOUNDFONT_CANDIDATES:
    if os.path.exists(path):
      return path
  raise FileNotFoundError("no General MIDI soundfont found; run `apt-get install "
                          "timgm6mb-soundfont` (or fluid-soundfont-gm) or set $MUSICLM_SOUNDFONT.")


def find_fluidsynth() -> str:
  path = shutil.which("fluidsynth")
  if path is None:
    raise FileNotFoundError(
        "the `fluidsynth` program is not installed; run `apt-get install fluidsynth`.")
  return path


def _playable(notes: list[labels.Note]) -> list[pretty_midi.Note]:
  """Notes without same-pitch overlaps or near-zero lengths (see _MIN_NOTE_S)."""
  playable = []
  last_by_pitch: dict[int, pretty_midi.Note] = {}
  for note in sorted(notes, key=lambda n: (n.start_s, n.pitch)):
    previous = last_by_pitch.get(note.pitch)
    if previous is not None and previous.end > note.start_s:
      previous.end = note.start_s
    midi_note = pretty_midi.Note(note.velocity, note.pitch, note.start_s, note.end_s)
    playable.append(midi_note)
    last_by_pitch[note.pitch] = midi_note
  return [n for n in playable if n.end - n.start >= _MIN_NOTE_S]


def to_midi(piece: labels.Piece) -> pretty_midi.PrettyMIDI:
  midi = pretty_midi.PrettyMIDI(initial_tempo=float(piece.tempo_bpm))
  for part in piece.parts:
    instrument = pretty_midi.Instrument(program=max(part.program, 0), is_drum=part.is_drum,
                                        name=f"{part.role}: {part.name}")
    instrument.notes = _playable(part.notes)
    midi.instruments.append(instrument)
  return midi


def render(piece: labels.Piece, sample_rate_hz: int, soundfont: str) -> np.ndarray:
  """Renders `piece` to mono float32 [time] of exactly piece.duration_s.

  The level is normalised to -20 dBFS RMS with peaks at most 0.9, so clips of
  all genres sit at the same loudness.
  """
  with tempfile.TemporaryDirectory(prefix="synth_music_") as tmp:
    midi_path, wav_path = os.path.join(tmp, "piece.mid"), os.path.join(tmp, "piece.wav")
    to_midi(piece).write(midi_path)
    command = [find_fluidsynth(), "-n", "-i", "-q", "-F", wav_path, "-r", str(sample_rate_hz),
               "-O", "float", "-T", "wav", soundfont, midi_path]
    try:
      result = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=_RENDER_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
      raise RuntimeError(
          f"fluidsynth did not finish {piece.source_id} in {_RENDER_TIMEOUT_S:.0f} s; "
          "check the piece's MIDI for stuck notes") from error
    if result.returncode != 0 or not os.path.exists(wav_path):
      raise RuntimeError(f"fluidsynth failed on {piece.source_id}: {result.stderr.strip()}")
    samples, rate_hz = io.read_audio(wav_path)
  samples = io.resample(io.to_mono(samples), rate_hz, sample_rate_hz)
  length = int(round(piece.duration_s * sample_rate_hz))
  samples = np.pad(samples[:length], (0, max(0, length - len(samples))))
  rms = float(np.sqrt(np.mean(samples ** 2)))
  peak = float(np.max(np.abs(samples)))
  if rms > 0:
    samples = samples * min(_TARGET_RMS / rms, _MAX_PEAK / peak)
  return samples.astype(np.float32)
