"""SoundStream: the neural codec behind MusicLM's acoustic tokens and its waveform.

24 kHz mono -> SEANet conv encoder (strides 3·4·5·8 = hop 480, so 50 frames/s)
-> residual VQ (paper: 12 levels x 1024 codes = 12 x 10 bits x 50 Hz = 6 kbps)
-> SEANet conv decoder -> 24 kHz. Trained as a GAN against the STFT and
waveform discriminators of discriminators.py, with the losses of codec_losses.py.

`SoundStreamModel` is the trainer's model. Its params are three top-level
trees, each owned by one part of the update (`gan_optimizer`):
  generator      encoder + decoder, trained by gradients of the generator loss;
  discriminator  trained by gradients of the hinge loss;
  quantizer      RVQ codebooks and their EMA statistics (layers/rvq.py): no
                 gradient ever reaches them (`optax.set_to_zero`); `train_step`
                 seeds them by k-means on the first batch and then updates them
                 by EMA with dead-code restarts.
Keeping the codebook state in params (rather than a mutable Flax collection)
means checkpoints, resume, sharding and export handle it with no special case.
"""
import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from musiclm_jax.audio import rates
from musiclm_jax.layers import conv
from musiclm_jax.layers import rvq
from musiclm_jax.models import codec_losses
from musiclm_jax.models import discriminators as discriminators_lib
from musiclm_jax.models.base import BaseModel, Batch, BatchSpec, Metrics, Params

GENERATOR, DISCRIMINATOR, QUANTIZER = "generator", "discriminator", "quantizer"

# A collapsed RVQ maps every frame to a few codes and decodes noise of the average
# spectrum however long it trains. Measured (docs/design.md §10, "The codec can
# collapse"): collapsed runs log a codebook perplexity of 1-15 from the join on,
# runs that train 48 or more 50 steps after it.
COLLAPSED_PERPLEXITY = 16.0
COLLAPSE_GRACE_STEPS = 50


@dataclasses.dataclass(frozen=True)
class SoundStreamConfig:
  """Codec sizes (gin: `soundstream.SoundStreamConfig`; see gin/scales/soundstream_*.gin).

  channels: C; encoder block i has C·2^(i+1) channels, the decoder mirrors it.
  embedding_dim: D, the size of the vectors the RVQ quantizes.
  strides: encoder downsampling per block; their product is the hop in samples.
  dilations: of the residual units in every block.
  num_levels, codebook_size: the RVQ (Q levels of K codes).
  causal: left-only padding (streaming) instead of centred padding.
  weight_norm: weight-normalised convolutions in the generator.
  quantizer_dropout_fraction: share of training examples that use a random
    number of levels in 1..Q (bitrate scalability).
  codebook_decay, dead_code_threshold: see rvq.ResidualVQ.
  """
  sample_rate_hz: int = rates.SOUNDSTREAM_SAMPLE_RATE_HZ
  channels: int = 32
  embedding_dim: int = 128
  strides: tuple[int, ...] = (3, 4, 5, 8)
  dilations: tuple[int, ...] = (1, 3, 9)
  num_levels: int = 12
  codebook_size: int = 1024
  causal: bool = False
  weight_norm: bool = True
  quantizer_dropout_fraction: float = 1.0
  codebook_decay: float = 0.99
  dead_code_threshold: float = 1.0
  dtype: Any = jnp.float32

  @property
  def hop_length(self) -> int:
    hop = 1
    for s in self.strides:
      hop *= s
    return hop

  @property
  def frame_rate_hz(self) -> float:
    return self.sample_rate_hz / self.hop_length

  @property
  def bitrate_bps(self) -> float:
    return self.frame_rate_hz * self.quantizer().bits_per_frame()

  def quantizer(self) -> rvq.ResidualVQ:
    return rvq.ResidualVQ(self.num_levels, self.codebook_size, self.embedding_dim,
                          decay=self.codebook_decay, dead_code_threshold=self.dead_code_threshold)


def _elu(x):
  """nn.elu within 2e-7, with exp(x) - 1 for expm1: XLA:CPU fuses the activation into the
  pad of the strided conv after it and runs that fusion element by element, where expm1
  costs ~10 ns per element (paper-size encode of 10 s: 18.3x -> 20.2x real time)."""
  positive = x > 0
  return jnp.where(positive, x, jnp.exp(jnp.where(positive, 0.0, x)) - 1)


class ResidualUnit(nn.Module):
  """x + conv1(elu(conv7_dilated(elu(x)))): [batch, time, C] -> same."""
  dilation: int
  config: SoundStreamConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    y = conv.Conv1d(x.shape[-1], 7, dilation=self.dilation, causal=c.causal,
                    weight_norm=c.weight_norm, dtype=c.dtype)(_elu(x))
    y = conv.Conv1d(x.shape[-1], 1, weight_norm=c.weight_norm, dtype=c.dtype)(_elu(y))
    return x + y


class Encoder(nn.Module):
  """audio [batch, time], time a multiple of the hop -> [batch, time / hop, D]."""
  config: SoundStreamConfig

  @nn.compact
  def __call__(self, audio):
    c = self.config
    conv_args = dict(causal=c.causal, weight_norm=c.weight_norm, dtype=c.dtype)
    x = conv.Conv1d(c.channels, 7, **conv_args)(audio[..., None])
    for i, stride in enumerate(c.strides):
      for dilation in c.dilations:
        x = ResidualUnit(dilation, c)(x)
      x = nn.with_logical_constraint(x, ("batch", "length", None))
      x = conv.Conv1d(c.channels * 2 ** (i + 1), 2 * stride, stride=stride, **conv_args)(_elu(x))
    return conv.Conv1d(c.embedding_dim, 3, **conv_args)(_elu(x))


class Decoder(nn.Module):
  """[batch, frames, D] -> audio [batch, frames * hop]."""
  config: SoundStreamConfig

  @nn.compact
  def __call__(self, x):
    c = self.config
    conv_args = dict(causal=c.causal, weight_norm=c.weight_norm, dtype=c.dtype)
    x = conv.Conv1d(c.channels * 2 ** len(c.strides), 7, **conv_args)(x)
    for i, stride in enumerate(reversed(c.strides)):
      channels = c.channels * 2 ** (len(c.strides) - i - 1)
      x = conv.ConvTranspose1d(channels, 2 * stride, stride, **conv_args)(_elu(x))
      x = nn.with_logical_constraint(x, ("batch", "length", None))
      for dilation in c.dilations:
        x = ResidualUnit(dilation, c)(x)
    return conv.Conv1d(1, 7, **conv_args)(_elu(x))[..., 0].astype(jnp.float32)


class Codec(nn.Module):
  """Encoder and decoder, with the RVQ in between done by the caller."""
  config: SoundStreamConfig

  def setup(self):
    self.encoder = Encoder(self.config)
    self.decoder = Decoder(self.config)

  def __call__(self, audio):
    """Used only to create both halves' params: audio [batch, time] -> audio."""
    return self.decoder(self.encoder(audio))

  def encode(self, audio):
    return self.encoder(audio)

  def decode(self, embeddings):
    return self.decoder(embeddings)


def gan_optimizer(learning_rate: optax.Schedule | float = 3e-4,
                  discriminator_learning_rate_scale: float = 1.0, b1: float = 0.5,
                  b2: float = 0.9, clip_grad_norm: float | None = 1.0) -> optax.GradientTransformation:
  """Adam for the generator and for the discriminator; nothing for the codebooks.

  The trainer calls this with its schedule (gin: `optimizer = @soundstream.gan_optimizer`).
  """
  def adam(scale):
    lr = (lambda step: scale * learning_rate(step)) if callable(learning_rate) else scale * learning_rate
    opt = optax.adam(lr, b1=b1, b2=b2)
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), opt) if clip_grad_norm else opt

  # Labels form a prefix of the params tree: each label covers a whole top-level tree.
  return optax.multi_transform(
      {GENERATOR: adam(1.0), DISCRIMINATOR: adam(discriminator_learning_rate_scale),
       QUANTIZER: optax.set_to_zero()},
      {GENERATOR: GENERATOR, DISCRIMINATOR: DISCRIMINATOR, QUANTIZER: QUANTIZER})


class SoundStreamModel(BaseModel):
  """The codec as a trainer model: a GAN step in `train_step`, reconstruction losses in `loss_fn`.

  Batches hold `audio` [batch, samples] float32 at `config.sample_rate_hz`.
  """

  def __init__(self, config: SoundStreamConfig = SoundStreamConfig(),
               discriminator_config: discriminators_lib.DiscriminatorConfig =
               discriminators_lib.DiscriminatorConfig(),
               loss_weights: codec_losses.LossWeights = codec_losses.LossWeights(),
               adversarial_start_step: int | None = 0,
               mel_fft_sizes: tuple[int, ...] = codec_losses.MEL_FFT_SIZES,
               mel_start_step: int = 0, quantizer_start_step: int = 0):
    """adversarial_start_step: before this step only the reconstruction losses train the
    generator and the discriminators neither run nor train (a cheap warm-up). None:
    never, and the train step is compiled without them (a codec trained on
    reconstruction alone, as the demo's is, compiles in less time).
    mel_fft_sizes: FFT sizes of the multi-scale mel loss.
    mel_start_step: before this step the mel loss has weight 0, so the waveform L1
    alone trains the generator. From scratch, the mel loss is fastest lowered by
    decoding every latent to noise of the average spectrum: the decoder then ignores
    its codes (real and shuffled codes decode equally well, SI-SNR ~ -48 dB after 150
    steps). The L1 first ties the output's phase to the input through the latent, and
    the mel loss then refines it without undoing that.
    quantizer_start_step: before this step the decoder reads the encoder output
    itself (no RVQ, no commitment loss, codebooks untouched); at it, the codebooks
    are seeded by k-means on that batch's embeddings. Seeding from an encoder
    that has learned something beats seeding from a random one, and the
    warm-up's reconstructions are not blurred by codes that keep moving."""
    self.config = config
    self.codec = Codec(config)
    self.discriminators = discriminators_lib.Discriminators(discriminator_config)
    self.rvq = config.quantizer()
    self.loss_weights = loss_weights
    self.adversarial_start_step = adversarial_start_step
    self.mel_fft_sizes = tuple(mel_fft_sizes)
    self.mel_start_step = mel_start_step
    self.quantizer_start_step = quantizer_start_step

  def init(self, rng: jax.Array, batch_spec: BatchSpec) -> Params:
    audio = jnp.zeros(batch_spec["audio"].shape, jnp.float32)
    codec_rng, disc_rng = jax.random.split(rng)
    return {GENERATOR: self.codec.init(codec_rng, self._pad(audio))["params"],
            DISCRIMINATOR: self.discriminators.init(disc_rng, audio)["params"],
            QUANTIZER: self.rvq.init_state()}

  # Inference API: any length in, codes at 50 Hz, the same length back.

  def num_frames(self, num_samples: int) -> int:
    return -(-num_samples // self.config.hop_length)

  def embed(self, generator_params: Params, audio: jax.Array) -> jax.Array:
    """audio [batch, time] -> encoder output [batch, ceil(time / hop), D]."""
    return self.codec.apply({"params": generator_params}, self._pad(audio), method=Codec.encode)

  def encode(self, params: Params, audio: jax.Array, num_levels: int | None = None) -> jax.Array:
    """audio [batch, time] -> codes [batch, ceil(time / hop), num_levels] int32."""
    return self.rvq.encode(params[QUANTIZER], self.embed(params[GENERATOR], audio), num_levels)

  def decode(self, params: Params, codes: jax.Array, num_levels: int | None = None,
             num_samples: int | None = None) -> jax.Array:
    """codes [batch, frames, levels] -> audio [batch, num_samples or frames * hop]."""
    embeddings = self.rvq.decode(params[QUANTIZER], codes, num_levels)
    audio = self.codec.apply({"params": params[GENERATOR]}, embeddings, method=Codec.decode)
    return audio[:, :num_samples] if num_samples is not None else audio

  def reconstruct(self, params: Params, audio: jax.Array, num_levels: int | None = None) -> jax.Array:
    """audio [batch, time] -> audio [batch, time] through `num_levels` levels."""
    codes = self.encode(params, audio, num_levels)
    return self.decode(params, codes, num_samples=audio.shape[-1])

  # Training.

  def _pad(self, audio: jax.Array) -> jax.Array:
    extra = -audio.shape[-1] % self.config.hop_length
    return jnp.pad(audio, ((0, 0), (0, extra)))

  def _forward(self, generator_params, quantizer_state, audio, level_mask, quantizer_on=True):
    """Straight-through reconstruction: (audio_hat, rvq.Quantized, embeddings).

    quantizer_on False (a traced bool) decodes the embeddings unquantized, with no
    commitment loss."""
    embeddings = self.embed(generator_params, audio)
    quantized = self.rvq.quantize(quantizer_state, embeddings, level_mask)
    quantized = quantized._replace(
        quantized=jnp.where(quantizer_on, quantized.quantized, embeddings),
        commitment_loss=jnp.where(quantizer_on, quantized.commitment_loss, 0.0))
    decoded = self.codec.apply({"params": generator_params}, quantized.quantized.astype(embeddings.dtype),
                               method=Codec.decode)
    return decoded[:, :audio.shape[-1]], quantized, embeddings

  def _reconstruction_losses(self, audio, decoded, quantized,
                             step: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
    """step: the training step, for mel_start_step; None (evaluation) weighs every term."""
    w = self.loss_weights
    mel = codec_losses.mel_reconstruction_loss(audio, decoded, self.config.sample_rate_hz,
                                               self.mel_fft_sizes)
    mel_weight = w.mel if step is None else jnp.where(step >= self.mel_start_step, w.mel, 0.0)
    waveform = jnp.mean(jnp.abs(audio - decoded))
    loss = mel_weight * mel + w.waveform * waveform + w.commitment * quantized.commitment_loss
    return loss, dict(quantized.metrics, mel_loss=mel, waveform_l1=waveform,
                      commitment_loss=quantized.commitment_loss)

  def _discriminate(self, discriminator_params, real, fake):
    """Both batches through every discriminator in one call: (real outputs, fake outputs)."""
    outputs = self.discriminators.apply({"params": discriminator_params},
                                        jnp.concatenate([real, fake], axis=0))
    n = real.shape[0]
    return (jax.tree.map(lambda a: a[:n], outputs), jax.tree.map(lambda a: a[n:], outputs))

  def metrics_warning(self, step: int, metrics: Mapping[str, float]) -> str | None:
    """Warns of a collapsed RVQ: codebook perplexity under `COLLAPSED_PERPLEXITY`
    (or a quarter of the codebook, for small ones) from `COLLAPSE_GRACE_STEPS` after
    the quantizer joins."""
    perplexity = metrics.get("codebook_perplexity")
    threshold = min(COLLAPSED_PERPLEXITY, self.config.codebook_size / 4)
    if (perplexity is None or step < self.quantizer_start_step + COLLAPSE_GRACE_STEPS
        or perplexity >= threshold):
      return None
    return (f"codebook perplexity {perplexity:.1f} at step {step} (under {threshold:g}): the "
            f"RVQ has collapsed and will decode noise; restart from scratch with a lower "
            f"LEARNING_RATE (e.g. half) — docs/design.md §10")

  def loss_fn(self, params: Params, batch: Batch,
              rng: jax.Array | None) -> tuple[jax.Array, Metrics]:
    """Reconstruction loss (mel, waveform L1, commitment) and quality metrics."""
    audio = batch["audio"]
    mask = self.rvq.level_mask(audio.shape[0], rng, self.config.quantizer_dropout_fraction)
    decoded, quantized, _ = self._forward(params[GENERATOR], params[QUANTIZER], audio, mask)
    loss, metrics = self._reconstruction_losses(audio, decoded, quantized)
    metrics["mel_distance"] = codec_losses.mel_distance(audio, decoded, self.config.sample_rate_hz)
    metrics["si_snr_db"] = jnp.mean(codec_losses.si_snr_db(audio, decoded))
    return loss, metrics

  def train_step(self, state, batch: Batch, rng: jax.Array):
    """One GAN step: generator and discriminator updates, then the codebooks' EMA update."""
    audio = batch["audio"]
    params = state.params
    seed_rng, mask_rng, update_rng = jax.random.split(rng, 3)
    quantizer_on = state.step >= self.quantizer_start_step
    quantizer_state = jax.lax.cond(
        jnp.logical_and(quantizer_on, params[QUANTIZER]["initialized"] == 0),
        lambda: self.rvq.seed(params[QUANTIZER], self.embed(params[GENERATOR], audio), seed_rng),
        lambda: params[QUANTIZER])
    mask = self.rvq.level_mask(audio.shape[0], mask_rng, self.config.quantizer_dropout_fraction)
    ever_adversarial = self.adversarial_start_step is not None
    adversarial_on = ever_adversarial and state.step >= self.adversarial_start_step
    w = self.loss_weights

    def when_adversarial(branch, off):
      """branch from the adversarial start on, off before it (and always, never compiling
      branch, when the codec is never adversarial)."""
      if not ever_adversarial:
        return off
      return lambda *args: jax.lax.cond(adversarial_on, branch, off, *args)

    def adversarial_losses(decoded):
      real, fake = self._discriminate(params[DISCRIMINATOR], audio, decoded)
      adversarial = codec_losses.generator_hinge_loss([logits for logits, _ in fake])
      matching = codec_losses.feature_matching_loss([f for _, f in real], [f for _, f in fake])
      return adversarial, matching

    def generator_loss(generator_params):
      decoded, quantized, embeddings = self._forward(generator_params, quantizer_state, audio, mask,
                                                     quantizer_on)
      loss, metrics = self._reconstruction_losses(audio, decoded, quantized, state.step)
      metrics["reconstruction_loss"] = loss
      # A cond, not a multiplication by 0: before the adversarial start the
      # discriminators cost nothing.
      adversarial, matching = when_adversarial(adversarial_losses,
                                               lambda _: (jnp.zeros(()), jnp.zeros(())))(decoded)
      loss += w.adversarial * adversarial + w.feature_matching * matching
      metrics.update(generator_adversarial=adversarial, feature_matching=matching)
      return loss, (metrics, decoded, embeddings)

    def discriminator_loss(discriminator_params, decoded):
      real, fake = self._discriminate(discriminator_params, audio, decoded)
      return codec_losses.discriminator_hinge_loss([l for l, _ in real], [l for l, _ in fake])

    (loss, (metrics, decoded, embeddings)), generator_grads = jax.value_and_grad(
        generator_loss, has_aux=True)(params[GENERATOR])
    disc_loss, disc_grads = when_adversarial(
        jax.value_and_grad(discriminator_loss),
        lambda p, _: (jnp.zeros(()), jax.tree.map(jnp.zeros_like, p)))(
            params[DISCRIMINATOR], jax.lax.stop_gradient(decoded))
    grads = {GENERATOR: generator_grads, DISCRIMINATOR: disc_grads,
             QUANTIZER: jax.tree.map(jnp.zeros_like, quantizer_state)}
    new_state = state.apply_gradients(grads)
    new_quantizer, codebook_stats = jax.lax.cond(
        quantizer_on, lambda: self.rvq.update(quantizer_state, embeddings, mask, update_rng),
        lambda: (quantizer_state, {"restarted_codes": jnp.zeros((), jnp.int32)}))
    new_state = new_state.replace(params={**new_state.params, QUANTIZER: new_quantizer})
    if new_state.ema_params is not None:
      new_state = new_state.replace(ema_params={**new_state.ema_params, QUANTIZER: new_quantizer})
    metrics.update(loss=loss, discriminator_loss=disc_loss,
                   generator_grad_norm=optax.tree.norm(generator_grads),
                   discriminator_grad_norm=optax.tree.norm(disc_grads), **codebook_stats)
    return new_state, metrics

