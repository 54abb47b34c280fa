r"""Cascade speed: seconds of compute per second of music, by scale and batch size, and each stage's share.

  .venv/bin/python benchmarks/cascade.py                            # tiny and small, batch 1 and 8
  .venv/bin/python benchmarks/cascade.py --scales=tiny --seconds=3
  .venv/bin/python benchmarks/cascade.py --decode_levels=None,2     # 12 levels vs 2 (no fine stage)

Builds the three stage LMs from gin (models/<stage>.gin + scales/<scale>.gin)
and SoundStream (scales/soundstream_tiny.gin for tiny, soundstream_paper.gin
otherwise) with random weights (speed does not depend on training), and runs
`Cascade.generate` with the paper's windows on `batch_size` requests of
--seconds each. The text tokens come from a stand-in (MuLan's text tower runs
once per request, outside the loop measured here). Each configuration runs
once to compile and is timed on a second run; the figure is its wall time
divided by the seconds of music it made (batch_size x --seconds), and the
shares are `Generation.stage_seconds` over the batch's wall time. Prints one
JSON line with the 1-minute load average, since other work slows it down.
"""
import json
import os
import zlib

from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from musiclm_jax import cascade as cascade_lib
from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import musiclm_spec
from musiclm_jax.data import token_layout
from musiclm_jax.errors import UserError
from musiclm_jax.tokenizers import acoustic

_SCALES = flags.DEFINE_list("scales", ["tiny", "small"], "gin/scales/<scale>.gin of the stage LMs")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["1", "8"], "Requests per batch.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Music per request.")
_DECODE_LEVELS = flags.DEFINE_list("decode_levels", ["None"], "Cascade decode_levels to run: None "
                                   "(all 12, the paper) or N; at most 4 skips the fine stage.")


class _TextTokens:
  """A stand-in conditioning tokenizer: M_T drawn from a CRC of the text."""
  codebook_size = token_layout.MULAN.codebook_size
  num_levels = token_layout.MULAN.num_levels

  def text_tokens(self, texts) -> np.ndarray:
    return np.stack([np.random.default_rng(zlib.crc32(t.encode())).integers(
        0, self.codebook_size, self.num_levels) for t in texts]).astype(np.int32)


def _init(model, batch_spec):
  return nn.unbox(jax.jit(lambda rng: model.init(rng, batch_spec))(jax.random.key(0)))


def _components(scale: str) -> tuple:
  """A Cascade's positional arguments at `scale`: tokenizers and the three stages."""
  tokens = {"decoder_input_tokens": jax.ShapeDtypeStruct((1, 8), jnp.int32)}
  stages = []
  for stage in musiclm_spec.STAGES:
    model = gin_models.build_model([f"models/{stage}.gin", f"scales/{scale}.gin"])
    stages.append(cascade_lib.StageLM(model, _init(model, tokens)))
  codec_scale = "tiny" if scale == "tiny" else "paper"
  codec = gin_models.build_model(["models/soundstream.gin", f"scales/soundstream_{codec_scale}.gin"])
  audio = {"audio": jax.ShapeDtypeStruct((1, 4800), jnp.float32)}
  return (_TextTokens(), acoustic.SoundStreamTokenizer(codec, _init(codec, audio)), *stages)


def _decode_levels(value: str) -> int | None:
  if value == "None":
    return None
  if not value.isdigit():
    raise UserError(f"--decode_levels={value}: give None or a number of codec levels")
  return int(value)


def _measure(musiclm: cascade_lib.Cascade, batch_size: int) -> dict:
  """One configuration's figures: a compiling run, then the timed one."""
  requests = [cascade_lib.Request.from_text(f"prompt {i}", _SECONDS.value, seed=i)
              for i in range(batch_size)]
  musiclm.generate(requests, batch_size)  # compiles
  generation = musiclm.generate(requests, batch_size)[0]
  wall = generation.batch_seconds
  return {"batch_size": batch_size, "decode_levels": musiclm.decode_levels,
          "compute_seconds_per_music_second": round(wall / (batch_size * _SECONDS.value), 3),
          "wall_seconds": round(wall, 2),
          **{f"{stage}_share": round(seconds / wall, 3)
             for stage, seconds in generation.stage_seconds.items()},
          "stage_params_millions": round(sum(x.size for s in musiclm.stages.values()
                                             for x in jax.tree.leaves(s.params)) / 1e6, 2)}


def main(argv):
  del argv
  every_decode_levels = [_decode_levels(levels) for levels in _DECODE_LEVELS.value]
  results = []
  for scale in _SCALES.value:
    components = _components(scale)  # built and initialised once for every decode_levels
    for decode_levels in every_decode_levels:
      musiclm = cascade_lib.Cascade(*components, decode_levels=decode_levels)
      results += [{"scale": scale, **_measure(musiclm, batch_size)}
                  for batch_size in map(int, _BATCH_SIZES.value)]
  print(json.dumps({"benchmark": "cascade", "music_seconds_per_request": _SECONDS.value,
                    "windows": "paper", "results": results,
                    "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
                    "devices": jax.device_count()}), flush=True)


if __name__ == "__main__":
  # gin_utils.run also sets the binaries' XLA:CPU flags before JAX starts.
  gin_utils.run(main, usage="configure with --scales, --batch_sizes, --seconds")
