"""synth_music TFDS builder: `tfds build data/synth_music --config=tiny`."""
