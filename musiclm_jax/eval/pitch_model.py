"""Notes and pitch salience of audio from basic-pitch (Bittner et al. 2022), the ONNX model in its wheel.

  model = BasicPitch()
  out = model(audio, sample_rate_hz)       # audio [time]
  out["onset"], out["note"]                # [frames, 88] piano keys from MIDI 21, 86 frames/s
  out["contour"]                           # [frames, 264] thirds of a semitone from 27.5 Hz
  notes_per_second(out), pitch_salience(out)
  pitch_classes(out, model.lowest_midi_pitch)  # [frames, 12] notes folded into C, C#, ..., B

"Is it music at all": real music has notes at a steady rate and frames with a
clear pitch; noise and smeared generations have few onsets and low salience.
basic-pitch 0.4.0 (Apache-2.0) is installed with `--no-deps` (its metadata
pins TensorFlow < 2.15.1 and needs resampy only for its MIDI writer); its
network runs here through onnxruntime. Its `inference` module is not imported
(it pulls in that writer); the framing below is `inference.run_inference`'s:
2 s windows overlapping by 30 frames, whose 15 edge frames on either side are
dropped before the windows are joined.
"""
import importlib.util
import logging

import librosa
import numpy as np
from scipy import signal

from musiclm_jax.audio import io
from musiclm_jax.errors import UserError

INSTALL_HINT = "pip install --no-deps basic-pitch==0.4.0 && pip install onnxruntime"
OVERLAP_FRAMES = 30
# basic-pitch's default note creation: an onset peak at least ONSET_THRESHOLD likely
# starts a note that sounds (note posterior >= FRAME_THRESHOLD) for MIN_NOTE_FRAMES (127.7 ms).
ONSET_THRESHOLD = 0.5
FRAME_THRESHOLD = 0.3
MIN_NOTE_FRAMES = 11
_INPUT, _OUTPUTS = "serving_default_input_2:0", {
    "note": "StatefulPartitionedCall:1", "onset": "StatefulPartitionedCall:2",
    "contour": "StatefulPartitionedCall:0"}


class BasicPitch:
  """basic-pitch's note, onset and contour posteriorgrams of a clip."""

  def __init__(self):
    if importlib.util.find_spec("basic_pitch") is None or importlib.util.find_spec("onnxruntime") is None:
      raise UserError(f"basic-pitch and onnxruntime are needed for notes per second: {INSTALL_HINT}")
    # basic_pitch's __init__ warns on the root logger about each runtime it does not find
    # (CoreML, TFLite), none of which is used here.
    logging.disable(logging.WARNING)
    try:
      import basic_pitch  # pylint: disable=g-import-not-at-top  (model path only)
      from basic_pitch import constants  # pylint: disable=g-import-not-at-top
    finally:
      logging.disable(logging.NOTSET)
    import onnxruntime  # pylint: disable=g-import-not-at-top
    self.sample_rate_hz = constants.AUDIO_SAMPLE_RATE
    self.frames_per_second = constants.ANNOTATIONS_FPS
    self.window_samples = constants.AUDIO_N_SAMPLES
    self.overlap_samples = OVERLAP_FRAMES * constants.FFT_HOP
    self.lowest_midi_pitch = round(librosa.hz_to_midi(constants.ANNOTATIONS_BASE_FREQUENCY))
    path = basic_pitch.build_icassp_2022_model_path(basic_pitch.FilenameSuffix.onnx)
    self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

  def __call__(self, audio: np.ndarray, sample_rate_hz: int) -> dict[str, np.ndarray]:
    """audio [time] at any rate -> {"note", "onset": [frames, 88], "contour": [frames, 264]}."""
    audio = io.resample(np.asarray(audio, np.float32), sample_rate_hz, self.sample_rate_hz)
    if audio.ndim != 1 or not audio.size:
      raise UserError(f"basic-pitch takes one non-empty mono clip, got shape {audio.shape}")
    padded = np.concatenate([np.zeros(self.overlap_samples // 2, np.float32), audio])
    hop = self.window_samples - self.overlap_samples
    windows = []
    for start in range(0, len(padded), hop):
      window = padded[start:start + self.window_samples]
      windows.append(np.pad(window, (0, self.window_samples - len(window))))
    outputs = self._session.run(list(_OUTPUTS.values()), {_INPUT: np.stack(windows)[..., None]})
    frames = int(len(audio) * self.frames_per_second / self.sample_rate_hz)
    edge = OVERLAP_FRAMES // 2
    return {name: out[:, edge:-edge].reshape(-1, out.shape[-1])[:frames]
            for name, out in zip(_OUTPUTS, outputs)}


def note_onsets(posteriorgrams: dict[str, np.ndarray]) -> np.ndarray:
  """Frames [notes] where notes start, as basic-pitch's note creation starts them: a peak
  over time of a key's onset posterior reaching ONSET_THRESHOLD, whose note posterior then
  stays at FRAME_THRESHOLD or above for MIN_NOTE_FRAMES on average. Starts in the same or
  adjacent frames are one event: a note's harmonics and a chord count once."""
  onset, note = posteriorgrams["onset"], posteriorgrams["note"]
  frames, keys = signal.argrelmax(onset, axis=0)
  # Thresholded before the loop: noise has thousands of low peaks per clip, a tune a few dozen.
  strong = onset[frames, keys] >= ONSET_THRESHOLD
  frames, keys = frames[strong], keys[strong]
  sustained = np.asarray([note[f + 1:f + 1 + MIN_NOTE_FRAMES, k].mean() if f + 1 < len(note) else 0.0
                          for f, k in zip(frames, keys)])
  starts = np.unique(frames[sustained >= FRAME_THRESHOLD])
  return starts[np.concatenate([[True], np.diff(starts) > 1])] if len(starts) else starts


def notes_per_second(posteriorgrams: dict[str, np.ndarray], frames_per_second: float) -> float:
  """Note start events per second of a clip's posteriorgrams."""
  return len(note_onsets(posteriorgrams)) * frames_per_second / max(len(posteriorgrams["onset"]), 1)


def pitch_salience(posteriorgrams: dict[str, np.ndarray]) -> float:
  """Mean over frames of the most likely pitch contour bin's probability (0: no pitch heard)."""
  return float(posteriorgrams["contour"].max(axis=1).mean())


def pitch_classes(posteriorgrams: dict[str, np.ndarray], lowest_midi_pitch: int) -> np.ndarray:
  """The note posteriorgram [frames, keys] summed over octaves: [frames, 12], column 0 C.

  A polyphonic pitch-class profile: unlike a chroma of the spectrum, a note's
  harmonics do not add other classes (basic-pitch names the note, not its partials).
  """
  note = posteriorgrams["note"]
  classes = (lowest_midi_pitch + np.arange(note.shape[1])) % 12
  profile = np.zeros((len(note), 12), np.float32)
  np.add.at(profile.T, classes, note.T)
  return profile
