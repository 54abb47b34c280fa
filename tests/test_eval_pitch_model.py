"""basic-pitch's onsets fall on the notes of a synthesised scale; noise and silence have none."""
import numpy as np
import pytest

pytest.importorskip("basic_pitch", reason="basic-pitch is not installed (pip install --no-deps basic-pitch==0.4.0)")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")

from musiclm_jax.eval import pitch_model  # pylint: disable=g-import-not-at-top

RATE_HZ = 24_000
SECONDS = 4.0


def _scale(note_seconds):
  """[time] C-major scale notes of `note_seconds` each, five decaying harmonics, for SECONDS."""
  notes = []
  for pitch in [60, 62, 64, 65, 67, 69, 71, 72] * 8:
    t = np.arange(int(note_seconds * RATE_HZ)) / RATE_HZ
    f = 440.0 * 2 ** ((pitch - 69) / 12)
    notes.append(sum(0.3 / k * np.sin(2 * np.pi * k * f * t) for k in range(1, 6)) * np.exp(-3 * t))
  return np.concatenate(notes)[:int(SECONDS * RATE_HZ)].astype(np.float32)


@pytest.fixture(scope="module")
def model():
  return pitch_model.BasicPitch()


@pytest.mark.parametrize("note_seconds", [0.5, 0.25, 0.125])
def test_note_onsets_are_the_synthesised_notes(model, note_seconds):
  out = model(_scale(note_seconds), RATE_HZ)
  assert out["onset"].shape == (int(SECONDS * model.frames_per_second), 88)
  assert out["contour"].shape[1] == 3 * 88
  starts = pitch_model.note_onsets(out) / model.frames_per_second
  # The note at 0 s has no onset peak (a peak needs a frame before it); every other is found.
  expected = np.arange(note_seconds, SECONDS - 1e-6, note_seconds)
  assert len(starts) == len(expected)
  np.testing.assert_allclose(starts, expected, atol=0.03)
  assert pitch_model.notes_per_second(out, model.frames_per_second) == pytest.approx(
      len(expected) / SECONDS)
  assert pitch_model.pitch_salience(out) > 0.5


def test_noise_and_silence_have_few_notes_and_little_pitch(model):
  noise = np.random.default_rng(0).normal(scale=0.1, size=int(SECONDS * RATE_HZ)).astype(np.float32)
  out = model(noise, RATE_HZ)
  assert pitch_model.notes_per_second(out, model.frames_per_second) <= 1.0
  assert pitch_model.pitch_salience(out) < 0.4
  silence = model(np.zeros(int(SECONDS * RATE_HZ), np.float32), RATE_HZ)
  assert pitch_model.notes_per_second(silence, model.frames_per_second) == 0.0
