"""Every kind of bad audio is named, and callers can skip-and-count or raise."""
import numpy as np
import pytest

from musiclm_jax.audio import io
from musiclm_jax.audio import validation
from tests.conftest import sine

Problem = validation.AudioProblem
RATE_HZ = 16_000


def _problem(samples, checks=validation.AudioChecks()):
  with pytest.raises(validation.AudioError) as caught:
    validation.check_audio(samples, RATE_HZ, checks, source="clip.wav")
  assert "clip.wav" in str(caught.value)
  return caught.value.problem


def test_good_audio_passes():
  validation.check_audio(sine(440, 1.0, RATE_HZ), RATE_HZ, validation.AudioChecks(min_seconds=1.0))


def test_zero_length():
  assert _problem(np.zeros((0, 2), np.float32)) == Problem.EMPTY


def test_shorter_than_minimum():
  checks = validation.AudioChecks(min_seconds=2.0)
  assert _problem(sine(440, 1.5, RATE_HZ), checks) == Problem.TOO_SHORT


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(bad_value):
  samples = sine(440, 0.5, RATE_HZ)
  samples[100] = bad_value
  assert _problem(samples) == Problem.NON_FINITE


def test_digital_silence():
  assert _problem(np.full(RATE_HZ, 1e-6, np.float32)) == Problem.SILENT


def test_quiet_but_real_audio_is_not_silence():
  validation.check_audio(sine(440, 0.5, RATE_HZ, amplitude=1e-3), RATE_HZ)


def test_clipping():
  clipped = np.clip(sine(440, 1.0, RATE_HZ, amplitude=3.0), -1.0, 1.0)
  assert _problem(clipped) == Problem.CLIPPED
  validation.check_audio(sine(440, 1.0, RATE_HZ, amplitude=0.98), RATE_HZ)


def test_wrong_channel_count():
  surround = np.tile(sine(440, 0.5, RATE_HZ)[:, None], (1, 6))
  assert _problem(surround) == Problem.WRONG_CHANNELS
  mono_only = validation.AudioChecks(allowed_channel_counts=(1,))
  assert _problem(surround[:, :2], mono_only) == Problem.WRONG_CHANNELS


def test_unreadable_file(tmp_path):
  path = tmp_path / "broken.wav"
  path.write_bytes(b"RIFF\x00\x00 this is not audio")
  with pytest.raises(validation.AudioError) as caught:
    io.load_audio(path, RATE_HZ)
  assert caught.value.problem == Problem.UNREADABLE
  assert "broken.wav" in str(caught.value)


def test_empty_file_on_disk(tmp_path):
  path = tmp_path / "empty.wav"
  io.save_wav(path, np.zeros(0, np.float32), RATE_HZ)
  with pytest.raises(validation.AudioError) as caught:
    io.load_audio(path, RATE_HZ)
  assert caught.value.problem == Problem.EMPTY


def test_skip_policy_counts_by_reason():
  skipped = validation.SkippedAudio("skip")
  for samples in (np.zeros(100, np.float32), np.zeros(0, np.float32), np.zeros(5, np.float32)):
    try:
      validation.check_audio(samples, RATE_HZ)
    except validation.AudioError as error:
      skipped.add(error)
  skipped.add_missing("abc.wav")
  assert skipped.counts == {"digital silence": 2, "zero length": 1, "missing file": 1}
  assert skipped.summary().startswith("skipped 4 (")
  assert "abc.wav" in skipped.summary()


def test_raise_policy_raises():
  error = validation.AudioError(Problem.SILENT, "peak 0")
  with pytest.raises(validation.AudioError):
    validation.SkippedAudio("raise").add(error)
  with pytest.raises(FileNotFoundError):
    validation.SkippedAudio("raise").add_missing("abc.wav")
  with pytest.raises(ValueError, match="skip"):
    validation.SkippedAudio("ignore")
