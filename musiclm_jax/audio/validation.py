"""Checks that decide whether a piece of audio is fit to train on.

Datasets meet broken audio all the time: files that do not decode, empty or
truncated clips, NaNs from a bad encoder, digital silence, clipped masters,
surround mixes. Each check names the problem so a build log can say why a clip
was dropped, and `SkippedAudio` lets a caller choose between skipping with a
count and raising.
"""
import collections
import dataclasses
import enum

import numpy as np


class AudioProblem(enum.Enum):
  UNREADABLE = "unreadable"
  EMPTY = "zero length"
  TOO_SHORT = "too short"
  NON_FINITE = "NaN/Inf samples"
  SILENT = "digital silence"
  CLIPPED = "clipped"
  WRONG_CHANNELS = "wrong channel count"


class AudioError(ValueError):
  """Audio that cannot be used, with the problem and where it came from."""

  def __init__(self, problem: AudioProblem, detail: str, source: str = ""):
    self.problem = problem
    self.source = source
    where = f"{source}: " if source else ""
    super().__init__(f"{where}{problem.value}: {detail}")


@dataclasses.dataclass(frozen=True)
class AudioChecks:
  """Thresholds for `check_audio`.

  Attributes:
    min_seconds: shortest usable audio.
    silence_peak: audio whose absolute peak is at or below this is silent
      (1e-4 is -80 dBFS: below the noise floor of any real recording).
    clip_level: samples at or above this magnitude count as clipped.
    max_clipped_fraction: more clipped samples than this fraction is an error.
    allowed_channel_counts: channel counts accepted before mixing to mono.
  """
  min_seconds: float = 0.0
  silence_peak: float = 1e-4
  clip_level: float = 0.999
  max_clipped_fraction: float = 0.01
  allowed_channel_counts: tuple[int, ...] = (1, 2)


def check_audio(samples: np.ndarray, sample_rate_hz: int,
                checks: AudioChecks = AudioChecks(), source: str = "") -> None:
  """Raises AudioError naming the first problem found.

  Args:
    samples: [time] or [time, channels] floats in [-1, 1].
    sample_rate_hz: rate of `samples`.
    checks: thresholds.
    source: file name or id, used in the error message.
  """
  channels = 1 if samples.ndim == 1 else samples.shape[1]
  if samples.ndim > 2 or channels not in checks.allowed_channel_counts:
    raise AudioError(
        AudioProblem.WRONG_CHANNELS,
        f"got {channels} channels (shape {samples.shape}), expected one of "
        f"{checks.allowed_channel_counts}; downmix the file first", source)
  if samples.shape[0] == 0:
    raise AudioError(AudioProblem.EMPTY, "the file holds no samples; re-export it", source)
  seconds = samples.shape[0] / sample_rate_hz
  if seconds < checks.min_seconds:
    raise AudioError(
        AudioProblem.TOO_SHORT,
        f"{seconds:.2f} s is shorter than the minimum {checks.min_seconds:.2f} s", source)
  if not np.all(np.isfinite(samples)):
    bad = int(np.sum(~np.isfinite(samples)))
    raise AudioError(AudioProblem.NON_FINITE,
                     f"{bad} samples are NaN or Inf; the file is corrupt", source)
  peak = float(np.max(np.abs(samples)))
  if peak <= checks.silence_peak:
    raise AudioError(AudioProblem.SILENT,
                     f"peak {peak:.2e} is at or below {checks.silence_peak:.0e}", source)
  clipped_fraction = float(np.mean(np.abs(samples) >= checks.clip_level))
  if clipped_fraction > checks.max_clipped_fraction:
    raise AudioError(
        AudioProblem.CLIPPED,
        f"{100 * clipped_fraction:.1f}% of samples are at full scale "
        f"(limit {100 * checks.max_clipped_fraction:.1f}%)", source)


class SkippedAudio:
  """Either raises bad audio or counts it by problem, for the build log.

  Args:
    on_bad_audio: "skip" to count and continue, "raise" to stop at the first
      bad file.
  """

  def __init__(self, on_bad_audio: str = "skip"):
    if on_bad_audio not in ("skip", "raise"):
      raise ValueError(f"on_bad_audio must be 'skip' or 'raise', got {on_bad_audio!r}")
    self.on_bad_audio = on_bad_audio
    self.counts: collections.Counter[str] = collections.Counter()
    self.first_example: dict[str, str] = {}

  def add(self, error: AudioError) -> None:
    """Counts `error`, or re-raises it when the policy is "raise"."""
    self.add_reason(error.problem.value, str(error), error)

  def add_missing(self, source: str) -> None:
    """Counts an expected file that is absent."""
    self.add_reason("missing file", source,
                    FileNotFoundError(f"{source}: missing; download it or drop its row"))

  def add_reason(self, reason: str, example: str, error: Exception) -> None:
    """Counts one skip for `reason`, or raises `error` when the policy is "raise"."""
    if self.on_bad_audio == "raise":
      raise error
    self.counts[reason] += 1
    self.first_example.setdefault(reason, example)

  @property
  def total(self) -> int:
    return sum(self.counts.values())

  def summary(self) -> str:
    """One line: total and count per reason, with a first example of each."""
    if not self.total:
      return "skipped 0"
    parts = [f"{reason}: {n} (e.g. {self.first_example[reason]})"
             for reason, n in sorted(self.counts.items())]
    return f"skipped {self.total} ({'; '.join(parts)})"
