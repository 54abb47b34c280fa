"""Loading mixes to mono and resamples to the rate asked for; saving round-trips."""
import numpy as np
import pytest
import soundfile

from musiclm_jax.audio import io
from tests.conftest import sine


def _dominant_frequency_hz(samples, sample_rate_hz):
  spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
  return np.argmax(spectrum) * sample_rate_hz / len(samples)


@pytest.mark.parametrize("file_rate_hz,target_rate_hz", [(44_100, 24_000), (48_000, 16_000),
                                                         (16_000, 24_000)])
def test_load_resamples_and_keeps_pitch(tmp_path, file_rate_hz, target_rate_hz):
  path = tmp_path / "tone.flac"
  soundfile.write(path, sine(1000.0, 1.0, file_rate_hz), file_rate_hz)
  samples = io.load_audio(path, target_rate_hz)
  assert samples.dtype == np.float32 and samples.ndim == 1
  assert abs(len(samples) - target_rate_hz) <= 1
  assert _dominant_frequency_hz(samples, target_rate_hz) == pytest.approx(1000.0, abs=2.0)
  assert np.max(np.abs(samples)) == pytest.approx(0.5, abs=0.02)


def test_stereo_is_averaged_to_mono(tmp_path):
  left, right = sine(440, 0.5, 24_000, 0.4), sine(660, 0.5, 24_000, 0.2)
  path = tmp_path / "stereo.wav"
  soundfile.write(path, np.stack([left, right], axis=1), 24_000, subtype="FLOAT")
  np.testing.assert_allclose(io.load_audio(path, 24_000), (left + right) / 2, atol=1e-6)


def test_save_wav_round_trip(tmp_path):
  samples = sine(440, 0.25, 24_000)
  io.save_wav(tmp_path / "x.wav", samples, 24_000)
  loaded, rate_hz = io.read_audio(tmp_path / "x.wav")
  assert rate_hz == 24_000 and loaded.shape == (len(samples), 1)
  np.testing.assert_allclose(loaded[:, 0], samples, atol=1 / 2**15)


def test_save_wav_clips_out_of_range_values(tmp_path):
  io.save_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5], np.float32), 24_000)
  loaded, _ = io.read_audio(tmp_path / "loud.wav")
  np.testing.assert_allclose(loaded[:, 0], [1.0, -1.0, 0.5], atol=1e-4)


@pytest.mark.parametrize("dtype,subtype", [(np.int16, "PCM_16"), (np.int32, "PCM_32")])
def test_integer_pcm_scales_as_libsndfile_decodes_it(tmp_path, dtype, subtype):
  info = np.iinfo(dtype)
  pcm = np.array([info.min, info.min // 2, -1, 0, 1, info.max // 3, info.max], dtype)
  soundfile.write(tmp_path / "x.wav", pcm, 24_000, subtype=subtype)
  reference, _ = soundfile.read(tmp_path / "x.wav", dtype="float64")
  converted = io.pcm_to_float(pcm)
  assert converted.dtype == np.float32
  np.testing.assert_allclose(converted, reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("pcm,expected", [
    (np.array([-128, -64, 0, 64, 127], np.int8), [-1.0, -0.5, 0.0, 0.5, 127 / 128]),
    # Unsigned 8-bit PCM (WAV's 8-bit format) is centred on 128.
    (np.array([0, 64, 128, 192, 255], np.uint8), [-1.0, -0.5, 0.0, 0.5, 127 / 128]),
])
def test_eight_bit_pcm_scales_by_its_own_range(pcm, expected):
  np.testing.assert_allclose(io.pcm_to_float(pcm), expected, rtol=0, atol=1e-7)


def test_float_audio_passes_through_unscaled():
  samples = np.array([-1.5, 0.25, 1.0], np.float64)
  converted = io.pcm_to_float(samples)
  assert converted.dtype == np.float32
  np.testing.assert_array_equal(converted, samples.astype(np.float32))
