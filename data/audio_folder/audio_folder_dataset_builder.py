"""Any folder of audio files (FMA, a personal collection) as fixed-length clips.

  tfds build data/audio_folder --manual_dir=/path/to/fma_small [--config=clips_30s]

Every audio file below the manual dir is loaded, mixed to mono, resampled and
cut into clips. Captions are optional: a `metadata.jsonl` or `metadata.csv` at
the top of the folder (the Hugging Face audiofolder convention) with a
`file_name` column (path relative to the folder) and any of `caption`,
`aspect_list` (a list, or comma-separated text) and `split`. Files without a
row get an empty caption; without a `split` column everything is `train`.
Unusable files are skipped and counted in the log and `info.metadata["skipped"]`.
"""
import csv
import dataclasses
import json
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from musiclm_jax.audio import rates
from musiclm_jax.audio import validation
from musiclm_jax.data import audio_clips

MANIFEST_NAMES = ("metadata.jsonl", "metadata.csv")
DEFAULT_SPLIT = "train"


@dataclasses.dataclass
class AudioFolderConfig(tfds.core.BuilderConfig):
  """How recordings become clips.

  Attributes:
    clip_seconds: length of each clip.
    min_clip_seconds: a shorter final piece of a recording is dropped.
    sample_rate_hz: rate of the stored audio.
  """
  clip_seconds: float = 10.0
  min_clip_seconds: float = 5.0
  sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ


def _aspects(value) -> list[str]:
  if isinstance(value, list):
    return [str(a).strip() for a in value if str(a).strip()]
  return [a.strip() for a in str(value or "").strip("[]").split(",") if a.strip(" '\"")]


def read_manifest(root: os.PathLike) -> dict[str, dict]:
  """file_name -> {"caption", "aspect_list", "split"} from the folder's manifest."""
  for name in MANIFEST_NAMES:
    path = os.path.join(root, name)
    if not os.path.exists(path):
      continue
    with open(path, newline="", encoding="utf-8") as f:
      if name.endswith(".jsonl"):
        rows = [json.loads(line) for line in f if line.strip()]
      else:
        rows = list(csv.DictReader(f))
    manifest = {}
    for line_number, row in enumerate(rows, start=1):
      if "file_name" not in row:
        raise ValueError(f"{path} row {line_number} has no 'file_name'; name the audio file "
                         "column file_name.")
      manifest[os.path.normpath(row["file_name"])] = {
          "caption": row.get("caption") or "",
          "aspect_list": _aspects(row.get("aspect_list")),
          "split": row.get("split") or DEFAULT_SPLIT,
      }
    return manifest
  return {}


class Builder(tfds.core.GeneratorBasedBuilder):
  """Fixed-length clips of every audio file in a folder, with optional captions."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      AudioFolderConfig(name="clips_10s", description="10 s clips (the coarse stage's crop)."),
      AudioFolderConfig(name="clips_30s", clip_seconds=30.0, min_clip_seconds=15.0,
                        description="30 s clips (the semantic stage's crop)."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Pass the folder of audio files as --manual_dir; add metadata.jsonl or
  metadata.csv (columns file_name, caption, aspect_list, split) for captions.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=audio_clips.captioned_audio_features(
            self.builder_config.sample_rate_hz,
            file_name=tfds.features.Text(doc="Path relative to the manual dir."),
            clip_index=np.int32,
            start_s=np.float32,
            end_s=np.float32,
        ),
        supervised_keys=("audio", "caption"),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = os.fspath(dl_manager.manual_dir)
    manifest = read_manifest(root)
    on_disk = audio_clips.find_audio_files(root)
    files_by_split: dict[str, list[str]] = {}
    for file_name in on_disk:
      split = manifest.get(os.path.normpath(file_name), {}).get("split", DEFAULT_SPLIT)
      files_by_split.setdefault(split, []).append(file_name)
    min_seconds = self.builder_config.min_clip_seconds
    for split, files in list(files_by_split.items()):
      # TFDS cannot write an empty split: leave out one whose files are all too short.
      durations = [audio_clips.duration_seconds(os.path.join(root, f)) for f in files]
      if all(d is not None and d < min_seconds for d in durations):
        logging.warning("audio_folder: no file in split %s lasts %.1f s; the split is left out.",
                        split, min_seconds)
        del files_by_split[split]
    missing_by_split: dict[str, list[str]] = {}
    for file_name in sorted(set(manifest) - {os.path.normpath(f) for f in on_disk}):
      missing_by_split.setdefault(manifest[file_name]["split"], []).append(file_name)
    if not files_by_split:
      raise FileNotFoundError(f"no audio files ({', '.join(audio_clips.AUDIO_EXTENSIONS)}) of "
                              f"at least {min_seconds} s under {root}; pass the folder that "
                              "holds them as --manual_dir.")
    self.info.metadata["skipped"] = {}
    return {split: self._generate_examples(split, root, files, manifest,
                                           missing_by_split.get(split, []))
            for split, files in sorted(files_by_split.items())}

  def _generate_examples(self, split: str, root: str, file_names: list[str],
                         manifest: dict[str, dict], missing_file_names: list[str]):
    config = self.builder_config
    checks = validation.AudioChecks(min_seconds=config.min_clip_seconds)
    skipped = validation.SkippedAudio("skip")
    for file_name in missing_file_names:
      skipped.add_missing(f"{file_name} (listed in the manifest)")
    num_clips = 0
    for file_name in file_names:
      samples = audio_clips.load_or_skip(
          os.path.join(root, file_name), config.sample_rate_hz, checks, skipped)
      if samples is None:
        continue
      row = manifest.get(os.path.normpath(file_name), {})
      for clip in audio_clips.cut_clips(samples, config.sample_rate_hz, config.clip_seconds,
                                        config.min_clip_seconds):
        num_clips += 1
        yield f"{file_name}:{clip.index}", {
            "audio": clip.samples,
            "caption": row.get("caption", ""),
            "aspect_list": row.get("aspect_list", []),
            "file_name": file_name,
            "clip_index": clip.index,
            "start_s": clip.start_s,
            "end_s": clip.end_s(config.sample_rate_hz),
        }
    self.info.metadata["skipped"][split] = dict(skipped.counts)
    log = logging.warning if skipped.total else logging.info
    log("audio_folder/%s %s: %d files -> %d clips, %s", config.name, split, len(file_names),
        num_clips, skipped.summary())
