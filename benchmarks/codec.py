r"""Codec speed: real-time factor of encode and of decode for 10 s of 24 kHz audio.

  .venv/bin/python benchmarks/codec.py                      # tiny and paper sizes
  .venv/bin/python benchmarks/codec.py --scales=paper --seconds=10 --repeats=5

Builds SoundStream from gin (models/soundstream.gin + scales/soundstream_<scale>.gin)
with random weights and k-means-seeded codebooks (speed does not depend on
training), jits `encode` (audio -> codes) and `decode` (codes -> audio) for one
clip, and prints one JSON line per (scale, op): the best of --repeats timed calls
after one warm-up call, as x real time (audio seconds / wall seconds), with the
1-minute load average, since other work on the machine slows it down.

The codec is compute-bound, so each line also gives the compiled program's FLOPs
(XLA's cost analysis: 2 per multiply-add of every convolution) and the FLOP/s
reached as a fraction of a float32 matmul's, measured in the same run
(`metrics.measure_matmul_peak_flops`): how far any rewrite of the same
architecture could still speed it up on this machine.
"""
import json
import os
import time

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import metrics
from musiclm_jax.models import soundstream

_SCALES = flags.DEFINE_list("scales", ["tiny", "paper"], "gin/scales/soundstream_<scale>.gin")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Audio length.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls; the fastest is reported.")


def _best_seconds(fn, *args) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return min(times)


def _model(scale: str) -> soundstream.SoundStreamModel:
  return gin_models.build_model(["models/soundstream.gin", f"scales/soundstream_{scale}.gin"])


def main(argv):
  del argv
  peak_flops = metrics.measure_matmul_peak_flops()
  for scale in _SCALES.value:
    model = _model(scale)
    rate_hz = model.config.sample_rate_hz
    num_samples = int(_SECONDS.value * rate_hz)
    audio = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (1, num_samples)), jnp.float32)
    params = nn.unbox(model.init(jax.random.key(0), {"audio": jax.ShapeDtypeStruct((1, 4800), jnp.float32)}))
    embeddings = model.embed(params[soundstream.GENERATOR], audio[:, :rate_hz * 2])
    params[soundstream.QUANTIZER] = model.rvq.seed(params[soundstream.QUANTIZER], embeddings,
                                                   jax.random.key(1))
    # Compiled once each: the timed program is the one whose FLOPs are counted.
    encode = jax.jit(model.encode).lower(params, audio).compile()
    codes = encode(params, audio)
    decode = jax.jit(lambda p, c: model.decode(p, c, num_samples=num_samples)).lower(
        params, codes).compile()
    generator_params = sum(x.size for x in jax.tree.leaves(params[soundstream.GENERATOR]))
    for op, fn, arg in (("encode", encode, audio), ("decode", decode, codes)):
      seconds = _best_seconds(fn, params, arg)
      flops = fn.cost_analysis()["flops"]
      print(json.dumps({
          "benchmark": "codec", "scale": scale, "op": op, "audio_seconds": _SECONDS.value,
          "wall_seconds": round(seconds, 4), "x_realtime": round(_SECONDS.value / seconds, 2),
          "generator_params_millions": round(generator_params / 1e6, 2),
          "bitrate_kbps": model.config.bitrate_bps / 1000, "gflop": round(flops / 1e9, 2),
          "gflops_per_second": round(flops / seconds / 1e9, 1),
          "fraction_of_matmul_peak": round(flops / seconds / peak_flops, 3),
          "matmul_peak_gflops": round(peak_flops / 1e9, 1), "devices": jax.device_count(),
          "load_average_1min": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
  # gin_utils.run also sets the binaries' XLA:CPU flags before JAX starts.
  gin_utils.run(main, usage="configure with --scales, --seconds, --repeats")
