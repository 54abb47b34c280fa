"""musicnn (Pons & Serra 2019) in Flax, loading the pretrained checkpoints that ship in its wheel.

  tagger = MusicnnTagger("MTT_musicnn")         # or "MSD_musicnn"
  out = tagger(audio, sample_rate_hz)           # audio [time]
  out["tag_probabilities"]                      # [windows, 50], labels in tagger.labels
  out["mean_pool"], out["penultimate"]          # [windows, 753], [windows, 200]: FAD embeddings
  tagger.batched(clips, sample_rate_hz)         # clips [clips, time]: each [clips, windows, ...]

The `musicnn` 0.1.0 package (ISC) carries TF1 checkpoints of taggers trained on
MagnaTagATune (MTT: 50 instrument/mood tags) and the Million Song Dataset (MSD:
50 genre/era tags). Its own `musicnn.extractor` is not usable here: importing it
turns TensorFlow's eager execution off for the whole process, and it casts the
mel spectrogram to float16, which overflows to inf (then NaN) on loud input.
This module reimplements the network of `musicnn.models.build_musicnn` as a
Flax module and reads the weights from the checkpoint's index/data files
(the bundled `checkpoint` state file points at the author's home folder, so
the prefix is given directly). Install with
`pip install --no-deps musicnn==0.1.0` (its metadata pins TensorFlow 1.x).

Input: 3 s windows (187 frames, no overlap, as musicnn's extractor) of
log10(1 + 10000 mel), the mel power spectrogram at 16 kHz with a 512-point FFT,
256 hop and 96 bands; the rates and sizes are read from the checkpoint's own
config.json. The mel here stays float32 and is zero-padded at the edges
(librosa >= 0.10) where musicnn's extractor reflected; only the first and last
frame differ.
"""
import importlib.util
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax.audio import io
from musiclm_jax.audio import spectral
from musiclm_jax.errors import UserError

# The two musicnn models and the name of their label list in musicnn.configuration.
LABEL_LISTS = {"MTT_musicnn": "MTT_LABELS", "MSD_musicnn": "MSD_LABELS"}
INSTALL_HINT = "pip install --no-deps musicnn==0.1.0"
# musicnn's "logC" compression: log10(1 + LOG_COMPRESSION * mel).
LOG_COMPRESSION = 10000.0
# tf.compat.v1.layers.batch_normalization's default, which the checkpoints were trained with.
BATCH_NORM_EPSILON = 1e-3

# build_musicnn(num_filt_frontend=1.6, num_filt_midend=64, num_units_backend=200), as the
# MTT and MSD models were built: timbral filters span 40% and 70% of the mel bands over
# 7 frames; temporal filters span 128, 64 and 32 frames of one band.
TIMBRAL_FILTERS = int(1.6 * 128)
TIMBRAL_BAND_FRACTIONS = (0.4, 0.7)
TEMPORAL_FILTERS = int(1.6 * 32)
TEMPORAL_FRAMES = (128, 64, 32)
MIDEND_FILTERS = 64
MIDEND_FRAMES = 7
BACKEND_UNITS = 200

# Flax module name -> the checkpoint's variable scope (tf.compat.v1.layers numbered them
# in creation order).
CHECKPOINT_NAMES = {
    "input_norm": "batch_normalization",
    "timbral_0": "conv2d", "timbral_0_norm": "batch_normalization_1",
    "timbral_1": "conv2d_1", "timbral_1_norm": "batch_normalization_2",
    "temporal_0": "conv2d_2", "temporal_0_norm": "batch_normalization_3",
    "temporal_1": "conv2d_3", "temporal_1_norm": "batch_normalization_4",
    "temporal_2": "conv2d_4", "temporal_2_norm": "batch_normalization_5",
    "midend_0": "conv2d_5", "midend_0_norm": "batch_normalization_6",
    "midend_1": "conv2d_6", "midend_1_norm": "batch_normalization_7",
    "midend_2": "conv2d_7", "midend_2_norm": "batch_normalization_8",
    "pool_norm": "batch_normalization_9",
    "penultimate": "dense", "penultimate_norm": "batch_normalization_10",
    "logits": "dense_1",
}
# Flax leaf -> TF variable name, for convs/dense layers and for batch norms.
_WEIGHT_LEAVES = {"kernel": "kernel", "bias": "bias"}
_NORM_LEAVES = {"scale": "gamma", "bias": "beta", "mean": "moving_mean", "var": "moving_variance"}


class MusicnnNetwork(nn.Module):
  """musicnn's front end, mid end and back end (inference: batch norm uses the moving statistics)."""
  num_labels: int = 50

  def _norm(self, name):
    return nn.BatchNorm(use_running_average=True, epsilon=BATCH_NORM_EPSILON, name=name)

  @nn.compact
  def __call__(self, log_mel: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """log_mel [windows, frames, mel_bands] -> outputs, each [windows, ...] (see `MusicnnTagger`)."""
    mel_bands = log_mel.shape[-1]
    x = self._norm("input_norm")(log_mel[..., None])  # [windows, frames, bands, 1]
    front_end = []
    # Timbral: a 7-frame 'same' conv over time, valid over frequency, then max over frequency.
    for i, fraction in enumerate(TIMBRAL_BAND_FRACTIONS):
      conv = nn.Conv(TIMBRAL_FILTERS, (7, int(fraction * mel_bands)), padding=((3, 3), (0, 0)),
                     name=f"timbral_{i}")(x)
      front_end.append(jnp.max(self._norm(f"timbral_{i}_norm")(nn.relu(conv)), axis=2))
    for i, frames in enumerate(TEMPORAL_FRAMES):
      conv = nn.Conv(TEMPORAL_FILTERS, (frames, 1), padding="SAME", name=f"temporal_{i}")(x)
      front_end.append(jnp.max(self._norm(f"temporal_{i}_norm")(nn.relu(conv)), axis=2))
    front_end = jnp.concatenate(front_end, axis=-1)  # [windows, frames, 561]
    # Mid end: 1-D convs over time spanning all channels, residual after the first.
    mid_end = [front_end]
    h = front_end
    for i in range(3):
      conv = nn.Conv(MIDEND_FILTERS, (MIDEND_FRAMES,), padding=((MIDEND_FRAMES // 2,) * 2,),
                     name=f"midend_{i}")(h)
      h = self._norm(f"midend_{i}_norm")(nn.relu(conv)) + (h if i else 0.0)
      mid_end.append(h)
    features = jnp.concatenate(mid_end, axis=-1)  # [windows, frames, 753]
    max_pool, mean_pool = jnp.max(features, axis=1), jnp.mean(features, axis=1)
    # TF flattened [windows, 753, (max, mean)]: the two pools interleave.
    pooled = jnp.stack([max_pool, mean_pool], axis=-1).reshape(max_pool.shape[0], -1)
    pooled = self._norm("pool_norm")(pooled)
    hidden = nn.relu(nn.Dense(BACKEND_UNITS, name="penultimate")(pooled))
    penultimate = self._norm("penultimate_norm")(hidden)
    logits = nn.Dense(self.num_labels, name="logits")(penultimate)
    return {"logits": logits, "tag_probabilities": nn.sigmoid(logits), "mean_pool": mean_pool,
            "max_pool": max_pool, "penultimate": penultimate}


def model_dir(model_name: str) -> str:
  """The folder of a musicnn checkpoint inside the installed package."""
  if model_name not in LABEL_LISTS:
    raise UserError(f"unknown musicnn model {model_name!r}: use one of {sorted(LABEL_LISTS)}")
  spec = importlib.util.find_spec("musicnn")
  if spec is None:
    raise UserError(f"the musicnn package is not installed: {INSTALL_HINT}")
  return os.path.join(os.path.dirname(spec.origin), model_name)


def load_variables(model_name: str, network: MusicnnNetwork, window_frames: int,
                   mel_bands: int) -> dict:
  """{"params", "batch_stats"} of `network` from the checkpoint of `model_name`."""
  # TensorFlow only reads the checkpoint; nothing else here needs it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # The files are named ".index" and ".data-*": the prefix is the folder plus a separator.
  reader = tf.compat.v1.train.NewCheckpointReader(os.path.join(model_dir(model_name), ""))
  shapes = jax.eval_shape(network.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, window_frames, mel_bands), jnp.float32))
  variables = {}
  for collection, modules in shapes.items():
    for module, leaves in modules.items():
      leaf_names = _NORM_LEAVES if module.endswith("_norm") else _WEIGHT_LEAVES
      for leaf, shape in leaves.items():
        value = reader.get_tensor(f"{CHECKPOINT_NAMES[module]}/{leaf_names[leaf]}")
        # Mid-end kernels are [7, channels, 1, filters] 2-D convs in TF, 1-D convs here.
        variables.setdefault(collection, {}).setdefault(module, {})[leaf] = jnp.asarray(
            value.reshape(shape.shape), jnp.float32)
  return variables


class MusicnnTagger:
  """A pretrained musicnn: tag probabilities and embeddings per 3 s window of a clip."""

  def __init__(self, model_name: str = "MTT_musicnn"):
    with open(os.path.join(model_dir(model_name), "config.json")) as f:
      config = json.load(f)
    self.model_name = model_name
    self.sample_rate_hz = int(config["audio_rep"]["resample_sr"])
    self.n_fft = int(config["audio_rep"]["n_fft"])
    self.hop_length = int(config["audio_rep"]["hop"])
    self.mel_bands = int(config["audio_rep"]["n_mels"])
    self.window_frames = int(config["n_frames"])
    from musicnn import configuration  # pylint: disable=g-import-not-at-top  (constants only)
    self.labels = list(getattr(configuration, LABEL_LISTS[model_name]))
    self.network = MusicnnNetwork(num_labels=len(self.labels))
    self.variables = load_variables(model_name, self.network, self.window_frames, self.mel_bands)
    self._apply = jax.jit(self.network.apply)

  @property
  def window_seconds(self) -> float:
    """The length of one input window (3 s: 187 frames of 256 samples at 16 kHz)."""
    return self.window_frames * self.hop_length / self.sample_rate_hz

  def log_mel(self, audio: np.ndarray) -> jnp.ndarray:
    """audio [time] at `sample_rate_hz` -> log10(1 + 10000 mel) [frames, mel_bands]."""
    mel = spectral.mel_spectrogram(jnp.asarray(audio, jnp.float32), self.sample_rate_hz,
                                   n_fft=self.n_fft, hop_length=self.hop_length,
                                   n_mels=self.mel_bands)
    return jnp.log10(1.0 + LOG_COMPRESSION * mel)

  def windows(self, log_mel: jnp.ndarray) -> jnp.ndarray:
    """[frames, mel_bands] -> [windows, window_frames, mel_bands], back to back; a shorter
    clip is repeated to one window, as musicnn was trained ("repeat-pad")."""
    frames = log_mel.shape[0]
    if frames < self.window_frames:
      log_mel = jnp.tile(log_mel, (-(-self.window_frames // frames), 1))
      frames = log_mel.shape[0]
    count = frames // self.window_frames
    return log_mel[:count * self.window_frames].reshape(count, self.window_frames, -1)

  def apply(self, log_mel_windows: jnp.ndarray) -> dict[str, jnp.ndarray]:
    """[windows, window_frames, mel_bands] -> the network's outputs, each [windows, ...]."""
    return self._apply(self.variables, log_mel_windows)

  def _inputs(self, audio: np.ndarray, sample_rate_hz: int) -> jnp.ndarray:
    """audio [time] at any rate -> the network's input [windows, window_frames, mel_bands]."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or audio.size < self.n_fft:
      raise UserError(f"musicnn takes one mono clip of at least {self.n_fft} samples, "
                      f"got shape {audio.shape}: mix to mono and skip empty clips")
    audio = io.resample(audio, sample_rate_hz, self.sample_rate_hz)
    return self.windows(self.log_mel(audio))

  def __call__(self, audio: np.ndarray, sample_rate_hz: int) -> dict[str, np.ndarray]:
    """audio [time] at any rate -> per 3 s window:
      tag_probabilities [windows, labels], logits [windows, labels],
      mean_pool, max_pool [windows, 753] (mid-end features pooled over time),
      penultimate [windows, 200] (the last hidden layer).
    """
    return jax.tree.map(np.asarray, self.apply(self._inputs(audio, sample_rate_hz)))

  def batched(self, clips: np.ndarray, sample_rate_hz: int) -> dict[str, np.ndarray]:
    """clips [clips, time] of one length at any rate -> `__call__`'s outputs of each clip,
    each [clips, windows, ...], from one network call (one compile per number of clips): the
    windows of a story cost one dispatch, not one each. Each clip is cut and resampled on its
    own, so its outputs are `__call__`'s, not those of a window of the longer clip."""
    inputs = jnp.stack([self._inputs(clip, sample_rate_hz) for clip in clips])
    outputs = self.apply(inputs.reshape(-1, *inputs.shape[2:]))
    return jax.tree.map(lambda x: np.asarray(x).reshape(*inputs.shape[:2], *x.shape[1:]),
                        outputs)
