r"""Tokenizer speed: seconds of 24 kHz audio tokenized per wall-clock second.

  .venv/bin/python benchmarks/tokenizer_speed.py                          # every tokenizer, tiny and paper
  .venv/bin/python benchmarks/tokenizer_speed.py --tokenizers=semantic --scales=tiny --seconds=10

Each tokenizer is built at a scale with random weights (speed does not depend
on training), its tokenize function is jitted for one clip of --seconds, and one
JSON line is printed per (tokenizer, scale): the best of --repeats timed calls
after a warm-up call, with the 1-minute load average, since other work on the
machine slows it down. To add a tokenizer, write a `_build_<name>(scale)` that
returns (tokenize(audio [1, samples]) -> tokens, facts dict) and list it in BUILDERS.
"""
import json
import os
import time

from absl import flags
import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax.layers import kmeans
from musiclm_jax.models import w2v_bert
from musiclm_jax.tokenizers import semantic

_TOKENIZERS = flags.DEFINE_list("tokenizers", ["semantic"], "Entries of BUILDERS to run.")
_SCALES = flags.DEFINE_list("scales", ["tiny", "paper"], "Scales to run each tokenizer at.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Audio length.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls; the fastest is reported.")

SAMPLE_RATE_HZ = 24_000


def _build_semantic(scale: str):
  """w2v-BERT (gin/scales/w2v_bert_<scale>.gin) up to SEMANTIC_LAYER + k-means of 1024 random centroids."""
  model = gin_models.build_model(["models/w2v_bert.gin", f"scales/w2v_bert_{scale}.gin"])
  layer = gin.query_parameter("%SEMANTIC_LAYER")
  spec = {"audio": jax.ShapeDtypeStruct((1, model.config.input_hop_length), jnp.float32)}
  params = jax.jit(lambda rng: nn.unbox(model.init(rng, spec)))(jax.random.key(0))
  dim = model.config.conformer.d_model
  rng = np.random.default_rng(0)
  codebook = kmeans.Codebook(rng.normal(size=(1024, dim)).astype(np.float32),
                             np.zeros(dim, np.float32), np.ones(dim, np.float32), {"layer": layer})
  tokenizer = semantic.SemanticTokenizer(model, params, codebook, layer)
  used = w2v_bert.truncate_mlm_params(params, layer, model.config.conformer.scan_layers)
  return tokenizer.tokenize, {
      "layer": layer, "params_millions": round(w2v_bert.count_parameters(model.config) / 1e6, 1),
      "params_run_millions": round(sum(x.size for x in jax.tree.leaves(used)) / 1e6, 1),
      "token_rate_hz": model.config.frame_rate_hz}


BUILDERS = {"semantic": _build_semantic}


def _best_seconds(fn, audio) -> float:
  fn(audio)
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(audio))
    times.append(time.perf_counter() - start)
  return min(times)


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  num_samples = int(_SECONDS.value * SAMPLE_RATE_HZ)
  audio = np.random.default_rng(0).uniform(-0.5, 0.5, (1, num_samples)).astype(np.float32)
  for name in _TOKENIZERS.value:
    for scale in _SCALES.value:
      tokenize, facts = BUILDERS[name](scale)
      seconds = _best_seconds(tokenize, audio)
      print(json.dumps({
          "benchmark": "tokenizers", "tokenizer": name, "scale": scale,
          "audio_seconds": _SECONDS.value, "wall_seconds": round(seconds, 4),
          "audio_seconds_per_second": round(_SECONDS.value / seconds, 2), **facts,
          "devices": jax.device_count(), "load_average_1min": round(os.getloadavg()[0], 2)}),
          flush=True)


if __name__ == "__main__":
  # gin_utils.run also sets the binaries' XLA:CPU flags before JAX starts.
  gin_utils.run(main, usage="configure with --tokenizers, --scales, --seconds, --repeats")
