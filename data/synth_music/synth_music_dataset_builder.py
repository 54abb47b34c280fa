"""synth_music: the embedded captioned music corpus, rendered offline.

  tfds build data/synth_music --config=tiny     # ~200 x 10 s clips
  tfds build data/synth_music --config=small    # 800 x 10 s clips
  tfds build data/synth_music --config=large    # ~8 h

Needs the `fluidsynth` program and a General MIDI soundfont (Debian packages
fluidsynth and timgm6mb-soundfont, or fluid-soundfont-gm). The logic lives in
`musiclm_jax.data.synth_music`; from Python use
`musiclm_jax.data.synth_music.builder.build_synth_music(data_dir)`.
"""
from musiclm_jax.data.synth_music import builder


class Builder(builder.SynthMusic):
  """synth_music, registered under its folder's name."""
