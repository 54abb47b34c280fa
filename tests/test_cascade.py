"""The cascade on tiny random stage LMs and fake tokenizers: windows, seeds, story, continuation, errors."""
import functools

import numpy as np
import pytest

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import decoding
from musiclm_jax import musiclm_spec
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
import fake_tokenizers
from numpy_params import model_params

TINY = transformer.TransformerConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32)
# Semantic: 10-frame windows (0.4 s), stride 5; coarse 4 semantic frames, stride 2; fine 4
# acoustic frames, stride 2. 0.8 s then has windows of two prompt shapes per stage.
# The decoder runs on 0.2 s with 0.2 s of context: more than the tiny SoundStream sees.
WINDOWS = cascade_lib.Windows(0.4, 0.2, 0.16, 0.08, 0.08, 0.04, 0.2, 0.2)
SECONDS = 0.8
HOP = musiclm_spec.SAMPLES_PER_ACOUSTIC_FRAME


@functools.lru_cache(maxsize=None)
def tiny_stage_lms() -> dict:
  """{stage: StageLM} with numpy-drawn params; cached so compiled samplers are shared."""
  out = {}
  for seed, (name, stage) in enumerate(musiclm_spec.STAGE_CONFIGS.items()):
    model = lm.DecoderOnlyLM(TINY, stage)
    out[name] = cascade_lib.StageLM(model, model_params(model, seed=seed))
  return out


def make_cascade(acoustic=None, windows=WINDOWS, stages=None, **kwargs) -> cascade_lib.Cascade:
  """The tiny cascade; stages: [semantic, coarse, fine] StageLMs (default `tiny_stage_lms`)."""
  stages = stages or tiny_stage_lms().values()
  return cascade_lib.Cascade(
      fake_tokenizers.FakeConditioningTokenizer(),
      acoustic or fake_tokenizers.FakeAcousticTokenizer(), *stages, semantic_tokenizer=fake_tokenizers.FakeSemanticTokenizer(), windows=windows,
      **kwargs)


@pytest.fixture(scope="module")
def musiclm():
  return make_cascade()


def test_text_to_audio_has_the_requested_length_and_valid_tokens(musiclm):
  [generation] = musiclm.generate([cascade_lib.Request.from_text("calm piano", 0.79, seed=3)],
                                  batch_size=2)
  assert generation.audio.shape == (round(0.79 * 24_000),)
  assert generation.audio.dtype == np.float32 and np.std(generation.audio) > 1e-3
  assert generation.semantic.shape == (20,) and generation.acoustic.shape == (40, 12)
  assert generation.semantic.min() >= 0 and generation.semantic.max() < 1024
  assert generation.acoustic.min() >= 0 and generation.acoustic.max() < 1024
  # Each stage's windows cover its frames once, in order, and never exceed the window.
  for stage, frames, window in (("semantic", 20, 10), ("coarse", 20, 4), ("fine", 40, 4)):
    chunks = [c for c in generation.chunks if c.stage == stage]
    assert [c.start for c in chunks] == [0] + [c.end for c in chunks[:-1]]
    assert chunks[-1].end == frames and all(c.end - c.prefix_start <= window for c in chunks)
    assert any(c.prefix_start < c.start for c in chunks)


def test_a_codec_with_smaller_books_gets_only_codes_it_holds():
  """Random stage weights spread over all 1024 codes of a level; the codec holds 16."""
  small = make_cascade(acoustic=fake_tokenizers.FakeAcousticTokenizer(codebook_size=16))
  [generation] = small.generate([cascade_lib.Request.from_text("calm piano", 0.4, seed=3)])
  assert generation.acoustic.max() < 16 and len(np.unique(generation.acoustic)) > 4
  [wide] = make_cascade().generate([cascade_lib.Request.from_text("calm piano", 0.4, seed=3)])
  assert wide.acoustic.max() >= 16


class _LevelsSeen(fake_tokenizers.FakeAcousticTokenizer):
  """Decodes each frame to the sum of its codes: every level decoded is heard."""

  def decode(self, codes):
    return np.repeat(np.asarray(codes, np.float32).sum(-1), HOP, axis=-1)


def test_decode_levels_decodes_the_first_levels_of_the_same_tokens():
  request = cascade_lib.Request.from_text("calm piano", 0.4, seed=3)
  [full] = make_cascade(acoustic=_LevelsSeen()).generate([request])
  frames = np.repeat(full.acoustic.astype(np.float32), HOP, axis=0)
  np.testing.assert_allclose(full.audio, frames.sum(-1)[:len(full.audio)])
  coarse = token_layout.COARSE.num_levels
  for levels in (2, coarse, coarse + 1):
    musiclm = make_cascade(acoustic=_LevelsSeen(), decode_levels=levels)
    [part] = musiclm.generate([request])
    np.testing.assert_allclose(part.audio, frames[:, :levels].sum(-1)[:len(part.audio)])
    # The fine stage runs only when one of its levels is heard; its tokens, when it does, and
    # the coarse ones always are the full cascade's.
    ran_fine = any(chunk.stage == "fine" for chunk in part.chunks)
    assert ran_fine == musiclm.runs_fine_stage == (levels > coarse), levels
    assert ("fine" in part.stage_seconds) == ran_fine
    np.testing.assert_array_equal(part.acoustic,
                                  full.acoustic if ran_fine else full.acoustic[:, :coarse])
  # Without a fine stage the cascade decodes at most the coarse levels, to the same audio.
  semantic, coarse_stage, _ = tiny_stage_lms().values()
  [no_fine] = make_cascade(acoustic=_LevelsSeen(), stages=(semantic, coarse_stage, None),
                           decode_levels=2).generate([request])
  np.testing.assert_allclose(no_fine.audio, frames[:, :2].sum(-1)[:len(no_fine.audio)])


def test_cached_and_full_recompute_give_the_same_tokens(musiclm):
  request = cascade_lib.Request.from_text("slow strings", 0.4, seed=11)
  [cached] = musiclm.generate([request], batch_size=2)
  [full] = make_cascade(use_cache=False).generate([request], batch_size=2)
  np.testing.assert_array_equal(cached.semantic, full.semantic)
  np.testing.assert_array_equal(cached.acoustic, full.acoustic)
  np.testing.assert_allclose(cached.audio, full.audio)


def test_a_rows_output_does_not_depend_on_its_batch_mates_and_seeds_matter(musiclm):
  a = cascade_lib.Request.from_text("calm piano", SECONDS, seed=1)
  b = cascade_lib.Request.from_text("loud drums", SECONDS, seed=2)
  first, second = musiclm.generate([a, b], batch_size=2)
  swapped = musiclm.generate([b, a], batch_size=2)[1]
  [alone] = musiclm.generate([a], batch_size=2)
  for other in (swapped, alone):
    np.testing.assert_array_equal(first.semantic, other.semantic)
    np.testing.assert_array_equal(first.acoustic, other.acoustic)
  reseeded = musiclm.generate([cascade_lib.Request.from_text("calm piano", SECONDS, seed=5)],
                              batch_size=2)[0]
  assert not np.array_equal(first.semantic, reseeded.semantic)
  assert not np.array_equal(first.semantic, second.semantic)


def test_story_mode_switches_the_conditioning_at_the_boundary(musiclm):
  story = cascade_lib.Request((("calm piano", 0.4), ("loud drums", 0.4)), seed=4)
  plain = cascade_lib.Request.from_text("calm piano", SECONDS, seed=4)
  told, untold = musiclm.generate([story, plain], batch_size=2)
  boundary = 10  # semantic frames (0.4 s)
  for stage in ("semantic", "coarse"):
    for chunk in (c for c in told.chunks if c.stage == stage):
      assert chunk.segment == (chunk.start >= boundary)
      assert chunk.end <= boundary or chunk.start >= boundary
  # Before the boundary the story is the plain prompt, token for token ...
  np.testing.assert_array_equal(told.semantic[:boundary], untold.semantic[:boundary])
  np.testing.assert_array_equal(told.acoustic[:2 * boundary, :4], untold.acoustic[:2 * boundary, :4])
  # ... after it, the window that follows is sampled from the second text's M_T.
  model, params = tiny_stage_lms()["semantic"]
  layout = model.stage.layout
  mulan = fake_tokenizers.FakeConditioningTokenizer().text_tokens(["loud drums"])
  prompt = np.concatenate([layout.encode("mulan", mulan),
                           layout.encode_stream("semantic", told.semantic[None, 5:10, None])], 1)
  expected = model.predict_batch(
      params, {"prompt_tokens": prompt}, cascade_lib.window_key(4, "semantic", 1),
      decode_fn=decoding.temperature_sample, num_steps=5,
      **cascade_lib.DEFAULT_SAMPLING["semantic"].predict_kwargs())
  np.testing.assert_array_equal(layout.decode_stream("semantic", np.asarray(expected))[0, :, 0],
                                told.semantic[10:15])
  assert not np.array_equal(told.semantic[10:15], untold.semantic[10:15])


def test_continuation_starts_from_the_audio_tokens(musiclm):
  t = np.arange(int(0.21 * 24_000)) / 24_000
  audio = (0.3 * np.sin(2 * np.pi * 220 * t) * np.linspace(0.2, 1.0, len(t))).astype(np.float32)
  request = cascade_lib.Request.from_text("more of this", SECONDS, seed=2, continuation=audio)
  [generation] = musiclm.generate([request], batch_size=2)
  cut = audio[None, :5 * 960]  # whole 40 ms frames
  np.testing.assert_array_equal(generation.semantic[:5],
                                fake_tokenizers.FakeSemanticTokenizer().tokenize(cut)[0])
  np.testing.assert_array_equal(generation.acoustic[:10],
                                fake_tokenizers.FakeAcousticTokenizer().encode(cut)[0])
  assert [c.start for c in generation.chunks if c.stage == "semantic"][0] == 5
  assert [c.start for c in generation.chunks if c.stage == "fine"][0] == 10
  assert generation.audio.shape == (round(SECONDS * 24_000),)


@pytest.mark.parametrize("change,message", [
    (dict(stages=("coarse", "coarse", "fine")), "the semantic stage slot holds a coarse model"),
    (dict(codebook_size=2048), "acoustic tokenizer has 12 levels of 2048 codes"),
    (dict(windows=cascade_lib.Windows(semantic_window_seconds=0.41)), "not a positive whole number"),
    (dict(windows=cascade_lib.Windows(fine_stride_seconds=4.0)), "exceeds fine_window_seconds"),
    (dict(max_length=512), "more than max_length 512"),
    (dict(decode_levels=13), "decode_levels 13: the codec has levels 1 to 12"),
    (dict(decode_levels=0), "decode_levels 0: the codec has levels 1 to 12"),
    (dict(stages=("semantic", "coarse", None)), "decoding all codec levels needs the fine stage"),
    (dict(stages=("semantic", "coarse", None), decode_levels=5),
     "decoding 5 codec levels needs the fine stage: set FINE_EXPORT_DIR, or DECODE_LEVELS to at most 4"),
])
def test_components_that_do_not_fit_are_one_line_errors(change, message):
  stages = tiny_stage_lms()
  slots = [name and stages[name] for name in change.get("stages", musiclm_spec.STAGES)]
  with pytest.raises(UserError, match=message) as error:
    cascade_lib.Cascade(fake_tokenizers.FakeConditioningTokenizer(),
                        fake_tokenizers.FakeAcousticTokenizer(codebook_size=change.get("codebook_size", 1024)), *slots,
                        windows=change.get("windows", cascade_lib.Windows()),
                        max_length=change.get("max_length", 4096),
                        decode_levels=change.get("decode_levels"))
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("request_,message", [
    (cascade_lib.Request.from_text("  ", 1.0), "empty prompt text"),
    (cascade_lib.Request.from_text("x" * 101, 1.0), "101 characters, more than the limit of 100"),
    (cascade_lib.Request.from_text("piano", 0.0), "duration must be > 0"),
    (cascade_lib.Request.from_text("piano", -2.0), "duration must be > 0"),
    (cascade_lib.Request.from_text("piano", 0.01), "shorter than one 40 ms frame"),
    (cascade_lib.Request((("piano", 30.0), ("drums", 40.0))), "70 s exceeds the limit of 60 s"),
    (cascade_lib.Request.from_text("piano", 1.0, seed=-1), "seed must be in"),
    (cascade_lib.Request.from_text("piano", 0.5, continuation=np.zeros(24_000, np.float32)),
     "not shorter than the duration"),
])
def test_bad_requests_are_one_line_errors_before_any_compute(musiclm, request_, message):
  with pytest.raises(UserError, match=message):
    musiclm.check_request(request_, max_seconds=60.0, max_text_chars=100)
  if "limit" not in message:  # generate checks every request before it samples any
    with pytest.raises(UserError, match=message):
      musiclm.generate([cascade_lib.Request.from_text("fine", 0.4), request_])


def test_continuation_needs_the_semantic_tokenizer():
  musiclm = make_cascade()
  musiclm.semantic_tokenizer = None
  request = cascade_lib.Request.from_text("more", 1.0, continuation=np.zeros(4800, np.float32))
  with pytest.raises(UserError, match="needs the semantic tokenizer: set W2V_BERT_EXPORT_DIR"):
    musiclm.check_request(request)


def test_load_musiclm_checks_every_path_before_loading(tmp_path):
  folders = {name: tmp_path / name for name in ("mulan", "soundstream", "semantic", "coarse", "fine")}
  for folder in folders.values():
    folder.mkdir()
    (folder / "config.gin").write_text("")
  (tmp_path / "rvq.npz").write_text("")

  def never(*args):
    raise AssertionError(f"loaded {args} although a path is missing")

  paths = dict(mulan_export_dir=str(folders["mulan"]), mulan_rvq_path=str(tmp_path / "rvq.npz"),
               soundstream_export_dir=str(folders["soundstream"]),
               semantic_export_dir=str(folders["semantic"]),
               coarse_export_dir=str(folders["coarse"]), fine_export_dir=str(tmp_path / "nope"))
  loaders = dict(conditioning_loader=never, semantic_loader=never, acoustic_loader=never)
  with pytest.raises(UserError, match=r"FINE_EXPORT_DIR '.*nope' is not an existing export folder"):
    cascade_lib.load_musiclm(**paths, **loaders)
  del paths["fine_export_dir"]  # needed only when a fine level is decoded
  with pytest.raises(UserError, match="decoding all codec levels needs the fine stage"):
    cascade_lib.load_musiclm(**paths, **loaders)
  with pytest.raises(AssertionError, match="loaded"):  # the paths pass; loading begins
    cascade_lib.load_musiclm(**paths, **loaders, decode_levels=4)
  paths["fine_export_dir"] = str(folders["fine"])
  with pytest.raises(UserError, match="KMEANS_PATH"):
    cascade_lib.load_musiclm(**paths, **loaders, w2v_bert_export_dir=str(folders["mulan"]))
  (folders["coarse"] / "config.gin").unlink()
  with pytest.raises(UserError, match="COARSE_EXPORT_DIR .* has no config.gin"):
    cascade_lib.load_musiclm(**paths, **loaders)
