"""data/audio_folder cuts any folder of audio into clips, with optional captions."""
import json

import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from musiclm_jax.audio import io
from tests.conftest import load_data_builder_class
from tests.conftest import sine


@pytest.fixture(scope="module")
def audio_folder_manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("fma_like")
  (root / "000").mkdir()
  (root / "001").mkdir()
  # 27 s at 44.1 kHz stereo: two 10 s clips and a 7 s tail (kept: >= 5 s).
  long_track = np.stack([sine(220, 27.0, 44_100), sine(330, 27.0, 44_100)], axis=1)
  soundfile.write(root / "000" / "000002.flac", long_track, 44_100)
  # 12 s: one clip and a 2 s tail (dropped: < 5 s).
  io.save_wav(root / "000" / "000005.wav", sine(440, 12.0, 22_050), 22_050)
  io.save_wav(root / "001" / "001039.wav", sine(550, 10.0, 24_000), 24_000)
  io.save_wav(root / "001" / "silent.wav", np.zeros(24_000 * 10, np.float32), 24_000)
  (root / "001" / "notes.txt").write_text("not audio, ignored")
  manifest = [
      {"file_name": "000/000002.flac", "caption": "A calm drone.", "aspect_list": ["drone"],
       "split": "train"},
      {"file_name": "001/001039.wav", "caption": "A high tone.", "split": "test"},
      {"file_name": "001/gone.wav", "caption": "Deleted.", "split": "test"},
  ]
  (root / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in manifest))
  return root


def _build(manual_dir, data_dir, config="clips_10s"):
  builder = load_data_builder_class("audio_folder")(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir), try_download_gcs=False))
  return builder


def _clips(builder, split):
  examples = tfds.as_numpy(builder.as_dataset(split=split))
  return {(ex["file_name"].decode(), int(ex["clip_index"])): ex for ex in examples}


def test_folder_is_cut_into_clips_with_captions(audio_folder_manual_dir, tmp_path):
  builder = _build(audio_folder_manual_dir, tmp_path)
  train, test = _clips(builder, "train"), _clips(builder, "test")
  assert sorted(train) == [("000/000002.flac", 0), ("000/000002.flac", 1),
                           ("000/000002.flac", 2), ("000/000005.wav", 0)]
  assert sorted(test) == [("001/001039.wav", 0)]
  tail = train[("000/000002.flac", 2)]
  assert tail["audio"].shape == (7 * 24_000,)
  assert (tail["start_s"], tail["end_s"]) == (20.0, 27.0)
  assert tail["caption"].decode() == "A calm drone."
  assert [a.decode() for a in tail["aspect_list"]] == ["drone"]
  assert train[("000/000005.wav", 0)]["caption"].decode() == ""
  assert test[("001/001039.wav", 0)]["audio"].shape == (240_000,)
  assert builder.info.metadata["skipped"] == {
      "train": {"digital silence": 1}, "test": {"missing file": 1}}


def test_clip_length_is_a_config(audio_folder_manual_dir, tmp_path):
  builder = _build(audio_folder_manual_dir, tmp_path, "clips_30s")
  # Only the 27 s track is long enough (>= 15 s) for a 30 s config clip.
  assert sorted(_clips(builder, "train")) == [("000/000002.flac", 0)]


def test_csv_manifest_and_no_split_column(tmp_path):
  root = tmp_path / "folder"
  root.mkdir()
  io.save_wav(root / "a.wav", sine(440, 10.0, 24_000), 24_000)
  (root / "metadata.csv").write_text('file_name,caption,aspect_list\n'
                                     'a.wav,"Solo tone, steady.","tone, steady"\n')
  builder = _build(root, tmp_path / "tfds")
  assert list(builder.info.splits) == ["train"]
  (example,) = _clips(builder, "train").values()
  assert example["caption"].decode() == "Solo tone, steady."
  assert [a.decode() for a in example["aspect_list"]] == ["tone", "steady"]
