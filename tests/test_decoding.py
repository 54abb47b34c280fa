"""The sampler: cached = full recompute, top-k/top-p/temperature, level constraints, CFG, seeds."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax import decoding
from musiclm_jax import musiclm_spec
from musiclm_jax.errors import UserError
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
from numpy_params import model_params
from numpy_params import random_stream

TINY = transformer.TransformerConfig(d_model=32, num_layers=2, num_heads=2, d_ff=64)
NUM_STEPS = 9
STAGES = musiclm_spec.STAGE_CONFIGS


def _prompt(stage, rows=2):
  """[rows, n] conditioning + prefix; coarse and fine also hold 3 target tokens to continue."""
  layout = stage.layout
  out = []
  for r in range(rows):
    if stage.name == "semantic":
      parts = [random_stream(layout, "mulan", 1, r), random_stream(layout, "semantic", 3, 10 + r)]
    elif stage.name == "coarse":
      parts = [random_stream(layout, "mulan", 1, r), random_stream(layout, "semantic", 4, 10 + r),
               random_stream(layout, "coarse", 1, 20 + r)[:3]]
    else:
      parts = [random_stream(layout, "coarse", 2, r), random_stream(layout, "fine", 1, 10 + r)[:3]]
    out.append(np.concatenate(parts))
  return np.stack(out)


def generate(model, params, prompt, rng, *, num_steps, sampling=decoding.SamplingConfig(),
             **kwargs):
  """The stage LM's predict_batch with the temperature sampler and `sampling`'s knobs."""
  return model.predict_batch(params, {"prompt_tokens": prompt}, rng,
                             decode_fn=decoding.temperature_sample, num_steps=num_steps,
                             **sampling.predict_kwargs(), **kwargs)


@pytest.fixture(scope="module")
def models():
  built = {name: lm.DecoderOnlyLM(TINY, stage) for name, stage in STAGES.items()}
  return {name: (model, model_params(model)) for name, model in built.items()}


def _in_level_ranges(stage, prompt, tokens):
  """Whether new token i of each row is an id of target level (already in prompt + i)."""
  layout = stage.layout
  start = layout.contains(stage.target_kind, prompt).sum(axis=1, keepdims=True)
  low, high = layout.level_id_range(stage.target_kind, start + np.arange(tokens.shape[1]))
  return (tokens >= low) & (tokens < high)


@pytest.mark.parametrize("stage_name,guidance_scale", [
    ("semantic", 3.0), ("coarse", 2.0), ("fine", None)])
def test_cached_and_full_recompute_give_the_same_tokens_of_the_right_levels(
    models, stage_name, guidance_scale):
  model, params = models[stage_name]
  prompt = _prompt(model.stage)
  sampling = decoding.SamplingConfig(temperature=1.0, guidance_scale=guidance_scale)
  run = lambda cached: np.asarray(generate(
      model, params, prompt, jax.random.PRNGKey(7), num_steps=NUM_STEPS, sampling=sampling,
      cached=cached))
  cached, full = run(True), run(False)
  assert cached.shape == (2, NUM_STEPS)
  np.testing.assert_array_equal(cached, full)
  assert _in_level_ranges(model.stage, prompt, cached).all()
  # Random weights spread their mass over all levels: unconstrained sampling would stray.
  assert len(np.unique(cached)) > NUM_STEPS


@pytest.mark.parametrize("cached", [True, False])
@pytest.mark.parametrize("stage_name,guidance_scale,frame_positions", [
    ("semantic", 3.0, False), ("coarse", 2.0, True), ("fine", None, False)])
def test_a_padded_prompt_samples_what_the_prompt_alone_does_in_one_program(
    stage_name, guidance_scale, frame_positions, cached):
  stage = STAGES[stage_name]
  model = lm.DecoderOnlyLM(TINY, stage, frame_positions=frame_positions)
  params = model_params(model)
  prompt = _prompt(stage)
  width = prompt.shape[1] + 3  # padding even after the longest prompt
  sampling = decoding.SamplingConfig(temperature=1.0, guidance_scale=guidance_scale)
  rng = jax.random.PRNGKey(5)
  padded_run = jax.jit(lambda padded, length, steps: generate(
      model, params, padded, rng, num_steps=NUM_STEPS, sampling=sampling, cached=cached,
      cache_length=width + NUM_STEPS, prompt_length=length, steps=steps))
  for length, steps in ((prompt.shape[1], NUM_STEPS), (prompt.shape[1] - 2, 4),
                        (prompt.shape[1] - 1, 1)):
    alone = np.asarray(generate(model, params, prompt[:, :length], rng, num_steps=steps,
                                sampling=sampling, cached=cached))
    padded = np.pad(prompt[:, :length], ((0, 0), (0, width - length)))  # PAD_ID is 0
    out = np.asarray(padded_run(padded, np.int32(length), np.int32(steps)))
    np.testing.assert_array_equal(out[:, :steps], alone)
    assert not out[:, steps:].any()
  assert padded_run._cache_size() == 1  # pylint: disable=protected-access


def test_level_ranges_check_can_fail():
  stage = STAGES["coarse"]
  prompt = _prompt(stage, rows=1)
  shifted = stage.layout.encode_stream("coarse", np.zeros((3, 4), np.int32))[None, :NUM_STEPS]
  assert not _in_level_ranges(stage, prompt, shifted).all()


def _greedy_reference(model, params, prompt, num_steps, num_codes=None):
  """Argmax within each position's level range (its first `num_codes` codes), one full forward
  pass per token (numpy masks)."""
  stage = model.stage
  apply = jax.jit(model.apply)
  rows = np.concatenate([np.zeros((prompt.shape[0], 1), np.int32), prompt], axis=1)
  start = stage.layout.contains(stage.target_kind, prompt).sum(axis=1)
  buffer = np.pad(rows, ((0, 0), (0, num_steps)))
  n = rows.shape[1]
  for i in range(num_steps):
    logits = np.asarray(apply(params, jnp.asarray(buffer)))[:, n + i - 1]
    ids = model.logits_offset + np.arange(logits.shape[-1])
    low, high = stage.layout.level_id_range(stage.target_kind, start + i)
    if num_codes is not None:
      high = low + num_codes
    allowed = (ids >= low[:, None]) & (ids < high[:, None])
    buffer[:, n + i] = ids[np.where(allowed, logits, -np.inf).argmax(axis=1)]
  return buffer[:, n:]


def test_top_k_1_tiny_top_p_and_near_zero_temperature_are_greedy(models):
  model, params = models["coarse"]
  prompt = _prompt(model.stage)
  greedy = _greedy_reference(model, params, prompt, NUM_STEPS)
  for sampling in (decoding.SamplingConfig(top_k=1), decoding.SamplingConfig(top_p=1e-6),
                   decoding.SamplingConfig(temperature=1e-4), decoding.SamplingConfig(temperature=0)):
    for seed in (0, 1):
      tokens = generate(model, params, prompt, jax.random.PRNGKey(seed),
                                 num_steps=NUM_STEPS, sampling=sampling)
      np.testing.assert_array_equal(tokens, greedy, err_msg=str(sampling))
  sampled = generate(model, params, prompt, jax.random.PRNGKey(0), num_steps=NUM_STEPS)
  assert not np.array_equal(sampled, greedy)


def test_num_codes_samples_only_the_first_codes_of_each_level(models):
  """A codec with smaller books than the layout's: its stages sample only codes it holds."""
  model, params = models["coarse"]
  prompt = _prompt(model.stage)
  greedy = _greedy_reference(model, params, prompt, NUM_STEPS, num_codes=5)
  assert not np.array_equal(greedy, _greedy_reference(model, params, prompt, NUM_STEPS))
  tokens = generate(model, params, prompt, jax.random.PRNGKey(0), num_steps=NUM_STEPS,
                    sampling=decoding.SamplingConfig(top_k=1), num_codes=5)
  np.testing.assert_array_equal(tokens, greedy)
  sampled = np.asarray(generate(model, params, prompt, jax.random.PRNGKey(0),
                                num_steps=NUM_STEPS, num_codes=5))
  layout = model.stage.layout
  start = layout.contains("coarse", prompt).sum(axis=1, keepdims=True)
  low, _ = layout.level_id_range("coarse", start + np.arange(NUM_STEPS))
  assert ((sampled >= low) & (sampled < low + 5)).all()
  assert len(np.unique(sampled - low)) > 1


def test_sample_logits_keeps_only_the_top_k_and_the_top_p_nucleus():
  rows = 4000
  probs = np.array([0.1, 0.4, 0.2, 0.3])
  logits = jnp.tile(jnp.log(jnp.asarray(probs, jnp.float32)), (rows, 1))
  keys = jax.random.split(jax.random.PRNGKey(0), rows)
  sample = jax.jit(decoding.sample_logits)
  counts = lambda *args: np.bincount(np.asarray(sample(keys, logits, *args)), minlength=4) / rows

  np.testing.assert_allclose(counts(1.0, 0, 1.0), probs, atol=0.03)
  np.testing.assert_allclose(counts(1.0, 2, 1.0), [0, 4 / 7, 0, 3 / 7], atol=0.03)
  # 0.4 + 0.3 reaches 0.65, so 0.2 is outside the nucleus; top_k=3 then changes nothing.
  np.testing.assert_allclose(counts(1.0, 0, 0.65), [0, 4 / 7, 0, 3 / 7], atol=0.03)
  np.testing.assert_allclose(counts(1.0, 3, 0.65), [0, 4 / 7, 0, 3 / 7], atol=0.03)
  np.testing.assert_allclose(counts(1.0, 3, 1.0), [0, 4 / 9, 2 / 9, 3 / 9], atol=0.03)
  np.testing.assert_array_equal(counts(0.01, 0, 1.0), [0, 1, 0, 0])
  np.testing.assert_allclose(counts(100.0, 0, 1.0), 0.25, atol=0.03)


def test_temperature_sample_drives_any_model_given_as_functions():
  """A bigram table is the model; greedy follows its argmax chain within each step's allowed ids."""
  table = np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32)
  start = np.array([1, 5])

  def tokens_to_logits(token, calls):
    return jnp.asarray(table)[token], calls + 1

  def constrain(logits, step):
    """Step p may only take ids [4 (p % 2), 4 (p % 2) + 4)."""
    first = jnp.full(logits.shape[:1], (step % 2) * 4)
    return jax.vmap(lambda row, f: jax.lax.dynamic_slice(row, (f,), (4,)))(logits, first), first

  tokens = decoding.temperature_sample(jnp.asarray(table)[start], jnp.int32(0), tokens_to_logits,
                                       jax.random.PRNGKey(0), num_steps=5, temperature=0.0,
                                       constrain=constrain)
  expected, previous = [], start
  for p in range(5):
    low = p % 2 * 4
    previous = low + table[previous, low:low + 4].argmax(axis=1)
    expected.append(previous)
  np.testing.assert_array_equal(tokens, np.stack(expected, axis=1))


def test_seeds_are_deterministic_distinct_and_independent_of_the_batch(models):
  model, params = models["semantic"]
  prompt = _prompt(model.stage, rows=2)
  run = lambda p, seed: np.asarray(generate(
      model, params, p, jax.random.PRNGKey(seed), num_steps=NUM_STEPS))
  first = run(prompt, 0)
  np.testing.assert_array_equal(run(prompt, 0), first)
  assert (run(prompt, 1) != first).mean() > 0.5
  assert (first[0] != first[1]).mean() > 0.5
  np.testing.assert_array_equal(run(prompt[:1], 0)[0], first[0])


def test_guidance_scale_mixes_conditional_and_unconditional_logits(models):
  model, params = models["semantic"]
  prompt = _prompt(model.stage)
  rng = jax.random.PRNGKey(3)
  run = lambda p, scale: np.asarray(generate(
      model, params, p, rng, num_steps=NUM_STEPS,
      sampling=decoding.SamplingConfig(guidance_scale=scale)))
  conditional = run(prompt, None)
  unconditional = run(np.asarray(model.remove_conditioning(jnp.asarray(prompt))), None)
  assert not np.array_equal(conditional, unconditional)
  np.testing.assert_array_equal(run(prompt, 1.0), conditional)
  np.testing.assert_array_equal(run(prompt, 0.0), unconditional)
  assert not np.array_equal(run(prompt, 3.0), conditional)


def test_plain_lm_predict_batch_continues_a_prefix_or_starts_from_nothing():
  model = lm.DecoderOnlyLM(dataclasses.replace(TINY, vocab_size=64))
  params = model_params(model)
  prefix = np.arange(2, 12, dtype=np.int32).reshape(2, 5)
  predict = lambda prompt, seed: np.asarray(model.predict_batch(
      params, {"prompt_tokens": prompt}, jax.random.PRNGKey(seed),
      decode_fn=decoding.temperature_sample, num_steps=6, top_k=5))
  tokens = predict(prefix, 0)
  assert tokens.shape == (2, 6) and tokens.dtype == np.int32
  np.testing.assert_array_equal(predict(prefix, 0), tokens)
  assert not np.array_equal(predict(prefix, 1), tokens)
  assert not np.array_equal(predict(prefix + 1, 0), tokens)
  empty = predict(np.zeros((1, 0), np.int32), 0)
  assert empty.shape == (1, 6) and ((0 <= empty) & (empty < 64)).all()


def test_user_mistakes_are_one_line_errors(models):
  model, params = models["semantic"]
  prompt = _prompt(model.stage)
  rng = jax.random.PRNGKey(0)
  with pytest.raises(UserError, match=r"= 4101 exceeds max_length 4096"):
    generate(model, params, prompt, rng, num_steps=4101 - 1 - prompt.shape[1])
  with pytest.raises(UserError, match="exceeds max_length 20"):
    generate(model, params, prompt, rng, num_steps=5, max_length=20)
  bad = prompt.copy()
  bad[0, 2] = 13400  # past the semantic ids, in the padding of the vocabulary
  with pytest.raises(UserError, match=r"prompt id 13400 at \(0, 2\) is not one of the mulan, "
                     "semantic ids"):
    generate(model, params, bad, rng, num_steps=2)
  with pytest.raises(UserError, match="top_p must be in"):
    decoding.SamplingConfig(top_p=0.0)
  with pytest.raises(UserError, match="a padded prompt needs prompt_length, steps and cache_len"):
    generate(model, params, prompt, rng, num_steps=2, prompt_length=3)
  n = prompt.shape[1]
  for length, steps in ((n + 1, 1), (n, 0), (n, 3)):
    with pytest.raises(UserError, match=rf"prompt_length {length} must be in \[0, {n}\] and "
                       rf"steps {steps} in \[1, 2\]"):
      generate(model, params, prompt, rng, num_steps=2, cache_length=40, prompt_length=length,
               steps=steps)
  with pytest.raises(UserError, match=f"cache_length {n + 1} is too short for {n + 2} tokens"):
    generate(model, params, prompt, rng, num_steps=2, cache_length=n + 1, prompt_length=n,
             steps=2)
  for num_codes in (0, 1025):
    with pytest.raises(UserError, match=f"num_codes {num_codes} needs a stage model and must be"):
      generate(model, params, prompt, rng, num_steps=2, num_codes=num_codes)
  fine, fine_params = models["fine"]
  with pytest.raises(UserError, match="guidance_scale needs a stage model with conditioning"):
    generate(fine, fine_params, _prompt(fine.stage), rng, num_steps=2,
                      sampling=decoding.SamplingConfig(guidance_scale=2.0))
