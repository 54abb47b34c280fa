"""Genre templates: tempo, mode, progressions, parts and instrument pools.

Each genre lists, per role, the playing patterns it uses and the General MIDI
programs that may play each pattern (every pool has at least two programs, so
a melody pair can always be re-orchestrated). Progressions are scale degrees
from 0, one chord per bar.
"""
import dataclasses

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10)

# 16 steps per 4/4 bar; "x" is a hit. Keys are General MIDI percussion notes.
KICK, RIMSHOT, SNARE, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, RIDE = 36, 37, 38, 39, 42, 44, 46, 51
HIGH_CONGA, LOW_CONGA, MARACAS, CLAVES = 63, 64, 70, 75
DRUM_PATTERNS = {
    "rock": {KICK: "x.......x.x.....", SNARE: "....x.......x...", CLOSED_HAT: "x.x.x.x.x.x.x.x."},
    "backbeat": {KICK: "x.....x.x.......", SNARE: "....x.......x...",
                 CLOSED_HAT: "x.x.x.x.x.x.x.x."},
    "four_on_the_floor": {KICK: "x...x...x...x...", CLAP: "....x.......x...",
                          CLOSED_HAT: "xxxxxxxxxxxxxxxx", OPEN_HAT: "..x...x...x...x."},
    "boom_bap": {KICK: "x......x..x.....", SNARE: "....x.......x...",
                 CLOSED_HAT: "x.x.x.x.x.x.x.x."},
    "swing_ride": {RIDE: "x...x.x.x...x.x.", PEDAL_HAT: "....x.......x...",
                   KICK: "x..............."},
    "shuffle": {KICK: "x.......x.......", SNARE: "....x.......x...",
                CLOSED_HAT: "x.x.x.x.x.x.x.x."},
    "clave": {CLAVES: "x..x..x...x.x...", MARACAS: "xxxxxxxxxxxxxxxx",
              HIGH_CONGA: "...x......x...x.", LOW_CONGA: "......x.......x.",
              KICK: "x..x....x..x...."},
}
DRUM_PERCUSSION_NAMES = {"clave": "latin percussion"}


@dataclasses.dataclass(frozen=True)
class GenreStyle:
  """How one genre is composed.

  Attributes:
    melody_grid_beats: melody onsets fall on this grid.
    melody_density: chance that a grid slot starts a melody note.
    melody_center_pitch: MIDI pitch the melody hovers around.
    harmony, bass: (pattern, programs) options; one is drawn per piece.
    drums: drum pattern name, or None for genres without drums.
    swing: delay off-beat eighths to a triplet feel.
    chord_tones: 3 for triads, 4 for seventh chords.
    dominant_sevenths: every chord is a dominant seventh (blues).
  """
  name: str
  tempo_range_bpm: tuple[int, int]
  major_probability: float
  progressions_major: tuple[tuple[int, ...], ...]
  progressions_minor: tuple[tuple[int, ...], ...]
  melody_programs: tuple[int, ...]
  harmony: tuple[tuple[str, tuple[int, ...]], ...]
  bass: tuple[tuple[str, tuple[int, ...]], ...]
  drums: str | None
  melody_grid_beats: float = 0.5
  melody_density: float = 0.6
  melody_center_pitch: int = 72
  swing: bool = False
  chord_tones: int = 3
  dominant_sevenths: bool = False


_POP_MAJOR = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 0, 4), (0, 3, 4, 3))
_POP_MINOR = ((0, 5, 6, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 2, 6))
_JAZZ = ((1, 4, 0, 0), (0, 5, 1, 4), (2, 5, 1, 4))

GENRES = {
    style.name: style for style in (
        GenreStyle(
            "rock", (100, 150), 0.6, _POP_MAJOR, _POP_MINOR,
            melody_programs=(29, 30, 27),
            harmony=(("power", (29, 30, 27)), ("strum", (25, 27))),
            bass=(("root_eighths", (33, 34)),), drums="rock", melody_center_pitch=67),
        GenreStyle(
            "pop", (95, 125), 0.75, _POP_MAJOR, _POP_MINOR,
            melody_programs=(81, 4, 73, 11),
            harmony=(("block", (0, 4)), ("strum", (25, 24))),
            bass=(("root_eighths", (33, 38)),), drums="backbeat"),
        GenreStyle(
            "jazz", (90, 160), 0.7, _JAZZ, _JAZZ,
            melody_programs=(65, 66, 56, 11, 26),
            harmony=(("comp", (0, 4, 26)),),
            bass=(("walking", (32, 33)),), drums="swing_ride", swing=True, chord_tones=4,
            melody_center_pitch=70),
        GenreStyle(
            "blues", (70, 110), 1.0, ((0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4),), (),
            melody_programs=(22, 27, 66, 29),
            harmony=(("comp", (0, 16)), ("block", (16, 4))),
            bass=(("walking", (33, 32)),), drums="shuffle", swing=True, chord_tones=4,
            dominant_sevenths=True, melody_center_pitch=67),
        GenreStyle(
            "classical", (60, 110), 0.5, ((0, 3, 4, 0), (0, 5, 3, 4), (0, 1, 4, 0)),
            ((0, 3, 4, 0), (0, 5, 3, 4), (0, 6, 5, 4)),
            melody_programs=(40, 73, 68, 71),
            harmony=(("block", (48, 49)), ("arpeggio", (46, 0))),
            bass=(("root_fifth", (42, 43)),), drums=None, melody_center_pitch=74),
        GenreStyle(
            "electronic", (118, 132), 0.4, _POP_MAJOR, _POP_MINOR,
            melody_programs=(80, 81),
            harmony=(("pad", (89, 90, 88)), ("stabs", (90, 81, 80))),
            bass=(("offbeat", (38, 39)),), drums="four_on_the_floor", melody_grid_beats=0.25,
            melody_density=0.45),
        GenreStyle(
            "folk", (80, 130), 0.7, ((0, 3, 0, 4), (0, 4, 3, 0), (0, 3, 4, 4)),
            ((0, 6, 5, 6), (0, 3, 0, 6), (0, 6, 3, 4)),
            melody_programs=(110, 73, 21, 22, 105, 74),
            harmony=(("strum", (25, 24)), ("arpeggio", (24, 46, 25))),
            bass=(("root_fifth", (32, 42)),), drums=None),
        GenreStyle(
            "ambient", (60, 80), 0.5, ((0, 0, 3, 3), (0, 0, 5, 5), (0, 3, 5, 4)),
            ((0, 0, 5, 5), (0, 0, 3, 3), (0, 5, 3, 6)),
            melody_programs=(11, 8, 0, 75, 10, 79),
            harmony=(("pad", (88, 89, 91, 94, 95)),),
            bass=(("drone", (42, 43)),), drums=None, melody_grid_beats=1.0,
            melody_density=0.4, melody_center_pitch=76),
        GenreStyle(
            "hip-hop", (80, 98), 0.35, ((0, 5, 0, 5), (0, 3, 0, 3), (0, 4, 5, 3)),
            ((0, 5, 0, 5), (0, 3, 0, 3), (0, 6, 5, 6)),
            melody_programs=(0, 4, 11, 61),
            harmony=(("block", (4, 48, 0)), ("comp", (4, 0))),
            bass=(("syncopated", (38, 33)),), drums="boom_bap", swing=True,
            melody_density=0.5),
        GenreStyle(
            "latin", (90, 125), 0.5, ((1, 4, 0, 0), (0, 3, 4, 0), (0, 5, 1, 4)),
            ((0, 3, 4, 0), (0, 5, 3, 4), (1, 4, 0, 0)),
            melody_programs=(56, 73, 12, 65),
            harmony=(("stabs", (0, 12)), ("comp", (24, 26))),
            bass=(("tumbao", (32, 33)),), drums="clave", chord_tones=4),
    )
}
