"""Real scores from music21's bundled corpus, re-orchestrated for rendering.

Two collections ship inside the music21 wheel and parse offline in ~0.1 s:
Bach's four-part chorales (`bach/*.mxl`, ~400) and the fiddle tunes of Ryan's
Mammoth Collection (`ryansMammoth/*.abc`, ~1,000 reels, jigs, hornpipes...).
A chorale is played by a drawn ensemble, one instrument per voice; a tune by a
drawn folk instrument, sometimes over a drone. Each is transposed by a few
semitones and played at a drawn tempo, and repeated from the top if it is
shorter than the excerpt.
"""
import functools
import math
import os

from music21 import corpus
from music21 import harmony
import numpy as np

from musiclm_jax.data.synth_music import labels

CHORALE, FOLK_TUNE = "chorale", "folk_tune"
# Programs for soprano, alto, tenor, bass.
CHORALE_ENSEMBLES = {
    "string quartet": (40, 40, 41, 42),
    "brass quartet": (56, 60, 57, 58),
    "woodwind quartet": (73, 68, 71, 70),
    "pipe organ": (19, 19, 19, 19),
    "choir": (52, 52, 52, 52),
    "piano": (0, 0, 0, 0),
}
FOLK_MELODY_PROGRAMS = (110, 73, 78, 21, 22, 105, 46, 74)
FOLK_DRONE_PROGRAMS = (42, 21, 48, 19)
FOLK_STYLES = ("reel", "jig", "hornpipe", "strathspey", "polka", "waltz", "march", "clog",
               "schottische", "quickstep", "air")
_TEMPO_RANGE_BPM = {CHORALE: (60, 84), FOLK_TUNE: (90, 140)}
_CORPUS_FOLDER = {CHORALE: "bach", FOLK_TUNE: "ryansMammoth"}
_CORPUS_EXTENSION = {CHORALE: ".mxl", FOLK_TUNE: ".abc"}
_CHORALE_ROLES = ("melody", "harmony", "harmony", "bass")
_DRONE_PROBABILITY = 0.5
_DRONE_LOW_PITCH = 43
_MAX_TRANSPOSE_SEMITONES = 3


class ScoreError(ValueError):
  """A corpus file that cannot be used as a source piece."""


@functools.cache
def corpus_paths(kind: str) -> tuple[str, ...]:
  """Corpus-relative paths of one collection, sorted, e.g. 'bach/bwv10.7.mxl'."""
  folder, extension = _CORPUS_FOLDER[kind], _CORPUS_EXTENSION[kind]
  found = []
  for path in corpus.getPaths():
    path = str(path)
    directory, name = os.path.split(path)
    if os.path.basename(directory) == folder and name.endswith(extension):
      found.append(f"{folder}/{name}")
  return tuple(sorted(found))


def _notes_by_part(score) -> list[list[tuple[float, float, list[int]]]]:
  """(offset in quarters, length in quarters, MIDI pitches) per part."""
  parts = []
  for part in score.parts:
    events = []
    for element in part.flatten().notes:
      length = float(element.duration.quarterLength)
      if isinstance(element, harmony.Harmony) or length <= 0:
        continue
      events.append((float(element.offset), length, [p.midi for p in element.pitches]))
    parts.append(events)
  return parts


def _style_and_title(score, kind: str, corpus_path: str) -> tuple[str, str]:
  if kind == CHORALE:  # the chorales carry no title; their catalogue number names them
    catalogue_number = os.path.splitext(os.path.basename(corpus_path))[0][len("bwv"):]
    return "Bach chorale", f"BWV {catalogue_number}"
  title = (score.metadata.title if score.metadata and score.metadata.title else "").strip()
  name, _, dance = title.partition(" -- ")
  dance = dance.strip().lower()
  return (dance if dance in FOLK_STYLES else "fiddle tune"), name.strip().title()


def _drone(tonic: int, duration_s: float, beat_s: float) -> list[labels.Note]:
  root = _DRONE_LOW_PITCH + (tonic - _DRONE_LOW_PITCH) % 12
  bar_s = 4 * beat_s
  return [labels.Note(pitch, bar * bar_s, min((bar + 1) * bar_s, duration_s), 60)
          for bar in range(math.ceil(duration_s / bar_s)) for pitch in (root, root + 7)]


def draw_instruments(piece: labels.Piece, rng: np.random.Generator,
                     avoid: labels.Piece | None = None) -> labels.Piece:
  """Draws the ensemble (chorale) or melody and drone instruments (tune).

  With `avoid`, the new instruments differ from those of `avoid`.
  """
  if piece.style == "Bach chorale":
    names = [n for n in CHORALE_ENSEMBLES if avoid is None or n != avoid.ensemble]
    ensemble = names[rng.integers(len(names))]
    programs = CHORALE_ENSEMBLES[ensemble]
  else:
    ensemble = ""
    old = [p.program for p in avoid.parts] if avoid else []
    melody = int(rng.choice([p for p in FOLK_MELODY_PROGRAMS if p not in old]))
    drones = [p for p in FOLK_DRONE_PROGRAMS if p not in old and p != melody]
    programs = (melody, int(rng.choice(drones)))
  parts = [labels.Part(part.role, program, part.notes, part.pattern)
           for part, program in zip(piece.parts, programs)]
  return labels.Piece(**{**vars(piece), "parts": parts, "ensemble": ensemble})


def score_piece(kind: str, corpus_path: str, duration_s: float, rng: np.random.Generator,
                source_id: str) -> labels.Piece:
  """The first `duration_s` of a corpus score, as a Piece with instruments drawn.

  Raises:
    ScoreError: the file does not parse or is not the expected texture.
  """
  try:
    score = corpus.parse(corpus_path)
    score.stripTies(inPlace=True)
    key = score.analyze("key")
  except Exception as error:  # pylint: disable=broad-except
    raise ScoreError(f"{corpus_path}: music21 cannot read it ({error})") from error
  voices = _notes_by_part(score)
  if kind == CHORALE and len(voices) != 4:
    raise ScoreError(f"{corpus_path}: has {len(voices)} parts, a chorale needs 4")
  voices = voices if kind == CHORALE else voices[:1]
  period_q = float(score.highestTime)
  if period_q <= 0 or not all(voices):
    raise ScoreError(f"{corpus_path}: has an empty part")
  tempo_bpm = int(rng.integers(_TEMPO_RANGE_BPM[kind][0], _TEMPO_RANGE_BPM[kind][1] + 1))
  beat_s = 60.0 / tempo_bpm
  transpose = int(rng.integers(-_MAX_TRANSPOSE_SEMITONES, _MAX_TRANSPOSE_SEMITONES + 1))
  repeats = math.ceil(duration_s / (period_q * beat_s))
  roles = _CHORALE_ROLES if kind == CHORALE else ("melody",)
  parts = []
  for role, events in zip(roles, voices):
    notes = []
    for repeat in range(repeats):
      for offset_q, length_q, pitches in events:
        start_s = (repeat * period_q + offset_q) * beat_s
        if start_s >= duration_s:
          continue
        end_s = min(start_s + 0.95 * length_q * beat_s, duration_s)
        notes += [labels.Note(p + transpose, start_s, end_s, 85) for p in pitches]
    parts.append(labels.Part(role, 0, notes, "voice" if kind == CHORALE else "tune"))
  tonic = (key.tonic.pitchClass + transpose) % 12
  if kind == FOLK_TUNE and rng.random() < _DRONE_PROBABILITY:
    parts.append(labels.Part("bass", 0, _drone(tonic, duration_s, beat_s), "drone"))
  style, title = _style_and_title(score, kind, corpus_path)
  piece = labels.Piece(
      source_id=source_id, source="music21", genre="classical" if kind == CHORALE else "folk",
      style=style, tempo_bpm=tempo_bpm, key_tonic=labels.key_name(tonic), mode=key.mode,
      parts=parts, duration_s=duration_s, title=title)
  return draw_instruments(piece, rng)
