r"""musiclm-export: writes a params-only inference checkpoint from a training run.

  musiclm-export --gin_file=runs/export.gin --gin.MODEL_DIR=\"/tmp/toy\" \
      --gin.EXPORT_DIR=\"/tmp/toy_export\" --gin.EXPORT_DTYPE=\"bfloat16\"

The export folder gets `params/` (orbax) and the run's `config.gin`.
"""
import gin

from musiclm_jax import checkpoints
from musiclm_jax import gin_utils

REQUIRED_MACROS = ("MODEL_DIR", "EXPORT_DIR")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  path = gin.get_configurable(checkpoints.export_checkpoint)()
  print(f"exported params to {path}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
