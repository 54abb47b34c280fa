"""MusicCaps TFDS builder: `tfds build data/musiccaps --manual_dir=...`."""
