"""Audio folder TFDS builder: `tfds build data/audio_folder --manual_dir=...`."""
