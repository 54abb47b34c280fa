"""The melody embedding: a small ViT over mel frames, trained so that clips of one melody meet.

MusicLM (section 6, appendix C) conditions on a melody through an embedding
that ignores timbre: a ViT-like Transformer over the temporal frames of a mel
spectrogram, one L2-normalised embedding per `window_seconds` [4 s] of audio,
trained with the semi-hard triplet loss (Schroff et al. 2015) on pairs of
clips that carry the same melody with different acoustics.

  audio 24 kHz -> log-mel (uncentred STFT, `n_mels` bands to `f_max_hz`)
    -> [frames, n_mels] cut into strips of `patch_frames` frames (a "patch"
       spans every band: the tokens are time steps, the ViT's temporal frames)
    -> linear to d_model -> pre-norm Transformer blocks with a bidirectional
       T5 relative position bias -> mean over time -> RMSNorm -> linear
    -> embedding_dim [192], L2-normalised.

Long audio is cut into windows every `window_hop_seconds` [3 s] (`window_starts`),
which is what gives the melody tokens their rate (three windows per 10 s).

`MelodyModel` is the trainer's model (batches: 'anchor' and 'positive',
[batch, window samples], row i of both the same melody); `embed_audio` serves
the melody tokenizer (tokenizers/melody.py).
"""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import musiclm_spec
from musiclm_jax.audio import rates
from musiclm_jax.audio import spectral
from musiclm_jax.layers import initializers
from musiclm_jax.layers import normalization
from musiclm_jax.layers import relative_position
from musiclm_jax.layers import transformer
from musiclm_jax.models.base import BaseModel, Batch, BatchSpec, Metrics, Params


@dataclasses.dataclass(frozen=True)
class MelodyConfig(spectral.WindowedAudioConfig):
  """Melody embedder sizes (gin: `melody.MelodyConfig`; see gin/scales/melody_*.gin).

  Front end: STFT of `stft_window_samples` every `stft_hop_samples` (FFT size
  `n_fft`), `n_mels` bands from 0 to `f_max_hz`; `patch_frames` STFT frames
  per Transformer token. Windows are `window_seconds` long every
  `window_hop_seconds`; both must be whole numbers of STFT hops.
  Transformer: `num_layers` pre-norm blocks of `num_heads` heads of `head_dim`
  (None: d_model // num_heads) over `d_model` with a gated-GELU feed-forward of
  `d_ff`. Loss: squared distances between unit vectors, `margin` as FaceNet's.
  """
  sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ
  window_seconds: float = 4.0
  window_hop_seconds: float = musiclm_spec.MELODY_HOP_SECONDS  # the stages read tokens at this rate
  n_fft: int = 1024
  stft_window_samples: int = 600
  stft_hop_samples: int = 240
  n_mels: int = 128
  f_max_hz: float = 8000.0
  patch_frames: int = 4
  d_model: int = 512
  num_layers: int = 12
  num_heads: int = 6
  head_dim: int | None = 64
  d_ff: int = 1024
  dropout_rate: float = 0.0
  embedding_dim: int = 192
  margin: float = 0.2
  window_batch_size: int = 16

  def __post_init__(self):
    self.check_windows("melody")

  @property
  def frames_per_window(self) -> int:
    """Log-mel frames of one window (uncentred STFT)."""
    return 1 + (self.window_samples - self.n_fft) // self.stft_hop_samples

  @property
  def stack(self) -> transformer.TransformerConfig:
    """The block sizes, in the form the shared Transformer layer takes."""
    return transformer.TransformerConfig(
        d_model=self.d_model, num_layers=self.num_layers, num_heads=self.num_heads,
        head_dim=self.head_dim, d_ff=self.d_ff, dropout_rate=self.dropout_rate)


def num_windows(num_samples: int, config: MelodyConfig) -> int:
  """Windows covering `num_samples`: one every hop until the audio is covered (at least one)."""
  beyond_first = max(num_samples - config.window_samples, 0)
  return 1 + math.ceil(beyond_first / config.window_hop_samples)


def window_starts(num_samples: int, config: MelodyConfig) -> np.ndarray:
  """Start samples [windows] of the windows of `num_samples`, a regular grid.

  Unlike MuLan (which averages its windows) the windows here become tokens at
  a fixed rate, so there is no extra window aligned to the end: the last one
  runs past the audio and that part is zeros (`embed_audio` pads).
  """
  return np.arange(num_windows(num_samples, config)) * config.window_hop_samples


def _normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class MelodyEncoder(nn.Module):
  """log-mel windows [batch, frames_per_window, n_mels] -> [batch, embedding_dim], normalised."""
  config: MelodyConfig

  @nn.compact
  def __call__(self, mels, *, deterministic: bool = True):
    c = self.config
    stack = c.stack
    batch, frames, bands = mels.shape
    tokens = frames // c.patch_frames
    patches = mels[:, :tokens * c.patch_frames].reshape(batch, tokens, c.patch_frames * bands)
    kernel = self.param("patch_embedding",
                        initializers.fan_in((None, "embed"), in_axis=0, out_axis=1),
                        (c.patch_frames * bands, c.d_model))
    x = nn.with_logical_constraint(jnp.einsum("btp,pd->btd", patches, kernel),
                                   ("batch", "length", "embed"))
    positions = jnp.arange(tokens)
    bias = relative_position.RelativePositionBias(
        c.num_heads, stack.relative_attention_num_buckets, stack.relative_attention_max_distance,
        bidirectional=True, name="relative_position_bias")(positions, positions)[None]
    # The stage Transformers' block; the bias it is given (no causal mask) makes it bidirectional.
    layers = nn.scan(transformer.DecoderLayer, variable_axes={"params": 0},
                     split_rngs={"params": True, "dropout": True},
                     in_axes=(nn.broadcast, nn.broadcast, nn.broadcast), length=c.num_layers,
                     metadata_params={nn.PARTITION_NAME: "layers"})
    x, _ = layers(stack, deterministic, name="layers")(x, bias, None, None)
    pooled = normalization.RMSNorm(name="final_norm")(jnp.mean(x, axis=1))
    head = self.param("head", initializers.fan_in(("embed", None), in_axis=0, out_axis=1),
                      (c.d_model, c.embedding_dim))
    return _normalize(pooled @ head)


def pairwise_squared_distances(embeddings: jax.Array) -> jax.Array:
  """[n, D] -> [n, n] squared Euclidean distances (clipped at 0 against rounding)."""
  squared = jnp.sum(jnp.square(embeddings), axis=-1)
  gram = jnp.einsum("id,jd->ij", embeddings, embeddings)
  return jnp.maximum(squared[:, None] + squared[None, :] - 2.0 * gram, 0.0)


def semi_hard_triplet_loss(anchors: jax.Array, positives: jax.Array,
                           margin: float) -> tuple[jax.Array, Metrics]:
  """FaceNet's semi-hard triplet loss over every anchor-positive pair of the batch.

  anchors, positives: [batch, D]; row i of both is one melody, every other row
  of either is a negative. Each of the 2 * batch clips is an anchor once, its
  partner the positive. With d_p its squared distance to the positive and
  d_n to a negative, the semi-hard negatives are those with
  d_p < d_n < d_p + margin; the term is d_p - d_n + margin for the closest of
  them. With none (all negatives hard or easy), the term is the batch-all one,
  the mean of max(d_p - d_n + margin, 0) over every negative, so hard
  negatives still teach. Under jit with the batch sharded over devices the
  [2 * batch, 2 * batch] distances span the global batch.
  Returns (mean term, metrics).
  """
  batch = anchors.shape[0]
  embeddings = nn.with_logical_constraint(jnp.concatenate([anchors, positives]), ("batch", "embed"))
  distances = nn.with_logical_constraint(pairwise_squared_distances(embeddings), ("batch", None))
  labels = jnp.tile(jnp.arange(batch), 2)
  partner = jnp.concatenate([jnp.arange(batch, 2 * batch), jnp.arange(batch)])
  positive = jnp.take_along_axis(distances, partner[:, None], axis=1)  # [2b, 1]
  negative = labels[:, None] != labels[None, :]
  semi_hard = negative & (distances > positive) & (distances < positive + margin)
  has_semi_hard = jnp.any(semi_hard, axis=1)
  closest = jnp.min(jnp.where(semi_hard, distances, jnp.inf), axis=1)
  semi_hard_term = positive[:, 0] - jnp.where(has_semi_hard, closest, 0.0) + margin
  hinge = jnp.where(negative, jnp.maximum(positive - distances + margin, 0.0), 0.0)
  batch_all_term = jnp.sum(hinge, axis=1) / (2 * batch - 2)
  terms = jnp.where(has_semi_hard, semi_hard_term, batch_all_term)
  nearest = jnp.argmin(jnp.where(jnp.eye(2 * batch, dtype=bool), jnp.inf, distances), axis=1)
  return jnp.mean(terms), {
      "semi_hard_fraction": jnp.mean(has_semi_hard),
      "positive_distance": jnp.mean(positive),
      "negative_distance": jnp.sum(jnp.where(negative, distances, 0.0)) / jnp.sum(negative),
      "retrieval_accuracy": jnp.mean(nearest == partner)}


class MelodyModel(BaseModel):
  """The melody embedder as a trainer model, plus the per-window embedding the tokenizer uses."""

  def __init__(self, config: MelodyConfig = MelodyConfig()):
    self.config = config
    self.module = MelodyEncoder(config)

  def init(self, rng: jax.Array, batch_spec: BatchSpec) -> Params:
    del batch_spec  # every input is one window
    c = self.config
    mels = jnp.zeros((1, c.frames_per_window, c.n_mels), jnp.float32)
    return self.module.init(rng, mels)["params"]

  def embed_windows(self, params: Params, audio: jax.Array,
                    rng: jax.Array | None = None) -> jax.Array:
    """audio [batch, window_samples] -> [batch, embedding_dim], normalised (dropout with an rng)."""
    rngs = {"dropout": rng} if rng is not None else {}
    mels = self.config.log_mel(jnp.asarray(audio, jnp.float32))
    return self.module.apply({"params": params}, mels, deterministic=rng is None, rngs=rngs)

  def embed_audio(self, params: Params, audio: jax.Array) -> jax.Array:
    """audio [batch, samples] -> [batch, windows, embedding_dim], one per `window_starts`."""
    c = self.config
    batch, samples = audio.shape
    starts = window_starts(samples, c)
    audio = jnp.pad(audio.astype(jnp.float32),
                    ((0, 0), (0, starts[-1] + c.window_samples - samples)))
    windows = audio[:, starts[:, None] + np.arange(c.window_samples)]  # [batch, n, samples]
    flat = windows.reshape(-1, c.window_samples)
    chunk = c.window_batch_size
    if flat.shape[0] <= chunk:
      embeddings = self.embed_windows(params, flat)
    else:
      padded = jnp.pad(flat, ((0, -flat.shape[0] % chunk), (0, 0)))
      embeddings = jax.lax.map(lambda x: self.embed_windows(params, x),
                               padded.reshape(-1, chunk, c.window_samples))
      embeddings = embeddings.reshape(-1, c.embedding_dim)[:flat.shape[0]]
    return embeddings.reshape(batch, len(starts), c.embedding_dim)

  def loss_fn(self, params: Params, batch: Batch,
              rng: jax.Array | None) -> tuple[jax.Array, Metrics]:
    anchor_rng = positive_rng = None
    if rng is not None:
      anchor_rng, positive_rng = jax.random.split(rng)
    anchors = self.embed_windows(params, batch["anchor"], anchor_rng)
    positives = self.embed_windows(params, batch["positive"], positive_rng)
    return semi_hard_triplet_loss(anchors, positives, self.config.margin)
