"""`tfds build data/<name>` works from the command line, as the README promises."""
import os
import subprocess
import sys

import numpy as np
import soundfile
import tensorflow_datasets as tfds

from conftest import REPO_DIR, sine

TFDS = os.path.join(os.path.dirname(sys.executable), "tfds")


def test_tfds_build_audio_folder(tmp_path):
  music = tmp_path / "music"
  music.mkdir()
  for i, hz in enumerate([220.0, 330.0, 440.0]):
    soundfile.write(music / f"tone{i}.wav", sine(hz, 6.0, 16_000), 16_000)
  (music / "metadata.jsonl").write_text('{"file_name": "tone0.wav", "caption": "a low hum"}\n')
  result = subprocess.run(
      [TFDS, "build", "data/audio_folder", "--config=clips_10s", f"--manual_dir={music}",
       f"--data_dir={tmp_path / 'tfds'}"],
      cwd=REPO_DIR, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  ds = tfds.builder_from_directory(next((tmp_path / "tfds" / "audio_folder").glob("*/*")))
  examples = list(ds.as_dataset(split="train").as_numpy_iterator())
  assert len(examples) == 3
  captions = sorted(e["caption"].decode() for e in examples)
  assert captions == ["", "", "a low hum"]
  assert all(np.abs(e["audio"]).max() > 0.1 for e in examples)
