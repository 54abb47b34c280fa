"""synth_music: captioned music rendered offline with FluidSynth and music21.

  corpus    what a seed decides (`CorpusSpec`, `plan_pieces`) and the clips it gives
  builder   the TFDS builder and `build_synth_music(data_dir)`
  styles    genre templates;  compose  pieces composed from them
  scores    music21 scores, re-orchestrated
  labels    what a piece is made of;  caption  captions written from its labels
  render    a piece to audio with the `fluidsynth` program

Needs the external `fluidsynth` program and a General MIDI soundfont, so
nothing outside this package imports it except to build the corpus.
"""
