r"""Fits the melody tokens' 24 x 512 RVQ on an exported melody embedder's window embeddings.

  python -m musiclm_jax.fit_melody_rvq --gin_file=runs/fit_melody_rvq.gin \
      --gin.EXPORT_DIR=\"runs/melody_tiny/export\" --gin.DATA_DIR=\"runs/tfds\" \
      --gin.OUTPUT_DIR=\"runs/melody_tiny\"

Writes OUTPUT_DIR/rvq.npz (load with `MelodyTokenizer.load(EXPORT_DIR, path)`).
"""
import gin

from musiclm_jax import gin_utils
from musiclm_jax.tokenizers import melody
from musiclm_jax.tokenizers import rvq_fit

REQUIRED_MACROS = ("EXPORT_DIR", "DATA_DIR", "OUTPUT_DIR")


def main(argv):
  del argv  # gin_utils.run rejected positional arguments
  gin_utils.parse_flags_and_check(REQUIRED_MACROS)
  tokenizer = gin.get_configurable(melody.fit_melody_rvq_on_dataset)()
  print(f"fitted a {tokenizer.num_levels} x {tokenizer.codebook_size} melody RVQ: "
        f"{gin.get_configurable(rvq_fit.rvq_file)()}")


def console_entry_point():
  gin_utils.run(main)


if __name__ == "__main__":
  console_entry_point()
