"""How the cascade batches requests: traced sampling knobs (no recompiles), shared and bucketed batches."""
import numpy as np

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import decoding
from musiclm_jax import musiclm_spec
from musiclm_jax.models import lm
from numpy_params import model_params
from test_cascade import TINY, make_cascade

def _knobs(i: int) -> tuple:
  """Request i's sampling: every knob's value differs between requests, which knobs are on does not."""
  return tuple((stage, decoding.SamplingConfig(
      temperature=0.5 + 0.1 * i, top_k=5 + i, top_p=0.8 + 0.01 * i,
      guidance_scale=None if stage == "fine" else 1.0 + 0.5 * i))  # fine has no conditioning
               for stage in musiclm_spec.STAGES)


def test_ten_sampling_settings_and_windows_of_every_shape_compile_each_stage_once():
  # Fresh models (the jit cache is keyed on them), so no other test's compiles count.
  stages = [cascade_lib.StageLM(model, model_params(model, seed=seed)) for seed, model in
            enumerate(lm.DecoderOnlyLM(TINY, stage)
                      for stage in musiclm_spec.STAGE_CONFIGS.values())]
  musiclm = make_cascade(stages=stages)
  requests = [cascade_lib.Request.from_text("calm piano", 0.4, seed=i, sampling=_knobs(i))
              for i in range(10)]
  # First, later, shorter last and story-cut windows: prompts and steps of many lengths.
  requests += [cascade_lib.Request.from_text("calm piano", 0.92, sampling=_knobs(10)),
               cascade_lib.Request((("calm piano", 0.44), ("loud drums", 0.36)),
                                   sampling=_knobs(11))]
  # Programs the jit cache holds, not backend compiles: the suite's persistent XLA cache
  # (conftest) turns a compile of a program seen before into a load.
  programs_before = cascade_lib._sample_rows._cache_size()  # pylint: disable=protected-access
  generations = musiclm.generate(requests, batch_size=1)  # twelve batches of one row
  programs = cascade_lib._sample_rows._cache_size() - programs_before  # pylint: disable=protected-access
  window_shapes = {(c.stage, c.start - c.prefix_start, c.end - c.start)
                   for g in generations for c in g.chunks}  # prompt and new lengths
  assert len(window_shapes) == 10
  assert programs == len(musiclm.stages) == 3
  assert len({g.semantic.tobytes() for g in generations}) == 12
  # Music shorter than a window (0.2 s; the semantic window is 0.4 s) is sampled in a program
  # of its own length, not padded to a full window; the other stages' windows fit in it.
  musiclm.generate([cascade_lib.Request.from_text("calm piano", 0.2, sampling=_knobs(12))],
                   batch_size=1)
  assert cascade_lib._sample_rows._cache_size() - programs_before == 4  # pylint: disable=protected-access


def test_rows_of_a_bucketed_batch_get_the_tokens_they_get_alone():
  musiclm = make_cascade()
  requests = [cascade_lib.Request.from_text(text, 0.4, seed=seed, sampling=(
      ("semantic", decoding.SamplingConfig(temperature=temperature)),))
              for text, seed, temperature in (("calm piano", 1, 0.7), ("loud drums", 2, 1.3),
                                              ("soft strings", 3, 1.0))]
  assert cascade_lib.plan_batches(requests, 8) == [[0, 1, 2]]  # different temperatures share
  together = musiclm.generate(requests, batch_size=8)  # 3 requests run as 4 rows
  for request, row in zip(requests, together):
    [alone] = musiclm.generate([request], batch_size=8)  # 1 row
    np.testing.assert_array_equal(row.semantic, alone.semantic)
    np.testing.assert_array_equal(row.acoustic, alone.acoustic)
    np.testing.assert_allclose(row.audio, alone.audio, atol=1e-6)


def test_batches_are_the_smallest_power_of_two_up_to_batch_size():
  assert [cascade_lib.bucket_size(n, 8) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
  assert [cascade_lib.bucket_size(n, 6) for n in (1, 3, 5, 6)] == [1, 4, 6, 6]


def test_requests_differing_in_which_knobs_are_on_or_in_length_do_not_share_a_batch():
  plain = cascade_lib.Request.from_text("piano", 1.0)
  guided = cascade_lib.Request.from_text("piano", 1.0, sampling=(
      ("coarse", decoding.SamplingConfig(guidance_scale=3.0)),))
  filtered = cascade_lib.Request.from_text("piano", 1.0, sampling=(
      ("fine", decoding.SamplingConfig(top_k=10)),))
  hotter = cascade_lib.Request.from_text("drums", 1.0, seed=4, sampling=(
      ("semantic", decoding.SamplingConfig(temperature=2.0)),))
  longer = cascade_lib.Request.from_text("piano", 2.0)
  assert cascade_lib.plan_batches([plain, guided, filtered, hotter, longer, plain], 2) == [
      [0, 3], [5], [1], [2], [4]]
