r"""Sampling speed of the semantic stage: 30 s of tokens, with and without the KV cache.

  .venv/bin/python benchmarks/sampling.py --scale=small
  .venv/bin/python benchmarks/sampling.py --scale=tiny --nofull_recompute

Generates 750 semantic tokens (30 s at 25 Hz) after the 12 MuLan tokens, at
batch 1, with the model's `predict_batch` and `decoding.temperature_sample`
(cached: prefill + one compiled scan) and its reference (`cached=False`: a full
forward pass over the whole [1 + 12 + 750] buffer for every token). Prints one
JSON line per mode.

Per-token cost at a position is measured without per-token dispatch: the
difference between generating N + W and N - W tokens with the same cache
length (762), divided by 2W, so the tokens timed see the same cache they
would inside the 750-token generation. Compilation is excluded and reported.

Without the cache every token costs the same full pass over the 763-token
buffer, so the reference is timed on --full_recompute_tokens tokens (a
difference of two lengths, as above) and its 750-token total is that cost
times 750, marked "estimated" (at the small scale a measured run takes ~30 min).

The floor: each decoded token reads every weight once (of the token
embedding, one row), so a matrix-vector pass over all of them but the
embedding (each weight as [rows, last axis], f32 and cast to bf16) timed in
the same run bounds what a cached token can cost;
`late_token_over_f32_floor` is how far the sampler is from it. Every token's
attention also reads the whole KV cache (its static [.., cache_length] slots,
filled or not): the same pass over the weights and an f32 cache of this run's
length is the floor of the algorithm as it stands
(`weight_and_cache_read_floor_ms_f32`, and 750 tokens at it,
`seconds_at_weight_and_cache_floor`).
"""
import json
import os
import time

from absl import flags
import jax
import numpy as np

from musiclm_jax import decoding
from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax.data import token_layout

_SCALE = flags.DEFINE_string("scale", "small", "gin/scales/<scale>.gin")
_NEW_TOKENS = flags.DEFINE_integer("new_tokens", 750, "Semantic tokens to generate (25 Hz).")
_WINDOW = flags.DEFINE_integer("window", 50, "Half-width W of the per-token timing windows.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per length (the median is kept).")
_FULL = flags.DEFINE_bool("full_recompute", True, "Also time the non-cached reference.")
_FULL_TOKENS = flags.DEFINE_integer("full_recompute_tokens", 20,
                                    "Tokens the non-cached per-token cost is measured on.")


def _timed(fn, repeats):
  """(median seconds, first-call seconds) of fn() -> array."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return float(np.median(times)), first


def _floor_ms(params, dtype, cache=None, passes: int = 10) -> float:
  """Median ms of one vector-times-matrix pass over every weight a token reads, stored as
  `dtype`, and over every array of `cache` (a KV cache pytree) if given.

  `passes` chained passes run in one call (each scales its vectors by the
  last pass's sum, so none can be hoisted), which keeps dispatch out of it.
  """
  arrays = [leaf for name, tree in params.items() if name != "token_embedding"
            for leaf in jax.tree.leaves(tree)]
  arrays += [leaf for leaf in jax.tree.leaves(cache) if leaf.ndim > 1]  # not the index
  weights = [leaf.reshape(-1, leaf.shape[-1]).astype(dtype) for leaf in arrays]

  def read(weights):
    def one_pass(_, scale):
      sums = [jax.numpy.sum(jax.numpy.full((w.shape[0],), scale, dtype) @ w, dtype=np.float32)
              for w in weights]
      return 1 + 1e-30 * sum(sums)
    return jax.lax.fori_loop(0, passes, one_pass, np.float32(1))

  read = jax.jit(read)
  return 1e3 * _timed(lambda: read(weights), _REPEATS.value)[0] / passes


def main(argv):
  del argv
  model = gin_models.build_model(["models/semantic.gin", f"scales/{_SCALE.value}.gin"])
  spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((1, 8), np.int32)}
  params = jax.jit(lambda rng: jax.tree.map(lambda x: x.unbox(), model.init(rng, spec),
                                            is_leaf=lambda x: hasattr(x, "unbox")))(
                                                jax.random.PRNGKey(0))
  layout = model.stage.layout
  mulan = np.random.default_rng(0).integers(0, 1024, (1, 12))
  prompt = layout.encode("mulan", mulan)
  n, w = _NEW_TOKENS.value, _WINDOW.value
  cache_length = 1 + prompt.shape[1] + n - 1
  early, late = min(75, n - w), n - w
  # What each token reads: the weights alone in either dtype, or with the KV cache (float32).
  weights_f32_ms, weights_bf16_ms = _floor_ms(params, "float32"), _floor_ms(params, "bfloat16")
  with_cache_ms = _floor_ms(params, "float32", model.init_cache(1, cache_length))

  for cached in (True, False) if _FULL.value else (True,):
    run = lambda steps: model.predict_batch(params, {"prompt_tokens": prompt},
                                            jax.random.PRNGKey(0),
                                            decode_fn=decoding.temperature_sample,
                                            num_steps=steps, cached=cached,
                                            cache_length=cache_length)
    if cached:
      repeats, lengths = _REPEATS.value, sorted({n, early - w, early + w, late - w})
    else:
      repeats, lengths = 1, [10, 10 + _FULL_TOKENS.value]
    seconds, first = {}, {}
    for steps in lengths:
      seconds[steps], first[steps] = _timed(lambda: run(steps), repeats)
    report = {"benchmark": "sampling", "stage": "semantic", "scale": _SCALE.value,
              "cached": cached, "batch_size": 1, "prompt_tokens": prompt.shape[1],
              "new_tokens": n, "params": sum(x.size for x in jax.tree.leaves(params))}
    if cached:
      ms_early = 1e3 * (seconds[early + w] - seconds[early - w]) / (2 * w)
      ms_late = 1e3 * (seconds[n] - seconds[late - w]) / (2 * w)
      tokens = np.asarray(run(n))
      lo, hi = layout.id_range(token_layout.SEMANTIC.name)
      assert ((tokens >= lo) & (tokens < hi)).all()
      report.update({"total_seconds": round(seconds[n], 3),
                     "tokens_per_second": round(n / seconds[n], 1),
                     f"ms_per_token_near_{early}": round(ms_early, 2),
                     f"ms_per_token_near_{n}": round(ms_late, 2),
                     "late_over_early": round(ms_late / ms_early, 2),
                     "weight_read_floor_ms_f32": round(weights_f32_ms, 2),
                     "weight_read_floor_ms_bf16": round(weights_bf16_ms, 2),
                     "late_token_over_f32_floor": round(ms_late / weights_f32_ms, 2),
                     "weight_and_cache_read_floor_ms_f32": round(with_cache_ms, 2),
                     "seconds_at_weight_and_cache_floor": round(n * with_cache_ms / 1e3, 3),
                     "compile_seconds": round(first[n] - seconds[n], 1)})
    else:
      short, long_ = lengths
      ms_per_token = 1e3 * (seconds[long_] - seconds[short]) / (long_ - short)
      report.update({"total_seconds_estimated": round(ms_per_token * n / 1e3, 1),
                     "ms_per_token": round(ms_per_token, 2),
                     "measured_tokens": f"{short}..{long_}",
                     "compile_seconds": round(first[short] - seconds[short], 1)})
    report.update({"load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
                   "devices": jax.device_count(), "repeats": repeats})
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
  # gin_utils.run also sets the binaries' XLA:CPU flags before JAX starts.
  gin_utils.run(main, usage="configure with --scale, --new_tokens, --window, --repeats, "
                           "--full_recompute")
