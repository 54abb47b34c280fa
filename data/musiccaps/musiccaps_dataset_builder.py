"""MusicCaps: 5.5k ten-second YouTube clips with musician-written captions.

Google releases only the captions (`musiccaps-public.csv`); the audio must be
fetched from YouTube by the user, and some videos are gone. Build with

  tfds build data/musiccaps --manual_dir=/path/to/musiccaps [--config=balanced]

where the manual dir holds the CSV and the clips, anywhere below it, named
`<ytid>.<ext>` or `<ytid>_<anything>.<ext>` (the names common download scripts
write). A file longer than its clip is taken to be the whole video and cut to
[start_s, end_s]. Missing and broken clips are skipped and counted in the log
and in `info.metadata["skipped"]`.
"""
import ast
import csv
import dataclasses
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from musiclm_jax.audio import rates
from musiclm_jax.audio import validation
from musiclm_jax.data import audio_clips

CSV_NAME = "musiccaps-public.csv"
YTID_LENGTH = 11
# A file this much longer than its clip is the whole video, not the clip.
_WHOLE_VIDEO_MARGIN_S = 1.0

_CITATION = """
@article{agostinelli2023musiclm,
  title={MusicLM: Generating Music From Text},
  author={Agostinelli, Andrea and Denk, Timo I. and Borsos, Zal{\\'a}n and others},
  journal={arXiv preprint arXiv:2301.11325},
  year={2023}
}
"""


@dataclasses.dataclass
class MusicCapsConfig(tfds.core.BuilderConfig):
  """Which rows to keep and how to check their audio.

  Attributes:
    balanced_only: keep only the 1k genre-balanced subset.
    sample_rate_hz: rate of the stored audio.
    min_clip_seconds: shorter clips (videos that ended early) are skipped.
  """
  balanced_only: bool = False
  sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ
  min_clip_seconds: float = 2.0


def parse_aspect_list(text: str) -> list[str]:
  """"['pop', 'tinny wide hi hats']" -> ['pop', 'tinny wide hi hats']."""
  try:
    aspects = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    aspects = text.strip("[]").split(",")
  return [str(a).strip().strip("'\"") for a in aspects if str(a).strip()]


def read_rows(csv_path: os.PathLike) -> list[dict[str, str]]:
  with open(csv_path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def index_clip_files(root: os.PathLike) -> dict[str, str]:
  """ytid -> path of its audio file under `root` (the first, in sorted order)."""
  by_ytid = {}
  for relative_path in audio_clips.find_audio_files(root):
    stem = os.path.splitext(os.path.basename(relative_path))[0]
    if len(stem) == YTID_LENGTH or stem[YTID_LENGTH:YTID_LENGTH + 1] in ("_", "-", " "):
      by_ytid.setdefault(stem[:YTID_LENGTH], os.path.join(root, relative_path))
  return by_ytid


def _is_true(text: str) -> bool:
  return text.strip().lower() in ("true", "1")


class Builder(tfds.core.GeneratorBasedBuilder):
  """MusicCaps captions joined with the clips the user downloaded."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      MusicCapsConfig(name="all", description="All 5,521 rows."),
      MusicCapsConfig(name="balanced", balanced_only=True,
                      description="The 1k genre-balanced subset."),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
  Download {CSV_NAME} from https://www.kaggle.com/datasets/googleai/musiccaps
  and the clips (e.g. with yt-dlp, cut to [start_s, end_s]) into one folder,
  named <ytid>.<ext>, then pass it as --manual_dir.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=audio_clips.captioned_audio_features(
            self.builder_config.sample_rate_hz,
            audioset_positive_labels=tfds.features.Sequence(tfds.features.Text()),
            ytid=tfds.features.Text(),
            start_s=np.int32,
            end_s=np.int32,
            author_id=np.int32,
            is_balanced_subset=np.bool_,
            is_audioset_eval=np.bool_,
        ),
        supervised_keys=("audio", "caption"),
        homepage="https://www.kaggle.com/datasets/googleai/musiccaps",
        citation=_CITATION,
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = dl_manager.manual_dir
    csv_path = manual_dir / CSV_NAME
    if not csv_path.exists():
      raise FileNotFoundError(f"{csv_path} not found; put {CSV_NAME} in the manual dir.")
    rows = read_rows(csv_path)
    if self.builder_config.balanced_only:
      rows = [r for r in rows if _is_true(r["is_balanced_subset"])]
    clip_files = index_clip_files(manual_dir)
    self.info.metadata["skipped"] = {}
    rows_by_split = {
        "train": [r for r in rows if not _is_true(r["is_audioset_eval"])],
        "eval": [r for r in rows if _is_true(r["is_audioset_eval"])],
    }
    generators = {}
    for split, split_rows in rows_by_split.items():
      # TFDS cannot write an empty split, so leave out one with no audio at all.
      if not any(r["ytid"] in clip_files for r in split_rows):
        logging.warning("musiccaps: no audio for any of the %d %s rows; the split is left out.",
                        len(split_rows), split)
        continue
      generators[split] = self._generate_examples(split, split_rows, clip_files)
    if not generators:
      raise FileNotFoundError(f"no clip named <ytid>.<ext> under {manual_dir}; put the "
                              "downloaded clips in the manual dir.")
    return generators

  def _generate_examples(self, split: str, rows: list[dict[str, str]],
                         clip_files: dict[str, str]):
    config = self.builder_config
    checks = validation.AudioChecks(min_seconds=config.min_clip_seconds)
    skipped = validation.SkippedAudio("skip")
    for row in rows:
      path = clip_files.get(row["ytid"])
      if path is None:
        skipped.add_missing(f"{row['ytid']} (no audio file in manual dir)")
        continue
      samples = audio_clips.load_or_skip(path, config.sample_rate_hz, checks, skipped)
      if samples is None:
        continue
      start_s, end_s = int(float(row["start_s"])), int(float(row["end_s"]))
      clip_samples = (end_s - start_s) * config.sample_rate_hz
      if len(samples) > clip_samples + _WHOLE_VIDEO_MARGIN_S * config.sample_rate_hz:
        samples = samples[start_s * config.sample_rate_hz:end_s * config.sample_rate_hz]
        try:
          validation.check_audio(samples, config.sample_rate_hz, checks, source=path)
        except validation.AudioError as error:
          skipped.add(error)
          continue
      yield row["ytid"], {
          "audio": samples,
          "caption": row["caption"],
          "aspect_list": parse_aspect_list(row["aspect_list"]),
          "audioset_positive_labels": [
              label for label in row["audioset_positive_labels"].split(",") if label],
          "ytid": row["ytid"],
          "start_s": start_s,
          "end_s": end_s,
          "author_id": int(row["author_id"] or -1),
          "is_balanced_subset": _is_true(row["is_balanced_subset"]),
          "is_audioset_eval": _is_true(row["is_audioset_eval"]),
      }
    self.info.metadata["skipped"][split] = dict(skipped.counts)
    log = logging.warning if skipped.total else logging.info
    log("musiccaps/%s %s: %d rows, %s", config.name, split, len(rows), skipped.summary())
