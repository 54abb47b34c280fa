"""MuLan: a joint music-text embedding, the source of MusicLM's conditioning tokens.

Two towers map into one 128-d L2-normalised space (paper sizes in brackets):
  audio  24 kHz -> log-mel (25 ms / 10 ms frames, 64 bands up to 8 kHz, i.e. the
         features of 16 kHz audio) -> ResNet [ResNet-50] -> MLP head -> 128-d;
         audio longer than one window [10 s] is cut into windows with a hop
         [1 s] and its embedding is the normalised mean of the windows';
  text   WordPiece ids -> BERT [BERT-base; here MiniLM-L6 weights can be
         loaded] -> mean over real tokens -> MLP head -> 128-d.
Training is CLIP's: a learnable temperature and the symmetric InfoNCE loss
over the whole global batch (`contrastive_loss`).

The log-mel is computed once over the whole input without centring, so every
window's frames are exactly the frames a crop of that window would give: the
10 s training crops and the windows of a 3 min song see the same features.

`MuLanModel` is the trainer's model (batches: 'audio' [batch, window samples],
'text_ids' and 'text_mask' [batch, length]); `embed_audio`/`embed_text` serve
the tokenizer (tokenizers/conditioning.py), which quantizes these embeddings
with a 12 x 1024 RVQ into M_A and M_T.
"""
import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from musiclm_jax.audio import rates
from musiclm_jax.audio import spectral
from musiclm_jax.layers import bert
from musiclm_jax.layers import resnet
from musiclm_jax.models.base import BaseModel, Batch, BatchSpec, Metrics, Params

TEXT_ENCODER = "text_encoder"


@dataclasses.dataclass(frozen=True)
class MuLanConfig(spectral.WindowedAudioConfig):
  """MuLan sizes (gin: `mulan.MuLanConfig`; see gin/scales/mulan_*.gin).

  Audio front end: STFT of `stft_window_samples` every `stft_hop_samples`
  (FFT size `n_fft`), `n_mels` bands from 0 to `f_max_hz`. Windows are
  `window_seconds` long every `window_hop_seconds`; both must be whole numbers
  of STFT hops. `window_batch_size` windows go through the ResNet at a time
  when embedding long audio (bounds memory; no effect on the result).
  Text: `text` sizes the BERT; with `text_checkpoint_dir` (a Hugging Face
  BERT folder, e.g. `bert.minilm_dir()`) its weights start from that
  checkpoint (`MuLanModel.load_pretrained`, which the trainer calls after
  init); `freeze_text_encoder` keeps them fixed (no backward pass through
  BERT). `tokenizer_dir` holds tokenizer.json (default: MiniLM's, which is
  the bert-base-uncased vocabulary).
  Heads: an MLP of `projection_layers` layers (1 = linear) to `embedding_dim`.
  """
  sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ
  window_seconds: float = 10.0
  window_hop_seconds: float = 1.0
  n_fft: int = 1024
  stft_window_samples: int = 600
  stft_hop_samples: int = 240
  n_mels: int = 64
  f_max_hz: float = 8000.0
  resnet_stage_sizes: tuple[int, ...] = (3, 4, 6, 3)
  resnet_width: int = 64
  resnet_groups: int = 32
  text: bert.BertConfig = bert.BertConfig()
  text_checkpoint_dir: str | None = None
  freeze_text_encoder: bool = False
  tokenizer_dir: str | None = None
  max_text_length: int = 128
  embedding_dim: int = 128
  projection_layers: int = 2
  init_temperature: float = 0.07
  max_logit_scale: float = 100.0
  window_batch_size: int = 16

  def __post_init__(self):
    self.check_windows("MuLan")

  def num_frames(self, num_samples: int) -> int:
    """Log-mel frames of `num_samples` (uncentred STFT)."""
    return 1 + (max(num_samples, self.n_fft) - self.n_fft) // self.stft_hop_samples

  @property
  def frames_per_window(self) -> int:
    return self.num_frames(self.window_samples)


def window_starts(num_samples: int, config: MuLanConfig) -> np.ndarray:
  """Start frames [windows] of the windows covering `num_samples` of audio.

  One window for audio up to a window long (shorter audio is zero-padded);
  otherwise one every hop, plus one ending at the last frame if the hop does
  not land there, so the tail is covered too.
  """
  total = config.num_frames(max(num_samples, config.window_samples))
  span = config.frames_per_window
  hop = config.window_hop_samples // config.stft_hop_samples
  starts = np.arange(0, total - span + 1, hop)
  if starts[-1] != total - span:
    starts = np.append(starts, total - span)
  return starts


def _normalize(x: jax.Array) -> jax.Array:
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class Projection(nn.Module):
  """MLP head [batch, features] -> [batch, dim] (GELU between layers; 1 layer = linear)."""
  dim: int
  layers: int

  @nn.compact
  def __call__(self, x):
    for i in range(self.layers):
      last = i == self.layers - 1
      features = self.dim if last else x.shape[-1]
      kernel_init = nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp"))
      bias_init = nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",))
      x = nn.Dense(features, kernel_init=kernel_init, bias_init=bias_init, name=f"dense_{i}")(x)
      if not last:
        x = nn.gelu(x)
    return x


class MuLan(nn.Module):
  """Both towers and the temperature; the model class does windowing and the loss."""
  config: MuLanConfig

  def setup(self):
    c = self.config
    self.audio_encoder = resnet.ResNet(tuple(c.resnet_stage_sizes), c.resnet_width, c.resnet_groups)
    self.audio_projection = Projection(c.embedding_dim, c.projection_layers)
    self.text_encoder = bert.BertEncoder(c.text)
    self.text_projection = Projection(c.embedding_dim, c.projection_layers)
    self.log_logit_scale = self.param(
        "log_logit_scale", nn.with_logical_partitioning(
            nn.initializers.constant(math.log(1.0 / c.init_temperature)), ()), ())

  def __call__(self, mels, ids, mask):
    """For init: ([windows, D], [batch, D], scale)."""
    return self.embed_windows(mels), self.embed_text(ids, mask), self.logit_scale()

  def embed_windows(self, mels):
    """log-mel windows [windows, frames_per_window, n_mels] -> [windows, D], normalised."""
    features = self.audio_encoder(mels[..., None])
    return _normalize(self.audio_projection(features))

  def embed_text(self, ids, mask, deterministic: bool = True):
    """ids, mask [batch, length] -> [batch, D], normalised."""
    hidden = self.text_encoder(ids, mask, deterministic=deterministic)
    pooled = bert.mean_pool(hidden, mask)
    if self.config.freeze_text_encoder:
      pooled = jax.lax.stop_gradient(pooled)
    return _normalize(self.text_projection(pooled))

  def logit_scale(self):
    # Clipped as in CLIP: beyond 100 the softmax saturates and training destabilises.
    return jnp.exp(jnp.minimum(self.log_logit_scale, math.log(self.config.max_logit_scale)))


def contrastive_loss(audio_embeddings: jax.Array, text_embeddings: jax.Array,
                     logit_scale: jax.Array) -> tuple[jax.Array, Metrics]:
  """Symmetric InfoNCE: audio i and text i are a pair, every other text/audio a negative.

  audio_embeddings, text_embeddings: [batch, D], normalised; under jit with the
  batch sharded over devices, the [batch, batch] logits span the global batch,
  so every device's examples are negatives for every other's.
  Returns (mean of the audio->text and text->audio cross-entropies, metrics).
  """
  logits = logit_scale * jnp.einsum("ad,td->at", audio_embeddings, text_embeddings)
  logits = nn.with_logical_constraint(logits, ("batch", None))
  positives = jnp.diagonal(logits)
  audio_to_text = jnp.mean(jax.nn.logsumexp(logits, axis=1) - positives)
  text_to_audio = jnp.mean(jax.nn.logsumexp(logits, axis=0) - positives)
  labels = jnp.arange(logits.shape[0])
  return (audio_to_text + text_to_audio) / 2, {
      "audio_to_text_loss": audio_to_text, "text_to_audio_loss": text_to_audio,
      "audio_to_text_accuracy": jnp.mean(jnp.argmax(logits, axis=1) == labels),
      "text_to_audio_accuracy": jnp.mean(jnp.argmax(logits, axis=0) == labels),
      "logit_scale": logit_scale}


def contrastive_optimizer(learning_rate: optax.Schedule | float = 1e-4, weight_decay: float = 0.1,
                          b1: float = 0.9, b2: float = 0.98, eps: float = 1e-6,
                          clip_grad_norm: float | None = 1.0, freeze_text_encoder: bool = False,
                          text_encoder_learning_rate_scale: float = 1.0) -> optax.GradientTransformation:
  """AdamW as CLIP trains: no decay on biases, norms or the temperature.

  freeze_text_encoder: leave BERT's params untouched (set it with the model's
  `MuLanConfig.freeze_text_encoder`; gin binds both to one macro).
  text_encoder_learning_rate_scale: a pre-trained BERT usually wants a smaller rate.
  """
  def adamw(scale):
    lr = (lambda step: scale * learning_rate(step)) if callable(learning_rate) else scale * learning_rate
    return optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                       mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params))

  def labels(params):
    text_label = "frozen" if freeze_text_encoder else "text"
    return jax.tree_util.tree_map_with_path(
        lambda path, _: text_label if path[0].key == TEXT_ENCODER else "rest", params)

  tx = optax.multi_transform({"rest": adamw(1.0), "text": adamw(text_encoder_learning_rate_scale),
                              "frozen": optax.set_to_zero()}, labels)
  return optax.chain(optax.clip_by_global_norm(clip_grad_norm), tx) if clip_grad_norm else tx


class MuLanModel(BaseModel):
  """MuLan as a trainer model, plus the embedding API the tokenizer uses."""

  def __init__(self, config: MuLanConfig = MuLanConfig()):
    self.config = config
    self.module = MuLan(config)

  def init(self, rng: jax.Array, batch_spec: BatchSpec) -> Params:
    c = self.config
    length = batch_spec["text_ids"].shape[1] if "text_ids" in batch_spec else c.max_text_length
    mels = jnp.zeros((1, c.frames_per_window, c.n_mels), jnp.float32)
    ids = jnp.zeros((1, length), jnp.int32)
    return self.module.init(rng, mels, ids, jnp.ones_like(ids))["params"]

  def load_pretrained(self, params: Params) -> Params:
    """With `text_checkpoint_dir`, the text tower starts from that BERT (e.g. MiniLM)."""
    c = self.config
    if not c.text_checkpoint_dir:
      return params
    loaded = bert.load_pretrained(c.text_checkpoint_dir, c.text)
    return dict(params, **{TEXT_ENCODER: jax.tree.map(
        lambda param, value: np.asarray(value, param.dtype), params[TEXT_ENCODER], loaded)})

  def embed_audio(self, params: Params, audio: jax.Array) -> jax.Array:
    """audio [batch, samples] at config.sample_rate_hz -> [batch, D], normalised.

    The normalised mean over the embeddings of every window (`window_starts`).
    """
    c = self.config
    batch, samples = audio.shape
    audio = jnp.pad(audio.astype(jnp.float32), ((0, 0), (0, max(c.window_samples - samples, 0))))
    mels = c.log_mel(audio)
    starts = window_starts(samples, c)
    windows = mels[:, starts[:, None] + np.arange(c.frames_per_window)]  # [batch, n, frames, mels]
    flat = windows.reshape(-1, *windows.shape[2:])
    embed = lambda x: self.module.apply({"params": params}, x, method=MuLan.embed_windows)
    if flat.shape[0] <= c.window_batch_size:
      embeddings = embed(flat)
    else:
      chunk = c.window_batch_size
      padded = jnp.pad(flat, ((0, -flat.shape[0] % chunk), (0, 0), (0, 0)))
      embeddings = jax.lax.map(embed, padded.reshape(-1, chunk, *flat.shape[1:]))
      embeddings = embeddings.reshape(-1, embeddings.shape[-1])[:flat.shape[0]]
    return _normalize(jnp.mean(embeddings.reshape(batch, len(starts), -1), axis=1))

  def embed_text(self, params: Params, ids: jax.Array, mask: jax.Array,
                 rng: jax.Array | None = None) -> jax.Array:
    """ids, mask [batch, length] -> [batch, D], normalised (dropout only with an rng)."""
    rngs = {"dropout": rng} if rng is not None else {}
    return self.module.apply({"params": params}, ids, mask, rng is None,
                             method=MuLan.embed_text, rngs=rngs)

  def logit_scale(self, params: Params) -> jax.Array:
    return self.module.apply({"params": params}, method=MuLan.logit_scale)

  def loss_fn(self, params: Params, batch: Batch, rng: jax.Array | None) -> tuple[jax.Array, Metrics]:
    audio = self.embed_audio(params, batch["audio"])
    text = self.embed_text(params, batch["text_ids"], batch["text_mask"],
                           None if self.config.freeze_text_encoder else rng)
    audio = nn.with_logical_constraint(audio, ("batch", "embed"))
    text = nn.with_logical_constraint(text, ("batch", "embed"))
    return contrastive_loss(audio, text, self.logit_scale(params))
