r"""w2v-BERT (Chung et al. 2021), trained from scratch: the features behind MusicLM's semantic tokens.

  audio [batch, samples] at 24 kHz  (what every tokenizer takes)
  -> resampled on device to 16 kHz, padded to whole 40 ms frames
  -> log-mel (80 bins, 25 ms window, 10 ms hop: 100 Hz)
  -> two 3x3 stride-2 convolutions: 25 Hz frames, projected to d_model   = features
  -> span masking (wav2vec 2.0: p=0.065 starts, spans of 10 frames)
  -> contrastive Conformer module -> MLM Conformer module -> MLM head
A Gumbel-softmax quantizer on the unmasked features gives both targets: its
code vectors for the contrastive loss (wav2vec 2.0: true code among distractors
from other masked frames of the clip, cosine / temperature, plus the diversity
loss) and its code ids for the MLM loss (cross-entropy at masked frames).

MusicLM reads the 7th layer of the MLM module of the 600M model (`features`);
gin/scales/w2v_bert_*.gin size it. The Gumbel temperature anneals with the
step, so the model has its own `train_step` (the trainer still jits, shards,
checkpoints and logs it; grad_accum_steps must stay 1).

Parameter count: python -m musiclm_jax.tools.w2v_bert_param_count --scale=paper
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
from musiclm_jax.layers import conformer as conformer_lib
from musiclm_jax.layers import initializers
from musiclm_jax.layers import normalization
from musiclm_jax.models.base import BaseModel, Batch, BatchSpec, Metrics, Params

SUBSAMPLING = 4  # two stride-2 convolutions
_CONV_AXES = ("conv_height", "conv_width", "conv_in", "conv_out")


@dataclasses.dataclass(frozen=True)
class W2vBertConfig:
  """Sizes and training hyper-parameters (gin: `w2v_bert.W2vBertConfig`).

  input_sample_rate_hz: rate of the audio given to the model; sample_rate_hz:
    the rate its front end runs at (resampled on device).
  mel_hop_length, n_fft, num_mel_bins: log-mel front end at sample_rate_hz.
  log_mel_mean_db, log_mel_std_db: global normalisation of the log-mel (dB)
    input, as speech front ends do: statistics of the training corpus, so the
    defaults (0, 1) leave it unnormalised and each experiment's gin sets its
    corpus's (gin/experiments/w2v_bert_synth.gin).
  mean_normalization_seconds: when set, each mel bin's mean over a centred
    window of this many seconds is subtracted too (sliding mean normalisation,
    as speech front ends remove the channel). An instrument's spectral envelope
    and the loudness are slowly varying offsets of the log-mel: removing them
    leaves the notes, so the codes (and the semantic tokens) follow melody and
    rhythm rather than timbre, which the acoustic tokens carry.
  subsampling_channels: channels of the two subsampling convolutions.
  conformer: block sizes, shared by both modules.
  contrastive_layers, mlm_layers: depth of the two modules.
  num_codebooks, codebook_size: quantizer groups G and entries V (MLM targets
    are the V-way ids of each group).
  codevector_dim: size of quantized targets and of the contrastive projection.
  mask_probability, mask_span_frames: span masking (wav2vec 2.0).
  num_negatives, contrastive_temperature: distractors and cosine temperature.
  gumbel_temperature: (start, end, decay per step): max(end, start * decay^step).
  fixed_code_selection: the quantizer's logits take no gradient, so a frame's
    code (its MLM target) moves only as the features do, as with BEST-RQ's
    random-projection quantizer; the code vectors still learn. The diversity
    loss and the Gumbel temperature then act on nothing. For short runs, where
    a learned code choice either collapses or keeps reshuffling (see
    gin/experiments/w2v_bert_synth.gin).
  """
  input_sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ
  sample_rate_hz: int = rates.W2V_BERT_SAMPLE_RATE_HZ
  mel_hop_length: int = 160
  n_fft: int = 400
  num_mel_bins: int = 80
  log_mel_mean_db: float = 0.0
  log_mel_std_db: float = 1.0
  mean_normalization_seconds: float | None = None
  subsampling_channels: int = 128
  conformer: conformer_lib.ConformerConfig = conformer_lib.ConformerConfig()
  contrastive_layers: int = 12
  mlm_layers: int = 12
  num_codebooks: int = 1
  codebook_size: int = 1024
  codevector_dim: int = 768
  mask_probability: float = 0.065
  mask_span_frames: int = 10
  num_negatives: int = 100
  contrastive_temperature: float = 0.1
  gumbel_temperature: tuple[float, float, float] = (2.0, 0.5, 0.999995)
  diversity_weight: float = 0.1
  mlm_weight: float = 1.0
  fixed_code_selection: bool = False

  def __post_init__(self):
    if (self.input_sample_rate_hz * self.mel_hop_length * SUBSAMPLING) % self.sample_rate_hz:
      raise ValueError(f"a frame of {self.mel_hop_length * SUBSAMPLING} samples at "
                       f"{self.sample_rate_hz} Hz is not a whole number of samples at "
                       f"{self.input_sample_rate_hz} Hz: change mel_hop_length")
    if self.codevector_dim % self.num_codebooks:
      raise ValueError(f"codevector_dim {self.codevector_dim} must be divisible by "
                       f"num_codebooks {self.num_codebooks}")

  @property
  def frame_rate_hz(self) -> float:
    return self.sample_rate_hz / (self.mel_hop_length * SUBSAMPLING)

  @property
  def input_hop_length(self) -> int:
    """Input samples per frame: 960 at 24 kHz (two SoundStream frames)."""
    return self.input_sample_rate_hz * self.mel_hop_length * SUBSAMPLING // self.sample_rate_hz

  def num_frames(self, num_samples: int) -> int:
    return -(-num_samples // self.input_hop_length)


def _polyphase(from_hz: int, to_hz: int, zero_crossings: int = 16, rolloff: float = 0.945):
  """`resample`'s filter geometry: (up, down, cutoff in cycles per input sample,
  half width and per-phase start of the taps, kernel width in input samples)."""
  g = math.gcd(from_hz, to_hz)
  up, down = to_hz // g, from_hz // g
  cutoff = 0.5 * min(1.0, up / down) * rolloff
  half_width = int(math.ceil(zero_crossings / (2 * cutoff)))
  bases = [(p * down) // up for p in range(up)]
  return up, down, cutoff, half_width, bases, max(bases) + 2 * half_width + 2


def resample(audio: jax.Array, from_hz: int, to_hz: int, zero_crossings: int = 16,
             rolloff: float = 0.945, kaiser_beta: float = 8.6) -> jax.Array:
  """Kaiser-windowed sinc resampling on device: [batch, time] -> [batch, ceil(time * to / from)].

  Polyphase: output m = up * j + p sits at input time down * j + p * down / up,
  so each of the `up` phases is one stride-`down` convolution with its own
  fractional-delay filter; the filters are built with numpy at trace time.
  """
  if from_hz == to_hz:
    return audio
  up, down, cutoff, half_width, bases, width = _polyphase(from_hz, to_hz, zero_crossings, rolloff)
  kernel = np.zeros((width, up))
  for p in range(up):
    taps = np.arange(-half_width, half_width + 2)
    tau = (p * down % up) / up - taps  # output time minus input sample time
    window = np.i0(kaiser_beta * np.sqrt(np.clip(1 - (tau / (half_width + 1)) ** 2, 0, 1)))
    h = 2 * cutoff * np.sinc(2 * cutoff * tau) * window / np.i0(kaiser_beta)
    kernel[bases[p] + taps + half_width, p] = h / h.sum()  # unit gain at DC for every phase
  num_samples = audio.shape[-1]
  num_out = -(-num_samples * up // down)
  steps = -(-num_out // up)
  right = max(0, down * (steps - 1) + width - half_width - num_samples)
  padded = jnp.pad(audio.astype(jnp.float32), ((0, 0), (half_width, right)))[..., None]
  y = jax.lax.conv_general_dilated(padded, jnp.asarray(kernel, jnp.float32)[:, None, :], (down,),
                                   "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
  return y[:, :steps].reshape(audio.shape[0], steps * up)[:, :num_out]


def _resample_taps(config: W2vBertConfig) -> int:
  """Kernel taps per output sample of the front end's `resample` (0 when the rates match)."""
  if config.input_sample_rate_hz == config.sample_rate_hz:
    return 0
  return _polyphase(config.input_sample_rate_hz, config.sample_rate_hz)[-1]


def sliding_mean(x: jax.Array, window: int) -> jax.Array:
  """Mean over a centred window of `window` frames, shorter at the edges: [batch, time, bins] -> same."""
  before = window // 2
  padded = jnp.pad(jnp.cumsum(x, axis=1), ((0, 0), (1, 0), (0, 0)))
  time = x.shape[1]
  start = jnp.clip(jnp.arange(time) - before, 0, time)
  end = jnp.clip(jnp.arange(time) - before + window, 0, time)
  return (padded[:, end] - padded[:, start]) / (end - start)[None, :, None]


def span_mask(rng: jax.Array, batch: int, length: int, probability: float,
              span_frames: int) -> jax.Array:
  """wav2vec 2.0 span masking: [batch, length] bool.

  Every frame that leaves room for a whole span starts one with `probability`;
  spans of `span_frames` may overlap (about 1 - (1 - p)^span of the frames end
  up masked: 49% with the defaults), and a row with no start gets one, so every
  row has at least one whole span.
  """
  span = min(span_frames, length)
  start_rng, fallback_rng = jax.random.split(rng)
  positions = jnp.arange(length)
  starts = jax.random.bernoulli(start_rng, probability, (batch, length)) & (positions <= length - span)
  fallback = jax.random.randint(fallback_rng, (batch, 1), 0, length - span + 1)
  starts = starts | (~starts.any(-1, keepdims=True) & (positions == fallback))
  begun = jnp.cumsum(starts, axis=-1)
  # Frame t is masked when a span started in (t - span, t].
  before = jnp.pad(begun, ((0, 0), (span, 0)))[:, :length]
  return begun - before > 0


def sample_negatives(rng: jax.Array, mask: jax.Array, num_negatives: int) -> jax.Array:
  """Distractor frames for every frame: [batch, length, num_negatives] int32.

  Drawn uniformly (with replacement) among the other masked frames of the same
  row, as wav2vec 2.0 does; in O(batch * length * num_negatives), without a
  [length, length] table. A row with one masked frame can only draw itself
  (the loss drops distractors equal to the positive).
  """
  batch, length = mask.shape
  count = mask.sum(-1)
  order = jnp.argsort(~mask, axis=-1, stable=True)  # masked frames first, in time order
  rank = jnp.cumsum(mask, axis=-1) - 1
  draws = jax.random.randint(rng, (batch, length, num_negatives), 0,
                             jnp.maximum(count - 1, 1)[:, None, None])
  draws = jnp.where(draws >= rank[..., None], draws + 1, draws)  # skip the frame itself
  draws = jnp.minimum(draws, count[:, None, None] - 1)
  return jax.vmap(lambda o, d: o[d])(order, draws).astype(jnp.int32)


class Dense(nn.Module):
  """x [..., in] -> [..., features], no bias; `axes` name the kernel's (in, out) axes.

  init_scale: variance of the kernel times fan-in (1: unit-variance outputs).
  """
  features: int
  axes: tuple[str, str]
  config: conformer_lib.ConformerConfig
  init_scale: float = 1.0

  @nn.compact
  def __call__(self, x):
    init = initializers.fan_in(self.axes, in_axis=0, out_axis=1, scale=self.init_scale)
    kernel = self.param("kernel", init,
                        (x.shape[-1], self.features), self.config.param_dtype)
    return jnp.einsum("...d,df->...f", x.astype(self.config.dtype), kernel.astype(self.config.dtype))


def normalized_log_mel(config: W2vBertConfig, audio: jax.Array) -> jax.Array:
  """The network's input: audio [batch, samples] at input_sample_rate_hz ->
  [batch, frames * 4, num_mel_bins] normalised dB, frames = ceil(samples / input hop)."""
  c = config
  frames = c.num_frames(audio.shape[-1])
  audio = jnp.pad(audio, ((0, 0), (0, frames * c.input_hop_length - audio.shape[-1])))
  audio = resample(audio, c.input_sample_rate_hz, c.sample_rate_hz)
  # A centred STFT gives one frame more than samples / hop; the last one only sees padding.
  mel = spectral.mel_spectrogram(audio, c.sample_rate_hz, n_fft=c.n_fft,
                                 hop_length=c.mel_hop_length, n_mels=c.num_mel_bins)
  mel = mel[:, :frames * SUBSAMPLING]
  # No whole-clip statistics or top_db: a frame's input depends only on audio
  # within half a normalisation window of it. Uncentred dB (mean -30) puts ~90% of the initial features' energy
  # in one direction shared by every frame: the quantizer then has no content
  # to tell frames apart by.
  db = spectral.power_to_db(mel, top_db=None) - c.log_mel_mean_db
  if c.mean_normalization_seconds is not None:
    window = max(1, round(c.mean_normalization_seconds * c.sample_rate_hz / c.mel_hop_length))
    db = db - sliding_mean(db, window)
  return db / c.log_mel_std_db


class FeatureEncoder(nn.Module):
  """audio [batch, samples] -> features [batch, frames, embed], frames = ceil(samples / input hop)."""
  config: W2vBertConfig

  @nn.compact
  def __call__(self, audio, *, deterministic: bool = True):
    c = self.config
    cc = c.conformer
    x = normalized_log_mel(c, audio)[..., None]
    for i in range(2):
      x = nn.Conv(c.subsampling_channels, (3, 3), strides=(2, 2), padding="SAME", dtype=cc.dtype,
                  param_dtype=cc.param_dtype,
                  kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), _CONV_AXES),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
                  name=f"subsampling_{i}")(x)
      x = nn.swish(x)
    x = x.reshape(*x.shape[:2], -1)
    x = Dense(cc.d_model, ("conv_features", "embed"), cc, name="projection")(x)
    x = normalization.RMSNorm(dtype=cc.dtype, param_dtype=cc.param_dtype, name="norm")(x)
    x = nn.Dropout(cc.dropout_rate)(x, deterministic=deterministic)
    return nn.with_logical_constraint(x, ("batch", "length", "embed"))


class W2vBert(nn.Module):
  """The network; `W2vBertModel` holds the losses."""
  config: W2vBertConfig

  def setup(self):
    c = self.config
    self.feature_encoder = FeatureEncoder(c)
    self.contrastive = conformer_lib.ConformerStack(c.conformer, c.contrastive_layers)
    self.mlm = conformer_lib.ConformerStack(c.conformer, c.mlm_layers)
    self.mask_embedding = self.param(
        "mask_embedding", nn.with_logical_partitioning(nn.initializers.normal(1.0), ("embed",)),
        (c.conformer.d_model,), c.conformer.param_dtype)
    group_dim = c.codevector_dim // c.num_codebooks
    self.codebooks = self.param(
        "codebooks", nn.with_logical_partitioning(nn.initializers.uniform(1.0),
                                                  ("codebook_groups", "codebook", "codevector")),
        (c.num_codebooks, c.codebook_size, group_dim), c.conformer.param_dtype)
    entries = c.num_codebooks * c.codebook_size
    # Unit-variance weights, as wav2vec 2.0 initialises them: logits of std
    # sqrt(d_model) make each frame's code a sharp, stable function of its
    # features from the start. Unit-variance logits would give near-uniform
    # softmaxes, which the diversity loss then keeps: the sampled codes stay
    # noise and the contrastive loss sits at chance.
    self.quantizer_logits = Dense(entries, ("embed", "codebook"), c.conformer,
                                  init_scale=float(c.conformer.d_model))
    self.quantizer_projection = Dense(c.codevector_dim, ("codevector", "codevector_out"), c.conformer)
    self.contrastive_projection = Dense(c.codevector_dim, ("embed", "codevector_out"), c.conformer)
    self.mlm_head = Dense(entries, ("embed", "codebook"), c.conformer)

  def __call__(self, audio, mask, gumbel_rng, temperature, *, deterministic: bool = True):
    """Training forward pass.

    audio [batch, samples]; mask [batch, frames] bool; gumbel_rng None for
    noise-free hard codes. Returns context [batch, frames, codevector],
    targets [batch, frames, codevector] (straight-through) and the code ids
    they were sampled as, noise-free code ids (MLM targets) [batch, frames,
    groups], quantizer logits and MLM logits [batch, frames, groups, codebook].
    """
    c = self.config
    features = self.feature_encoder(audio, deterministic=deterministic)
    batch, frames, _ = features.shape

    logits = self.quantizer_logits(features).astype(jnp.float32)
    logits = logits.reshape(batch, frames, c.num_codebooks, c.codebook_size)
    if c.fixed_code_selection:
      logits = jax.lax.stop_gradient(logits)
    # MLM targets are the noise-free codes; the contrastive targets are sampled
    # (hard Gumbel-softmax, straight-through), as wav2vec 2.0's quantizer does.
    ids = jnp.argmax(logits, axis=-1)
    if gumbel_rng is None:
      sampled = ids
      onehot = jax.nn.one_hot(ids, c.codebook_size, dtype=jnp.float32)
    else:
      soft = jax.nn.softmax((logits + jax.random.gumbel(gumbel_rng, logits.shape)) / temperature)
      sampled = jnp.argmax(soft, axis=-1)
      hard = jax.nn.one_hot(sampled, c.codebook_size, dtype=jnp.float32)
      onehot = hard - jax.lax.stop_gradient(soft) + soft
    codevectors = jnp.einsum("btgv,gvd->btgd", onehot, self.codebooks.astype(jnp.float32))
    targets = self.quantizer_projection(codevectors.reshape(batch, frames, -1))

    masked = jnp.where(mask[..., None], self.mask_embedding.astype(features.dtype), features)
    hidden = self.contrastive(masked, deterministic=deterministic)
    context = self.contrastive_projection(hidden)
    hidden = self.mlm(hidden, deterministic=deterministic)
    mlm_logits = self.mlm_head(hidden)
    mlm_logits = mlm_logits.reshape(batch, frames, c.num_codebooks, c.codebook_size)
    return (context, targets, sampled, jax.lax.stop_gradient(ids), logits,
            mlm_logits.astype(jnp.float32))

  def encode(self, audio):
    """audio [batch, samples] -> last MLM-module layer output [batch, frames, embed] (no masking)."""
    return self.mlm(self.contrastive(self.feature_encoder(audio)))


def contrastive_loss(context, targets, target_ids, mask, negatives, temperature):
  """wav2vec 2.0 InfoNCE at masked frames: (mean loss, accuracy of picking the true target).

  context, targets [batch, frames, dim]; target_ids [batch, frames, groups],
  the codes of the targets; negatives [batch, frames, K] frame indices.
  """
  take = jax.vmap(lambda x, i: x[i])
  distractors = take(targets, negatives)  # [batch, frames, K, dim]
  candidates = jnp.concatenate([targets[:, :, None], distractors], axis=2).astype(jnp.float32)
  context = context.astype(jnp.float32)[:, :, None]
  cosine = jnp.sum(context * candidates, -1) / (
      jnp.linalg.norm(context, axis=-1) * jnp.linalg.norm(candidates, axis=-1) + 1e-6)
  logits = cosine / temperature
  # A distractor that is the same code vector as the target is not a wrong answer.
  same = jnp.all(take(target_ids, negatives) == target_ids[:, :, None], axis=-1)
  logits = logits.at[..., 1:].set(jnp.where(same, -1e9, logits[..., 1:]))
  losses = -jax.nn.log_softmax(logits, axis=-1)[..., 0]
  correct = jnp.argmax(logits, axis=-1) == 0
  weight = mask.astype(jnp.float32)
  count = jnp.maximum(weight.sum(), 1.0)
  return jnp.sum(losses * weight) / count, jnp.sum(correct * weight) / count


def diversity_loss(logits):
  """wav2vec 2.0's (G·V - perplexity of the batch-mean code distribution) / (G·V).

  logits [batch, frames, groups, codebook] -> (loss, perplexity summed over groups).
  """
  groups, size = logits.shape[-2:]
  probs = jnp.mean(jax.nn.softmax(logits, axis=-1).reshape(-1, groups, size), axis=0)
  perplexity = jnp.sum(jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-7), axis=-1)))
  return (groups * size - perplexity) / (groups * size), perplexity


class W2vBertModel(BaseModel):
  """w2v-BERT as a trainer model. Batches hold `audio` [batch, samples] at input_sample_rate_hz."""

  def __init__(self, config: W2vBertConfig = W2vBertConfig()):
    self.config = config
    self.module = W2vBert(config)

  def init(self, rng: jax.Array, batch_spec: BatchSpec) -> Params:
    audio = jnp.zeros(batch_spec["audio"].shape, jnp.float32)
    mask = jnp.zeros((audio.shape[0], self.config.num_frames(audio.shape[1])), bool)
    return self.module.init(rng, audio, mask, None, 1.0)["params"]

  def gumbel_temperature(self, step: jax.Array) -> jax.Array:
    start, end, decay = self.config.gumbel_temperature
    return jnp.maximum(end, start * decay ** step.astype(jnp.float32))

  def num_frames(self, num_samples: int) -> int:
    return self.config.num_frames(num_samples)

  def flops_per_batch(self, batch_spec: BatchSpec) -> float:
    """Analytic FLOPs of one training step's forward + backward over `audio` [batch, samples].

    Counted: every matmul and convolution of `_loss`, 2 FLOPs per multiply-add,
    x3 for forward + backward (the input's gradient is not needed by the first
    subsampling conv, but it is counted like the rest): the two subsampling
    convs and the projection, per Conformer layer of both modules the two gated
    FFNs (three matrices each), the q/k/v/o projections, the [length, length]
    score and value matmuls, the conv module's three pointwise matrices and its
    depthwise taps; the quantizer logits, code vector lookup (a one-hot matmul)
    and projection, the contrastive projection and cosine logits against the
    true target and every distractor, the MLM head. The log-mel front end
    (resampling conv, mel filterbank) has no trained input: forward only.
    Neglected: the FFT, elementwise ops, norms, softmaxes, the relative
    position bias lookup, masking and negative sampling (gathers). Remat
    recompute is not model FLOPs (MFU convention), so scan/remat settings do
    not change the count.
    """
    c = self.config
    cc = c.conformer
    batch, samples = batch_spec["audio"].shape
    frames = c.num_frames(samples)
    tokens = batch * frames
    d, width = cc.d_model, cc.num_heads * cc.kv_dim
    # Resampled 16 kHz samples (rounded to whole frames first), each a `width`-tap
    # polyphase sum: one multiply-add per kernel tap of its phase.
    resampled = frames * SUBSAMPLING * c.mel_hop_length
    mel_frames = frames * SUBSAMPLING
    front_end = 2 * batch * mel_frames * (c.n_fft // 2 + 1) * c.num_mel_bins
    front_end += 2 * batch * resampled * _resample_taps(c)
    # SAME stride-2 convs: [4T, mel] -> [2T, ceil(mel/2)] -> [T, ceil(mel/4)].
    bins_1 = -(-c.num_mel_bins // 2)
    bins_2 = -(-bins_1 // 2)
    ch = c.subsampling_channels
    encoder = (2 * batch * 2 * frames * bins_1 * 9 * ch
               + 2 * tokens * bins_2 * 9 * ch * ch + 2 * tokens * bins_2 * ch * d)
    per_layer = (2 * 2 * tokens * 3 * d * cc.d_ff  # two gated FFNs
                 + 2 * tokens * 4 * d * width  # q, k, v, o
                 + 2 * 2 * batch * frames * frames * width  # scores, values
                 + 2 * tokens * 3 * d * d  # conv module: GLU in (two), out
                 + 2 * tokens * cc.conv_kernel_size * d)  # depthwise taps
    layers = (c.contrastive_layers + c.mlm_layers) * per_layer
    entries = c.num_codebooks * c.codebook_size
    heads = (2 * tokens * d * entries  # quantizer logits
             + 2 * tokens * entries * (c.codevector_dim // c.num_codebooks)  # one-hot lookup
             + 2 * tokens * c.codevector_dim * c.codevector_dim  # quantizer projection
             + 2 * tokens * d * c.codevector_dim  # contrastive projection
             + 2 * tokens * (c.num_negatives + 1) * c.codevector_dim  # cosine logits
             + 2 * tokens * d * entries)  # MLM head
    return float(front_end + 3 * (encoder + layers + heads))

  def _loss(self, params: Params, batch: Batch, rng: jax.Array | None,
            temperature: jax.Array) -> tuple[jax.Array, Metrics]:
    c = self.config
    audio = batch["audio"]
    frames = c.num_frames(audio.shape[1])
    # Evaluation masks too (with a fixed key), or there would be nothing to predict.
    mask_rng, negatives_rng, gumbel_rng, dropout_rng = jax.random.split(
        jax.random.key(0) if rng is None else rng, 4)
    mask = span_mask(mask_rng, audio.shape[0], frames, c.mask_probability, c.mask_span_frames)
    context, targets, sampled, ids, quantizer_logits, mlm_logits = self.module.apply(
        {"params": params}, audio, mask, None if rng is None else gumbel_rng, temperature,
        deterministic=rng is None, rngs=None if rng is None else {"dropout": dropout_rng})
    negatives = sample_negatives(negatives_rng, mask, c.num_negatives)
    contrastive, contrastive_accuracy = contrastive_loss(
        context, targets, sampled, mask, negatives, c.contrastive_temperature)
    diversity, prob_perplexity = diversity_loss(quantizer_logits)
    weight = mask.astype(jnp.float32)[..., None]
    count = jnp.maximum(weight.sum() * c.num_codebooks, 1.0)
    mlm = jnp.sum(optax.softmax_cross_entropy_with_integer_labels(mlm_logits, ids) * weight) / count
    mlm_accuracy = jnp.sum((jnp.argmax(mlm_logits, -1) == ids) * weight) / count
    # Chance for mlm_accuracy: always guessing the batch's commonest target code.
    target_counts = jnp.zeros((c.num_codebooks, c.codebook_size)).at[
        jnp.arange(c.num_codebooks), ids.reshape(-1, c.num_codebooks)].add(
            jnp.broadcast_to(weight, ids.shape).reshape(-1, c.num_codebooks))
    mlm_majority_accuracy = jnp.sum(jnp.max(target_counts, -1)) / count
    loss = contrastive + c.diversity_weight * diversity + c.mlm_weight * mlm
    used = jnp.zeros((c.num_codebooks, c.codebook_size)).at[
        jnp.arange(c.num_codebooks), ids.reshape(-1, c.num_codebooks)].max(1.0)
    return loss, {
        "contrastive_loss": contrastive, "contrastive_accuracy": contrastive_accuracy,
        "diversity_loss": diversity, "prob_perplexity": prob_perplexity,
        "mlm_loss": mlm, "mlm_accuracy": mlm_accuracy,
        "mlm_majority_accuracy": mlm_majority_accuracy, "mask_ratio": jnp.mean(mask),
        "codes_used": jnp.sum(used), "gumbel_temperature": temperature,
        "num_tokens": jnp.sum(mask)}

  def loss_fn(self, params: Params, batch: Batch,
              rng: jax.Array | None) -> tuple[jax.Array, Metrics]:
    """Evaluation (rng=None): fixed masks, hard codes at the final Gumbel temperature."""
    return self._loss(params, batch, rng, jnp.asarray(self.config.gumbel_temperature[1]))

  def train_step(self, state, batch: Batch, rng: jax.Array):
    """The trainer's step, with the Gumbel temperature of `state.step`."""
    grad_fn = jax.value_and_grad(self._loss, has_aux=True)
    (loss, metrics), grads = grad_fn(state.params, batch, rng, self.gumbel_temperature(state.step))
    metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
    return state.apply_gradients(grads), metrics

  def features(self, params: Params, audio: jax.Array, layer: int) -> jax.Array:
    """Output of MLM-module layer `layer` (1-based): audio [batch, samples] -> [batch, frames, embed].

    Only the layers up to `layer` run: the params of later ones are dropped.
    """
    c = self.config
    if not 1 <= layer <= c.mlm_layers:
      raise ValueError(f"layer {layer} is not an MLM-module layer: choose 1..{c.mlm_layers}")
    module = W2vBert(dataclasses.replace(c, mlm_layers=layer))
    return module.apply({"params": truncate_mlm_params(params, layer, c.conformer.scan_layers)},
                        audio, method=W2vBert.encode)


def truncate_mlm_params(params: Params, layer: int, scan_layers: bool) -> Params:
  """Params with only the first `layer` MLM-module layers (stacked or one per layer)."""
  mlm = dict(params["mlm"])
  if scan_layers:
    mlm["layers"] = jax.tree.map(lambda x: x[:layer], mlm["layers"])
  else:
    mlm = {k: v for k, v in mlm.items()
           if not k.startswith("layers_") or int(k.split("_")[1]) < layer}
  return {**params, "mlm": mlm}


def count_parameters(config: W2vBertConfig, seconds: float = 1.0) -> int:
  """Scalars in the params, by shape inference only."""
  spec = {"audio": jax.ShapeDtypeStruct((1, int(seconds * config.input_sample_rate_hz)), jnp.float32)}
  params = jax.eval_shape(W2vBertModel(config).init, jax.random.key(0), spec)
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))

