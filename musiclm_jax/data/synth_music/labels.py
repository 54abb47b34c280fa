"""What a synth_music piece is made of, and the words used to describe it.

A `Piece` is notes per part in seconds plus the facts it was composed with
(genre, tempo, key). `clip_labels` reads off what really sounds in one clip
window, so captions and structured labels describe the audio, not the plan.
"""
import dataclasses

DRUM_PROGRAM = -1  # stands for the General MIDI percussion channel in labels

# General MIDI program -> the name captions use.
INSTRUMENT_NAMES = {
    0: "piano", 4: "electric piano", 8: "celesta", 10: "music box", 11: "vibraphone",
    12: "marimba", 16: "organ", 19: "pipe organ", 21: "accordion", 22: "harmonica",
    24: "nylon-string guitar", 25: "acoustic guitar", 26: "jazz guitar",
    27: "clean electric guitar", 29: "overdriven guitar", 30: "distorted guitar",
    32: "upright bass", 33: "bass guitar", 34: "picked bass guitar", 38: "synth bass",
    39: "analog synth bass", 40: "violin", 41: "viola", 42: "cello", 43: "double bass",
    46: "harp", 48: "string ensemble", 49: "slow strings", 52: "choir", 56: "trumpet",
    57: "trombone", 58: "tuba", 60: "french horn", 61: "brass section", 65: "alto saxophone",
    66: "tenor saxophone", 68: "oboe", 70: "bassoon", 71: "clarinet", 73: "flute",
    74: "recorder", 75: "pan flute", 78: "tin whistle", 79: "ocarina", 80: "square synth lead",
    81: "sawtooth synth lead", 88: "new age pad", 89: "warm synth pad", 90: "polysynth pad",
    91: "choir pad", 94: "halo pad", 95: "sweep pad", 105: "banjo", 109: "bagpipe",
    110: "fiddle",
}
PERCUSSION_NAMES = ("drums", "latin percussion")

NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")

SLOW_BELOW_BPM = 85
FAST_ABOVE_BPM = 120
MOOD_WORDS = {
    ("slow", "major"): ("calm", "peaceful", "tender"),
    ("slow", "minor"): ("sad", "melancholic", "somber"),
    ("medium", "major"): ("cheerful", "warm", "relaxed"),
    ("medium", "minor"): ("wistful", "moody", "reflective"),
    ("fast", "major"): ("upbeat", "happy", "energetic"),
    ("fast", "minor"): ("intense", "dark", "driving"),
}

# Ignore notes that start this close to the end of a window: they barely sound.
_MIN_AUDIBLE_S = 0.05


@dataclasses.dataclass(frozen=True)
class Note:
  pitch: int
  start_s: float
  end_s: float
  velocity: int = 90


@dataclasses.dataclass
class Part:
  """One instrument's line.

  Attributes:
    role: "melody", "harmony", "bass" or "drums".
    program: General MIDI program, or DRUM_PROGRAM.
    pattern: how the part plays (e.g. "strum", "walking"), for captions.
    percussion_name: caption name of a drum part ("drums", "latin percussion");
      pitched parts are named from INSTRUMENT_NAMES by program.
  """
  role: str
  program: int
  notes: list[Note]
  pattern: str = ""
  percussion_name: str = ""

  @property
  def is_drum(self) -> bool:
    return self.program == DRUM_PROGRAM

  @property
  def name(self) -> str:
    return self.percussion_name if self.is_drum else INSTRUMENT_NAMES[self.program]


@dataclasses.dataclass
class Piece:
  """A composed or transcribed piece, in seconds.

  Attributes:
    source_id: the composition (a score rendered again keeps it); splits never share one.
    source: "template" or "music21".
    genre: e.g. "rock"; style refines it ("reel", "Bach chorale").
    ensemble: for scores, the name of the drawn ensemble ("string quartet").
    title: for scores, the title in the corpus.
  """
  source_id: str
  source: str
  genre: str
  style: str
  tempo_bpm: float
  key_tonic: str
  mode: str
  parts: list[Part]
  duration_s: float
  ensemble: str = ""
  title: str = ""

  @property
  def key(self) -> str:
    return f"{self.key_tonic} {self.mode}"

  @property
  def melody_part(self) -> Part:
    return next(p for p in self.parts if p.role == "melody")


@dataclasses.dataclass
class ClipLabels:
  """What sounds in one clip window; the source of captions and labels.

  Attributes:
    parts: parts with at least one audible note in the window, melody first.
    melody: melody notes in the window, times relative to its start.
  """
  piece: Piece
  start_s: float
  parts: list[Part]
  melody: list[Note]

  @property
  def instruments(self) -> list[str]:
    """Distinct instrument names, in part order."""
    return list(dict.fromkeys(p.name for p in self.parts))

  @property
  def mood(self) -> tuple[str, ...]:
    return MOOD_WORDS[(tempo_class(self.piece.tempo_bpm), self.piece.mode)]


def tempo_class(tempo_bpm: float) -> str:
  if tempo_bpm < SLOW_BELOW_BPM:
    return "slow"
  return "fast" if tempo_bpm > FAST_ABOVE_BPM else "medium"


def key_name(tonic_pitch_class: int) -> str:
  return NOTE_NAMES[tonic_pitch_class % 12]


def clip_labels(piece: Piece, start_s: float, clip_seconds: float) -> ClipLabels:
  """Labels for the window [start_s, start_s + clip_seconds) of `piece`."""
  end_s = start_s + clip_seconds

  def audible(note: Note) -> bool:
    return note.start_s < end_s - _MIN_AUDIBLE_S and note.end_s > start_s

  role_order = {"melody": 0, "harmony": 1, "bass": 2, "drums": 3}
  parts = sorted((p for p in piece.parts if any(audible(n) for n in p.notes)),
                 key=lambda p: role_order[p.role])
  melody = [
      Note(n.pitch, max(n.start_s, start_s) - start_s, min(n.end_s, end_s) - start_s, n.velocity)
      for n in piece.melody_part.notes if audible(n)
  ]
  return ClipLabels(piece=piece, start_s=start_s, parts=parts, melody=melody)
