"""Stage LMs: cached decoding, target-only loss, conditioning dropout, FLOPs."""
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from musiclm_jax import decoding
from musiclm_jax import musiclm_spec
from musiclm_jax.data import token_layout
from musiclm_jax.layers import relative_position
from musiclm_jax.layers import transformer
from musiclm_jax.models import lm
from musiclm_jax.tools import param_count
from numpy_params import model_params
from numpy_params import random_stream

TINY = transformer.TransformerConfig(d_model=64, num_layers=2, num_heads=4, d_ff=128)


def _stage_sequence(stage, seed=0):
  """(tokens [1, length], number of conditioning + prefix tokens) for a short example."""
  layout = stage.layout
  if stage.name == "semantic":
    parts = [random_stream(layout, "mulan", 1, seed),
             random_stream(layout, "semantic", 20, seed + 1)]
  elif stage.name == "coarse":
    parts = [random_stream(layout, "mulan", 1, seed),
             random_stream(layout, "semantic", 6, seed + 1),
             random_stream(layout, "coarse", 4, seed + 2)]
  else:
    parts = [random_stream(layout, "coarse", 4, seed), random_stream(layout, "fine", 2, seed + 1)]
  tokens = np.concatenate(parts)[None]
  return jnp.asarray(tokens), tokens.shape[1] - len(parts[-1])


STAGES = musiclm_spec.STAGE_CONFIGS


@pytest.mark.parametrize("scan_layers,frame_positions", [(True, False), (False, False),
                                                          (True, True)])
@pytest.mark.parametrize("stage_name", list(STAGES))
def test_cached_decoding_matches_full_forward(stage_name, scan_layers, frame_positions):
  stage = STAGES[stage_name]
  model = lm.DecoderOnlyLM(dataclasses.replace(TINY, scan_layers=scan_layers), stage,
                           frame_positions=frame_positions)
  # Two different rows: the cache keeps each row's keys apart from the other's.
  tokens, prefix_length = _stage_sequence(stage)
  tokens = jnp.concatenate([tokens, _stage_sequence(stage, seed=7)[0]])
  length = tokens.shape[1]
  assert length > 16 + 8  # offsets beyond the 16 exact buckets, into the log-spaced ones
  params = model_params(model, length)
  full = jax.jit(model.apply)(params, tokens)

  # Spare slots at the end must stay masked while they are still empty.
  cache = model.init_cache(batch_size=2, max_length=length + 5)
  prefill_logits, cache = jax.jit(model.prefill)(params, cache, tokens[:, :prefix_length])
  step = jax.jit(model.decode_step)
  step_logits = []
  for t in range(prefix_length, length):
    logits, cache = step(params, cache, tokens[:, t])
    step_logits.append(logits)
  assert int(cache["index"]) == length
  incremental = jnp.concatenate([prefill_logits, jnp.stack(step_logits, axis=1)], axis=1)
  np.testing.assert_allclose(incremental, full, atol=2e-4, rtol=1e-4)


def _while_bodies(hlo_text):
  """{name: text} of the computations that compiled while loops run as their body."""
  computations = {}
  for block in hlo_text.split("\n\n"):
    header = block.lstrip().split(" ", 1)[0]
    computations[header.removeprefix("ENTRY").lstrip("%")] = block
  names = re.findall(r"body=%?([\w.\-]+)", hlo_text)
  return {name: computations.get(name, "") for name in names}


@pytest.mark.parametrize("padded", [False, True])
def test_decoding_writes_each_layer_cache_in_place(padded):
  # An unrolled stack's decode loop must neither copy nor transpose a layer's cache per
  # token: XLA:CPU did both when the cache was [batch, length, heads, kv] (stacked, or
  # per layer), a third of a small-scale token's time. Cache slots (37) are a size no
  # other array has. Padded: the cascade's program, with a traced prompt length and
  # step count (a while loop, not a scan).
  stage = STAGES["semantic"]
  model = lm.DecoderOnlyLM(dataclasses.replace(TINY, scan_layers=False), stage)
  params = model_params(model)
  prompt = jnp.asarray(random_stream(stage.layout, "mulan", 1, 0)[None], jnp.int32)
  knobs = {"temperature": np.float32(1.0)}
  prompt_length = None
  if padded:
    prompt = jnp.pad(prompt, ((0, 0), (0, 5)))
    knobs.update(steps=np.int32(4))
    prompt_length = np.int32(prompt.shape[1] - 5)
  compiled = model._predict.lower(
      model, params, prompt, jax.random.PRNGKey(0), None, knobs, prompt_length,
      decode_fn=decoding.temperature_sample, num_steps=4, cached=True,
      cache_length=37, num_codes=None).compile().as_text()
  bodies = _while_bodies(compiled)
  assert bodies, "no while loop in the compiled sampler"
  cache_shaped = re.compile(r"= f32\[[\d,]*\b37\b[\d,]*\]\S* (copy|fusion)\(")
  copies = [line.strip() for body in bodies.values() for line in body.splitlines()
            if cache_shaped.search(line) and "copy" in line.split("=")[0] + line.split("(")[0]]
  assert not copies, copies


def _semantic_batch(model):
  """A batch of 2 (12 MuLan + 8 semantic tokens), SeqIO-shifted, every weight 1."""
  layout = model.stage.layout
  rows = [np.concatenate([random_stream(layout, "mulan", 1, 2 * i),
                          random_stream(layout, "semantic", 8, 2 * i + 1)]) for i in range(2)]
  targets = np.stack(rows).astype(np.int32)
  inputs = np.concatenate([np.zeros((2, 1), np.int32), targets[:, :-1]], axis=1)
  return {"decoder_input_tokens": jnp.asarray(inputs),
          "decoder_target_tokens": jnp.asarray(targets),
          "decoder_loss_weights": jnp.ones(targets.shape, jnp.float32)}


def _coarse_batch(model):
  """A batch of 2 (12 MuLan + 4 semantic + 3 x 4 coarse tokens), SeqIO-shifted, every weight 1."""
  layout = model.stage.layout
  rows = [np.concatenate([random_stream(layout, "mulan", 1, 3 * i),
                          random_stream(layout, "semantic", 4, 3 * i + 1),
                          random_stream(layout, "coarse", 3, 3 * i + 2)]) for i in range(2)]
  targets = np.stack(rows).astype(np.int32)
  inputs = np.concatenate([np.zeros((2, 1), np.int32), targets[:, :-1]], axis=1)
  return {"decoder_input_tokens": jnp.asarray(inputs),
          "decoder_target_tokens": jnp.asarray(targets),
          "decoder_loss_weights": jnp.ones(targets.shape, jnp.float32)}


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("stage_name, num_prefix, num_targets", [
    ("semantic", 12, 8), ("coarse", 16, 12)])
def test_loss_is_cross_entropy_over_the_target_level_codes(stage_name, num_prefix, num_targets,
                                                           packed):
  model = lm.DecoderOnlyLM(TINY, STAGES[stage_name], z_loss=1e-2)
  batch = (_semantic_batch if stage_name == "semantic" else _coarse_batch)(model)
  if packed:  # one segment per row: the same sequences through the packed rows' path
    batch["decoder_segment_ids"] = jnp.ones_like(batch["decoder_target_tokens"])
  params = model_params(model, 20)
  loss, metrics = jax.jit(model.loss_fn)(params, batch, None)

  logits = np.asarray(jax.jit(model.apply)(params, batch["decoder_input_tokens"]), np.float64)
  kind = model.stage.layout.kind(model.stage.target_kind)
  low, high = model.stage.layout.id_range(kind.name)
  assert logits.shape[-1] == high - low and model.logits_offset == low
  targets = np.asarray(batch["decoder_target_tokens"])[:, num_prefix:]
  logits = logits[:, num_prefix:]
  # Each target's own level: ids [level_low, level_low + codebook_size).
  level_low, _ = model.stage.layout.level_id_range(kind.name, np.arange(num_targets))
  columns = (level_low - low)[None, :, None] + np.arange(kind.codebook_size)
  level_logits = np.take_along_axis(logits, columns, -1)
  log_z = np.log(np.exp(level_logits).sum(-1))
  target_logits = np.take_along_axis(logits, (targets - low)[..., None], -1)[..., 0]
  cross_entropy = (log_z - target_logits).mean()
  z_term = 1e-2 * (log_z ** 2).mean()
  accuracy = (level_low + level_logits.argmax(-1) == targets).mean()
  np.testing.assert_allclose(metrics["cross_entropy"], cross_entropy, rtol=1e-5)
  np.testing.assert_allclose(metrics["z_loss"], z_term, rtol=1e-5)
  np.testing.assert_allclose(loss, cross_entropy + z_term, rtol=1e-5)
  np.testing.assert_allclose(metrics["accuracy"], accuracy)
  assert metrics["num_tokens"] == 2 * num_targets


def test_prefix_weights_are_ignored_and_target_weights_count():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.semantic_stage())
  batch = _semantic_batch(model)
  params = model_params(model, 20)
  loss_fn = jax.jit(model.loss_fn)
  loss, _ = loss_fn(params, batch, None)
  prefix_weight = dict(batch, decoder_loss_weights=batch["decoder_loss_weights"].at[0, 3].set(5.0))
  target_weight = dict(batch, decoder_loss_weights=batch["decoder_loss_weights"].at[0, 15].set(5.0))
  np.testing.assert_array_equal(loss_fn(params, prefix_weight, None)[0], loss)
  assert loss_fn(params, target_weight, None)[0] != loss


def test_remove_conditioning_replaces_only_conditioning_tokens():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.coarse_stage())
  tokens, _ = _stage_sequence(model.stage)
  tokens = jnp.concatenate([tokens, tokens])
  dropped = model.remove_conditioning(tokens, jnp.array([True, False]))
  is_mulan = np.asarray(model.stage.layout.contains("mulan", tokens[0]))
  assert is_mulan.sum() == 12
  np.testing.assert_array_equal(dropped[0][is_mulan], token_layout.NULL_ID)
  np.testing.assert_array_equal(dropped[0][~is_mulan], tokens[0][~is_mulan])
  np.testing.assert_array_equal(dropped[1], tokens[1])


def test_conditioning_dropout_drops_when_on_and_never_when_off():
  stage = musiclm_spec.semantic_stage()
  always = lm.DecoderOnlyLM(TINY, stage, condition_dropout_rate=1.0)
  never = lm.DecoderOnlyLM(TINY, stage)
  batch = _semantic_batch(never)
  params = model_params(never, 20)
  rng = jax.random.PRNGKey(3)
  nulled = dict(batch,
                decoder_input_tokens=never.remove_conditioning(batch["decoder_input_tokens"]))

  always_loss, never_loss = jax.jit(always.loss_fn), jax.jit(never.loss_fn)

  clean = never_loss(params, batch, None)[0]
  unconditional = never_loss(params, nulled, None)[0]
  assert unconditional != clean
  np.testing.assert_allclose(always_loss(params, batch, rng)[0], unconditional, rtol=1e-6)
  # Off in eval (rng=None) even at rate 1, and off at rate 0 even in training.
  np.testing.assert_allclose(always_loss(params, batch, None)[0], clean, rtol=1e-6)
  np.testing.assert_allclose(never_loss(params, batch, rng)[0], clean, rtol=1e-6)


def test_plain_lm_over_a_small_vocab():
  model = lm.DecoderOnlyLM(dataclasses.replace(TINY, vocab_size=16))
  targets = jnp.tile(jnp.arange(2, 12, dtype=jnp.int32), (2, 1))
  batch = {"decoder_input_tokens": jnp.pad(targets[:, :-1], ((0, 0), (1, 0))),
           "decoder_target_tokens": targets,
           "decoder_loss_weights": jnp.ones(targets.shape).at[:, -3:].set(0)}
  loss, metrics = jax.jit(model.loss_fn)(model_params(model, 10), batch, jax.random.PRNGKey(0))
  assert np.isfinite(loss) and metrics["num_tokens"] == 2 * 7
  # 2 layers, batch 2 x 4 heads, head_dim 16, 10 slots: keys [rows, kv, slots], values
  # [rows, slots, kv]; stacked for a scanned stack, one pair per layer for an unrolled one.
  assert model.init_cache(2, 10)["key"].shape == (2, 8, 16, 10)
  assert model.init_cache(2, 10)["value"].shape == (2, 8, 10, 16)
  unrolled = lm.DecoderOnlyLM(dataclasses.replace(TINY, vocab_size=16, scan_layers=False))
  cache = unrolled.init_cache(2, 10)
  assert cache["key_1"].shape == (8, 16, 10) and cache["value_0"].shape == (8, 10, 16)


def test_vocab_size_errors():
  with pytest.raises(ValueError, match="needs transformer_config.vocab_size or a stage"):
    lm.DecoderOnlyLM(TINY)
  with pytest.raises(ValueError, match="does not match the semantic stage's layout"):
    lm.DecoderOnlyLM(dataclasses.replace(TINY, vocab_size=100), musiclm_spec.semantic_stage())
  with pytest.raises(ValueError, match="needs a stage with condition_kinds"):
    lm.DecoderOnlyLM(TINY, musiclm_spec.fine_stage(), condition_dropout_rate=0.1)


def test_flops_count_every_dense_parameter_and_attention():
  model = lm.DecoderOnlyLM(TINY, musiclm_spec.fine_stage())
  batch, length = 3, 40
  spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((batch, length), np.int32)}
  cfg = model.config
  # Everything but the input embedding lookup, the norm scales and the bias table; of
  # the 8 fine levels' logits, a position computes one level's.
  not_matmul = (cfg.vocab_size * cfg.d_model + (2 * cfg.num_layers + 1) * cfg.d_model
                + cfg.relative_attention_num_buckets * cfg.num_heads
                + cfg.d_model * 1024 * 7)
  dense = param_count.count_parameters(model) - not_matmul
  attention = 3 * cfg.num_layers * 4 * batch * length ** 2 * cfg.d_model
  assert model.flops_per_batch(spec) == 6 * dense * batch * length + attention


def test_conditioning_dropout_drops_rows_at_its_rate():
  # 256 copies of one row: the mean loss is (k * unconditional + (256 - k) * clean) / 256,
  # so it tells how many rows k were dropped.
  stage = musiclm_spec.semantic_stage()
  model = lm.DecoderOnlyLM(TINY, stage, condition_dropout_rate=0.25)
  batch = jax.tree.map(lambda x: jnp.repeat(x[:1], 256, axis=0), _semantic_batch(model))
  params = model_params(model, 20)
  loss = jax.jit(model.loss_fn)
  clean = loss(params, batch, None)[0]
  nulled = dict(batch, decoder_input_tokens=model.remove_conditioning(batch["decoder_input_tokens"]))
  unconditional = loss(params, nulled, None)[0]
  dropped = [float((loss(params, batch, jax.random.PRNGKey(seed))[0] - clean)
                   / (unconditional - clean) * 256) for seed in range(4)]
  # Binomial(256, 0.25): mean 64, sd 6.9; bounds of 4 sd, and the draws differ per key.
  assert all(36 <= k <= 92 for k in dropped), dropped
  assert len({round(k) for k in dropped}) > 1


def test_frame_positions_let_a_fine_token_find_its_own_coarse_frame():
  """With index offsets a fine token's own coarse frame is 4 T + 4 t + q - j tokens back,
  past the bias's 128-token horizon: in the last bucket, with most other frames (a bag of
  frames); with frame times its own frame is at offset 0, the others told apart."""
  stage = STAGES["fine"]
  frames = 50
  tokens = np.concatenate([random_stream(stage.layout, "coarse", frames, 0),
                           random_stream(stage.layout, "fine", frames, 1)])[None]
  coarse = np.arange(4 * frames)
  fine_of_frame_7 = 4 * frames + 8 * 7 + np.arange(8)
  index_bucket = np.asarray(relative_position.relative_position_bucket(
      coarse[None, :] - fine_of_frame_7[:, None], bidirectional=False))
  last = index_bucket.max()
  assert (index_bucket[:, 4 * 7:4 * 8] == last).all() and (index_bucket == last).mean() > 0.5
  clocks = stage.frame_clocks()
  times, _ = relative_position.frame_times(jnp.asarray(tokens), clocks)
  times = np.asarray(times)[0]
  offsets = times[coarse][None, :] - times[fine_of_frame_7][:, None]
  assert (offsets[:, 4 * 7:4 * 8] == 0).all() and np.count_nonzero(offsets == 0) == 8 * 4
  frame_bucket = relative_position.relative_position_bucket(offsets, bidirectional=True)
  assert len(np.unique(frame_bucket[0, ::4])) > 16


def test_frame_positions_need_a_stage_with_frame_ticks():
  with pytest.raises(ValueError, match="needs a stage"):
    lm.DecoderOnlyLM(dataclasses.replace(TINY, vocab_size=256), frame_positions=True)
  bare = token_layout.StageConfig("fine", token_layout.fine_layout(), "fine")
  with pytest.raises(ValueError, match="no frame_ticks"):
    lm.DecoderOnlyLM(TINY, bare, frame_positions=True)
