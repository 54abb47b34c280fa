"""musicnn in Flax against the author's own TF graph (from the checkpoint's .meta) on a chord."""
import os

import librosa
import numpy as np
import pytest

pytest.importorskip("musicnn", reason="musicnn is not installed (pip install --no-deps musicnn==0.1.0)")

from musiclm_jax.eval import musicnn  # pylint: disable=g-import-not-at-top


def _chord(seconds, sample_rate_hz):
  """A C major triad of decaying plucked tones with harmonics, re-struck every half second: [time]."""
  t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
  envelope = np.exp(-4.0 * (t % 0.5))
  audio = sum(np.sin(2 * np.pi * f * k * t) / k for f in (261.63, 329.63, 392.0) for k in (1, 2, 3))
  return (0.2 * envelope * audio).astype(np.float32)


def _tf_graph_outputs(model_name, log_mel_windows):
  """The training graph saved with the checkpoint, cut to its inference outputs, run in its own
  tf.compat.v1 Graph and Session (eager execution stays on for everything else)."""
  import tensorflow as tf
  from tensorflow.core.protobuf import meta_graph_pb2
  prefix = os.path.join(musicnn.model_dir(model_name), "")
  meta_graph = meta_graph_pb2.MetaGraphDef()
  with open(prefix + ".meta", "rb") as f:
    meta_graph.ParseFromString(f.read())
  outputs = {"tag_probabilities": "model/Sigmoid", "logits": "model/dense_1/BiasAdd",
             "penultimate": "model/batch_normalization_10/batchnorm/add_1",
             "mean_pool": "model/moments/Squeeze", "max_pool": "model/Max"}
  graph_def = tf.compat.v1.graph_util.extract_sub_graph(meta_graph.graph_def, list(outputs.values()))
  for node in graph_def.node:  # the training graph's recorded shapes do not re-import
    node.attr.pop("_output_shapes", None)
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.import_graph_def(graph_def, name="")
  reader = tf.compat.v1.train.NewCheckpointReader(prefix)
  feed = {graph.get_tensor_by_name(n.name + "/read:0"): reader.get_tensor(n.name)
          for n in graph_def.node if n.op == "VariableV2"}
  feed[graph.get_tensor_by_name("model/Placeholder:0")] = log_mel_windows
  feed[graph.get_tensor_by_name("model/Placeholder_2:0")] = False  # is_training
  with tf.compat.v1.Session(graph=graph) as session:
    values = session.run({k: v + ":0" for k, v in outputs.items()}, feed)
  assert tf.executing_eagerly()
  return {k: np.squeeze(v, axis=-1) if v.ndim == 3 else v for k, v in values.items()}


@pytest.fixture(scope="module")
def mtt_tagger():
  return musicnn.MusicnnTagger("MTT_musicnn")


@pytest.mark.parametrize("model_name", ["MTT_musicnn", "MSD_musicnn"])
def test_port_matches_the_tf_graph(model_name, mtt_tagger):
  tagger = mtt_tagger if model_name == "MTT_musicnn" else musicnn.MusicnnTagger(model_name)
  windows = np.asarray(tagger.windows(tagger.log_mel(_chord(6.5, tagger.sample_rate_hz))))
  assert windows.shape == (2, 187, 96)
  expected = _tf_graph_outputs(model_name, windows)
  got = tagger.apply(windows)
  for name, value in expected.items():
    scale = np.max(np.abs(value))
    np.testing.assert_allclose(np.asarray(got[name]), value, atol=1e-4 * scale, err_msg=name)


def test_front_end_matches_librosa_and_short_clips_are_repeated(mtt_tagger):
  tagger = mtt_tagger
  audio = _chord(2.0, tagger.sample_rate_hz)
  reference = np.log10(1 + 10000 * librosa.feature.melspectrogram(
      y=audio, sr=16000, n_fft=512, hop_length=256, n_mels=96)).T
  np.testing.assert_allclose(np.asarray(tagger.log_mel(audio)), reference, rtol=1e-4, atol=1e-4)
  outputs = tagger(audio, tagger.sample_rate_hz)  # 2 s: one window, the clip repeated
  assert outputs["tag_probabilities"].shape == (1, 50) and outputs["mean_pool"].shape == (1, 753)
  assert outputs["penultimate"].shape == (1, 200)
  assert np.all((outputs["tag_probabilities"] >= 0) & (outputs["tag_probabilities"] <= 1))


def test_loud_input_stays_finite(mtt_tagger):
  # musicnn's extractor computes 10000 * float16(mel): inf once a mel bin exceeds 6.55.
  loud = 4.0 * _chord(3.0, mtt_tagger.sample_rate_hz)
  mel = 10 ** np.asarray(mtt_tagger.log_mel(loud)) - 1
  with np.errstate(over="ignore"):
    assert np.isinf(mel.astype(np.float16) * np.float16(10000)).any()
  outputs = mtt_tagger(loud, mtt_tagger.sample_rate_hz)
  assert all(np.all(np.isfinite(v)) for v in outputs.values())
