"""Long generation: many windows per stage, decoded by a tiny SoundStream, join without gaps or clicks."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax import cascade as cascade_lib
from musiclm_jax.models import discriminators
from musiclm_jax.models import soundstream
from musiclm_jax.tokenizers import acoustic
from test_cascade import WINDOWS, make_cascade

# The paper's hop (480) and 12 x 1024 codes, with 2 channels: fast to compile.
TINY_CODEC = soundstream.SoundStreamConfig(channels=2, embedding_dim=8, dilations=(1,),
                                           num_levels=12, codebook_size=1024)
TINY_DISCRIMINATORS = discriminators.DiscriminatorConfig(
    stft_fft_sizes=(64,), stft_channels=1, wave_scales=1, wave_channels=1, wave_max_channels=1,
    wave_downsamples=1)
SECONDS = 1.6  # 4 semantic windows of 0.4 s with stride 0.2, 19 coarse, 39 fine, 4 decoder windows


def tiny_soundstream_params(model: soundstream.SoundStreamModel, seed: int = 0):
  """Numpy-drawn params (no init to compile) with random codebooks: every code decodes differently."""
  abstract = nn.unbox(jax.eval_shape(model.init, jax.random.key(0),
                                     {"audio": jax.ShapeDtypeStruct((1, 480), jnp.float32)}))
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if path[-1].key in ("gain", "initialized"):  # weight-norm gains; "the codebooks are seeded"
      value = np.ones(leaf.shape)
    elif path[-1].key == "codebooks":
      value = rng.normal(size=leaf.shape)
    else:
      value = rng.normal(size=leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]) if leaf.ndim > 1 else 1)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree_util.tree_map_with_path(draw, abstract)


@pytest.fixture(scope="module")
def codec():
  model = soundstream.SoundStreamModel(TINY_CODEC, TINY_DISCRIMINATORS)
  return acoustic.SoundStreamTokenizer(model, tiny_soundstream_params(model))


@pytest.fixture(scope="module")
def long_generation(codec):
  [generation] = make_cascade(acoustic=codec).generate(
      [cascade_lib.Request.from_text("a long calm piano piece", SECONDS, seed=7)], batch_size=2)
  return generation


def test_windows_continue_each_other_token_for_token(long_generation):
  frames = {"semantic": 40, "coarse": 40, "fine": 80}
  for stage, (window, stride) in (("semantic", WINDOWS.frames("semantic")),
                                  ("coarse", WINDOWS.frames("coarse")),
                                  ("fine", WINDOWS.frames("fine"))):
    chunks = [c for c in long_generation.chunks if c.stage == stage]
    assert chunks[0][2:] == (0, 0, window)
    for previous, chunk in zip(chunks, chunks[1:]):
      # Each later window keeps the last (window - stride) frames as prefix: no gap, no overlap.
      assert chunk.start == previous.end and chunk.end - chunk.start == stride
      assert chunk.start - chunk.prefix_start == window - stride
    assert chunks[-1].end == frames[stage]
  assert long_generation.audio.shape == (round(SECONDS * 24_000),)


def test_decoding_in_windows_equals_decoding_at_once(codec, long_generation):
  whole = codec.decode(long_generation.acoustic[None])[0]
  np.testing.assert_allclose(long_generation.audio, whole, atol=1e-5)


def test_no_gap_or_click_at_window_joins(long_generation):
  audio = long_generation.audio
  samples_per = {"semantic": 960, "coarse": 960, "fine": 480}
  joins = sorted({c.start * samples_per[c.stage] for c in long_generation.chunks if c.start > 0}
                 | set(range(4800, len(audio), 4800)))  # + the decoder's 0.2 s windows
  jumps = np.abs(np.diff(audio))
  at_joins = jumps[np.asarray(joins) - 1]  # the step from the last sample before to the first after
  elsewhere = np.delete(jumps, np.asarray(joins) - 1)
  assert at_joins.max() <= elsewhere.max()
  assert np.median(at_joins) <= 3 * np.median(elsewhere) + 1e-6
  # No silent stretch: every 10 ms has energy comparable to the whole clip.
  rms = np.sqrt(np.mean(audio[:len(audio) // 240 * 240].reshape(-1, 240) ** 2, axis=1))
  assert rms.min() > 0.05 * np.median(rms) > 0
  around = [rms[max(0, j // 240 - 1):j // 240 + 1].mean() for j in joins]
  assert 0.2 * np.median(rms) < np.median(around) < 5 * np.median(rms)
