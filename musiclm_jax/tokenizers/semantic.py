"""Semantic tokens S: w2v-BERT MLM-layer features quantized by k-means, 25 per second.

  tokenizer = SemanticTokenizer.load(w2v_bert_export_dir, kmeans_path)
  tokens = tokenizer.tokenize(audio_24k)       # [batch, ceil(samples / 960)] int32
  distances = tokenizer.distance_matrix()      # [K, K], for the memorization analysis

The k-means file comes from `tokenizers/kmeans_fit.py` (binary: musiclm_jax/fit_kmeans.py).
"""
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax.errors import UserError
from musiclm_jax.layers import kmeans as kmeans_lib
from musiclm_jax.models import w2v_bert


class SemanticTokenizer:
  """A frozen w2v-BERT + k-means as the cascade's `tokenizers.SemanticTokenizer`."""

  def __init__(self, model: w2v_bert.W2vBertModel, params, codebook: kmeans_lib.Codebook,
               layer: int):
    config = model.config
    fitted = codebook.metadata
    for key, value in (("layer", layer), ("frame_rate_hz", config.frame_rate_hz),
                       ("sample_rate_hz", config.sample_rate_hz)):
      if key in fitted and fitted[key] != value:
        raise UserError(f"the k-means file was fitted with {key}={fitted[key]} but the tokenizer "
                        f"uses {value}: refit k-means (python -m musiclm_jax.fit_kmeans) or match it")
    self.model = model
    self.params = params
    self.codebook = codebook
    self.layer = layer
    self.codebook_size = codebook.num_clusters
    self.input_sample_rate_hz = config.input_sample_rate_hz
    self.frame_rate_hz = config.frame_rate_hz
    self._features = jax.jit(lambda p, audio: model.features(p, audio, layer))
    self._tokenize = jax.jit(lambda p, audio: codebook.assign(model.features(p, audio, layer)))

  @classmethod
  def load(cls, w2v_bert_export_dir: str, kmeans_path: str,
           layer: int | None = None) -> "SemanticTokenizer":
    """From a musiclm-export folder of a w2v-BERT run and a k-means file.

    layer: MLM-module layer to read (1-based); None takes the one k-means was fitted on.
    """
    codebook = kmeans_lib.Codebook.load(kmeans_path)
    model, params = load_w2v_bert(w2v_bert_export_dir)
    return cls(model, params, codebook, codebook.metadata["layer"] if layer is None else layer)

  def num_frames(self, num_samples: int) -> int:
    """ceil(num_samples / 960) at 24 kHz: two SoundStream frames per token."""
    return self.model.num_frames(num_samples)

  def features(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> [batch, num_frames(samples), d_model] float32."""
    return np.asarray(self._features(self.params, jnp.asarray(audio, jnp.float32)))

  def tokenize(self, audio: np.ndarray) -> np.ndarray:
    """audio [batch, samples] at 24 kHz -> S [batch, num_frames(samples)] int32 in [0, codebook_size)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2 or audio.shape[1] == 0:
      raise UserError(f"tokenize takes audio [batch, samples] with samples > 0, got shape {audio.shape}")
    return np.asarray(self._tokenize(self.params, jnp.asarray(audio)))

  def distance_matrix(self) -> np.ndarray:
    """[codebook_size, codebook_size] Euclidean distances between the centroids."""
    return self.codebook.distance_matrix()


def load_w2v_bert(export_dir: str) -> tuple[w2v_bert.W2vBertModel, dict]:
  """(model, params) of a musiclm-export folder of a w2v-BERT run."""
  model = gin_models.model_from_export(export_dir, w2v_bert.W2vBertModel, "w2v-BERT")
  spec = {"audio": jax.ShapeDtypeStruct((1, model.config.input_hop_length), jnp.float32)}
  return gin_models.load_export(export_dir, spec, model)

