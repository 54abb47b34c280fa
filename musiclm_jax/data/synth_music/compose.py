"""Composes seeded pieces from the genre templates in `styles`.

A piece is a chord progression in a drawn key and mode, a melody that lands on
chord tones on strong beats and moves by step elsewhere, a harmony part and a
bass part playing the genre's patterns, and drums where the genre has them.
Everything is drawn from the numpy Generator passed in, so a seed fixes it.
"""
import math

import numpy as np

from musiclm_jax.data.synth_music import labels
from musiclm_jax.data.synth_music import styles

BEATS_PER_BAR = 4
_UNASSIGNED_PROGRAM = -2  # parts are composed first, instruments drawn after
_SWING_DELAY_BEATS = 1 / 6  # off-beat eighth moved to the last triplet
_HARMONY_LOW_PITCH = 52
_BASS_LOW_PITCH = 36
_POWER_CHORD_LOW_PITCH = 40
_STRUM_STAGGER_S = 0.012
_COMP_RHYTHMS = (((0.0, 1.0), (1.5, 0.5), (3.0, 0.5)), ((0.5, 0.5), (2.0, 1.0)),
                 ((1.5, 0.5), (2.5, 0.5)))


class _Timeline:
  """Beats -> seconds at one tempo, with optional swing."""

  def __init__(self, tempo_bpm: float, swing: bool):
    self.beat_s = 60.0 / tempo_bpm
    self.swing = swing

  def seconds(self, beat: float) -> float:
    if self.swing and math.isclose(beat % 1.0, 0.5):
      beat += _SWING_DELAY_BEATS
    return beat * self.beat_s


def chord_pitch_classes(style: styles.GenreStyle, tonic: int, scale: tuple[int, ...],
                        degree: int) -> list[int]:
  """Pitch classes of the chord on scale `degree`, root first."""
  root = tonic + scale[degree % 7]
  if style.dominant_sevenths:
    return [(root + i) % 12 for i in (0, 4, 7, 10)]
  return [(tonic + scale[(degree + 2 * k) % 7]) % 12 for k in range(style.chord_tones)]


def _lowest_at_or_above(pitch_class: int, low: int) -> int:
  return low + (pitch_class - low) % 12


def _voicing(chord: list[int], low: int) -> list[int]:
  """Close voicing with the root as the lowest note at or above `low`."""
  pitches = [_lowest_at_or_above(chord[0], low)]
  for pitch_class in chord[1:]:
    pitches.append(_lowest_at_or_above(pitch_class, pitches[-1] + 1))
  return pitches


def _melody(style, rng, timeline, chords, scale_pcs, n_bars) -> list[labels.Note]:
  center = style.melody_center_pitch
  pitches = [p for p in range(center - 12, center + 13) if p % 12 in scale_pcs]
  slots = np.arange(0.0, 2 * BEATS_PER_BAR, style.melody_grid_beats)
  motifs = [[0.0] + [s for s in slots[1:] if rng.random() < style.melody_density]
            for _ in range(2)]
  index = min(range(len(pitches)), key=lambda i: abs(pitches[i] - center))
  notes = []
  for pair in range(math.ceil(n_bars / 2)):
    onsets = motifs[1] if pair % 4 == 2 else motifs[0]  # phrase form A A B A
    for i, onset in enumerate(onsets):
      end = onsets[i + 1] if i + 1 < len(onsets) else 2 * BEATS_PER_BAR
      beat = 2 * BEATS_PER_BAR * pair + onset
      bar = int(beat // BEATS_PER_BAR)
      if bar >= n_bars:
        break
      chord = chords[bar]
      if beat % 2 == 0:  # strong beat: nearest chord tone, sometimes the second nearest
        ranked = sorted((k for k, p in enumerate(pitches) if p % 12 in chord),
                        key=lambda k: abs(k - index))
        index = ranked[min(int(rng.random() < 0.3), len(ranked) - 1)]
      else:
        step = rng.choice((-2, -1, -1, 1, 1, 2))
        if abs(pitches[index] - center) > 7:
          step = -abs(step) if pitches[index] > center else abs(step)
        index = int(np.clip(index + step, 0, len(pitches) - 1))
      length = min(end - onset, 2.0)
      notes.append(labels.Note(pitches[index], timeline.seconds(beat),
                               timeline.seconds(beat) + 0.9 * length * timeline.beat_s,
                               int(rng.integers(85, 106))))
  return notes


def _harmony(pattern, rng, timeline, chords) -> list[labels.Note]:
  notes = []
  for bar, chord in enumerate(chords):
    bar_beat = bar * BEATS_PER_BAR
    voicing = _voicing(chord, _HARMONY_LOW_PITCH)
    if pattern == "power":
      root = _lowest_at_or_above(chord[0], _POWER_CHORD_LOW_PITCH)
      hits = [(b, 0.45, [root, root + 7, root + 12]) for b in np.arange(0, 4, 0.5)]
    elif pattern in ("block", "pad"):
      hits = [(0.0, 4.0, voicing)]
    elif pattern == "strum":
      hits = [(b, 0.45, voicing + [voicing[0] + 12]) for b in (0, 1, 1.5, 2.5, 3, 3.5)]
    elif pattern == "arpeggio":
      tones = voicing + [voicing[0] + 12]
      order = [0, 1, 2, 3, 2, 1, 0, 1]
      hits = [(0.5 * i, 0.5, [tones[order[i] % len(tones)]]) for i in range(8)]
    elif pattern == "comp":
      hits = [(b, d * 0.9, voicing) for b, d in _COMP_RHYTHMS[rng.integers(len(_COMP_RHYTHMS))]]
    elif pattern == "stabs":
      hits = [(b, 0.25, voicing) for b in (0.5, 1.5, 2.5, 3.5)]
    else:
      raise ValueError(f"unknown harmony pattern {pattern!r}")
    for beat, length, pitches in hits:
      start = timeline.seconds(bar_beat + beat)
      velocity = int(rng.integers(60, 76)) + (8 if beat % 2 == 0 else 0)
      for k, pitch in enumerate(pitches):
        stagger = k * _STRUM_STAGGER_S if pattern == "strum" else 0.0
        notes.append(labels.Note(pitch, start + stagger, start + length * timeline.beat_s,
                                 velocity))
  return notes


def _bass(pattern, rng, timeline, chords, scale_pcs) -> list[labels.Note]:
  notes = []
  for bar, chord in enumerate(chords):
    root = _lowest_at_or_above(chord[0], _BASS_LOW_PITCH)
    fifth = root + 7
    next_root = _lowest_at_or_above(chords[(bar + 1) % len(chords)][0], _BASS_LOW_PITCH)
    if pattern == "root_eighths":
      hits = [(b, 0.45, root) for b in np.arange(0, 4, 0.5)]
    elif pattern == "root_fifth":
      hits = [(0.0, 1.9, root), (2.0, 1.9, fifth)]
    elif pattern == "walking":
      passing = next(p for p in range(root + 1, root + 5) if p % 12 in scale_pcs)
      approach = next_root - 1 if rng.random() < 0.5 else next_root + 1
      hits = [(0.0, 0.9, root), (1.0, 0.9, passing), (2.0, 0.9, fifth), (3.0, 0.9, approach)]
    elif pattern == "drone":
      hits = [(0.0, 4.0, root)]
    elif pattern == "syncopated":
      hits = [(0.0, 0.75, root), (1.75, 0.5, root), (2.5, 1.0, fifth - 12)]
    elif pattern == "tumbao":
      hits = [(0.0, 1.4, root), (1.5, 1.4, fifth), (3.0, 0.9, root)]
    elif pattern == "offbeat":
      hits = [(b, 0.4, root) for b in (0.5, 1.5, 2.5, 3.5)]
    else:
      raise ValueError(f"unknown bass pattern {pattern!r}")
    for beat, length, pitch in hits:
      start = timeline.seconds(bar * BEATS_PER_BAR + beat)
      notes.append(labels.Note(pitch, start, start + length * timeline.beat_s,
                               int(rng.integers(80, 96))))
  return notes


def _drums(pattern, rng, timeline, n_bars) -> list[labels.Note]:
  notes = []
  for bar in range(n_bars):
    for drum, hits in styles.DRUM_PATTERNS[pattern].items():
      for step, hit in enumerate(hits):
        if hit != "x":
          continue
        start = timeline.seconds(bar * BEATS_PER_BAR + step / 4)
        accent = 20 if step % 4 == 0 else 0
        notes.append(labels.Note(drum, start, start + 0.1, int(rng.integers(70, 90)) + accent))
  return notes


def _draw_program(rng, pool, taken_names) -> int:
  """A program from `pool` whose name no other part uses, when there is one."""
  free = [p for p in pool if labels.INSTRUMENT_NAMES[p] not in taken_names]
  return int(rng.choice(free or pool))


def draw_instruments(piece: labels.Piece, rng: np.random.Generator,
                     avoid: labels.Piece | None = None) -> labels.Piece:
  """Draws a program per part from the genre's pools, keeping the notes.

  With `avoid`, every pitched part gets a different instrument from the one it
  has in `avoid` (used for melody pairs): same notes, new instrument set.
  """
  style = styles.GENRES[piece.genre]
  taken: set[str] = set()
  parts = []
  for index, part in enumerate(piece.parts):
    if part.is_drum:
      parts.append(part)
      continue
    if part.role == "melody":
      pool = style.melody_programs
    else:
      pool = dict(style.harmony if part.role == "harmony" else style.bass)[part.pattern]
    if avoid is not None:
      pool = tuple(p for p in pool if p != avoid.parts[index].program)
    program = _draw_program(rng, pool, taken)
    taken.add(labels.INSTRUMENT_NAMES[program])
    parts.append(labels.Part(part.role, program, part.notes, part.pattern))
  return labels.Piece(**{**vars(piece), "parts": parts})


def compose(genre: str, duration_s: float, rng: np.random.Generator,
            source_id: str) -> labels.Piece:
  """A new piece of `genre` lasting `duration_s`, instruments drawn."""
  style = styles.GENRES[genre]
  tempo_bpm = int(rng.integers(style.tempo_range_bpm[0], style.tempo_range_bpm[1] + 1))
  is_major = not style.progressions_minor or rng.random() < style.major_probability
  mode = "major" if is_major else "minor"
  scale = styles.MAJOR_SCALE if is_major else styles.MINOR_SCALE
  progressions = style.progressions_major if is_major else style.progressions_minor
  progression = progressions[rng.integers(len(progressions))]
  tonic = int(rng.integers(12))
  scale_pcs = {(tonic + s) % 12 for s in scale}
  timeline = _Timeline(tempo_bpm, style.swing)
  n_bars = math.ceil(duration_s / (BEATS_PER_BAR * timeline.beat_s))
  chords = [chord_pitch_classes(style, tonic, scale, progression[bar % len(progression)])
            for bar in range(n_bars)]
  harmony_pattern = style.harmony[rng.integers(len(style.harmony))][0]
  bass_pattern = style.bass[rng.integers(len(style.bass))][0]
  parts = [
      labels.Part("melody", _UNASSIGNED_PROGRAM,
                  _melody(style, rng, timeline, chords, scale_pcs, n_bars)),
      labels.Part("harmony", _UNASSIGNED_PROGRAM, _harmony(harmony_pattern, rng, timeline, chords),
                  harmony_pattern),
      labels.Part("bass", _UNASSIGNED_PROGRAM,
                  _bass(bass_pattern, rng, timeline, chords, scale_pcs),
                  bass_pattern),
  ]
  if style.drums:
    parts.append(labels.Part(
        "drums", labels.DRUM_PROGRAM, _drums(style.drums, rng, timeline, n_bars), style.drums,
        styles.DRUM_PERCUSSION_NAMES.get(style.drums, "drums")))
  for part in parts:
    part.notes = [labels.Note(n.pitch, n.start_s, min(n.end_s, duration_s), n.velocity)
                  for n in part.notes if n.start_s < duration_s]
  piece = labels.Piece(
      source_id=source_id, source="template", genre=genre, style=genre, tempo_bpm=tempo_bpm,
      key_tonic=labels.key_name(tonic), mode=mode, parts=parts, duration_s=duration_s)
  return draw_instruments(piece, rng)
