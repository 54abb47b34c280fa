"""Discriminators and codec losses."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax.models import codec_losses
from musiclm_jax.models import discriminators

SMALL = discriminators.DiscriminatorConfig(stft_fft_sizes=(256, 128), stft_channels=4, wave_scales=2,
                                           wave_channels=4, wave_max_channels=16, wave_downsamples=2)
RATE_HZ = 24_000


def _noise(seed, shape=(2, 4800), scale=0.3):
  return scale * jax.random.normal(jax.random.key(seed), shape)


def test_every_discriminator_gives_logits_and_features():
  module = discriminators.Discriminators(SMALL)
  audio = _noise(0)
  params = jax.jit(module.init)(jax.random.key(0), audio)
  assert set(params["params"]) == {"stft_256", "stft_128", "wave_0", "wave_1"}
  apply = jax.jit(module.apply)
  outputs = apply(params, audio)
  assert len(outputs) == 4
  for logits, features in outputs:
    assert logits.shape[0] == 2 and logits.shape[-1] == 1
    assert len(features) >= 4 and all(f.shape[0] == 2 for f in features)
  # The second waveform discriminator sees audio at half the rate.
  assert outputs[3][0].shape[1] == outputs[2][0].shape[1] // 2
  # Complex input: the STFT discriminators respond to a phase change the magnitude hides.
  shifted = apply(params, jnp.roll(audio, 1, axis=-1))
  assert not np.allclose(shifted[0][0], outputs[0][0])


@pytest.mark.parametrize("padding", ["SAME", "VALID", ((3, 5),)])
def test_taps_conv_matches_the_lax_conv_and_its_gradients(padding):
  # The waveform discriminators' first conv: 15 taps of one channel, as nn.Conv calls it.
  audio = _noise(4, (2, 300, 1))
  kernel = jax.random.normal(jax.random.key(5), (15, 1, 8))

  def loss(conv, x, k):
    y = conv(x, k, (1,), padding, lhs_dilation=(1,), rhs_dilation=(1,),
             dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=1, precision=None)
    return jnp.sum(jnp.sin(y)), y

  for_both = [jax.jit(jax.value_and_grad(lambda x, k, c=conv: loss(c, x, k), argnums=(0, 1),
                                         has_aux=True))
              for conv in (jax.lax.conv_general_dilated, discriminators._taps_conv)]
  (_, expected), expected_grads = for_both[0](audio, kernel)
  (_, actual), actual_grads = for_both[1](audio, kernel)
  assert actual.shape == expected.shape
  np.testing.assert_allclose(actual, expected, atol=1e-5)
  for a, e in zip(actual_grads, expected_grads):
    np.testing.assert_allclose(a, e, atol=1e-4)


def test_waveform_discriminator_params_keep_their_names_and_shapes():
  # Checkpoints from before the first conv became `_taps_conv` still load.
  init = discriminators.WaveDiscriminator(4, 16, 2).init
  params = nn.unbox(jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, 480))))["params"]
  assert params["Conv_0"]["kernel"].shape == (15, 1, 4) and params["Conv_0"]["bias"].shape == (4,)


def test_hinge_losses():
  high, low = [jnp.full((2, 3), 2.0)], [jnp.full((2, 3), -2.0)]
  assert float(codec_losses.discriminator_hinge_loss(high, low)) == 0.0
  assert float(codec_losses.discriminator_hinge_loss(low, high)) == pytest.approx(6.0)
  assert float(codec_losses.generator_hinge_loss(high)) == 0.0
  assert float(codec_losses.generator_hinge_loss(low)) == pytest.approx(3.0)


def test_feature_matching_is_zero_for_equal_features_and_trains_only_the_fake_side():
  real = [[jnp.ones((2, 4)), jnp.zeros((2, 3))]]
  assert float(codec_losses.feature_matching_loss(real, real)) == 0.0
  fake = [[jnp.zeros((2, 4)), jnp.ones((2, 3))]]
  assert float(codec_losses.feature_matching_loss(real, fake)) == pytest.approx(1.0)
  grad_real = jax.grad(lambda r: codec_losses.feature_matching_loss(r, fake))(real)
  assert all(float(jnp.abs(g).sum()) == 0 for g in jax.tree.leaves(grad_real))


@jax.jit
def _measures(clean, other):
  return (codec_losses.mel_distance(clean, other, RATE_HZ),
          codec_losses.mel_reconstruction_loss(clean, other, RATE_HZ))


def test_mel_distance_and_si_snr_rank_reconstructions():
  clean = _noise(1)
  slightly = clean + 0.01 * _noise(2)
  badly = clean + 0.3 * _noise(3)
  same = jnp.stack(_measures(clean, clean))
  np.testing.assert_allclose(same, 0.0, atol=1e-6)
  near, _ = _measures(clean, slightly)
  far, far_loss = _measures(clean, badly)
  assert 0 < float(near) < float(far) and float(far_loss) > 0
  snr = codec_losses.si_snr_db(clean, 0.5 * slightly)  # scale does not matter
  assert snr.shape == (2,)
  np.testing.assert_allclose(snr, 40.0, atol=0.5)  # noise 1/100 of the signal's amplitude
  assert float(codec_losses.si_snr_db(clean, badly).mean()) < 15.0
