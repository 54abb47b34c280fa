"""The memorization study: greedy decoding against an argmax reference, match counts of a
stage with a known rule, the false-positive calibration, and its one-line input errors."""
import jax
import numpy as np
import pytest

from musiclm_jax import musiclm_spec
from musiclm_jax.data import token_cache
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.eval import memorization
from musiclm_jax.eval import report as report_lib
from musiclm_jax.layers import kmeans
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
from numpy_params import model_params

VOCAB = 16  # k-means clusters of these tests
MULAN_LEVELS = token_layout.MULAN.num_levels


def _record(i, mulan, semantic):
  frames = len(semantic)
  return token_cache.Record(f"clip{i}", np.asarray(mulan, np.int32), np.asarray(semantic, np.int32),
                            np.zeros((frames * musiclm_spec.ACOUSTIC_PER_SEMANTIC, 12), np.int32),
                            frames * musiclm_spec.SAMPLES_PER_SEMANTIC_FRAME)


def _rule_continuer(mulan, prefix, frames):
  """A stage that memorised one rule: S starts at M_A[0] mod VOCAB and counts up by one."""
  last = prefix[:, -1] if prefix.shape[1] else mulan[:, 0] % VOCAB - 1
  return (last[:, None] + 1 + np.arange(frames)[None]) % VOCAB


def _examples(num_memorised, num_other, frames, seed=0):
  """Records whose S follow `_rule_continuer` (memorised) and records of random S."""
  rng = np.random.default_rng(seed)
  records = []
  for i in range(num_memorised + num_other):
    mulan = rng.integers(0, 1024, MULAN_LEVELS)
    semantic = ((mulan[0] + np.arange(frames)) % VOCAB if i < num_memorised
                else rng.integers(0, VOCAB, frames))
    records.append(_record(i, mulan, semantic))
  return records


def _ground_cost(seed=0):
  return kmeans.centroid_distances(np.random.default_rng(seed).normal(size=(VOCAB, 4)))


def test_exact_matches_are_the_memorised_examples_at_every_prompt_length():
  frames = 20  # 0.8 s clips
  examples = _examples(num_memorised=6, num_other=18, frames=frames)
  study = memorization.memorization_study(examples, _rule_continuer, _ground_cost(),
                                          prompt_seconds=(0.0, 0.2, 0.4), continuation_seconds=0.2,
                                          false_positive_rate=0.05)
  assert study["prompt_seconds"] == [0.0, 0.2, 0.4]
  assert study["continuation_seconds"] == [0.2, 0.2, 0.2]  # 5 frames each: rates from the spec
  assert study["exact_match"] == [0.25, 0.25, 0.25]
  for agreement, approximate, below in zip(study["token_agreement"], study["approximate_match"],
                                           study["negatives_below_threshold"]):
    assert 0.25 <= agreement < 0.25 + 0.75 * 0.3  # random tokens agree 1 / 16 of the time
    # Memorised continuations cost 0: approximate matches hold the exact ones plus chance ones.
    assert 0.25 <= approximate <= 0.25 + 0.75 * 0.2
    assert below <= 0.05
  assert study["negative_pairs"] == [min(24 * 23, memorization.MAX_NEGATIVE_PAIRS)] * 3


def test_a_continuation_cut_by_the_clip_end_and_paper_prompts_that_do_not_fit():
  examples = _examples(num_memorised=2, num_other=2, frames=40)  # 1.6 s clips
  study = memorization.memorization_study(examples, _rule_continuer, _ground_cost())
  # The paper's T that fit 1.6 s: 0 and 1 s; the 5 s continuation is cut to what remains.
  assert study["prompt_seconds"] == [0.0, 1.0]
  assert study["continuation_seconds"] == [1.6, pytest.approx(0.6)]
  assert set(study["skipped"]) == {"2.5", "5", "10"} and "1.6 s" in study["skipped"]["5"]
  assert study["exact_match"] == [0.5, 0.5]


def test_calibrated_threshold_has_the_stated_false_positive_rate_on_fresh_negatives():
  rng = np.random.default_rng(0)
  rate = 0.01
  threshold = memorization.calibrate_threshold(rng.exponential(size=5000), rate)
  assert threshold == pytest.approx(-np.log(1 - rate), rel=0.2)  # the exponential's 1 % quantile
  fresh = rng.exponential(size=200_000)
  assert np.mean(fresh < threshold) == pytest.approx(rate, abs=0.003)


def test_greedy_continuer_is_the_argmax_of_the_full_forward_pass():
  config = transformer.TransformerConfig(d_model=16, num_layers=1, num_heads=2, d_ff=32)
  model = lm.DecoderOnlyLM(config, musiclm_spec.semantic_stage())
  params = model_params(model, seed=0)
  rng = np.random.default_rng(0)
  mulan, prefix = rng.integers(0, 1024, (3, MULAN_LEVELS)), rng.integers(0, 1024, (3, 4))
  generated = memorization.greedy_continuer((model, params))(mulan, prefix, 6)
  layout = model.stage.layout
  tokens = np.concatenate([np.full((3, 1), token_layout.PAD_ID), layout.encode("mulan", mulan),
                           layout.encode("semantic", prefix[..., None])[..., 0],
                           np.zeros((3, 6), np.int64)], axis=1)
  # One compile: attention is causal, so the zeros after position p do not change its logits.
  forward = jax.jit(model.apply)
  expected = []
  for step in range(6):
    position = tokens.shape[1] - 6 + step - 1
    code = np.asarray(forward(params, tokens))[:, position].argmax(-1)  # column j is code j
    expected.append(code)
    tokens[:, position + 1] = layout.encode("semantic", code[:, None])[:, 0]
  np.testing.assert_array_equal(generated, np.stack(expected, axis=1))


def test_inputs_without_m_a_or_too_short_for_the_asked_prompt_are_one_line_errors(tmp_path):
  examples = _examples(num_memorised=1, num_other=2, frames=20)
  with pytest.raises(UserError, match=r"^the shortest training clip is 0.8 s, no continuation "
                                      r"after 1 s: drop 1 from MEMORIZATION_PROMPT_SECONDS[^\n]*$"):
    memorization.memorization_study(examples, _rule_continuer, _ground_cost(),
                                     prompt_seconds=(0.0, 1.0))
  cache = str(tmp_path / "tokens")
  without_m_a = [_record(i, [], e.semantic) for i, e in enumerate(examples)]
  token_cache.write_shard(token_cache.shard_path(cache, "train", 0, 1), without_m_a, {})
  token_cache.write_metadata(cache, {"mulan": {"num_levels": 0}}, {"train": {"num_shards": 1}})
  with pytest.raises(UserError, match=r"^the token cache \S+ has records without M_A[^\n]*$"):
    memorization.read_examples(cache, "train", num_examples=8)
  with pytest.raises(UserError, match="not a token cache"):
    memorization.read_examples(str(tmp_path), "train", num_examples=8)


def test_report_prints_and_plots_the_study(tmp_path):
  study = memorization.memorization_study(_examples(2, 2, frames=40), _rule_continuer,
                                          _ground_cost())
  report = {"sets": {"generated": {"title": "generated", "clips": 2, "paired_clips": 0}},
            "metrics": {}, "unavailable": {}, "sets_not_given": {}, "notes": {},
            "fad_curves": {}, "memorization": study}
  text = report_lib.headline(report)
  assert "memorization, 4 training examples" in text and "1 % false-positive threshold" in text
  assert "T = 1 s, 0.6 s continued: exact 0.500" in text
  assert "T = 10 s: not run, the shortest training clip is 1.6 s" in text
  page = (tmp_path / "eval.html")
  report_lib.write_html(str(page), report)
  assert "<h2>Memorization</h2>" in page.read_text() and "data:image/png;base64," in page.read_text()


def test_codes_beyond_the_k_means_clusters_are_as_far_as_the_farthest_centroids():
  distances = kmeans.centroid_distances(np.array([[0.0], [1.0], [3.0]]))
  cost = memorization.stage_ground_cost(distances, vocab_size=5)
  np.testing.assert_array_equal(cost[:3, :3], distances)
  assert cost[4, 0] == cost[0, 3] == cost[3, 4] == 3.0 and cost[3, 3] == cost[4, 4] == 0.0
  with pytest.raises(UserError, match="more than the stage's 2 semantic codes"):
    memorization.stage_ground_cost(distances, vocab_size=2)
