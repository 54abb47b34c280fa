r"""Prints w2v-BERT's parameter count at a scale, without allocating.

  python -m musiclm_jax.tools.w2v_bert_param_count --scale=paper   # ~600M
  python -m musiclm_jax.tools.w2v_bert_param_count --scale=tiny

Builds the model from gin/models/w2v_bert.gin + gin/scales/w2v_bert_<scale>.gin.
"""
from absl import flags

from musiclm_jax import gin_models
from musiclm_jax import gin_utils
from musiclm_jax.models import w2v_bert

_SCALE = flags.DEFINE_string("scale", "paper", "gin/scales/w2v_bert_<scale>.gin: tiny or paper.")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  config = gin_models.build_model(
      ["models/w2v_bert.gin", f"scales/w2v_bert_{_SCALE.value}.gin"]).config
  cc = config.conformer
  print(f"w2v-BERT @ {_SCALE.value}: {w2v_bert.count_parameters(config) / 1e6:.1f}M parameters "
        f"({config.contrastive_layers} contrastive + {config.mlm_layers} MLM Conformer layers, "
        f"d_model {cc.d_model}, {cc.num_heads} heads, d_ff {cc.d_ff}, "
        f"{config.frame_rate_hz:g} Hz frames)")


if __name__ == "__main__":
  gin_utils.run(main, usage="use --scale")
