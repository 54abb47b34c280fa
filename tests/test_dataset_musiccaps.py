"""data/musiccaps builds from the real CSV layout and skips what it cannot use."""
import csv

import numpy as np
import pytest
import soundfile
import tensorflow_datasets as tfds

from tests.conftest import load_data_builder_class
from tests.conftest import sine

CSV_COLUMNS = ["ytid", "start_s", "end_s", "audioset_positive_labels", "aspect_list", "caption",
               "author_id", "is_balanced_subset", "is_audioset_eval"]
# ytid, clip on disk, is_balanced_subset, is_audioset_eval
ROWS = [
    ("-0Gj8-vB1q4", "clip", "True", "True"),
    ("-0SdAVK79lg", "clip", "True", "False"),
    ("-0vPFx-wRRI", "video", "True", "False"),    # whole 30 s video, cut to [5, 15)
    ("-0xzrMun0Rs", "clip", "False", "False"),
    ("-1LrH01Ei1w", "missing", "True", "False"),
    ("-1OlgJWehn8", "broken", "False", "True"),
    ("-1UWSisR2zo", "silent", "False", "False"),
]
RATE_HZ = 44_100  # as downloaded; the builder resamples to 24 kHz


@pytest.fixture(scope="module")
def audio_musiccaps_manual_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("musiccaps_manual")
  (root / "audio").mkdir()
  with open(root / "musiccaps-public.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(CSV_COLUMNS)
    for i, (ytid, kind, balanced, audioset_eval) in enumerate(ROWS):
      start_s = 5 if kind == "video" else 30
      writer.writerow([ytid, start_s, start_s + 10, "/m/0140xf,/m/02cjck",
                       f"['pop', 'tinny wide hi hats', 'clip {i}']", f"Caption number {i}.",
                       str(i), balanced, audioset_eval])
      if kind in ("clip", "silent"):
        amplitude = 0.0 if kind == "silent" else 0.3
        soundfile.write(root / "audio" / f"{ytid}.wav",
                        sine(200 + 100 * i, 10.0, RATE_HZ, amplitude), RATE_HZ)
      elif kind == "video":
        video = np.concatenate([np.zeros(5 * RATE_HZ), sine(300, 10.0, RATE_HZ, 0.3),
                                np.zeros(15 * RATE_HZ)]).astype(np.float32)
        soundfile.write(root / "audio" / f"{ytid}_download.flac", video, RATE_HZ)
      elif kind == "broken":
        (root / "audio" / f"{ytid}.mp3").write_bytes(b"ID3 not really an mp3")
  return root


def _build(manual_dir, data_dir, config):
  builder = load_data_builder_class("musiccaps")(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir), try_download_gcs=False))
  return builder


def _examples(builder, split):
  return {ex["ytid"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}


def test_all_config(audio_musiccaps_manual_dir, tmp_path):
  builder = _build(audio_musiccaps_manual_dir, tmp_path, "all")
  assert builder.info.name == "musiccaps"
  train, evaluation = _examples(builder, "train"), _examples(builder, "eval")
  assert set(train) == {"-0SdAVK79lg", "-0vPFx-wRRI", "-0xzrMun0Rs"}
  assert set(evaluation) == {"-0Gj8-vB1q4"}
  assert builder.info.metadata["skipped"] == {
      "train": {"missing file": 1, "digital silence": 1}, "eval": {"unreadable": 1}}
  example = train["-0SdAVK79lg"]
  assert example["audio"].dtype == np.float32 and example["audio"].shape == (240_000,)
  assert example["caption"].decode() == "Caption number 1."
  assert [a.decode() for a in example["aspect_list"]] == ["pop", "tinny wide hi hats", "clip 1"]
  assert [a.decode() for a in example["audioset_positive_labels"]] == ["/m/0140xf", "/m/02cjck"]
  assert (example["start_s"], example["end_s"], example["author_id"]) == (30, 40, 1)
  assert example["is_balanced_subset"] and not example["is_audioset_eval"]
  assert builder.info.features["audio"].sample_rate == 24_000


def test_whole_video_is_cut_to_the_clip(audio_musiccaps_manual_dir, tmp_path):
  audio = _examples(_build(audio_musiccaps_manual_dir, tmp_path, "all"), "train")[
      "-0vPFx-wRRI"]["audio"]
  assert audio.shape == (240_000,)
  # The tone fills exactly [5 s, 15 s) of the video: no silence at either end.
  assert np.abs(audio[:2400]).max() > 0.2 and np.abs(audio[-2400:]).max() > 0.2


def test_balanced_config_keeps_only_the_subset(audio_musiccaps_manual_dir, tmp_path):
  builder = _build(audio_musiccaps_manual_dir, tmp_path, "balanced")
  assert set(_examples(builder, "train")) == {"-0SdAVK79lg", "-0vPFx-wRRI"}
  assert set(_examples(builder, "eval")) == {"-0Gj8-vB1q4"}
  assert builder.info.metadata["skipped"] == {"train": {"missing file": 1}, "eval": {}}


def test_split_without_any_audio_is_left_out(audio_musiccaps_manual_dir, tmp_path):
  only_train = tmp_path / "manual"
  only_train.mkdir()
  lines = (audio_musiccaps_manual_dir / "musiccaps-public.csv").read_text().splitlines()
  (only_train / "musiccaps-public.csv").write_text("\n".join(
      [lines[0]] + [line for line in lines[1:] if line.endswith("False")]) + "\n")
  (only_train / "-0SdAVK79lg.wav").write_bytes(
      (audio_musiccaps_manual_dir / "audio" / "-0SdAVK79lg.wav").read_bytes())
  builder = _build(only_train, tmp_path / "tfds", "all")
  assert list(builder.info.splits) == ["train"]
  assert builder.info.splits["train"].num_examples == 1
