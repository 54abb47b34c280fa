r"""Prints the parameter count of each stage LM at a scale, without allocating.

  python -m musiclm_jax.tools.param_count --scale=paper
  python -m musiclm_jax.tools.param_count --scale=small --stage=coarse

Builds the model from gin/models/STAGE.gin + gin/scales/SCALE.gin and runs
its `init` under `jax.eval_shape`.
"""
import os

from absl import flags
import gin
import jax
import numpy as np

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax import musiclm_spec
from musiclm_jax.errors import UserError

STAGES = musiclm_spec.STAGES

_SCALE = flags.DEFINE_string("scale", "paper", "A gin/scales/*.gin name: tiny, small, paper.")
_STAGE = flags.DEFINE_multi_string("stage", list(STAGES), "Stages to count (repeatable).")


def build_model(stage: str, scale: str):
  """The `MODEL` of gin/models/{stage}.gin at gin/scales/{scale}.gin."""
  files = [os.path.join(gin_utils.GIN_DIR, "models", f"{stage}.gin"),
           os.path.join(gin_utils.GIN_DIR, "scales", f"{scale}.gin")]
  for path in files:
    if not os.path.exists(path):
      raise UserError(f"no gin file {path}: stages are {', '.join(STAGES)}; scales are "
                      f"{', '.join(sorted(f[:-4] for f in os.listdir(os.path.dirname(files[1]))))}")
  try:
    return gin_models.build_model(files)
  finally:
    gin.clear_config()


def count_parameters(model, length: int = 8) -> int:
  """Number of scalars in `model.init`'s params, by shape inference only."""
  spec = {"decoder_input_tokens": jax.ShapeDtypeStruct((1, length), np.int32)}
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), spec)
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  for stage in _STAGE.value:
    model = build_model(stage, _SCALE.value)
    cfg = model.config
    total = count_parameters(model)
    embedding = cfg.vocab_size * cfg.d_model + (0 if cfg.tie_embeddings else
                                                 cfg.num_logits * cfg.d_model)
    print(f"{stage:>8} @ {_SCALE.value}: {total / 1e6:8.2f}M parameters "
          f"(vocab {cfg.vocab_size}, embeddings+logits {embedding / 1e6:.2f}M, "
          f"{cfg.num_layers} layers x d_model {cfg.d_model})")


if __name__ == "__main__":
  gin_utils.run(main, usage="use --scale and --stage")
