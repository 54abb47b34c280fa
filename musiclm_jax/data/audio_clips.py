"""Loading files into fixed-length clips for the TFDS builders.

Shared by `data/musiccaps` and `data/audio_folder`: load with checks, skip or
raise on bad audio through `SkippedAudio`, and cut long recordings into clips.
"""
import dataclasses
import os
from typing import Iterator

import numpy as np
import soundfile
import tensorflow_datasets as tfds

from musiclm_jax.audio import io
from musiclm_jax.audio import validation

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff", ".aif",
                    ".au", ".m4a", ".webm")


@dataclasses.dataclass(frozen=True)
class Clip:
  """A piece of a recording.

  Attributes:
    index: position of the clip in its recording, from 0.
    start_s: start time in the recording.
    samples: [time] float32.
  """
  index: int
  start_s: float
  samples: np.ndarray

  def end_s(self, sample_rate_hz: int) -> float:
    return self.start_s + len(self.samples) / sample_rate_hz


def load_or_skip(path: str | os.PathLike, sample_rate_hz: int,
                 checks: validation.AudioChecks,
                 skipped: validation.SkippedAudio) -> np.ndarray | None:
  """`io.load_audio`, or None after `skipped` counted (or raised) the problem."""
  try:
    return io.load_audio(path, sample_rate_hz, checks)
  except validation.AudioError as error:
    skipped.add(error)
    return None


def cut_clips(samples: np.ndarray, sample_rate_hz: int, clip_seconds: float,
              min_clip_seconds: float) -> Iterator[Clip]:
  """Cuts [time] into consecutive clips of `clip_seconds`.

  The last piece is kept, shorter and unpadded, only if it lasts at least
  `min_clip_seconds`; padding would teach the models silence that is not there.
  """
  clip_length = int(round(clip_seconds * sample_rate_hz))
  min_length = int(round(min_clip_seconds * sample_rate_hz))
  for index, start in enumerate(range(0, len(samples), clip_length)):
    clip = samples[start:start + clip_length]
    if len(clip) < max(min_length, 1):
      return
    yield Clip(index=index, start_s=start / sample_rate_hz, samples=clip)


def find_audio_files(root: str | os.PathLike) -> list[str]:
  """Audio files under `root`, recursively, sorted, as paths relative to it."""
  found = []
  for directory, _, names in os.walk(root):
    for name in names:
      if name.lower().endswith(AUDIO_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(directory, name), root))
  return sorted(found)


def duration_seconds(path: str | os.PathLike) -> float | None:
  """Length from the file header alone, or None if soundfile cannot tell."""
  try:
    return soundfile.info(os.fspath(path)).duration
  except (soundfile.LibsndfileError, RuntimeError, TypeError):
    return None


def captioned_audio_features(sample_rate_hz: int, **extra) -> tfds.features.FeaturesDict:
  """The features every captioned-audio builder shares (mono audio, caption, aspects), plus `extra`."""
  return tfds.features.FeaturesDict({
      "audio": tfds.features.Audio(shape=(None,), dtype=np.float32, sample_rate=sample_rate_hz,
                                   doc="Mono float32 in [-1, 1]."),
      "caption": tfds.features.Text(),
      "aspect_list": tfds.features.Sequence(tfds.features.Text()),
      **extra,
  })
