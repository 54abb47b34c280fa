"""MusicCaps-style captions and aspect lists written from a clip's labels.

Every fact in a caption comes from `ClipLabels`: the genre, the instruments
that sound in the clip and what each plays, the tempo in BPM, the key, and
mood words tied to tempo and mode (`labels.MOOD_WORDS`). Wording
is drawn from a seeded Generator so captions vary like human ones do.
Phrases never contain an instrument name other than the instrument they
describe, so a caption can be checked against its labels by string search.
"""
import dataclasses

import numpy as np

from musiclm_jax.data.synth_music import labels

HARMONY_PHRASES = {
    "power": "plays chugging power chords",
    "block": "plays sustained chords",
    "pad": "holds lush sustained chords",
    "strum": "strums the chords",
    "arpeggio": "plays arpeggiated chords",
    "comp": "comps syncopated chords",
    "stabs": "plays short off-beat chord stabs",
}
BASS_PHRASES = {
    "root_eighths": "pulses on the root notes in eighths",
    "root_fifth": "alternates between root and fifth",
    "walking": "plays a walking bass line",
    "drone": "holds a low drone",
    "syncopated": "plays a syncopated bass line",
    "tumbao": "plays a tumbao bass pattern",
    "offbeat": "plays an off-beat bass line",
}
DRUM_PHRASES = {
    "rock": "a steady rock beat",
    "backbeat": "a simple backbeat",
    "four_on_the_floor": "a four-on-the-floor dance beat",
    "boom_bap": "a boom-bap beat",
    "swing_ride": "a swinging ride cymbal pattern",
    "shuffle": "a shuffle beat",
    "clave": "a clave rhythm with congas and maracas",
}
HARMONY_ASPECTS = {"power": "power chords", "block": "sustained chords", "pad": "pad chords",
                   "strum": "strummed chords", "arpeggio": "arpeggios", "comp": "comping",
                   "stabs": "chord stabs", "voice": "four-part harmony"}
BASS_ASPECTS = {"root_eighths": "pulsing bass", "root_fifth": "root-fifth bass",
                "walking": "walking bass", "drone": "drone", "syncopated": "syncopated bass",
                "tumbao": "tumbao bass", "offbeat": "off-beat bass", "voice": "bass line"}
DRUM_ASPECTS = {"rock": "rock beat", "backbeat": "backbeat",
                "four_on_the_floor": "four on the floor",
                "boom_bap": "boom bap beat", "swing_ride": "swing feel", "shuffle": "shuffle",
                "clave": "clave rhythm"}
TEMPO_ASPECTS = {"slow": "slow tempo", "medium": "medium tempo", "fast": "fast tempo"}
USE_CASES = {
    "rock": ("a sports highlight reel", "a road trip video"),
    "pop": ("a commercial", "a feel-good video"),
    "jazz": ("a lounge bar", "a late-night radio show"),
    "blues": ("a roadside bar", "a western film"),
    "classical": ("a period drama", "a quiet afternoon"),
    "electronic": ("a dance club", "a workout video"),
    "folk": ("a village festival", "a countryside documentary"),
    "ambient": ("a meditation session", "a nature documentary"),
    "hip-hop": ("a city montage", "a skateboarding video"),
    "latin": ("a beach party", "a travel video"),
}


@dataclasses.dataclass(frozen=True)
class Caption:
  text: str
  aspect_list: list[str]
  mood: list[str]


def _a(phrase: str) -> str:
  return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _join(items: list[str]) -> str:
  return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _opening(clip: labels.ClipLabels, mood: list[str], rng: np.random.Generator) -> str:
  piece = clip.piece
  facts = f"in {piece.key} at {piece.tempo_bpm:.0f} bpm"
  if piece.style == "Bach chorale":
    ensemble = f" for {piece.ensemble}" if piece.ensemble else ""
    return f"This is a classical piece: a Bach chorale ({piece.title}) arranged{ensemble}, {facts}."
  if piece.source == "music21":
    return (f"This is a traditional folk {piece.style} called \"{piece.title}\", "
            f"played {facts}.")
  templates = (
      f"This is {_a(mood[0])} instrumental {piece.genre} track {facts}.",
      f"{_a(piece.genre).capitalize()} instrumental {facts} with {_a(mood[0])} feel.",
      f"An instrumental {piece.genre} piece {facts}.",
  )
  return templates[rng.integers(len(templates))]


def _chorale_sentence(clip: labels.ClipLabels) -> str:
  if len(clip.instruments) == 1:
    verb = "sings" if clip.instruments[0] == "choir" else "plays"
    return f"{_a(clip.instruments[0]).capitalize()} {verb} all four voices."
  by_role = {role: list(dict.fromkeys(p.name for p in clip.parts if p.role == role))
             for role in ("melody", "harmony", "bass")}
  lines = [f"{_join(by_role[role])} {what}" for role, what in (
      ("melody", "takes the soprano line"), ("harmony", "the inner voices"),
      ("bass", "the bass line")) if by_role[role]]
  return f"The {_join(lines)}."


def _part_sentences(clip: labels.ClipLabels, rng: np.random.Generator) -> list[str]:
  if clip.piece.style == "Bach chorale":
    return [_chorale_sentence(clip)]
  sentences = []
  for part in clip.parts:
    name = part.name
    if part.role == "melody":
      verb = "sings" if name == "choir" else "plays"
      options = (f"{_a(name).capitalize()} {verb} the melody.",
                 f"The melody is carried by {_a(name)}.",
                 f"{_a(name).capitalize()} leads with the main tune.")
      sentences.append(options[rng.integers(len(options))])
    elif part.role == "harmony":
      sentences.append(f"{_a(name).capitalize()} {HARMONY_PHRASES[part.pattern]}.")
    elif part.role == "bass":
      sentences.append(f"{_a(name).capitalize()} {BASS_PHRASES[part.pattern]}.")
    else:
      player = "The drums play" if name == "drums" else f"The {name} plays"
      sentences.append(f"{player} {DRUM_PHRASES[part.pattern]}.")
  return sentences


def write_caption(clip: labels.ClipLabels, rng: np.random.Generator) -> Caption:
  """A caption and aspect list for `clip`, wording drawn from `rng`."""
  piece = clip.piece
  mood = sorted(rng.choice(clip.mood, size=2, replace=False).tolist())
  tempo = labels.tempo_class(piece.tempo_bpm)
  sentences = [_opening(clip, mood, rng), *_part_sentences(clip, rng)]
  sentences.append(f"The tempo is {tempo} and the mood is {mood[0]} and {mood[1]}.")
  use_cases = USE_CASES[piece.genre]
  sentences.append(f"This music would suit {use_cases[rng.integers(len(use_cases))]}.")
  aspects = [piece.genre]
  if piece.style != piece.genre:
    aspects.append(piece.style)
  aspects += clip.instruments
  for part in clip.parts:
    if part.role == "harmony":
      aspects.append(HARMONY_ASPECTS[part.pattern])
    elif part.role == "bass":
      aspects.append(BASS_ASPECTS[part.pattern])
    elif part.role == "drums":
      aspects.append(DRUM_ASPECTS[part.pattern])
  aspects += [TEMPO_ASPECTS[tempo], f"{piece.tempo_bpm:.0f} bpm", piece.key,
              f"{piece.mode} key", *mood]
  if "choir" not in clip.instruments:
    aspects.append("instrumental")
  return Caption(" ".join(sentences), list(dict.fromkeys(aspects)), mood)
