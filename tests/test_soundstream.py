"""SoundStream: rates and bitrate, any-length round trips, conv padding and weight norm."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax.layers import conv
from musiclm_jax.models import discriminators
from musiclm_jax.models import soundstream

# Hop 480 like the paper, but 2 channels and one residual unit per block: fast to compile.
TINY = soundstream.SoundStreamConfig(channels=2, embedding_dim=8, dilations=(1,), num_levels=3,
                                     codebook_size=8)


def test_paper_config_is_24khz_hop_480_50hz_6kbps():
  config = soundstream.SoundStreamConfig()
  assert config.hop_length == 480
  assert config.frame_rate_hz == 50.0
  assert config.bitrate_bps == 6000.0  # 12 levels x log2(1024) bits x 50 Hz
  assert soundstream.SoundStreamConfig(num_levels=4).bitrate_bps == 2000.0


@pytest.fixture(scope="module")
def tiny_model_and_params():
  model = soundstream.SoundStreamModel(TINY, discriminators.DiscriminatorConfig(
      stft_fft_sizes=(64,), stft_channels=1, wave_scales=1, wave_channels=1, wave_max_channels=1,
      wave_downsamples=1))
  audio = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 2400)), jnp.float32)

  @jax.jit
  def init(rng):
    params = nn.unbox(model.init(rng, {"audio": jax.ShapeDtypeStruct(audio.shape, audio.dtype)}))
    embeddings = model.embed(params[soundstream.GENERATOR], audio)
    params[soundstream.QUANTIZER] = model.rvq.seed(params[soundstream.QUANTIZER], embeddings, rng)
    return params

  return model, init(jax.random.key(0))


@pytest.mark.parametrize("num_samples", [1, 481, 1237])
def test_encode_decode_round_trip_keeps_any_length(tiny_model_and_params, num_samples):
  model, params = tiny_model_and_params

  @jax.jit
  def round_trip(params, audio):
    codes = model.encode(params, audio)
    return (codes, model.decode(params, codes), model.decode(params, codes, num_samples=num_samples),
            model.reconstruct(params, audio), model.encode(params, audio, num_levels=1))

  audio = jnp.asarray(np.random.default_rng(num_samples).uniform(-0.5, 0.5, (2, num_samples)), jnp.float32)
  codes, full, decoded, reconstructed, coarse = round_trip(params, audio)
  frames = -(-num_samples // 480)
  assert codes.shape == (2, frames, 3) and codes.dtype == jnp.int32
  assert full.shape == (2, frames * 480)
  assert decoded.shape == audio.shape
  np.testing.assert_allclose(reconstructed, decoded, atol=1e-6)
  np.testing.assert_array_equal(coarse, codes[..., :1])


def test_generator_params_carry_logical_axes():
  model = soundstream.SoundStreamModel(TINY)
  boxed = jax.eval_shape(model.init, jax.random.key(0), {"audio": jax.ShapeDtypeStruct((1, 480), jnp.float32)})
  specs = nn.get_partition_spec(boxed)
  first = specs[soundstream.GENERATOR]["encoder"]["Conv1d_0"]
  assert tuple(first["kernel"]) == conv.KERNEL_AXES
  assert set(boxed) == {"generator", "discriminator", "quantizer"}


def _apply(module, x):
  params = nn.unbox(module.init(jax.random.key(0), x))
  return params, module.apply(params, x)


@pytest.mark.parametrize("layer", [
    conv.Conv1d(3, 7, dilation=3, causal=True),
    conv.Conv1d(3, 8, stride=4, causal=True),
    conv.ConvTranspose1d(3, 8, 4, causal=True),
])
def test_causal_layers_never_see_the_future(layer):
  x = jax.random.normal(jax.random.key(0), (1, 24, 2))
  params, y = _apply(layer, x)
  changed = layer.apply(params, x.at[:, 12:].set(5.0))
  stride = getattr(layer, "stride", 1)
  # Outputs before input 12 (in output time units) must not move.
  cut = 12 // stride if isinstance(layer, conv.Conv1d) else 12 * stride
  np.testing.assert_allclose(changed[:, :cut], y[:, :cut], atol=1e-6)
  assert not np.allclose(changed, y)


def test_centred_conv_sees_both_sides_and_strides_divide_the_length():
  x = jax.random.normal(jax.random.key(0), (1, 24, 2))
  params, y = _apply(conv.Conv1d(3, 7), x)
  changed = conv.Conv1d(3, 7).apply(params, x.at[:, 12].set(5.0))
  moved = np.flatnonzero(np.abs(np.asarray(changed - y)).max(-1)[0] > 0)
  assert moved.tolist() == list(range(9, 16))
  assert _apply(conv.Conv1d(3, 10, stride=5), jnp.zeros((1, 25, 2)))[1].shape == (1, 5, 3)
  assert _apply(conv.Conv1d(3, 10, stride=5), jnp.zeros((1, 23, 2)))[1].shape == (1, 5, 3)
  assert _apply(conv.ConvTranspose1d(3, 10, 5), jnp.zeros((1, 5, 2)))[1].shape == (1, 25, 3)


def test_transposed_conv_matches_the_definition():
  x = np.asarray(jax.random.normal(jax.random.key(0), (2, 6, 3)))
  layer = conv.ConvTranspose1d(4, 10, 5, causal=True, weight_norm=False)
  params, y = _apply(layer, jnp.asarray(x))
  kernel, bias = np.asarray(params["params"]["kernel"]), np.asarray(params["params"]["bias"])
  full = np.zeros((2, 5 * 5 + 10, 4))
  for t in range(6):
    for i in range(10):
      full[:, t * 5 + i] += x[:, t] @ kernel[i]
  np.testing.assert_allclose(y, full[:, :30] + bias, atol=1e-5)


def test_weight_norm_starts_as_the_plain_conv_and_ignores_the_direction_scale():
  x = jax.random.normal(jax.random.key(0), (1, 16, 2))
  plain_params, plain = _apply(conv.Conv1d(3, 5, weight_norm=False), x)
  normed = conv.Conv1d(3, 5, weight_norm=True)
  params = nn.unbox(normed.init(jax.random.key(0), x))
  assert set(params["params"]) == {"kernel", "gain", "bias"}
  assert "gain" not in plain_params["params"]
  np.testing.assert_allclose(normed.apply(params, x), plain, atol=1e-5)
  scaled = jax.tree.map(lambda a: a, params)
  scaled["params"]["kernel"] = params["params"]["kernel"] * 7.0
  np.testing.assert_allclose(normed.apply(scaled, x), plain, atol=1e-5)


@pytest.mark.parametrize("stride", [3, 4, 5, 8])
def test_centred_down_and_up_sampling_put_an_impulse_back_where_it_was(stride):
  # A time shift between codec input and output would leave SI-SNR near its
  # floor whatever the codec learns: with box kernels, the response of
  # stride-s down- then up-sampling to an impulse is centred on it on average
  # over the s phases of the impulse.
  down = conv.Conv1d(1, 2 * stride, stride=stride, weight_norm=False)
  up = conv.ConvTranspose1d(1, 2 * stride, stride, weight_norm=False)
  box = lambda params: jax.tree.map(lambda a: jnp.ones_like(a) if a.ndim == 3 else a, params)
  x = jnp.zeros((1, 10 * stride, 1))
  down_params = box(_apply(down, x)[0])
  up_params = box(_apply(up, down.apply(down_params, x))[0])
  offsets = []
  for n in range(4 * stride, 5 * stride):
    y = np.asarray(up.apply(up_params, down.apply(down_params, x.at[0, n, 0].set(1.0))))[0, :, 0]
    offsets.append(np.sum(np.arange(y.size) * y) / np.sum(y) - n)
  assert abs(np.mean(offsets)) < 1e-4
  assert max(abs(o) for o in offsets) < stride


def test_elu_matches_flax_elu_and_its_gradient():
  # The codec's exp-based ELU (faster on XLA:CPU than expm1) against Flax's, values and
  # gradients, over both signs, the kink and the tiny inputs where exp(x) - 1 cancels.
  x = jnp.concatenate([jnp.linspace(-12.0, 6.0, 1001), jnp.array([0.0, 1e-7, -1e-7, -1e-3])])
  np.testing.assert_allclose(soundstream._elu(x), nn.elu(x), atol=2e-7, rtol=1e-6)
  grad = jax.vmap(jax.grad(soundstream._elu))(x)
  np.testing.assert_allclose(grad, jax.vmap(jax.grad(nn.elu))(x), atol=2e-7, rtol=1e-6)
